"""Remote reads on a real S3 server (SeaweedFS on loopback): the store vs the files it replaces.

Run: ``python benchmarks/bench_remote.py [--size small|full] [--repeat N] [--out docs/benchmarks-remote.md]``

Every pair is measured in the same run, interleaved, against the same SeaweedFS server:

1. one cell x one trial of dF/F from the store (``sscxr.io.open_group`` + one selection), vs
   downloading the session ``.mat`` and loading it (``scipy.io.loadmat``): bytes and time;
2. the same read vs the same dF/F in a chunked HDF5 file streamed with fsspec + h5py (the NWB
   way: a file-like object over S3 with a block cache);
3. opening a whole session store and listing its variables (``sscxr.open_session``);
4. the same store read through obstore and through s3fs (which sscxr uses by default).

Bytes are counted on the client: a counting zarr store wrapper (store), the downloaded object
(``.mat``) and a counting block fetcher under the fsspec file (HDF5).

Plug points (top of the file): :func:`make_source_mat` and :func:`make_store` build the
stand-ins today (a ``.mat`` and a store written from the same ``make_session_tree``);
swap in the synthetic ``full`` session ``.mat`` and its ``sscxr convert`` output, and
:func:`cell_trial_from_mat` for reading the real struct.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
WORK = Path(__file__).parent / ".work"
SIZES: dict[str, dict[str, int]] = {"small": {}, "full": {}}  # --size -> preset, see PRESETS


# --------------------------------------------------------------------------------------------
# plug points
# --------------------------------------------------------------------------------------------


PRESETS = {"small": "tiny", "full": "full"}  # sscxr.testing.archives presets behind each --size


def make_source_mat(size: str, workdir: Path) -> Path:
    """The session ``.mat`` users download today: the synthetic session of the matching preset."""
    from sscxr.testing.archives import write_ssc1_session

    folder = workdir / "archive" / "an197522_2013_03_08"
    found = sorted(folder.glob("*_session.mat"))
    return found[0] if found else write_ssc1_session(folder, preset=PRESETS[size], seed=0).mat_path


def make_store(mat_path: Path, size: str, workdir: Path) -> Path:
    """The store ``sscxr convert`` makes of ``mat_path``."""
    from sscxr_conversion import convert

    path = workdir / "an197522_2013_03_08.zarr"
    if not (path / "zarr.json").exists():
        convert(mat_path, str(path), overwrite=True, progress=False)
    return path


def cell_trial_from_mat(s: Any, subvolume: int, cell: int, trial: int) -> np.ndarray:
    """One cell x one trial of dF/F from a loaded ``.mat``: walk ``s.timeSeriesArrayHash`` by hand,
    the way users of the archive do today (entries with an ``imagingPlane`` are subvolumes)."""
    for entry in s.timeSeriesArrayHash.value:
        planes = entry.imagingPlane if hasattr(entry, "imagingPlane") else None
        if planes is None:
            continue
        first = planes[0] if isinstance(planes, np.ndarray) else planes
        fov = re.search(r"fov_(\d{2})\d{3}", str(np.atleast_1d(first.sourceFileList)[0]))
        if fov and int(fov.group(1)) == subvolume:
            row = int(np.flatnonzero(entry.ids == cell)[0])
            return entry.valueMatrix[row, entry.trial == trial]
    raise KeyError(f"no subvolume {subvolume} in the .mat")


def make_hdf5(store: Path, path: Path) -> Path:
    """The same dF/F as an NWB-style HDF5 file: ``(time, roi)`` datasets, h5py auto chunks, gzip."""
    import h5py
    import xarray as xr

    if path.exists():
        return path
    tree = xr.open_datatree(store, engine="zarr")
    with h5py.File(path, "w") as f:
        for name, node in tree["imaging"].children.items():
            ds = node.to_dataset()
            g = f.create_group(f"processing/ophys/Fluorescence/{name}")
            g.create_dataset("data", data=ds.dff.values.T, chunks=True, compression="gzip")
            g.create_dataset("timestamps", data=ds.time.values, chunks=True, compression="gzip")
            g.create_dataset("trial", data=ds.trial.values, chunks=True, compression="gzip")
            g.create_dataset("rois", data=ds.cell.values)
    return path


# --------------------------------------------------------------------------------------------
# counting
# --------------------------------------------------------------------------------------------


def counting_store(store: Any) -> Any:
    """A zarr store wrapper that counts requests and bytes of every read."""
    from zarr.storage import WrapperStore

    class Counting(WrapperStore):  # type: ignore[type-arg]
        nbytes = 0
        requests = 0

        def _count(self, buf: Any) -> Any:
            self.requests += 1
            self.nbytes += 0 if buf is None else len(buf)
            return buf

        async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
            return self._count(await self._store.get(key, prototype, byte_range))

        async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
            return [self._count(b) for b in await self._store.get_partial_values(prototype, key_ranges)]

        async def list_dir(self, prefix: str) -> Any:
            self.requests += 1
            async for item in self._store.list_dir(prefix):
                yield item

    return Counting(store)


class Measure:
    """Median seconds and bytes of repeated measurements of one method."""

    def __init__(self, name: str) -> None:
        self.name, self.seconds, self.nbytes, self.requests = name, [], [], []

    def add(self, seconds: float, nbytes: int, requests: int = 0) -> None:
        self.seconds.append(seconds)
        self.nbytes.append(nbytes)
        self.requests.append(requests)

    @property
    def s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def mb(self) -> float:
        return statistics.median(self.nbytes) / 1e6


# --------------------------------------------------------------------------------------------
# the reads
# --------------------------------------------------------------------------------------------


def read_store(url: str, options: dict, sub: int, cell: int, trial: int, client: str,
               chunks: Any = None) -> tuple[np.ndarray, int, int]:  # fmt: skip
    import sscxr.io as sio

    os.environ["SSCXR_S3_CLIENT"] = client
    store = counting_store(sio.make_store(url, options))
    ds = sio.open_group(store, f"imaging/subvolume_{sub:02d}", chunks=chunks)
    frames = np.flatnonzero(ds.trial.values == trial)
    values = ds.dff.sel(cell=cell).isel(time=slice(frames[0], frames[-1] + 1)).values
    return values, store.nbytes, store.requests


_CLIENTS: dict[str, Any] = {}


def _obstore(folder: str, options: dict) -> Any:
    """One obstore client per folder, reused like the store's (its setup is not the download)."""
    from obstore.store import S3Store

    import sscxr.io as sio

    if folder not in _CLIENTS:
        _CLIENTS[folder] = S3Store(**sio._obstore_s3_kwargs(folder, options))
    return _CLIENTS[folder]


def read_mat(url: str, options: dict, sub: int, cell: int, trial: int) -> tuple[np.ndarray, int, int]:
    import obstore
    import scipy.io

    folder, name = url.rsplit("/", 1)
    data = obstore.get(_obstore(folder, options), name).bytes()
    mat = scipy.io.loadmat(io.BytesIO(bytes(data)), squeeze_me=True, struct_as_record=False)
    return cell_trial_from_mat(mat["s"], sub, cell, trial), len(data), 1


def read_hdf5(url: str, options: dict, sub: int, cell: int, trial: int, block: int) -> tuple[np.ndarray, int, int]:
    import fsspec
    import h5py

    key = f"s3fs:{options['endpoint_url']}"
    if key not in _CLIENTS:  # one client, reused like the store's
        _CLIENTS[key] = fsspec.filesystem("s3", anon=True, endpoint_url=options["endpoint_url"])
    fs = _CLIENTS[key]
    counts = [0, 0]
    with fs.open(url, "rb", cache_type="blockcache", block_size=block) as f:
        fetch = f.cache.fetcher

        def counted(start: int, end: int) -> bytes:
            out = fetch(start, end)
            counts[0] += len(out)
            counts[1] += 1
            return out

        f.cache.fetcher = counted
        with h5py.File(f, "r") as h5:
            g = h5[f"processing/ophys/Fluorescence/subvolume_{sub:02d}"]
            frames = np.flatnonzero(g["trial"][:] == trial)
            col = int(np.flatnonzero(g["rois"][:] == cell)[0])
            values = g["data"][frames[0]: frames[-1] + 1, col]
    return values, counts[0], counts[1]


def open_and_list(url: str, options: dict, chunks: Any = "auto") -> tuple[int, int, int]:
    import sscxr.io as sio

    store = counting_store(sio.make_store(url, options))
    tree = sio.open_session(store, chunks=chunks)
    names = [f"{node.path}/{name}" for node in tree.subtree for name in node.to_dataset(inherit=False).variables]
    return len(names), store.nbytes, store.requests


def describe_store(url: str, options: dict) -> tuple[int, int, int]:
    import sscxr.io as sio

    store = counting_store(sio.make_store(url, options))
    listing = sio.describe(store)
    return sum(len(v) for v in listing.values()), store.nbytes, store.requests


def timed(fn: Callable[[], tuple]) -> tuple[float, tuple]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def machine() -> str:
    try:
        from _machine import machine_markdown

        return machine_markdown()
    except ImportError:  # pragma: no cover
        return f"- {platform.platform()}, Python {platform.python_version()}"


def report(size: str, sizes: dict, results: dict[str, Measure], repeat: int, block: int, listed: int) -> str:
    store, mat = results["store (obstore)"], results[".mat download + loadmat"]
    h5 = results["HDF5 (fsspec + h5py)"]
    s3fs, tree = results["store (s3fs)"], results["open session + list variables"]
    tree_nodask = results["open session (chunks=None) + list variables"]
    listing = results["describe (metadata only)"]
    rows = "\n".join(
        f"| {m.name} | {m.s:.3f} | {min(m.seconds):.3f} | {m.mb:.3f} | {statistics.median(m.requests):.0f} |"
        for m in results.values()
    )
    checks = [
        (f"store vs .mat: bytes {mat.mb / store.mb:.0f}x fewer", mat.mb / store.mb >= 50, ">= 50x"),
        (f"store vs .mat: time {mat.s / store.s:.0f}x less", mat.s / store.s >= 20, ">= 20x"),
        (f"store one cell x one trial: {store.s * 1000:.0f} ms, {store.mb:.3f} MB", store.s <= 0.04 and store.mb <= 0.2,
         "aim 0.04 s, <= 0.2 MB"),
        (f"store vs HDF5 streaming: {h5.s / store.s:.1f}x faster, {h5.mb / store.mb:.1f}x fewer bytes",
         store.s < h5.s, "store faster"),
        (f"open session + list {listed} variables: {tree.s:.3f} s", tree.s < 0.3, "< 0.3 s"),
        (f"the same with chunks=None: {tree_nodask.s:.3f} s", tree_nodask.s < 0.3, "< 0.3 s"),
        (f"list them from metadata (`sscxr.io.describe`): {listing.s:.3f} s", listing.s < 0.3, "< 0.3 s"),
        (f"obstore vs s3fs for the store read: {s3fs.s / store.s:.1f}x faster", store.s < s3fs.s, "obstore faster"),
    ]  # fmt: skip
    check_rows = "\n".join(f"| {text} | {target} | {'yes' if ok else '**no**'} |" for text, ok, target in checks)
    return f"""# Remote read benchmark (SeaweedFS on loopback)

Generated by `python benchmarks/bench_remote.py --size {size} --repeat {repeat}` on
{datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}. Every method ran in the same process against the same
`weed mini` server on 127.0.0.1, interleaved, {repeat} times on different (subvolume, cell, trial)
picks; times are medians (min also shown), bytes are what the client received.

Data: the synthetic ssc-1 session of preset `{PRESETS[size]}` (`sscxr.testing.archives`): the `.mat`
is the whole session struct as the archive ships it (MAT v5, compressed); the store is what
`sscxr convert` makes of it (consolidated metadata per group); the HDF5 file
holds the same dF/F as NWB does, `(time, roi)`, h5py auto chunks, gzip, read through
`s3fs.open(cache_type="blockcache", block_size={block // 1024} KiB)` + `h5py.File`.

{machine()}

| method | median s | min s | MB moved | requests |
|---|---|---|---|---|
{rows}

| result | target | met |
|---|---|---|
{check_rows}

How to read this: "store" is `sscxr.io.open_group(url, "imaging/subvolume_NN", chunks=None)`
then one `.sel(cell=...)` and the trial's frames; "dask" is the same with the default
`chunks="auto"` (dask arrays on the store's chunks). Every repetition opens the store anew; only
the HTTP client is reused, as in any session. The store's groups carry their own consolidated
metadata (one GET opens a group). The `.mat` baseline downloads the whole object with obstore
(the fastest client here) before `scipy.io.loadmat`.
"""


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--block", type=int, default=256 * 1024, help="HDF5 fsspec block size (bytes)")
    ap.add_argument("--out", default=None, help="write the markdown report here (default: print only)")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    from sscxr.testing.s3 import SeaweedServer

    workdir = WORK / f"remote-{args.size}"
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    mat = make_source_mat(args.size, workdir)
    store = make_store(mat, args.size, workdir)
    h5 = make_hdf5(store, workdir / "an197522_2013_03_08_dff.h5")
    print(f"inputs ready in {time.perf_counter() - t0:.1f} s: .mat {mat.stat().st_size / 1e6:.1f} MB, "
          f"HDF5 {h5.stat().st_size / 1e6:.1f} MB", flush=True)  # fmt: skip

    import xarray as xr

    truth = xr.open_datatree(store, engine="zarr")
    with SeaweedServer() as s3:
        bucket = s3.public_bucket
        s3.upload_dir(store, bucket, "stores/an197522_2013_03_08.zarr")
        s3.put_file(bucket, f"sources/{mat.name}", mat)
        s3.put_file(bucket, f"sources/{h5.name}", h5)
        anon = s3.storage_options(anon=True)
        url = s3.url(bucket, "stores/an197522_2013_03_08.zarr")
        mat_url, h5_url = s3.url(bucket, f"sources/{mat.name}"), s3.url(bucket, f"sources/{h5.name}")
        names = ["store (obstore)", "store (obstore, dask)", "store (s3fs)", "HDF5 (fsspec + h5py)",
                 ".mat download + loadmat", "open session + list variables",
                 "open session (chunks=None) + list variables", "describe (metadata only)"]  # fmt: skip
        results = {n: Measure(n) for n in names}
        rng = np.random.default_rng(1)
        subs = sorted(truth["imaging"].children)
        read_store(url, anon, 1, int(truth["imaging/subvolume_01"].cell[0]), 1, "obstore")  # warm imports
        read_store(url, anon, 1, int(truth["imaging/subvolume_01"].cell[0]), 1, "s3fs")
        listed = 0
        for i in range(args.repeat):
            sv = truth["imaging"][subs[rng.integers(len(subs))]].to_dataset()
            sub, cell = int(sv.attrs["subvolume"]), int(rng.choice(sv.cell.values))
            trial = int(rng.choice(np.unique(sv.trial.values)))
            want = sv.dff.sel(cell=cell).values[sv.trial.values == trial]
            for name, fn in [
                ("store (obstore)", lambda: read_store(url, anon, sub, cell, trial, "obstore")),
                ("store (obstore, dask)", lambda: read_store(url, anon, sub, cell, trial, "obstore", "auto")),
                ("store (s3fs)", lambda: read_store(url, anon, sub, cell, trial, "s3fs")),
                ("HDF5 (fsspec + h5py)", lambda: read_hdf5(h5_url, anon, sub, cell, trial, args.block)),
                (".mat download + loadmat", lambda: read_mat(mat_url, anon, sub, cell, trial)),
            ]:
                seconds, (values, nbytes, requests) = timed(fn)
                np.testing.assert_array_equal(values, want, err_msg=name)  # every method reads the same numbers
                results[name].add(seconds, nbytes, requests)
            os.environ["SSCXR_S3_CLIENT"] = "obstore"
            seconds, (listed, nbytes, requests) = timed(lambda: open_and_list(url, anon))
            results["open session + list variables"].add(seconds, nbytes, requests)
            seconds, (listed, nbytes, requests) = timed(lambda: open_and_list(url, anon, None))
            results["open session (chunks=None) + list variables"].add(seconds, nbytes, requests)
            seconds, (described, nbytes, requests) = timed(lambda: describe_store(url, anon))
            assert described == listed, (described, listed)
            results["describe (metadata only)"].add(seconds, nbytes, requests)
            print(f"  repetition {i + 1}/{args.repeat} done", flush=True)
    text = report(args.size, SIZES[args.size], results, args.repeat, args.block, listed)
    print(text)
    if args.out:
        write_report(Path(args.out), text)


START, END = "<!-- bench_remote:start -->", "<!-- bench_remote:end -->"


def write_report(path: Path, text: str) -> None:
    """Replace the generated part of ``path`` (between the markers), keeping what is around it."""
    block = f"{START}\n{text.rstrip()}\n{END}\n"
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        block = old[: old.index(START)] + block + old[old.index(END) + len(END) + 1:]
    path.write_text(block)


if __name__ == "__main__":
    main()
