"""Conversion cost vs merely loading the same .mat (issue 4), in one process.

Run: ``python benchmarks/bench_convert.py [--preset full] [--out docs/benchmarks-conversion.md]``

Measures, on a synthetic session of the ``full`` preset (12 subvolumes x ~1000 cells x ~3000
frames, ~1M whisker samples):
- wall time and peak traced memory of ``scipy.io.loadmat`` (the baseline: what every user of the
  archive pays today) and of ``sscxr_conversion.convert`` to a local store;
- store size vs source size.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import time
import tracemalloc
from pathlib import Path

import scipy.io

from _machine import machine_markdown

WORK = Path(__file__).parent / ".work"


def measure(fn):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, seconds, peak


def session(preset: str) -> Path:
    from sscxr.testing.archives import write_ssc1_session

    folder = WORK / f"ssc1_{preset}"
    mats = list(folder.glob("*_session.mat"))
    if not mats:
        shutil.rmtree(folder, ignore_errors=True)
        mats = [write_ssc1_session(folder, preset=preset, seed=0).mat_path]
    return mats[0]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    from sscxr_conversion import convert

    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="full")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    mat = session(args.preset)
    store = WORK / f"{mat.stem}.zarr"
    _, t_load, m_load = measure(lambda: scipy.io.loadmat(mat, squeeze_me=True, struct_as_record=False))
    _, t_conv, m_conv = measure(lambda: convert(mat, str(store), overwrite=True, progress=False,
                                                workers=args.workers))
    rows = [
        ("scipy.io.loadmat (baseline)", t_load, m_load),
        (f"sscxr convert ({'threads' if not args.workers else f'{args.workers} dask workers'})", t_conv, m_conv),
    ]
    text = [f"## Conversion vs loadmat ({args.preset} preset, {mat.stat().st_size / 1e6:.0f} MB .mat)", "",
            "| step | seconds | peak traced memory (MB) |", "|---|---|---|"]
    text += [f"| {name} | {s:.2f} | {m / 1e6:.0f} |" for name, s, m in rows]
    text += ["", f"- time ratio convert / loadmat: **{t_conv / t_load:.2f}x** (target <= 1.5x)",
             f"- memory ratio: **{m_conv / m_load:.2f}x** (target <= 1.5x)",
             f"- store size {du(store) / 1e6:.0f} MB vs source {mat.stat().st_size / 1e6:.0f} MB "
             f"(**{du(store) / mat.stat().st_size:.2f}x**)", "", machine_markdown(), ""]
    print("\n".join(text))
    if args.out:
        Path(args.out).write_text("\n".join(text))


if __name__ == "__main__":
    main()
