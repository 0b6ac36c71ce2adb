"""What each conversion fast path buys, measured in one process on one session's groups.

Run: ``python benchmarks/bench_convert_fastpath.py [--preset full] [--repeat 5] [--zarrs]``

The session is read once (``read_plan``); then, alternating, every group is encoded in memory
(``write.encode_group``) with the fast path ``group encoder`` on and off (``to_zarr`` into a
``MemoryStore``; with ``--zarrs`` also through the ``zarrs`` codec pipeline), and a store holding
all groups is finalised with the fast path ``consolidation`` on and off. Times are CPU seconds of
this process (``time.process_time``: the work is one thread, and CPU time is far less disturbed
than wall time by other load on a shared machine) and wall seconds; best of ``--repeat``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench_convert import session

import zarr

from sscxr import _fastpath
from sscxr_conversion import write
from sscxr_conversion.pipeline import read_plan
from sscxr_conversion.spec import ConversionSpec


@contextmanager
def mode(name: str):
    """``fast`` (every fast path on), ``public`` (off), ``public+zarrs`` (off, zarrs codec pipeline)."""
    if name == "fast":
        yield
        return
    with _fastpath.forced_off():
        if name == "public+zarrs":
            import zarrs  # noqa: F401

            with zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"}):
                yield
        else:
            yield


def timed(fn: Any) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="full")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--zarrs", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    mat = session(args.preset)
    spec = ConversionSpec(archive="ssc-1")
    plan = read_plan(mat, spec)
    groups = dict(plan.groups)
    for task in plan.tasks:
        groups.update(dict(task.build()[0]))
    n_chunks = len([k for p, ds in groups.items() for k in write.encode_group(ds, p, spec) if "/c/" in k])
    modes = ["fast", "public"] + (["public+zarrs"] if args.zarrs else [])
    enc: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    fin: dict[str, list[tuple[float, float]]] = {m: [] for m in ("fast", "public")}
    work = Path(tempfile.mkdtemp(prefix="bench_fastpath_"))
    try:
        for _ in range(args.repeat):
            for m in modes:
                with mode(m):
                    enc[m].append(timed(lambda: [write.encode_group(ds, p, spec) for p, ds in groups.items()]))
            for m in fin:
                url = str(work / f"{m}.zarr")
                shutil.rmtree(url, ignore_errors=True)
                store = write.open_store(url, None, mode="w")
                write.prepare(store, url, overwrite=True, resume=False, attrs={**plan.attrs})
                for p, ds in groups.items():
                    write.write_group(store, p, ds, spec)
                with mode(m):
                    fin[m].append(timed(lambda: write.finalise(store, plan.attrs)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"## Fast paths on vs off ({args.preset} preset: {len(groups)} groups, {n_chunks} chunks; "
          f"best of {args.repeat}, one process)\n")
    print("| step | path | CPU (s) | wall (s) |\n|---|---|---|---|")
    for step, runs in (("encode every group (`group encoder`)", enc), ("finalise (`consolidation`)", fin)):
        for m, r in runs.items():
            print(f"| {step} | {m} | {min(c for c, _ in r):.3f} | {min(w for _, w in r):.3f} |")


if __name__ == "__main__":
    main()
