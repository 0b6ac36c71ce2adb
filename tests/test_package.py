"""The package as a fresh Jupyter kernel sees it: ``import sscxr`` reaches every public
submodule, stays light, and ``python -m sscxr`` is the command line. Each check runs in a new
interpreter, since an earlier import in the test process would hide a missing one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUBMODULES = ["accessors", "align", "behavior", "catalog", "cli", "content", "credentials", "demo", "errors", "info",
              "io", "plot", "resample", "schema", "summary", "testing", "video"]  # fmt: skip


def _fresh(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "conversion")])}
    return subprocess.run([sys.executable, *args, "-c", code] if code else [sys.executable, *args],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)  # fmt: skip


def test_fresh_import_reaches_every_public_submodule():
    code = f"""
import json, sys, types, sscxr
before = sorted(m for m in ("matplotlib", "dask", "intake", "tqdm") if m in sys.modules)
mods = {{name: isinstance(getattr(sscxr, name), types.ModuleType) for name in {SUBMODULES!r}}}
calls = [callable(f) for f in (sscxr.io.open_group, sscxr.catalog.find, sscxr.plot.plot_trial_tensor,
         sscxr.align.trial_tensor, sscxr.resample.resample_whisker, sscxr.testing.stores.make_session_tree,
         sscxr.open_session, sscxr.open_animal, sscxr.open_catalog)]
print(json.dumps({{"before": before, "mods": mods, "calls": calls, "dir": dir(sscxr), "all": sscxr.__all__}}))
"""
    done = _fresh(code)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["before"] == [], "import sscxr must not import matplotlib, dask, intake or tqdm"
    assert all(out["mods"].values()), out["mods"]
    assert all(out["calls"])
    public = set(SUBMODULES) | {"open_session", "open_animal", "open_store", "open_catalog", "__version__"}
    assert public <= set(out["all"]) and public <= set(out["dir"])


def test_unknown_attribute_says_what_exists():
    done = _fresh("import sscxr; sscxr.plots")
    assert "AttributeError: module 'sscxr' has no attribute 'plots'" in done.stderr
    assert "'plot'" in done.stderr


def test_python_dash_m_runs_the_command_line():
    done = _fresh("", "-m", "sscxr", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: sscxr") and "convert" in done.stdout


@pytest.mark.parametrize("argv", [["info", "/nonexistent/h2.zarr"]])
def test_python_dash_m_exits_with_the_command_status(argv):
    done = _fresh("", "-m", "sscxr", *argv)
    assert done.returncode == 2 and "sscxr info: error:" in done.stderr
