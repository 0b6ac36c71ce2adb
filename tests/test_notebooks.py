"""The notebooks of docs/notebooks: each runs top to bottom in a fresh kernel, from a temporary working
directory, against a real S3 server (SeaweedFS, the demo stores in its anonymous public bucket) and
with no configuration at all (the local demo-store fallback); the committed outputs are current.

The staleness rule and the text normalisation are in :mod:`sscxr.testing.notebooks`; a stale
notebook fails with the regeneration command. Every ``*.ipynb`` in docs/notebooks is picked up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("nbclient", reason="the test extra installs nbclient, nbformat and ipykernel")
import nbformat  # noqa: E402

from sscxr.testing import notebooks as nbtest  # noqa: E402
from sscxr.testing.s3 import SeaweedServer  # noqa: E402

NOTEBOOKS = nbtest.notebooks()
IDS = [p.stem for p in NOTEBOOKS]


def test_there_are_notebooks():
    assert {"quickstart", "ssc11-ablation", "raw-and-video", "whole-dataset"} <= set(IDS)


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty cache folder: the first notebook run without configuration builds the demo stores in
    it (through ``sscxr.demo.demo_stores`` in the kernel), the others and the S3 run reuse them."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def public_env(seaweed_server: SeaweedServer, demo_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The kernel environment of a reader of the public bucket holding the demo stores."""
    from sscxr.demo import demo_stores

    assert seaweed_server.public_bucket == nbtest.PUBLIC_BUCKET
    root = demo_stores(demo_cache / "sscxr" / "demo-stores", progress=False)  # built already, or now
    settings = nbtest.public_stores(seaweed_server, root)
    return nbtest.kernel_env(settings, home=tmp_path_factory.mktemp("home"))


@pytest.mark.seaweedfs
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_without_configuration(path: Path, demo_cache: Path, tmp_path: Path):
    """No SSCXR_* setting: the first code cell builds (or reuses) the demo stores in the user cache."""
    env = nbtest.kernel_env({"XDG_CACHE_HOME": str(demo_cache)}, home=tmp_path / "home")
    executed = nbtest.execute(path, env, cwd=tmp_path)
    assert nbtest.errors(executed) == []
    assert (demo_cache / "sscxr" / "demo-stores" / "demo.json").exists()
    assert not any(tmp_path.glob("*.zarr"))  # nothing written to the working directory
    stderr = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs
                     if o.output_type == "stream" and o.name == "stderr")  # fmt: skip
    assert "IProgress" not in stderr and "TqdmWarning" not in stderr  # conversion bars without ipywidgets


@pytest.mark.seaweedfs
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs_from_s3_and_is_current(path: Path, public_env: dict, tmp_path: Path):
    executed = nbtest.execute(path, public_env, cwd=tmp_path)
    assert nbtest.errors(executed) == []
    committed = nbformat.read(path, as_version=4)
    problems = nbtest.staleness(committed, executed)
    assert not problems, (f"{path.name} is stale; regenerate it with: {nbtest.REGENERATE} {path.stem}\n"
                          + "\n".join(problems))  # fmt: skip


def test_staleness_rule_catches_stale_outputs():
    """The rule itself, on a committed notebook: missing outputs, changed text, extra output, renumbering."""
    import copy

    path = next(p for p in NOTEBOOKS if p.stem == "quickstart")
    committed = nbformat.read(path, as_version=4)
    assert nbtest.staleness(committed, committed) == []
    code = [i for i, c in enumerate(committed.cells) if c.cell_type == "code" and c.outputs]

    cleared = copy.deepcopy(committed)
    cleared.cells[code[0]].outputs = []
    assert any("committed outputs []" in p for p in nbtest.staleness(cleared, committed))

    changed = copy.deepcopy(committed)
    stream = next(o for i in code for o in changed.cells[i].outputs if o.output_type == "stream")
    stream.text = stream.text + "one more line\n"
    assert any("text differs" in p for p in nbtest.staleness(changed, committed))

    renumbered = copy.deepcopy(committed)
    renumbered.cells[code[0]].execution_count = 7
    assert any("top to bottom" in p for p in nbtest.staleness(renumbered, committed))

    edited = copy.deepcopy(committed)
    edited.cells[code[0]].source += "\n1 + 1"
    assert nbtest.staleness(edited, committed) == ["its code cells differ from the executed notebook's"]


def test_normalisation_keeps_what_matters():
    text = ("store s3://sscxr-public/stores/an274424.zarr at http://127.0.0.1:41235 created "
            "2026-12-07T15:33:52+00:00 in /tmp/pytest-of-root/x/an274424.zarr-versions/v20261207T153119Z-ba665d "
            "sha 3e6d249353053c615307c0673fdbf89a0b9134a6115c4c655f0624cb78c1a983 mean 0.519  ")
    assert nbtest.normalise(text) == (
        "store s3://sscxr-public/stores/an274424.zarr at http://127.0.0.1:<port> created <timestamp> in <tmp> "
        "sha <hex> mean 0.519")


def readme_python() -> str:
    """The README's Python block (the first ```python fence), as a new user would paste it."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.seaweedfs
@pytest.mark.parametrize("where", ["demo stores", "public S3"])
def test_readme_python_runs_in_a_fresh_interpreter(where: str, demo_cache: Path, public_env: dict, tmp_path: Path):
    """The README's example runs as it is in a fresh interpreter, from another folder: with nothing
    configured (the demo stores) and reading the public bucket anonymously (``SSCXR_STORE_ROOT``)."""
    import subprocess
    import sys

    if where == "public S3":
        env = dict(public_env)
    else:
        env = nbtest.kernel_env({"XDG_CACHE_HOME": str(demo_cache)}, home=tmp_path / "home")
    env["MPLBACKEND"] = "Agg"
    code = readme_python() + "\nprint('rows', len(table), 'cells', tensor.sizes['cell'], 'paired', paired.sizes['cell'])\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows, cells, paired = (int(v) for v in proc.stdout.split()[1::2])
    assert rows > 0 and cells > 0 and paired > 0, proc.stdout
    assert not any(tmp_path.glob("*.zarr")), "nothing written to the working directory"
