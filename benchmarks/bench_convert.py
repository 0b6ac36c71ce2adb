"""Conversion from the command line vs merely loading the same .mat, same run, same machine.

Run: ``python benchmarks/bench_convert.py [--preset full] [--repeat 3] [--zarrs] [--out FILE]``

Each measurement is a fresh process, timed whole (interpreter start and imports included) and
its peak RSS read from the kernel's accounting of that one child (``os.wait4``):

- ``loadmat``: ``python -c "scipy.io.loadmat(...)"``, the baseline;
- ``convert``: ``python -m sscxr convert SRC DEST --quiet``, every fast path on;
- ``public``: the same with ``SSCXR_NO_FASTPATH=1`` (zarr's and xarray's public path only);
- ``no <fast path>``: the same with only that fast path off (``sscxr_conversion._zarr_fastpath``);
- with ``--zarrs``, ``public+zarrs``: the public path with the ``zarrs`` codec pipeline.

Modes alternate within each repeat; best and median are reported.
"""

from __future__ import annotations

import argparse
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

LOADMAT = "import sys, scipy.io; scipy.io.loadmat(sys.argv[1], squeeze_me=True, struct_as_record=False)"
# ``python -m sscxr convert``, optionally with one fast path off or another codec pipeline first
CONVERT = r"""
import sys, warnings
off, pipeline = sys.argv[1], sys.argv[2]
if off:
    from sscxr import _fastpath
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _fastpath.fall_back(off, "benchmark")
if pipeline:
    import zarr, zarrs  # noqa: F401
    zarr.config.set({"codec_pipeline.path": pipeline})
from sscxr.cli import run
sys.argv = ["sscxr", "convert", *sys.argv[3:]]
run()
"""
FAST_PATHS = ("group encoder", "consolidation")  # those a session conversion uses ("blosc into": --raw)


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


def run(mode: str, mat: Path, store: Path) -> dict:
    """Wall time and peak RSS (MB) of one child process doing ``mode``."""
    env = dict(os.environ)
    if mode == "loadmat":
        argv = [sys.executable, "-c", LOADMAT, str(mat)]
    else:
        off = mode[3:] if mode.startswith("no ") else ""
        pipeline = "zarrs.ZarrsCodecPipeline" if mode == "public+zarrs" else ""
        if mode.startswith("public"):
            env["SSCXR_NO_FASTPATH"] = "1"
        argv = [sys.executable, "-c", CONVERT, off, pipeline, str(mat), str(store), "--quiet", "--overwrite"]
    os.sync()  # earlier runs' writeback is not this run's cost (the run's own writes still are)
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        raise RuntimeError(f"{mode} failed ({proc.returncode}): {err[-2000:]}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}


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
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--zarrs", action="store_true", help="also the public path with the zarrs codec pipeline")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    mat = session(args.preset)
    modes = ["loadmat", "convert", "public", *(f"no {name}" for name in FAST_PATHS)]
    if args.zarrs:
        modes.append("public+zarrs")
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    stores = fresh_stores(WORK / f"{mat.stem}.runs", args.repeat * (len(modes) - 1))
    for k in range(args.repeat):
        for mode in modes:
            store = stores.pop() if mode != "loadmat" else mat
            runs[mode].append(run(mode, mat, store))
            if mode == "convert":
                converted = store
    best = {m: min(r["seconds"] for r in rs) for m, rs in runs.items()}
    median = {m: statistics.median(r["seconds"] for r in rs) for m, rs in runs.items()}
    peak = {m: max(r["peak_mb"] for r in rs) for m, rs in runs.items()}
    cpu = {m: min(r["cpu"] for r in rs) for m, rs in runs.items()}  # less disturbed by other load than wall time
    labels = {"loadmat": "`scipy.io.loadmat` (baseline)", "convert": "`sscxr convert` (fast paths on)",
              "public": "`SSCXR_NO_FASTPATH=1 sscxr convert`", "public+zarrs": "public path + zarrs codec pipeline",
              **{f"no {n}": f"fast path `{n}` off" for n in FAST_PATHS}}
    text = [f"## Conversion vs loadmat ({args.preset} preset, {mat.stat().st_size / 1e6:.0f} MB .mat)", "",
            f"Whole processes (start-up and imports included); peak RSS of each child (`os.wait4`).", "",
            f"| step | best of {args.repeat} (s) | median (s) | all runs (s) | x loadmat (best) | CPU, best (s) "
            "| x loadmat (CPU) | peak RSS (MB) | x loadmat (RSS) |",
            "|---|---|---|---|---|---|---|---|---|",
            *(f"| {labels[m]} | {best[m]:.2f} | {median[m]:.2f} | {spread(runs[m])} | {best[m] / best['loadmat']:.2f}x "
              f"| {cpu[m]:.2f} | {cpu[m] / cpu['loadmat']:.2f}x | {peak[m]:.0f} | {peak[m] / peak['loadmat']:.2f}x |"
              for m in modes), "",
            f"- time ratio convert / loadmat: **{best['convert'] / best['loadmat']:.2f}x** best, "
            f"{median['convert'] / median['loadmat']:.2f}x median, CPU {cpu['convert'] / cpu['loadmat']:.2f}x "
            "(accepted <= 2.5x)",
            f"- peak memory ratio: **{peak['convert'] / peak['loadmat']:.2f}x** (accepted <= 1.5x)",
            f"- store size {du(converted) / 1e6:.0f} MB vs source {mat.stat().st_size / 1e6:.0f} MB "
            f"(**{du(converted) / mat.stat().st_size:.2f}x**)", "", machine_markdown(), ""]
    print("\n".join(text))
    if args.out:
        path = Path(args.out)
        old = path.read_text() if path.exists() else "# Conversion benchmarks\n\n"
        path.write_text(old.rstrip() + "\n\n" + "\n".join(text))


if __name__ == "__main__":
    main()
