"""Raw imaging stacks and whisker videos (issue 8): conversion throughput, layouts, remote reads.

Run: ``python benchmarks/bench_raw.py [--out docs/benchmarks-raw.md] [--skip-s3] [--keep]``

On a synthetic raw FOV at real frame size (3 planes x 7 files x 100 frames x 2 channels of
512 x 512 uint16, page by page like ScanImage: 2.2 GB of TIFF, generated once into
``benchmarks/.work/raw_fov`` and reused), measures:

1. reading every TIFF with ``tifffile.imread`` (the baseline) vs the raw conversion
   (``RawStep``, green only and ``--red``) with local threads, ``--workers 1`` and ``--workers 2``;
   and (``large``) green with local threads, ``--workers 1`` and ``--workers 2`` on a 4x larger field of view
   (8.8 GB, also kept in ``benchmarks/.work``), nearer a real one's ~12 GB; and (``paired``) the
   baseline and the three runners interleaved in rounds under the same conditions;
2. chunk layouts (shard and inner chunk shapes): write throughput, and on a local SeaweedFS S3
   server the time to read one frame and one 16 x 16 pixel tile over all time, and objects;
3. one frame and one tile over all time from the converted store vs from the TIFFs, on S3;
4. whisker video: decoded frames in zarr vs the mp4 bytes (size, one frame, one whole trial).

``--keep`` keeps the generated files; otherwise the stores (not the TIFFs) are deleted at the end.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import os
import shutil
import sys
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import machine_markdown  # noqa: E402

WORK = Path(__file__).parent / ".work"
FOV = WORK / "raw_fov"
PLANES, FILES, FRAMES, SIZE = (2, 3, 4), 7, 100, 512
TIFF_NAME = "Image_Registration_4_an197522_2013_03_08_main_{n:03d}.tif"


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------


def noisy_frames(n: int, seed: int) -> np.ndarray:
    """Two-photon-like frames: a bright field, ~200 blurred cells, Poisson + read noise, uint16."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    base = 300 + 200 * np.exp(-((yy - 256) ** 2 + (xx - 256) ** 2) / (2 * 150**2))
    cells = np.zeros((SIZE, SIZE))
    for cy, cx in rng.integers(0, SIZE, (200, 2)):
        cells += 400 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 32.0)
    out = np.empty((n, SIZE, SIZE), np.uint16)
    for i in range(n):
        lam = base + cells * (1 + 0.5 * np.sin(i / 10))
        out[i] = np.clip(rng.poisson(lam) + rng.normal(0, 20, lam.shape), 0, 65535)
    return out


def make_fov(root: Path = FOV, files: int = FILES) -> list[Path]:
    """The raw FOV (once): interleaved green/red pages, one IFD + data per page; ``files`` TIFFs
    of ``FRAMES`` frames per plane."""
    import tifffile

    paths = [root / f"imaging_data/fov_01{p:03d}/fluo_batch_out" / TIFF_NAME.format(n=f + 1)
             for p in PLANES for f in range(files)]
    if all(p.exists() for p in paths):
        return paths
    bank = noisy_frames(64, seed=0)
    for k, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        with tifffile.TiffWriter(path) as tif:
            for i in range(FRAMES):
                tif.write(bank[(i + 7 * k) % 64], contiguous=False, photometric="minisblack")  # green
                tif.write(bank[(i * 3 + k) % 64] // 2, contiguous=False, photometric="minisblack")  # red
    return paths


def fov_groups(files: int = FILES) -> dict[str, Any]:
    """The imaging group the .mat reader would give for this FOV (one subvolume, 3 planes)."""
    import xarray as xr

    n_time = files * FRAMES
    names = [[f"D:/an197522/imaging_data/fov_01{p:03d}/fluo_batch_out/{TIFF_NAME.format(n=f + 1)}"
              for f in range(files)] for p in PLANES]
    time_s = np.arange(n_time) / 7.0
    ds = xr.Dataset(coords={"time": time_s, "trial": ("time", np.repeat(np.arange(files), FRAMES)),
                            "plane": list(PLANES), "frame_time": (("plane", "time"), np.tile(time_s, (3, 1)))})
    ds["source_file"] = (("plane", "file"), np.array(names))
    ds["source_file_index"] = (("plane", "time"), np.tile(np.repeat(np.arange(files), FRAMES), (3, 1)))
    ds["source_frame_index"] = (("plane", "time"), np.tile(np.tile(np.arange(FRAMES), files), (3, 1)))
    trials = xr.Dataset(coords={"trial": np.arange(files)}, data_vars={"start_time": ("trial", np.arange(files) * 14.0)})
    return {"imaging/subvolume_01": ds, "trials": trials}


def du(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


# --------------------------------------------------------------------------------------------
# 1. throughput
# --------------------------------------------------------------------------------------------


def timed(fn: Any) -> float:
    """Seconds of one ``fn()``."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best_of(fn: Any, n: int = 2) -> float:
    return min(timed(fn) for _ in range(n))


def read_tiffs(paths: list[Path]) -> None:
    import tifffile

    for path in paths:  # key=slice(None): every page (one write per page makes one series per page)
        pages = tifffile.imread(path, key=slice(None))
        assert pages.shape == (2 * FRAMES, SIZE, SIZE), pages.shape


def evict(paths: list[Path]) -> None:
    """Drop ``paths`` from the page cache (``POSIX_FADV_DONTNEED``; clean pages, no root needed):
    the next read comes from the disk, as a conversion of an archive larger than memory reads."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_tiffs_cold(paths: list[Path]) -> float:
    """Seconds of :func:`read_tiffs` from the disk (the files evicted first, not timed)."""
    os.sync()
    evict(paths)
    return timed(lambda: read_tiffs(paths))


def _prepared(target: str, spec: Any) -> tuple[Any, dict[str, Any], set[str]]:
    """A new store at ``target`` ready for the raw step (not timed): store, attrs, done groups."""
    from sscxr_conversion import write

    shutil.rmtree(target, ignore_errors=True)
    store = write.open_store(target, None, mode="w")
    attrs = {"archive": "ssc-1", "provenance": {"sources": [], "warnings": [], "spec": spec.to_dict()}}
    return store, attrs, write.prepare(store, target, overwrite=True, resume=False, attrs=attrs)


def convert_fov(url: str, *, red: bool, workers: int | None, layout: Any = None, src: Path = FOV,
                timing: dict[str, float] | None = None, files: int = FILES, warm: bool = True,
                cold: bool = False) -> float:
    """Seconds of one raw conversion in this process: with ``workers``, the LocalCluster's start
    and stop included, its workers importing the conversion modules while the driver reads the
    first TIFFs, as ``sscxr convert --workers N`` does. ``timing["work"]`` gets the seconds of a
    second conversion (into ``url + ".warm"``) on that same cluster, warm by then: what a
    conversion on an already running cluster takes (``warm=False``: not run). Without workers
    both are the one run. ``cold``: the TIFFs are evicted from the page cache before each
    conversion (read from the disk).

    The imaging groups the ``.mat`` reader would give are built before the clock starts (the
    raw pass gets them from the session's first pass): the first ``xarray`` objects of a process
    import ~0.17 s of modules."""
    from sscxr_conversion import raw, write
    from sscxr_conversion.spec import ConversionSpec
    from sscxr_conversion.tasks import runner

    spec = ConversionSpec(archive="ssc-1", raw=True, red=red, video=False)
    groups = fov_groups(files)

    def convert(target: str, run: Any, prep: tuple[Any, dict[str, Any], set[str]]) -> None:
        store, attrs, done = prep
        raw.RawStep(src, groups, spec, layout or raw.LAYOUT)(store, target, run, done, attrs, [])

    first = _prepared(url, spec)
    second = _prepared(url + ".warm", spec) if workers and warm else None
    tiffs = sorted(src.rglob("*.tif")) if cold else []
    os.sync()  # no backlog of the previous runs' dirty pages: each run starts alike (not timed)
    evict(tiffs)
    t0 = time.perf_counter()
    with runner(url, None, workers=workers) as run:
        convert(url, run, first)
        t1 = time.perf_counter()
        work = t1 - t0
        if second is not None:
            os.sync()
            evict(tiffs)
            t2 = time.perf_counter()
            convert(url + ".warm", run, second)
            work = time.perf_counter() - t2
        t3 = time.perf_counter()
    seconds = (t1 - t0) + (time.perf_counter() - t3)  # start, first conversion, stop
    if timing is not None:
        timing["work"] = work
    for prep in (first, second):
        if prep is not None:
            write.finalise(prep[0], prep[1])
    return seconds


def convert_fresh(url: str, *, red: bool, workers: int, src: Path = FOV, files: int = FILES,
                  cold: bool = False) -> dict[str, float]:
    """:func:`convert_fov` with ``workers`` in a new Python process, as a ``sscxr convert
    --workers N`` run is: ``seconds`` (start and stop included) and ``work`` (warm cluster) of
    its first conversion, and ``next``: a second conversion on a new cluster in that process (a
    notebook's next ``convert(..., workers=N)``), which finds the worker forkserver running."""
    import subprocess

    args = {"url": url, "red": red, "workers": workers, "src": str(src), "files": files, "cold": cold}
    done = subprocess.run([sys.executable, __file__, "--one", json.dumps(args)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _one(args: dict[str, Any]) -> None:
    """The child of :func:`convert_fresh`: prints its result as one JSON line."""
    import distributed  # noqa: F401  (the CLI has it imported before it converts)

    kw = {"red": args["red"], "workers": args["workers"], "src": Path(args["src"]), "files": args["files"],
          "cold": args.get("cold", False)}
    timing: dict[str, float] = {}
    seconds = convert_fov(args["url"], timing=timing, **kw)
    again = convert_fov(args["url"] + ".next", warm=False, **kw)
    print(json.dumps({"seconds": seconds, "work": timing["work"], "next": again}))


def _settle() -> None:
    """Between configurations: each run writes to a new destination, and a configuration's stores
    are deleted once measured (else ~15 GB of new page cache makes the later runs pay for memory
    reclaim); then 65 s pass: ext4 (no journal here) makes file creation slow for a minute after
    files were deleted (docs/benchmarks-conversion.md)."""
    shutil.rmtree(WORK / "raw_runs", ignore_errors=True)
    time.sleep(65)


def _configuration(paths: list[Path], fresh: Iterator[str], *, workers: int | None, red: bool, n: int,
                   src: Path = FOV, files: int = FILES, cold: bool = False) -> dict[str, Any]:
    """``n`` conversions of one configuration, after the baseline measured again next to them
    (the VM drifts): best seconds, all runs, the warm-cluster seconds, and the last store's size.
    ``cold``: the baseline and every conversion read the TIFFs from the disk."""
    from sscxr_conversion.tasks import threads_per_worker

    near = min(read_tiffs_cold(paths) for _ in range(2)) if cold else best_of(lambda: read_tiffs(paths), 2)
    runs, work, again = [], [], []
    for _ in range(n):
        url = next(fresh)
        if workers:  # a new process each time, as the CLI runs
            got = convert_fresh(url, red=red, workers=workers, src=src, files=files, cold=cold)
            runs.append(got["seconds"])
            work.append(got["work"])
            again.append(got["next"])
        else:
            timing: dict[str, float] = {}
            runs.append(convert_fov(url, red=red, workers=workers, src=src, files=files, timing=timing, cold=cold))
            work.append(timing["work"])
    stored, objects = du(Path(url))
    print(f"{src.name}: workers={workers} red={red}: {min(runs):.2f} s ({', '.join(f'{r:.2f}' for r in runs)}), "
          f"{near / min(runs):.0%} of tifffile ({near:.2f} s); without cluster start/stop {min(work):.2f} s "
          f"({near / min(work):.0%}); {f'next cluster in the process {min(again):.2f} s; ' if again else ''}"
          f"store {stored / 1e9:.2f} GB in {objects} objects", flush=True)
    row = {"workers": workers, "threads": threads_per_worker(workers) if workers else None, "red": red,
           "seconds": min(runs), "all": runs, "work": min(work), "store_bytes": stored, "objects": objects,
           "tifffile_s": near}
    return {**row, "next": min(again), "next_all": again} if again else row


def throughput(paths: list[Path]) -> dict[str, Any]:
    size = sum(p.stat().st_size for p in paths)
    read_tiffs(paths)  # warm the page cache: every run below reads from memory
    base = best_of(lambda: read_tiffs(paths), 3)
    rows: dict[str, Any] = {"tiff_bytes": size, "tifffile_s": base, "runs": [], "stages": stage_costs()}
    shutil.rmtree(WORK / "raw_runs", ignore_errors=True)  # leftovers of an interrupted benchmark
    fresh = (str(WORK / "raw_runs" / f"run{k}.zarr") for k in itertools.count())
    for workers in (None, 1, 2):
        for red in (False, True):
            if rows["runs"]:
                _settle()
            row = _configuration(paths, fresh, workers=workers, red=red, n=3 if workers is None else 2)
            rows["runs"].append({**row, "source": "folder"})
    tarball = make_tarball()
    _settle()
    row = _configuration(paths, fresh, workers=None, red=False, n=1, src=tarball)
    rows["runs"].append({**row, "source": f"tar.gz ({tarball.stat().st_size / 1e9:.2f} GB)"})
    for workers in (None, 1, 2):  # what a conversion of an archive larger than memory meets
        _settle()
        row = _configuration(paths, fresh, workers=workers, red=False, n=2, cold=True)
        rows["runs"].append({**row, "cold": True, "source": "folder, from disk"})
    shutil.rmtree(WORK / "raw_runs", ignore_errors=True)
    return rows


PAUSE = 3.0  # s before each run of `paired`: longer than the 2 s delay before this VM's kernel reports freed memory


def paired(paths: list[Path], rounds: int = 5, pause: float = PAUSE, seed: int = 0) -> dict[str, Any]:
    """The baseline and the conversions under the same conditions: ``rounds`` rounds, each running
    ``tifffile`` and a green conversion with local threads, one warm worker and two warm workers
    (both clusters started once, in this process) in a shuffled order, every run after
    ``os.sync()`` and ``pause`` seconds; a first round warms every runner up and is not counted.

    Section 1's baseline is tifffile's best of two back-to-back reads, and its second read reuses
    the memory the first has just freed. tifffile spends about half its time zeroing the pages of
    its new arrays, and on a VM that reports freed memory to its host (free page reporting, as
    this project's VMs do) that costs more when the host must supply the pages again: after other
    work, and sometimes after a pause alone. ``baseline`` records pairs of reads, one right after
    a read and one after ``pause``; ``conversion`` the same for a conversion on local threads,
    which reuses its memory within a run and gains little back to back."""
    import random

    from sscxr_conversion import raw
    from sscxr_conversion.spec import ConversionSpec
    from sscxr_conversion.tasks import runner
    from contextlib import ExitStack

    def back_to_back(make: Any, what: str, pairs: int = 3) -> dict[str, list[float]]:
        """Seconds of a ``make()`` job run right after another, and of one run after ``pause``."""
        out: dict[str, list[float]] = {f"right after {what}": [], f"after {pause:g} s": []}
        for _ in range(pairs):
            timed(make())
            for key, wait in zip(out, (0.0, pause), strict=True):
                job = make()
                os.sync()
                time.sleep(wait)
                out[key].append(timed(job))
        print(f"{what}:", {k: [round(x, 2) for x in v] for k, v in out.items()}, flush=True)
        return out

    _settle()  # after the deletions of an earlier section, as before every configuration
    read_tiffs(paths)
    sensitivity = back_to_back(lambda: lambda: read_tiffs(paths), "a read")

    spec = ConversionSpec(archive="ssc-1", raw=True, red=False, video=False)
    groups = fov_groups()
    runners = {"local threads": None, "--workers 1": 1, "--workers 2": 2}
    seconds: dict[str, list[float]] = {name: [] for name in ["tifffile", *runners]}
    order_log: list[list[str]] = []
    fresh = (str(WORK / "raw_runs" / f"paired{k}.zarr") for k in itertools.count())
    rng = random.Random(seed)

    def converting(name: str) -> Any:
        url = next(fresh)
        store, attrs, done = _prepared(url, spec)
        step = raw.RawStep(FOV, groups, spec, raw.LAYOUT)
        return lambda: step(store, url, live[name], done, attrs, [])

    with ExitStack() as stack:
        live = {name: stack.enter_context(runner(str(WORK / "raw_runs" / "paired"), None, workers=w))
                for name, w in runners.items()}
        again = back_to_back(lambda: converting("local threads"), "a conversion")  # what it gains back to back
        for i in range(rounds + 1):
            order = list(seconds)
            rng.shuffle(order)
            for name in order:
                job = (lambda: read_tiffs(paths)) if name == "tifffile" else converting(name)
                os.sync()
                time.sleep(pause)
                took = timed(job)
                if i:
                    seconds[name].append(took)
                print(f"paired round {i}: {name} {took:.2f} s", flush=True)
            if i:
                order_log.append(order)
    shutil.rmtree(WORK / "raw_runs", ignore_errors=True)
    return {"rounds": rounds, "pause_s": pause, "seconds": seconds, "orders": order_log, "baseline": sensitivity,
            "conversion": again}


LARGE_FILES = 4 * FILES  # 8.8 GB of TIFF: nearer a real field of view (~12 GB, FORMATS.md)


def large_fov(files: int = LARGE_FILES) -> dict[str, Any]:
    """Throughput on a field of view ``files / FILES`` times larger (green; local threads, one
    and two workers): what a conversion costs once only (template, the last blocks, summary images,
    starting the threads) weighs that much less, as on a real field of view."""
    root = WORK / f"raw_fov_{files}"
    paths = make_fov(root, files)
    size = sum(p.stat().st_size for p in paths)
    read_tiffs(paths)
    rows: dict[str, Any] = {"tiff_bytes": size, "runs": []}
    fresh = (str(WORK / "raw_runs" / f"large{k}.zarr") for k in itertools.count())
    for workers in (None, 1, 2):
        _settle()
        rows["runs"].append(_configuration(paths, fresh, workers=workers, red=False, n=2, src=root, files=files))
    shutil.rmtree(WORK / "raw_runs", ignore_errors=True)
    return rows


def make_tarball() -> Path:
    """The FOV as a downloaded ``.tar.gz`` (gzip level 1), once."""
    import tarfile

    path = WORK / "raw_fov.tar.gz"
    if not path.exists():
        with tarfile.open(path, "w:gz", compresslevel=1) as tar:
            tar.add(FOV / "imaging_data", arcname="an197522_2013_03_08/imaging_data")
    return path


def stage_costs() -> dict[str, float]:
    """Seconds of the stages alone (green only, one thread, best of 3): the driver reading,
    checking and placing every frame (serial); the block tasks (all blocks, one after another, as
    one worker runs them), cumulatively: only reading each frame and its crc32c, + tiling, sums
    and max (``Block.scan``), + lz4 encoding of every inner chunk, + the shard and marker writes
    (``write_block``: the whole task); and each TIFF's whole-file crc32c (the driver's hashing
    thread). The task costs bound what one worker can do: one core runs all of them."""
    from sscxr_conversion import raw, write
    from sscxr_conversion.readers.tiff import data_crc32c, map_file, open_stack, pixel_crc32c
    from sscxr_conversion.shards import BloscInto, sharded_layout
    from sscxr_conversion.spec import ConversionSpec

    spec = ConversionSpec(archive="ssc-1", raw=True, video=False)
    blocks: list[Any] = []

    class Keep(raw.RawStacks):
        hash_files = False  # timed on their own below

        def _emit(self, i: int, block: Any) -> None:
            blocks.append(block)  # by reference: no pixels are held

    stacks = Keep(raw.plan_raw(fov_groups()), spec, raw.LAYOUT)
    t0 = time.perf_counter()
    raw.stream_raw(FOV, stacks, None, [])
    stacks.close_blocks()
    driver = time.perf_counter() - t0
    plan = raw.plan_raw(fov_groups())[0]
    url = str(WORK / "stage.zarr")
    store = write.open_store(url, None, mode="w")
    write.prepare(store, url, overwrite=True, resume=False, attrs={})
    layout = sharded_layout(raw.create_template(store, plan, (SIZE, SIZE), ("green",), raw.LAYOUT)["green"])
    assert layout is not None
    codec, _, chunk = layout  # what the tasks encode with
    shutil.rmtree(url)
    tile, frames = (chunk[2], chunk[3]), chunk[1]

    def read() -> None:
        for block in blocks:
            with block.frames() as frame:
                for i in range(len(block.present)):
                    pixels = frame(0, i)
                    if pixels is not None:
                        pixel_crc32c(pixels)
                    del pixels

    def scan() -> None:
        for block in blocks:
            block.scan(tile, frames)

    def encode() -> None:
        compress = BloscInto(codec)

        def on_slab(c: int, k: int, slab: np.ndarray) -> None:
            for row in slab:
                for part in row:
                    compress(part)

        for block in blocks:
            block.scan(tile, frames, on_slab)

    stores = WORK / "stage_runs"
    shutil.rmtree(stores, ignore_errors=True)

    written: list[Path] = []

    def write_all() -> None:  # each time a new store: files created right after deletions are slow (ext4)
        url = str(stores / f"run{time.time()}.zarr")
        written.append(Path(url))
        store = write.open_store(url, None, mode="w")
        write.prepare(store, url, overwrite=True, resume=False, attrs={})
        raw.create_template(store, plan, (SIZE, SIZE), ("green",), raw.LAYOUT)
        for block in blocks:
            raw.write_block(url, plan.path, ("green",), block)

    try:
        costs = {"driver_s": driver, "read_s": best_of(read, 3), "scan_s": best_of(scan, 3),
                 "encode_s": best_of(encode, 3), "write_s": best_of(write_all, 3)}
        costs.update(new_files(du(written[-1])[0], stores / "plain"))
    finally:
        shutil.rmtree(stores, ignore_errors=True)
    names = [name for i in sorted(stacks.records) for name in stacks.records[i]]
    pages = {}
    for name in names:  # what the driver hands its hashing thread: the pages no task hashes
        with open_stack(FOV / name, name=name) as stack:
            pages[name] = stacks._task_pages(name, stack)

    def whole_files() -> None:  # each TIFF hashed whole, as before session 7
        for name in names:
            data = map_file(FOV / name, name)
            data_crc32c(data)
            data.close()

    def gaps() -> None:
        for name in names:
            raw.gap_crcs(name, FOV / name, pages[name])

    return {**costs, "hash_s": best_of(whole_files, 3), "gap_hash_s": best_of(gaps, 3)}


# --------------------------------------------------------------------------------------------
# 2-3. layouts and remote reads
# --------------------------------------------------------------------------------------------

LAYOUTS = [  # (shard (time, y, x), inner chunk (time, y, x)); None: unsharded
    ((256, 512, 512), (16, 128, 128)),
    ((256, 512, 512), (64, 64, 64)),
    ((256, 512, 512), (8, 256, 256)),
    ((256, 128, 128), (16, 128, 128)),
    ((128, 128, 128), (8, 128, 128)),
    ((128, 128, 128), (16, 128, 128)),  # the default (RawLayout)
    ((128, 128, 128), (32, 128, 128)),
    ((64, 128, 128), (16, 128, 128)),
    (None, (16, 128, 128)),
    (None, (32, 128, 128)),
]


def new_files(size: int, where: Path, file_size: int = 16 << 20) -> dict[str, float]:
    """Seconds to write ``size`` bytes as new ``file_size`` files from one reused buffer (one
    thread, no compute): with each file's pages released once written back (the converter's
    :class:`~sscxr_conversion.shards.WriteBehind`), left in the page cache (a plain write), and
    rewriting those same files in place (page cache already there)."""
    from sscxr_conversion.shards import WriteBehind

    buffer = np.random.default_rng(0).integers(0, 256, file_size, dtype=np.uint8)
    sizes = [file_size] * (size // file_size) + ([size % file_size] if size % file_size else [])

    def write(folder: Path, flags: int, behind: WriteBehind | None = None) -> float:
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for k, n in enumerate(sizes):
            fd = os.open(folder / f"f{k}", os.O_WRONLY | flags, 0o666)
            try:
                os.write(fd, memoryview(buffer)[:n])
                if behind is not None:
                    behind.written([str(folder / f"f{k}")], [fd])
            finally:
                os.close(fd)
        if behind is not None:
            behind.flush()  # until all its advice is given, as when it was given in the writer's thread
        return time.perf_counter() - t0

    released = write(where / "behind", os.O_CREAT | os.O_TRUNC, WriteBehind())  # first: no memory freed before it
    fresh = write(where / "plain", os.O_CREAT | os.O_TRUNC)
    return {"behind_s": released, "new_files_s": fresh, "rewrite_s": write(where / "plain", 0), "new_files_bytes": size}


def one_plane(paths: list[Path]) -> np.ndarray:
    import tifffile

    return np.concatenate([tifffile.imread(p, key=slice(None))[0::2] for p in paths[:FILES]])[None]  # (1, time, y, x) green


def write_layout(url: str, data: np.ndarray, shard: tuple | None, chunk: tuple) -> float:
    import zarr
    from zarr.codecs import BloscCodec

    shutil.rmtree(url, ignore_errors=True)
    arr = zarr.create_array(url, shape=data.shape, dtype="uint16", chunks=(1, *chunk),
                            shards=(1, *shard) if shard else None, fill_value=0,
                            compressors=[BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")],
                            config={"write_empty_chunks": True})
    step = shard[0] if shard else 256
    t0 = time.perf_counter()
    for t in range(0, data.shape[1], step):
        arr[:, t: t + step] = data[:, t: t + step]
    return time.perf_counter() - t0


def remote_reads(open_array: Any, n_time: int, repeats: int = 5) -> dict[str, float]:
    """Median seconds: one frame (a fresh array handle each time: cold metadata) and one tile."""
    rng = np.random.default_rng(1)
    frame, tile = [], []
    for _ in range(repeats):
        arr = open_array()
        t, y, x = int(rng.integers(n_time)), int(rng.integers(0, 31)) * 16, int(rng.integers(0, 31)) * 16
        t0 = time.perf_counter()
        arr[0, t]
        frame.append(time.perf_counter() - t0)
        arr = open_array()
        t0 = time.perf_counter()
        arr[0, :, y: y + 16, x: x + 16]
        tile.append(time.perf_counter() - t0)
    return {"frame_s": float(np.median(frame)), "tile_s": float(np.median(tile))}


def layouts(paths: list[Path], server: Any | None) -> list[dict[str, Any]]:
    import zarr

    from sscxr.io import make_store

    data = one_plane(paths)
    rows = []
    bucket = server.make_bucket() if server else None
    for shard, chunk in LAYOUTS:
        url = str(WORK / "layout.zarr")
        seconds = write_layout(url, data, shard, chunk)
        size, objects = du(Path(url))
        row = {"shard": shard, "chunk": chunk, "write_MBps": data.nbytes / seconds / 1e6, "objects": objects,
               "ratio": data.nbytes / size}
        if server:
            prefix = f"layout_{len(rows)}.zarr"
            server.upload_dir(url, bucket, prefix)
            opts = server.storage_options()
            row.update(remote_reads(lambda p=prefix: zarr.open_array(
                make_store(server.url(bucket, p), opts), mode="r"), data.shape[1]))
        rows.append(row)
        print(row, flush=True)
    return rows


def tiff_reads(paths: list[Path], server: Any) -> dict[str, float]:
    """One frame and one 16x16 tile over all time of one plane, straight from the TIFFs on S3."""
    import s3fs
    import tifffile

    bucket = server.make_bucket()
    for path in paths[:FILES]:
        server.put_file(bucket, path.name, path)
    opts = server.storage_options()
    fs = s3fs.S3FileSystem(key=opts["key"], secret=opts["secret"], client_kwargs={"endpoint_url": opts["endpoint_url"]},
                           skip_instance_cache=True)

    def frame() -> np.ndarray:
        with fs.open(f"{bucket}/{paths[3].name}", "rb") as f, tifffile.TiffFile(f) as tif:
            return tif.pages[2 * 37].asarray()

    def tile() -> np.ndarray:
        out = []
        for path in paths[:FILES]:
            with fs.open(f"{bucket}/{path.name}", "rb") as f, tifffile.TiffFile(f) as tif:
                out += [tif.pages[2 * i].asarray()[100:116, 200:216] for i in range(FRAMES)]
        return np.stack(out)

    return {"frame_s": float(np.median([best_of(frame, 1) for _ in range(3)])), "tile_s": best_of(tile, 1)}


def store_reads(server: Any) -> dict[str, float]:
    """The same reads from the converted store (the default layout) on S3."""
    import zarr

    from sscxr.io import make_store

    convert_fov(str(WORK / "raw_store.zarr"), red=False, workers=None)
    bucket = server.make_bucket()
    server.upload_dir(WORK / "raw_store.zarr", bucket, "s.zarr")
    opts = server.storage_options()
    return remote_reads(lambda: zarr.open_array(make_store(server.url(bucket, "s.zarr"), opts),
                                                path="raw/subvolume_01/green", mode="r"), FILES * FRAMES)


# --------------------------------------------------------------------------------------------
# 4. video
# --------------------------------------------------------------------------------------------


def whisker_video(n: int = 1000, shape: tuple[int, int] = (480, 640)) -> bytes:
    """A whisker-camera-like mp4 (500 Hz, 640 x 480, mono): face, pole, moving whiskers, noise."""
    import av

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    face = (60 + 120 * (xx < 120) + 20 * np.sin(yy / 40)).astype(np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=500)
        stream.width, stream.height, stream.pix_fmt = shape[1], shape[0], "yuv420p"
        for i in range(n):
            img = face.copy()
            for w in range(4):
                angle = 0.4 * np.sin(2 * np.pi * i / 50 + w) + (w - 1.5) * 0.3
                x = np.arange(120, 600)
                y = (shape[0] / 2 + (x - 120) * np.tan(angle) + 0.0004 * (x - 120) ** 2).astype(int)
                ok = (y >= 0) & (y < shape[0])
                img[y[ok], x[ok]] = 10
            img[200:210, 450 + (i // 100) % 50: 460 + (i // 100) % 50] = 250  # the pole
            frame = np.clip(img + rng.normal(0, 3, shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="gray")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()


def video(server: Any | None) -> dict[str, Any]:
    """Decoded frames in zarr (blosc-zstd, 1-frame and 32-frame chunks) vs mp4 bytes + index."""
    import av
    import zarr
    from zarr.codecs import BloscCodec

    from sscxr.io import make_store
    from sscxr.video import decode_frames, frame_pixels
    from sscxr_conversion.readers.video import probe_video

    data = whisker_video()
    t0 = time.perf_counter()
    info = probe_video(data, name="bench.mp4")
    index_s = time.perf_counter() - t0
    with av.open(io.BytesIO(data)) as c:
        frames = np.stack([frame_pixels(f) for f in c.decode(video=0)])
    row: dict[str, Any] = {"frames": len(frames), "shape": frames.shape[1:], "decoded_bytes": frames.nbytes,
                           "mp4_bytes": len(data), "probe_s": index_s}
    keys = info.pts[info.keyframe]
    row["mp4_frame_s"] = float(np.median([best_of(lambda i=i: decode_frames(data, [info.pts[i]], keys), 1)
                                          for i in (100, 500, 900)]))
    row["mp4_trial_s"] = best_of(lambda: decode_frames(data, info.pts, keys), 1)
    for chunk in (1, 32):
        url = str(WORK / f"video_{chunk}.zarr")
        shutil.rmtree(url, ignore_errors=True)
        arr = zarr.create_array(url, shape=frames.shape, dtype="uint8", chunks=(chunk, *frames.shape[1:]),
                                compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")])
        t0 = time.perf_counter()
        arr[:] = frames
        row[f"zarr{chunk}_write_s"] = time.perf_counter() - t0
        row[f"zarr{chunk}_bytes"] = du(Path(url))[0]
        row[f"zarr{chunk}_frame_s"] = best_of(lambda a=arr: a[500], 3)
        row[f"zarr{chunk}_trial_s"] = best_of(lambda a=arr: a[:], 1)
    if server:
        bucket = server.make_bucket()
        server.client().put_object(Bucket=bucket, Key="v/mp4", Body=data)
        server.upload_dir(WORK / "video_32.zarr", bucket, "v32.zarr")
        opts = server.storage_options()
        mp4 = lambda: make_store(server.url(bucket, "v"), opts)  # noqa: E731
        row["s3_mp4_frame_s"] = best_of(lambda: decode_frames(_s3_bytes(mp4(), "mp4"), [info.pts[500]], keys), 3)
        row["s3_zarr32_frame_s"] = best_of(lambda: zarr.open_array(make_store(server.url(bucket, "v32.zarr"), opts),
                                                                   mode="r")[500], 3)
    print(row, flush=True)
    return row


def _s3_bytes(store: Any, key: str) -> bytes:
    from zarr.buffer import default_buffer_prototype

    from sscxr._zarr_compat import sync

    return sync(store.get(key, default_buffer_prototype())).to_bytes()


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------


def report(results: dict[str, Any]) -> str:
    t = results["throughput"]
    size, base = t["tiff_bytes"], t["tifffile_s"]
    lines = ["# Raw imaging and video benchmarks (issue 8)", "",
             "Produced by `python benchmarks/bench_raw.py --out docs/benchmarks-raw.md`. See `docs/raw.md` for "
             "what the numbers decided.", "", machine_markdown(), "",
             f"## 1. Conversion throughput ({size / 1e9:.2f} GB of TIFF, 3 planes x {FILES * FRAMES} frames, "
             "local disk)", "",
             f"Baseline: `tifffile.imread` of every TIFF: **{base:.2f} s, {size / base / 1e6:.0f} MB/s**.", "",
             "Seconds: best of the runs listed; for `--workers`, each run is a new Python process, as "
             "`sscxr convert --workers N` is, and the LocalCluster's start and stop are included. "
             "\"warm cluster\" is a second conversion on that cluster (a conversion on a running cluster); "
             "\"next cluster\" is a conversion on a new LocalCluster in the same process (a notebook's next "
             "`convert(..., workers=N)`: the workers' forkserver is running by then), start and stop included. "
             "`sscxr convert --raw --workers N` runs the raw step on the cluster it started for the session's "
             "`.mat` tasks, after them: its raw step meets a warm cluster. "
             "\"vs tifffile\" divides by the baseline measured again just before that row's runs "
             "(its own column): this VM's speed drifts by 10% and more within a benchmark. "
             "The TIFFs are in the page cache (read from memory), the harder comparison for a conversion, "
             "except in the rows \"from disk\": there the TIFFs are dropped from the page cache before "
             "the baseline's reads and before each conversion (`POSIX_FADV_DONTNEED`), as when converting "
             "an archive larger than memory.", "",
             "| source | runner | channels | seconds (runs) | MB/s of TIFF | tifffile s | vs tifffile "
             "| warm cluster | next cluster | store GB | objects |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in t["runs"]:
        runner = ("local threads (2)" if r["workers"] is None else
                  f"--workers {r['workers']} ({r['workers']} x {r.get('threads', 1)} threads)")
        runs = ", ".join(f"{x:.2f}" for x in r.get("all", [r["seconds"]]))
        near = r.get("tifffile_s", base)
        lines.append(f"| {r.get('source', 'folder')} | {runner} | {'green+red' if r['red'] else 'green'} | "
                     f"**{r['seconds']:.2f}** ({runs}) | {size / r['seconds'] / 1e6:.0f} | {near:.2f} | "
                     f"**{near / r['seconds']:.0%}** | {_cluster_cell(r, 'work', near)} | "
                     f"{_cluster_cell(r, 'next', near)} | {r['store_bytes'] / 1e9:.2f} | {r['objects']} |")
    lines += _paired_lines(results.get("paired"), size)
    big = results.get("large")
    if big:
        lines += ["", f"The same conversion on a field of view {LARGE_FILES // FILES}x as large "
                  f"({big['tiff_bytes'] / 1e9:.1f} GB, {LARGE_FILES} TIFFs per plane; a real one is ~12 GB), green:", "",
                  "| runner | seconds (runs) | MB/s of TIFF | tifffile s | vs tifffile | warm cluster | next cluster |",
                  "|---|---|---|---|---|---|---|"]
        for r in big["runs"]:
            runner = "local threads (2)" if r["workers"] is None else f"--workers {r['workers']}"
            near = r["tifffile_s"]
            lines.append(f"| {runner} | **{r['seconds']:.2f}** ({', '.join(f'{x:.2f}' for x in r['all'])}) | "
                         f"{big['tiff_bytes'] / r['seconds'] / 1e6:.0f} | {near:.2f} | **{near / r['seconds']:.0%}** | "
                         f"{_cluster_cell(r, 'work', near)} | {_cluster_cell(r, 'next', near)} |")
    st = t.get("stages")
    if st and "scan_s" in st:
        tasks = st["write_s"]
        lines += ["", "Stage costs alone (green only, one thread, best of 3). The block tasks run one after "
                  "another, as on one worker's core; each row adds a step to the row above:", "",
                  "| stage | seconds | added | tifffile / seconds |", "|---|---|---|---|",
                  f"| driver: parse every TIFF's IFDs, check the index, place every frame by reference "
                  f"(serial) | {st['driver_s']:.2f} | | |"]
        before = 0.0
        for key, what in (("read_s", "tasks: read every frame (mapped page cache) and its crc32c"),
                          ("scan_s", "+ tile each frame into slabs, sum and max images"),
                          ("encode_s", "+ lz4 encode every inner chunk (into a reused buffer)"),
                          ("write_s", "+ write the shard files and per-block arrays: the whole task")):
            lines.append(f"| {what} | {st[key]:.2f} | {st[key] - before:+.2f} | {base / st[key]:.0%} |")
            before = st[key]
        if "gap_hash_s" in st:
            lines += [f"| driver's own thread: crc32c of the bytes no task hashes (pages of the other channel, "
                      f"IFDs); with the tasks' page hashes, each TIFF's whole-file crc32c | {st['gap_hash_s']:.2f} | | |"]
        lines += ["| for comparison, not what the converter does: every TIFF hashed whole on the driver's thread "
                  f"| {st['hash_s']:.2f} | | |"]
        if "new_files_s" in st:
            lines += [f"| no compute: write the store's {st['new_files_bytes'] / 1e9:.2f} GB as new 16 MB files "
                      f"from one buffer, each released from the page cache once written back (`WriteBehind`, "
                      f"as the tasks do) | {st['behind_s']:.2f} | | {base / st['behind_s']:.0%} |",
                      f"| no compute: the same, new files left in the page cache | {st['new_files_s']:.2f} | | "
                      f"{base / st['new_files_s']:.0%} |",
                      f"| no compute: rewrite those same files in place | {st['rewrite_s']:.2f} | | "
                      f"{base / st['rewrite_s']:.0%} |"]
        lines += ["", f"One thread runs all the tasks in {tasks:.2f} s against tifffile's {base:.2f} s (one "
                  f"thread too): one core of conversion is bounded at about **{base / tasks:.0%}** of one core "
                  "reading with tifffile, before any scheduling or driver overhead, and two cores at twice "
                  "that, less what the driver's own work (parsing, hashing) takes from them. Without "
                  f"the writes, the tasks' compute alone would bound one core at {base / st['encode_s']:.0%}. "
                  "`--workers 1` gives its worker every core (the cores are split among the workers)."]
    lines += ["", "## 2. Chunk layouts (one plane, green, "
              f"{FILES * FRAMES} frames = {FILES * FRAMES * SIZE * SIZE * 2 / 1e6:.0f} MB; reads on SeaweedFS S3)", "",
              "| shard (t, y, x) | inner chunk (t, y, x) | write MB/s | objects | ratio | one frame | 16x16 tile, all time |",
              "|---|---|---|---|---|---|---|"]
    for r in results.get("layouts", []):  # sections not run yet (--only) are left out
        shard = tuple(r["shard"]) if r["shard"] else "unsharded"  # lists once read back from the json
        lines.append(f"| {shard} | {tuple(r['chunk'])} | {r['write_MBps']:.0f} | {r['objects']} | "
                     f"{r['ratio']:.2f} | {_ms(r.get('frame_s'))} | {_ms(r.get('tile_s'))} |")
    if "remote" in results:
        s, f = results["remote"]["store"], results["remote"]["tiff"]
        lines += ["", "## 3. Reading from S3 (SeaweedFS, loopback): store vs TIFFs", "",
                  "| source | one frame | one 16x16 tile over all frames of a plane |", "|---|---|---|",
                  f"| store (default layout, fresh handle) | {_ms(s['frame_s'])} | {_ms(s['tile_s'])} |",
                  f"| TIFFs via s3fs + tifffile | {_ms(f['frame_s'])} | {_ms(f['tile_s'])} |"]
    v = results.get("video")
    if v is None:
        return "\n".join(lines) + "\n"
    lines += ["", f"## 4. Whisker video: {v['frames']} frames of {v['shape'][1]} x {v['shape'][0]} (synthetic, "
              "h264 via PyAV)", "", "| storage | bytes | one frame (local) | whole trial (local) | one frame (S3) |",
              "|---|---|---|---|---|",
              f"| mp4 bytes + frame index (chosen) | {v['mp4_bytes'] / 1e6:.1f} MB | {_ms(v['mp4_frame_s'])} | "
              f"{_ms(v['mp4_trial_s'])} | {_ms(v.get('s3_mp4_frame_s'))} |",
              f"| decoded, zarr, 1-frame chunks, blosc-zstd | {v['zarr1_bytes'] / 1e6:.1f} MB | "
              f"{_ms(v['zarr1_frame_s'])} | {_ms(v['zarr1_trial_s'])} | |",
              f"| decoded, zarr, 32-frame chunks, blosc-zstd | {v['zarr32_bytes'] / 1e6:.1f} MB | "
              f"{_ms(v['zarr32_frame_s'])} | {_ms(v['zarr32_trial_s'])} | {_ms(v.get('s3_zarr32_frame_s'))} |",
              "", f"Decoded size {v['decoded_bytes'] / 1e6:.0f} MB; indexing the mp4 at conversion (decode every "
              f"frame, crc32c each) took {v['probe_s']:.2f} s."]
    return "\n".join(lines) + "\n"


def _paired_lines(p: dict[str, Any] | None, size: int) -> list[str]:
    """Section 1's "same conditions" table (:func:`paired`); nothing before it was run."""
    if not p:
        return []
    import statistics

    sec, pause = p["seconds"], p["pause_s"]
    base = statistics.median(sec["tifffile"])

    def pairs(times: dict[str, list[float]]) -> str:  # "right after ...: 1.02, 0.98 s, after 3 s: ..."
        return ", ".join(f"{k}: {', '.join(f'{x:.2f}' for x in v)} s" for k, v in times.items())

    lines = ["", f"### The same conditions for baseline and conversions ({p['rounds']} interleaved rounds)", "",
             "In each round, `tifffile` and a green conversion with each runner (the clusters started once and "
             f"warm) run in a shuffled order, every run after `os.sync()` and a {pause:g} s pause; a first "
             "round warms everything up and is not counted. This is the comparison of a conversion with "
             "just reading the TIFFs, made alike for both. The table above divides by tifffile's best of two "
             "back-to-back reads instead, whose second read reuses the memory the first has just freed. "
             "tifffile spends about half its time zeroing the pages of its new arrays, which costs more on "
             "this VM when the host must supply them again (its kernel reports freed memory to the host). "
             f"Here tifffile took {pairs(p['baseline'])}, and in the rounds below (after another runner) the "
             "seconds listed there"
             + (f"; a conversion on local threads, which reuses its memory within a run: {pairs(p['conversion'])}"
                if "conversion" in p else "") + ".", "",
             "| runner | seconds, median (runs) | MB/s of TIFF | vs tifffile: ratio of medians | "
             "vs tifffile within a round: median (range) |", "|---|---|---|---|---|"]
    for name, runs in sec.items():
        med = statistics.median(runs)
        if name == "tifffile":
            lines.append(f"| tifffile (the baseline) | **{med:.2f}** ({', '.join(f'{x:.2f}' for x in runs)}) | "
                         f"{size / med / 1e6:.0f} | | |")
            continue
        within = [b / r for b, r in zip(sec["tifffile"], runs, strict=True)]
        lines.append(f"| {name}{' (warm cluster)' if name.startswith('--') else ''} | **{med:.2f}** "
                     f"({', '.join(f'{x:.2f}' for x in runs)}) | {size / med / 1e6:.0f} | **{base / med:.0%}** | "
                     f"{statistics.median(within):.0%} ({min(within):.0%}-{max(within):.0%}) |")
    return lines


def _cluster_cell(row: dict[str, Any], key: str, near: float) -> str:
    """A "warm cluster" (``work``) or "next cluster" (``next``) cell: seconds and ratio to the
    baseline; empty for local threads (no cluster) and for results from before that column."""
    return f"{row[key]:.2f} s, {near / row[key]:.0%}" if row["workers"] is not None and row.get(key) else ""


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=None)
    ap.add_argument("--skip-s3", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--only", default="throughput,paired,large,layouts,remote,video")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # convert_fresh's child
    args = ap.parse_args()
    if args.one:
        return _one(json.loads(args.one))
    only = set(args.only.split(","))
    WORK.mkdir(parents=True, exist_ok=True)
    paths = make_fov()
    results: dict[str, Any] = json.loads((WORK / "raw_results.json").read_text()) if (WORK / "raw_results.json").exists() else {}
    server = None
    if not args.skip_s3 and only & {"layouts", "remote", "video"}:
        from sscxr.testing.s3 import SeaweedServer

        server = SeaweedServer().start()
    try:
        if "throughput" in only:
            results["throughput"] = throughput(paths)
        if "paired" in only:
            results["paired"] = paired(paths)
        if "large" in only:
            results["large"] = large_fov()
        if "layouts" in only:
            results["layouts"] = layouts(paths, server)
        if "remote" in only and server:
            results["remote"] = {"store": store_reads(server), "tiff": tiff_reads(paths, server)}
            print(results["remote"], flush=True)
        if "video" in only:
            results["video"] = video(server)
    finally:
        if server is not None:
            server.stop()
        (WORK / "raw_results.json").write_text(json.dumps(results, default=list, indent=1))
        if not args.keep:
            for name in ("raw_store.zarr", "layout.zarr", "video_1.zarr", "video_32.zarr"):
                shutil.rmtree(WORK / name, ignore_errors=True)
    text = report(results)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
