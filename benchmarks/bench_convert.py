"""Conversion cost vs merely loading the same .mat (issue 4), same run, same machine.

Run: ``python benchmarks/bench_convert.py [--preset full] [--workers N] [--repeat 3] [--out FILE]``

Each measurement runs in a fresh Python process (so one cannot warm the other's caches or
allocator), alternating baseline and conversion, ``--repeat`` times; the best time is reported.
Peak memory is the process's peak RSS growth during the step (``ru_maxrss`` after minus before
the step, imports excluded), so the two are compared on what the work itself needs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine_markdown

WORK = Path(__file__).parent / ".work"
RECENTLY_DELETED_S = 65  # ext4 (without journal) skips inodes deleted in the last 60 s, one by one

CHILD = r"""
import json, os, resource, sys, time
mode, mat, store, workers = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
import scipy.io
if mode == "convert":
    from sscxr_conversion import convert
os.sync()  # earlier runs' writeback is not this run's cost (the run's own writes still are)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "loadmat":
    scipy.io.loadmat(mat, squeeze_me=True, struct_as_record=False)
else:
    convert(mat, store, overwrite=True, progress=False, workers=int(workers) or None)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "peak_mb": (peak - before) / 1024}))
"""


def session(preset: str) -> Path:
    """The synthetic session (written once, reused by later runs).

    It is written by a child process: Linux carries a parent's peak RSS into its children's
    ``ru_maxrss``, so a large writer in this process would hide the measured peaks.
    """
    folder = WORK / f"ssc1_{preset}"
    mats = sorted(folder.glob("*_session.mat"))
    if not mats:
        shutil.rmtree(folder, ignore_errors=True)
        code = ("import sys; from sscxr.testing.archives import write_ssc1_session; "
                "write_ssc1_session(sys.argv[1], preset=sys.argv[2], seed=0)")
        subprocess.run([sys.executable, "-c", code, str(folder), preset], check=True)
        mats = sorted(folder.glob("*_session.mat"))
    return mats[0]


def run(mode: str, mat: Path, store: Path, workers: int) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(mat), str(store), str(workers)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fresh_stores(folder: Path, n: int) -> list[Path]:
    """``n`` destinations that do not exist yet, in an emptied ``folder``.

    Each run converts to a new store and none is deleted until the next benchmark: ext4 without
    a journal (this machine's root) checks each free inode it considers against the deletion
    time in the inode table (``recently_deleted``, 60 s window) and skips recent ones one by one;
    with a 3,000-file store removed just before a run, that lookup was 16% of the conversion's
    CPU samples (``perf``), a cost no first conversion has. The old runs' stores are removed
    here, followed by a pause, so their deletion is not recent either.
    """
    if folder.exists():
        shutil.rmtree(folder)
        os.sync()
        time.sleep(RECENTLY_DELETED_S)
    folder.mkdir(parents=True)
    return [folder / f"run{i}.zarr" for i in range(n)]


def spread(runs: list[dict]) -> str:
    return " ".join(f"{r['seconds']:.2f}" for r in runs)


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="full")
    ap.add_argument("--workers", type=int, default=0, help="0: local threads; N: dask LocalCluster")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    mat = session(args.preset)
    runs: dict[str, list[dict]] = {"loadmat": [], "convert": []}
    stores = fresh_stores(WORK / f"{mat.stem}.runs", args.repeat)
    for store in stores:
        for mode in runs:
            runs[mode].append(run(mode, mat, store, args.workers))
    store = stores[-1]
    best = {m: min(r["seconds"] for r in rs) for m, rs in runs.items()}
    median = {m: statistics.median(r["seconds"] for r in rs) for m, rs in runs.items()}
    peak = {m: min(r["peak_mb"] for r in rs) for m, rs in runs.items()}
    how = "local threads" if not args.workers else f"dask LocalCluster, {args.workers} workers"
    text = [f"## Conversion vs loadmat ({args.preset} preset, {mat.stat().st_size / 1e6:.0f} MB .mat, {how})", "",
            f"| step | best of {args.repeat} (s) | median (s) | all runs (s) | peak RSS growth (MB) |",
            "|---|---|---|---|---|",
            *(f"| {label} | {best[m]:.2f} | {median[m]:.2f} | {spread(runs[m])} "
              f"| {peak[m]:.0f} |" for m, label in (("loadmat", "`scipy.io.loadmat` (baseline)"),
                                                    ("convert", "`sscxr convert`"))), "",
            f"- time ratio convert / loadmat: **{best['convert'] / best['loadmat']:.2f}x** best, "
            f"{median['convert'] / median['loadmat']:.2f}x median (target <= 1.5x)",
            f"- memory ratio: **{peak['convert'] / peak['loadmat']:.2f}x** (target <= 1.5x)",
            f"- store size {du(store) / 1e6:.0f} MB vs source {mat.stat().st_size / 1e6:.0f} MB "
            f"(**{du(store) / mat.stat().st_size:.2f}x**)", "", machine_markdown(), ""]
    print("\n".join(text))
    if args.out:
        path = Path(args.out)
        old = path.read_text() if path.exists() else "# Conversion benchmarks\n\n"
        path.write_text(old.rstrip() + "\n\n" + "\n".join(text))


if __name__ == "__main__":
    main()
