"""Opening costs what you touch (issue 28 item 4): a real-scale session over S3 (SeaweedFS on loopback).

Run: ``python benchmarks/bench_open.py [--repeat 7] [--out docs/benchmarks-dataset.md]``

Uses the synthetic ``full`` ssc-1 session of ``bench_remote.py`` (12 subvolumes x 999 cells,
400 trials, ~290 MB ``.mat``; written and converted on first use under ``benchmarks/.work``).

1. **warm process**: ``sscxr.open_session(url)`` + one cell x one trial of dF/F (``.values``),
   and ``sscxr.io.open_group(url, "imaging/subvolume_NN")`` + the same; every repetition opens
   the store anew (no tree is cached), only the HTTP client and imports are warm. Also the
   phases of ``open_session`` (root metadata, index prefetch, xarray Datasets, dask arrays).
2. **fresh process**: a new ``python -c`` that imports sscxr, opens the session and reads the
   same cell x trial, against a new ``python -c`` that downloads the ``.mat`` (obstore) and
   loads it (``scipy.io.loadmat``) and picks the same values. Wall time of the whole process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import bench_remote as br  # noqa: E402

FRESH_STORE = r"""
import sys, warnings
warnings.simplefilter("ignore")
import numpy as np, sscxr
url, endpoint, sub, cell, trial = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tree = sscxr.open_session(url, storage_options={"anon": True, "endpoint_url": endpoint})
sv = tree[f"imaging/subvolume_{sub:02d}"]
frames = np.flatnonzero(sv.trial.values == trial)
print(float(np.nansum(sv.dff.sel(cell=cell).isel(time=slice(frames[0], frames[-1] + 1)).values)))
"""

FRESH_MAT = r"""
import io, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[6])
import numpy as np, obstore, scipy.io
from obstore.store import S3Store
from bench_remote import cell_trial_from_mat
url, endpoint, sub, cell, trial = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
bucket, key = url.split("://", 1)[1].split("/", 1)
store = S3Store(bucket, config={"endpoint": endpoint, "skip_signature": True, "region": "us-east-1"},
                client_options={"allow_http": True})
data = obstore.get(store, key).bytes()
mat = scipy.io.loadmat(io.BytesIO(bytes(data)), squeeze_me=True, struct_as_record=False)
print(float(np.nansum(cell_trial_from_mat(mat["s"], sub, cell, trial))))
"""


def pick(truth: Any, rng: np.random.Generator) -> tuple[int, int, int]:
    subs = sorted(truth["imaging"].children)
    sv = truth["imaging"][subs[rng.integers(len(subs))]].to_dataset()
    trial = int(rng.choice(np.unique(sv.trial.values[sv.trial.values > 0])))
    return int(sv.attrs["subvolume"]), int(rng.choice(sv.cell.values)), trial


def session_read(url: str, anon: dict, sub: int, cell: int, trial: int, **open_kw: Any) -> tuple[float, int, int]:
    import sscxr.io as sio

    store = br.counting_store(sio.make_store(url, anon))
    t0 = time.perf_counter()
    tree = sio.open_session(store, **open_kw)
    sv = tree[f"imaging/subvolume_{sub:02d}"]
    frames = np.flatnonzero(sv.trial.values == trial)
    sv.dff.sel(cell=cell).isel(time=slice(frames[0], frames[-1] + 1)).values
    return time.perf_counter() - t0, store.nbytes, store.requests


def group_read(url: str, anon: dict, sub: int, cell: int, trial: int) -> tuple[float, int, int]:
    t0 = time.perf_counter()
    values, nbytes, requests = br.read_store(url, anon, sub, cell, trial, "obstore", "auto")
    return time.perf_counter() - t0, nbytes, requests


def phases(url: str, anon: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each phase of open_session (wrapping sscxr.io's private steps)."""
    import sscxr.io as sio

    names = ["_open_root", "_prefetch_indexes", "_load_coordinates", "_open_datasets", "_chunk_on_store_chunks",
             "_validate"]
    orig = {n: getattr(sio, n) for n in names}
    acc: dict[str, list[float]] = {n: [] for n in [*names, "total"]}

    def wrap(n: str) -> Any:
        def timed(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            out = orig[n](*a, **k)
            acc[n][-1] += time.perf_counter() - t
            return out
        return timed

    try:
        for n in names:
            setattr(sio, n, wrap(n))
        for _ in range(repeat):
            for n in acc:
                acc[n].append(0.0)
            t = time.perf_counter()
            sio.open_session(url, storage_options=anon)
            acc["total"][-1] = time.perf_counter() - t
    finally:
        for n, f in orig.items():
            setattr(sio, n, f)
    out = {n: statistics.median(v) for n, v in acc.items()}
    out["_open_datasets"] -= out["_chunk_on_store_chunks"]  # xarray's own part
    return out


def fresh(script: str, args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, env=env, check=True)
    return time.perf_counter() - t0, proc.stdout.strip()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--fresh", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import xarray as xr

    from sscxr.testing.s3 import SeaweedServer

    workdir = br.WORK / "remote-full"
    workdir.mkdir(parents=True, exist_ok=True)
    mat = br.make_source_mat("full", workdir)
    store = os.path.realpath(br.make_store(mat, "full", workdir))
    truth = xr.open_datatree(store, engine="zarr")
    rng = np.random.default_rng(2)
    rows: dict[str, list[tuple[float, int, int]]] = {"open_session + cell x trial": [],
                                                      "open_session(chunks=None) + cell x trial": [],
                                                      "open_group + cell x trial": []}  # fmt: skip
    with SeaweedServer() as s3:
        bucket = s3.public_bucket
        s3.upload_dir(store, bucket, "stores/an197522_2013_03_08.zarr")
        s3.put_file(bucket, f"sources/{mat.name}", mat)
        anon = s3.storage_options(anon=True)
        url = s3.url(bucket, "stores/an197522_2013_03_08.zarr")
        mat_url = s3.url(bucket, f"sources/{mat.name}")
        session_read(url, anon, *pick(truth, rng))  # warm imports and the HTTP client
        for _ in range(args.repeat):
            sub, cell, trial = pick(truth, rng)
            rows["open_session + cell x trial"].append(session_read(url, anon, sub, cell, trial))
            rows["open_session(chunks=None) + cell x trial"].append(session_read(url, anon, sub, cell, trial,
                                                                                 chunks=None))  # fmt: skip
            rows["open_group + cell x trial"].append(group_read(url, anon, sub, cell, trial))
        phase = phases(url, anon, args.repeat)
        fresh_rows: dict[str, list[float]] = {"store": [], "mat": []}
        for _ in range(args.fresh):
            sub, cell, trial = pick(truth, rng)
            common = [str(sub), str(cell), str(trial)]
            t_store, v_store = fresh(FRESH_STORE, [url, anon["endpoint_url"], *common])
            t_mat, v_mat = fresh(FRESH_MAT, [mat_url, anon["endpoint_url"], *common, str(Path(__file__).parent)])
            assert np.isclose(float(v_store), float(v_mat)), (v_store, v_mat)
            fresh_rows["store"].append(t_store)
            fresh_rows["mat"].append(t_mat)
    text = report(rows, phase, fresh_rows, args, mat.stat().st_size)
    print(text)
    if args.out:
        from bench_dataset import write_between

        write_between(Path(args.out), "bench_open", text)


def report(rows: dict[str, list], phase: dict[str, float], fresh_rows: dict[str, list[float]], args: Any,
           mat_bytes: int) -> str:  # fmt: skip
    from datetime import UTC, datetime

    from _machine import machine_markdown

    import os as _os

    lines = ["## Opening costs what you touch (real-scale session over S3)", "",
             f"Machine load (1-minute average) at the end: {_os.getloadavg()[0]:.1f} on 2 cores.", "",
             f"Generated by `python benchmarks/bench_open.py --repeat {args.repeat} --fresh {args.fresh}` on "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; SeaweedFS `weed mini` on 127.0.0.1, obstore client, anonymous "
             f"public read. Data: the synthetic `full` ssc-1 session (12 subvolumes x 999 cells, 400 trials; "
             f".mat {mat_bytes / 1e6:.0f} MB) converted with `sscxr convert`.", "", machine_markdown(), "",
             "| warm process (imports, HTTP client warm; store opened anew each time) | median s | min s | MB | requests |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, rs in rows.items():
        t = [r[0] for r in rs]
        lines.append(f"| {name} | {statistics.median(t):.3f} | {min(t):.3f} | "
                     f"{statistics.median(r[1] for r in rs) / 1e6:.3f} | {statistics.median(r[2] for r in rs):.0f} |")
    lines += ["", "Phases of `open_session` (median s): " + ", ".join(
        f"{n.strip('_')} {v:.3f}" for n, v in phase.items()) + " (open_datasets = xarray's part, without "
        "chunk_on_store_chunks = dask arrays).", "",
        "| fresh process (`python -c`, whole process wall time) | median s | min s |", "|---|---|---|"]  # fmt: skip
    for name, key in (("import sscxr, open_session, one cell x one trial", "store"),
                      (".mat download (obstore) + scipy.io.loadmat + the same values", "mat")):  # fmt: skip
        lines.append(f"| {name} | {statistics.median(fresh_rows[key]):.2f} | {min(fresh_rows[key]):.2f} |")
    warm = statistics.median(r[0] for r in rows["open_session + cell x trial"])
    group = rows["open_group + cell x trial"]
    ratio = statistics.median(fresh_rows["mat"]) / statistics.median(fresh_rows["store"])
    lines += ["", "| result | target | met |", "|---|---|---|",
              f"| open_session + cell x trial, warm: {warm:.3f} s | <= 0.3 s | {'yes' if warm <= 0.3 else 'no'} |",
              f"| warm open_session + cell x trial vs the .mat in a fresh process: "
              f"{statistics.median(fresh_rows['mat']) / warm:.1f}x faster | >= 5x | "
              f"{'yes' if statistics.median(fresh_rows['mat']) / warm >= 5 else 'no'} |",
              f"| both in fresh processes (imports included): {ratio:.1f}x faster | >= 5x | {'yes' if ratio >= 5 else 'no'} |",
              f"| open_group + cell x trial: {statistics.median(r[0] for r in group):.3f} s, "
              f"{statistics.median(r[1] for r in group) / 1e6:.3f} MB | <= 0.04 s, <= 0.2 MB | "
              f"{'yes' if statistics.median(r[0] for r in group) <= 0.04 and statistics.median(r[1] for r in group) <= 2e5 else 'no'} |"]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
