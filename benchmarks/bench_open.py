"""Opening costs what you touch (issue 28 item 4): a real-scale session over S3 (SeaweedFS on loopback).

Run: ``python benchmarks/bench_open.py [--repeat 7] [--out docs/benchmarks-dataset.md]``

Uses the synthetic ``full`` ssc-1 session of ``bench_remote.py`` (12 subvolumes x 999 cells,
400 trials, ~290 MB ``.mat``; written and converted on first use under ``benchmarks/.work``).

1. **warm process**: ``sscxr.open_session(url)`` + one cell x one trial of dF/F (``.values``),
   and ``sscxr.io.open_group(url, "imaging/subvolume_NN")`` + the same; every repetition opens
   the store anew (no tree is cached), only the HTTP client and imports are warm (after
   ``WARMUP`` untimed opens of each kind). Also the
   phases of ``open_session`` (root metadata, index prefetch, xarray Datasets, dask arrays).
2. **fresh process**: a new ``python -c`` that imports sscxr, opens the session and reads the
   same cell x trial, against a new ``python -c`` that downloads the ``.mat`` (obstore) and
   loads it (``scipy.io.loadmat``) and picks the same values. Wall time of the whole process.
   Also a new ``python -c`` that only imports what the store path needs (xarray, zarr,
   dask.array): the floor of any fresh-process store read.
3. **over a network link** (``_link.ShapedLink``: a relay with a round-trip time and a shared
   bandwidth, in front of the same SeaweedFS): 1 and 2 again for each of ``LINKS``. On loopback
   a download is nearly free, so there the fresh-process comparison measures imports against
   ``loadmat``; users meet S3 over a link like these.
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
import time
import numpy as np, sscxr
t0 = time.perf_counter()
url, endpoint, sub, cell, trial = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
tree = sscxr.open_session(url, storage_options={"anon": True, "endpoint_url": endpoint})
sv = tree[f"imaging/subvolume_{sub:02d}"]
frames = np.flatnonzero(sv.trial.values == trial)
print(float(np.nansum(sv.dff.sel(cell=cell).isel(time=slice(frames[0], frames[-1] + 1)).values)),
      time.perf_counter() - t0)
"""

WARMUP = 3
"""Untimed opens before the warm measurements: the first few opens of a process are 20-40% slower
(measured: 0.36-0.48 s, then 0.24-0.30 s), also 20 s after the upload, so the server is not the cause."""

FRESH_IMPORTS = "import numpy, xarray, zarr, dask.array, sscxr.io"

LINKS = {"cloud region (1 ms, 1 Gbit/s)": (1.0, 1000.0), "laptop (30 ms, 100 Mbit/s)": (30.0, 100.0)}
"""Round-trip ms and Mbit/s of the links measured besides loopback: a machine in the bucket's
cloud region, and a laptop on a campus or home network."""

FRESH_MAT = r"""
import io, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, sys.argv[6])
import numpy as np, obstore, scipy.io
from obstore.store import S3Store
from bench_remote import cell_trial_from_mat
import time
t0 = time.perf_counter()
url, endpoint, sub, cell, trial = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
bucket, key = url.split("://", 1)[1].split("/", 1)
store = S3Store(bucket, config={"endpoint": endpoint, "skip_signature": True, "region": "us-east-1"},
                client_options={"allow_http": True})
data = obstore.get(store, key).bytes()
mat = scipy.io.loadmat(io.BytesIO(bytes(data)), squeeze_me=True, struct_as_record=False)
print(float(np.nansum(cell_trial_from_mat(mat["s"], sub, cell, trial))), time.perf_counter() - t0)
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


def measure(url: str, mat_url: str, opts: dict, truth: Any, rng: np.random.Generator, repeat: int, nfresh: int,
            chunks_none: bool = True) -> dict[str, Any]:  # fmt: skip
    """Warm and fresh-process measurements through one endpoint (``opts["endpoint_url"]``)."""
    rows: dict[str, list[tuple[float, int, int]]] = {"open_session + cell x trial": [],
                                                      "open_group + cell x trial": []}  # fmt: skip
    if chunks_none:
        rows["open_session(chunks=None) + cell x trial"] = []
    for _ in range(WARMUP):  # imports, the HTTP client and its connections, allocator: a process in use
        session_read(url, opts, *pick(truth, rng))
        group_read(url, opts, *pick(truth, rng))
    for _ in range(repeat):
        sub, cell, trial = pick(truth, rng)
        rows["open_session + cell x trial"].append(session_read(url, opts, sub, cell, trial))
        if chunks_none:
            rows["open_session(chunks=None) + cell x trial"].append(session_read(url, opts, sub, cell, trial,
                                                                                 chunks=None))  # fmt: skip
        rows["open_group + cell x trial"].append(group_read(url, opts, sub, cell, trial))
    fresh_rows: dict[str, list[float]] = {"store": [], "mat": [], "imports": [], "store_after": [], "mat_after": []}
    for _ in range(nfresh):
        sub, cell, trial = pick(truth, rng)
        common = [str(sub), str(cell), str(trial)]
        t_store, v_store = fresh(FRESH_STORE, [url, opts["endpoint_url"], *common])
        t_mat, v_mat = fresh(FRESH_MAT, [mat_url, opts["endpoint_url"], *common, str(Path(__file__).parent)])
        (v_store, after_store), (v_mat, after_mat) = v_store.split(), v_mat.split()
        assert np.isclose(float(v_store), float(v_mat)), (v_store, v_mat)
        fresh_rows["store"].append(t_store)
        fresh_rows["mat"].append(t_mat)
        fresh_rows["store_after"].append(float(after_store))
        fresh_rows["mat_after"].append(float(after_mat))
        fresh_rows["imports"].append(fresh(FRESH_IMPORTS, [])[0])
    return {"rows": rows, "fresh": fresh_rows}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--fresh", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from urllib.parse import urlparse

    import xarray as xr
    from _link import ShapedLink

    from sscxr.testing.s3 import SeaweedServer

    workdir = br.WORK / "remote-full"
    workdir.mkdir(parents=True, exist_ok=True)
    mat = br.make_source_mat("full", workdir)
    store = os.path.realpath(br.make_store(mat, "full", workdir))
    truth = xr.open_datatree(store, engine="zarr")
    rng = np.random.default_rng(2)
    results: dict[str, dict[str, Any]] = {}
    with SeaweedServer() as s3:
        bucket = s3.public_bucket
        s3.upload_dir(store, bucket, "stores/an197522_2013_03_08.zarr")
        s3.put_file(bucket, f"sources/{mat.name}", mat)
        anon = s3.storage_options(anon=True)
        url = s3.url(bucket, "stores/an197522_2013_03_08.zarr")
        mat_url = s3.url(bucket, f"sources/{mat.name}")
        results["loopback"] = measure(url, mat_url, anon, truth, rng, args.repeat, args.fresh)
        phase = phases(url, anon, args.repeat)
        server = urlparse(anon["endpoint_url"])
        for name, (rtt_ms, mbit_s) in LINKS.items():
            with ShapedLink(server.hostname or "127.0.0.1", server.port or 80, rtt_ms=rtt_ms, mbit_s=mbit_s) as link:
                opts = {**anon, "endpoint_url": link.endpoint}
                results[name] = measure(url, mat_url, opts, truth, rng, max(3, args.repeat // 2), args.fresh,
                                        chunks_none=False)  # fmt: skip
    text = report(results, phase, args, mat.stat().st_size)
    print(text)
    if args.out:
        from bench_dataset import write_between

        write_between(Path(args.out), "bench_open", text)


def report(results: dict[str, dict[str, Any]], phase: dict[str, float], args: Any, mat_bytes: int) -> str:
    from datetime import UTC, datetime

    from _machine import machine_markdown

    med = statistics.median
    lines = ["## Opening costs what you touch (real-scale session over S3)", "",
             f"Machine load (1-minute average) at the end: {os.getloadavg()[0]:.1f} on 2 cores.", "",
             f"Generated by `python benchmarks/bench_open.py --repeat {args.repeat} --fresh {args.fresh}` on "
             f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; SeaweedFS `weed mini` on 127.0.0.1, obstore client, anonymous "
             f"public read; directly (loopback) and through a relay that adds a round-trip time and a bandwidth "
             f"(`benchmarks/_link.py`). Data: the synthetic `full` ssc-1 session (12 subvolumes x 999 cells, 400 "
             f"trials; .mat {mat_bytes / 1e6:.0f} MB) converted with `sscxr convert`.", "", machine_markdown(), "",
             f"Warm process (imports and HTTP client warm, after {WARMUP} untimed opens of each kind; the store "
             "opened anew each time):", "",
             "| link | read | median s | min s | MB | requests |", "|---|---|---|---|---|---|"]  # fmt: skip
    for link, res in results.items():
        for name, rs in res["rows"].items():
            t = [r[0] for r in rs]
            lines.append(f"| {link} | {name} | {med(t):.3f} | {min(t):.3f} | {med(r[1] for r in rs) / 1e6:.3f} | "
                         f"{med(r[2] for r in rs):.0f} |")
    lines += ["", "Phases of `open_session` on loopback (median s): " + ", ".join(
        f"{n.strip('_')} {v:.3f}" for n, v in phase.items()) + " (open_datasets = xarray's part, without "
        "chunk_on_store_chunks = dask arrays; prefetch_indexes only starts the requests, which run while xarray "
        "builds the Datasets).", "",
        "Fresh process (`python -c`, median s): the whole process, and (after) the time from the end of the "
        "script's imports (`import sscxr`; `import scipy.io, obstore`) to the values, which includes what "
        "sscxr imports on first use (zarr, dask):", "",
        "| link | store: import sscxr, open_session, one cell x one trial | .mat: download (obstore) + "
        "`scipy.io.loadmat` + the same values | store faster by | after imports: store / .mat | store faster by "
        "| imports alone (xarray, zarr, dask.array) |", "|---|---|---|---|---|---|---|"]  # fmt: skip
    for link, res in results.items():
        f = res["fresh"]
        lines.append(f"| {link} | {med(f['store']):.2f} | {med(f['mat']):.2f} | "
                     f"{med(f['mat']) / med(f['store']):.1f}x | {med(f['store_after']):.2f} / "
                     f"{med(f['mat_after']):.2f} | {med(f['mat_after']) / med(f['store_after']):.1f}x | "
                     f"{med(f['imports']):.2f} |")
    loop = results["loopback"]
    warm = med(r[0] for r in loop["rows"]["open_session + cell x trial"])
    group = loop["rows"]["open_group + cell x trial"]
    g_s, g_mb = med(r[0] for r in group), med(r[1] for r in group) / 1e6
    mat_fresh = med(loop["fresh"]["mat"])
    yes = {True: "yes", False: "no"}
    lines += ["", "| result (loopback unless named) | target | met |", "|---|---|---|",
              f"| open_session + cell x trial, warm: {warm:.3f} s | <= 0.3 s | {yes[warm <= 0.3]} |",
              f"| warm open_session + cell x trial vs the .mat in a fresh process: {mat_fresh / warm:.1f}x faster "
              f"| >= 5x | {yes[mat_fresh / warm >= 5]} |"]  # fmt: skip
    for link, res in results.items():
        ratio = med(res["fresh"]["mat"]) / med(res["fresh"]["store"])
        after = med(res["fresh"]["mat_after"]) / med(res["fresh"]["store_after"])
        lines.append(f"| both in fresh processes, {link}: {ratio:.1f}x faster (after imports {after:.1f}x) | >= 5x "
                     f"| {yes[ratio >= 5]} (after imports: {yes[after >= 5]}) |")
    lines.append(f"| open_group + cell x trial: {g_s:.3f} s, {g_mb:.3f} MB | <= 0.04 s, <= 0.2 MB | "
                 f"{yes[g_s <= 0.04 and g_mb <= 0.2]} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
