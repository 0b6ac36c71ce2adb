"""Trial tensors and whisker resampling: sscxr vs pynapple, pandas and plain numpy, in one run.

Run: ``python benchmarks/bench_align.py [--cells 1000 --trials 400] [--out results.json]
[--markdown results.md]``

1. Trial tensor of ``--cells`` cells (3 planes, each on its own clock) x ``--trials`` trials
   over (-3, 5) s at 7 Hz (continuous 10 s trials, so pynapple's regular-sampling rule holds):
   - ``sscxr.align.trial_tensor`` (numpy input; within_trial False and True; and dask input in
     100-cell chunks on the threaded scheduler);
   - ``pynapple.compute_perievent`` on one TsdFrame per plane (objects built before timing);
   - a plain numpy fancy-index kernel ``dff[:, i0[:, None] + offsets]`` on a single clock, with
     no NaN handling (the floor any implementation pays).
   Peak traced memory (tracemalloc) of each, against the output size.
2. Whisker resampling of ``--samples`` samples onto ``--frames`` frames of 3 planes (mean and
   absmax): ``sscxr.resample.resample_whisker`` vs a pandas groupby and a plain numpy
   searchsorted + bincount / reduceat kernel.

Times are the best of ``--repeat`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from _machine import machine_markdown

RATE, PLANES, WINDOW = 7.0, 3, (-3.0, 5.0)


def timed(fn: Callable[[], Any], repeat: int) -> tuple[Any, float, int]:
    """(result, best seconds, peak traced bytes of one run)."""
    best = np.inf
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
        del result
    gc.collect()
    tracemalloc.start()
    result = fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, best, peak


# --- 1. trial tensors ---------------------------------------------------------------------------
def imaging(n_cells: int, n_trials: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    per_trial = int(10 * RATE)
    time_ = 100.0 + np.arange(n_trials * per_trial) / RATE
    trial = np.repeat(np.arange(1, n_trials + 1), per_trial)
    offsets = np.arange(PLANES) / (PLANES + 1) / RATE
    frame_time = time_[None] + offsets[:, None]
    cell_plane = np.repeat(np.arange(PLANES), -(-n_cells // PLANES))[:n_cells]
    dff = rng.normal(0, 0.1, (n_cells, time_.size))
    events = 100.0 + (np.arange(n_trials) * per_trial + rng.uniform(7, 8.4, n_trials)) / RATE
    signal = xr.DataArray(dff, dims=("cell", "time"), name="dff",
                          coords={"time": time_, "trial": ("time", trial), "cell_plane": ("cell", cell_plane)})
    return {"signal": signal, "frame_time": xr.DataArray(frame_time, dims=("plane", "time"),
                                                         coords={"plane": np.arange(PLANES)}),
            "events": xr.DataArray(events, dims="trial", coords={"trial": np.arange(1, n_trials + 1)})}


def sscxr_tensor(data: dict[str, Any], within_trial: bool, chunks: int | None = None) -> Callable[[], Any]:
    from sscxr.align import trial_tensor

    signal = data["signal"] if chunks is None else data["signal"].chunk({"cell": chunks})

    def run() -> Any:
        out = trial_tensor(signal, align_to=data["events"], window=WINDOW, within_trial=within_trial,
                           frame_time=data["frame_time"], frame_rate_hz=RATE)
        return out.compute(scheduler="threads") if chunks is not None else out
    return run


def pynapple_tensor(data: dict[str, Any]) -> Callable[[], Any] | None:
    try:
        import pynapple as nap
    except ImportError:
        return None
    ft, dff, planes = data["frame_time"].values, data["signal"].values, data["signal"].cell_plane.values
    frames = [nap.TsdFrame(t=ft[p], d=np.ascontiguousarray(dff[planes == p].T)) for p in range(PLANES)]
    events = nap.Ts(t=data["events"].values)
    nap.compute_perievent(frames[0][:200], nap.Ts(t=data["events"].values[:2]), window=WINDOW)  # numba warm-up

    def run() -> Any:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return [nap.compute_perievent(f, events, window=WINDOW) for f in frames]
    return run


def numpy_tensor(data: dict[str, Any]) -> Callable[[], np.ndarray]:
    ft, dff = data["frame_time"].values[0], data["signal"].values
    offsets = np.arange(int(np.ceil(WINDOW[0] * RATE)), int(np.floor(WINDOW[1] * RATE)) + 1)

    def run() -> np.ndarray:
        i0 = np.searchsorted(ft, data["events"].values)
        return dff[:, np.clip(i0[:, None] + offsets, 0, ft.size - 1)]
    return run


def bench_tensor(n_cells: int, n_trials: int, repeat: int) -> list[dict[str, Any]]:
    data = imaging(n_cells, n_trials)
    runs: dict[str, Callable[[], Any] | None] = {
        "sscxr trial_tensor (within_trial=False)": sscxr_tensor(data, False),
        "sscxr trial_tensor (within_trial=True)": sscxr_tensor(data, True),
        "sscxr trial_tensor, dask 100-cell chunks, threads": sscxr_tensor(data, True, chunks=100),
        "pynapple compute_perievent (3 TsdFrames)": pynapple_tensor(data),
        "numpy fancy index (1 clock, no NaN handling)": numpy_tensor(data),
    }
    out_bytes = n_cells * n_trials * int(np.floor(WINDOW[1] * RATE) - np.ceil(WINDOW[0] * RATE) + 1) * 8
    rows = []
    for name, fn in runs.items():
        if fn is None:
            continue
        _, seconds, peak = timed(fn, repeat)
        rows.append({"task": "trial tensor", "method": name, "seconds": seconds, "peak_mb": peak / 1e6,
                     "peak_over_output": peak / out_bytes, "output_mb": out_bytes / 1e6})
    return rows


# --- 2. whisker resampling ----------------------------------------------------------------------
def whisker(n_samples: int, n_frames: int, seed: int = 1) -> tuple[xr.Dataset, xr.DataArray]:
    rng = np.random.default_rng(seed)
    time_ = 100.0 + np.arange(n_frames) / RATE
    trial = np.repeat(np.arange(n_frames // 70 + 1), 70)[:n_frames]
    ft = xr.DataArray(time_[None] + (np.arange(PLANES) / (PLANES + 1) / RATE)[:, None], dims=("plane", "time"),
                      coords={"plane": np.arange(PLANES), "trial": ("time", trial)})
    t = np.sort(rng.uniform(time_[0], time_[-1] + 1 / RATE, n_samples))
    values = rng.normal(0, 10, n_samples)
    values[rng.random(n_samples) < 0.01] = np.nan
    ds = xr.Dataset({"angle": (("whisker", "time"), values[None])},
                    coords={"time": t, "whisker": ["C2"], "trial": ("time", trial[np.clip(np.searchsorted(
                        time_, t, side="right") - 1, 0, n_frames - 1)])})
    return ds, ft


def pandas_resample(ds: xr.Dataset, ft: xr.DataArray, how: str) -> Callable[[], Any]:
    t, v = ds.time.values, ds.angle.values[0]

    def run() -> list[pd.Series]:
        out = []
        for p in range(PLANES):
            frame = pd.Series(np.searchsorted(ft.values[p], t, side="right") - 1)
            g = pd.Series(v).groupby(frame)
            if how == "mean":
                out.append(g.mean())
            else:
                hi, lo = g.max(), g.min()
                out.append(hi.where(hi >= -lo, lo))
        return out
    return run


def numpy_resample(ds: xr.Dataset, ft: xr.DataArray, how: str) -> Callable[[], Any]:
    t, v = ds.time.values, ds.angle.values[0]
    n = ft.sizes["time"]

    def run() -> list[np.ndarray]:
        out = []
        for p in range(PLANES):
            frame = np.searchsorted(ft.values[p], t, side="right") - 1
            keep = (frame >= 0) & np.isfinite(v)
            f, x = frame[keep], v[keep]
            if how == "mean":
                out.append(np.bincount(f, x, n) / np.maximum(np.bincount(f, minlength=n), 1))
            else:
                starts = np.flatnonzero(np.r_[True, f[1:] != f[:-1]])
                hi, lo = np.maximum.reduceat(x, starts), np.minimum.reduceat(x, starts)
                out.append(np.where(hi >= -lo, hi, lo))
        return out
    return run


def bench_whisker(n_samples: int, n_frames: int, repeat: int) -> list[dict[str, Any]]:
    from sscxr.resample import resample_whisker

    ds, ft = whisker(n_samples, n_frames)
    rows = []
    for how in ("mean", "absmax"):
        runs = {"sscxr resample_whisker": lambda how=how: resample_whisker(ds, ft, how, ("angle",), frame_rate_hz=RATE),
                "pandas groupby (searchsorted + groupby)": pandas_resample(ds, ft, how),
                "numpy searchsorted + bincount/reduceat": numpy_resample(ds, ft, how)}
        for name, fn in runs.items():
            _, seconds, peak = timed(fn, repeat)
            rows.append({"task": f"whisker {how}", "method": name, "seconds": seconds, "peak_mb": peak / 1e6})
    return rows


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [f"Trial tensor: {args.cells} cells x {args.trials} trials, window {WINDOW} s at {RATE:g} Hz, "
             f"{PLANES} planes. Whisker: {args.samples} samples onto {args.frames} frames x {PLANES} planes. "
             f"Best of {args.repeat}.", "", "| task | method | time (s) | peak traced memory (MB) | peak / output |",
             "|---|---|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['peak_over_output']:.2f}" if "peak_over_output" in r else ""
        lines.append(f"| {r['task']} | {r['method']} | {r['seconds']:.3f} | {r['peak_mb']:.1f} | {ratio} |")
    return "\n".join(lines + ["", machine_markdown()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--frames", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--out", default=None, help="write the rows as JSON here")
    ap.add_argument("--markdown", default=None, help="write the markdown table here")
    args = ap.parse_args()
    rows = bench_tensor(args.cells, args.trials, args.repeat) + bench_whisker(args.samples, args.frames, args.repeat)
    text = markdown(rows, args)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "rows": rows, "machine": machine_markdown()}, f, indent=2)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
