"""Raw imaging stacks (``/raw/subvolume_NN``) and whisker videos (``/video``) of an ssc-1 session.

The raw pass streams the source once (folder files in index order, or a tarball's members in
archive order), so nothing is extracted to disk and each TIFF is read exactly once:

1. **Plan** (:func:`plan_raw`): from each imaging subvolume's ``source_file`` /
   ``source_file_index`` / ``source_frame_index`` (FORMATS.md §1.3.3), where every frame of every
   plane comes from; raw frame ``t`` is the same instant as ``dff`` frame ``t``.
2. **Assemble** (:class:`_Assembler`): each TIFF's frames are copied into per-(plane, block)
   buffers of ``shard_frames`` frames (reused, see :class:`BufferPool`).
3. **Write** (:class:`RawWriter`): the template (coords, sharded arrays) once, then one task per
   full block computes its per-frame crc32c and its part of the summary images (sum, max: no
   extra read), writes whole shards (a region write; tasks never share a shard) and marks the
   block done, so ``--resume`` skips it; the driver writes the summary images and marks the group.

Videos (``VideoWriter``) keep each trial's mp4 bytes exactly, concatenated in ``mp4`` (appended
in whole chunks as the stream goes), with a frame index decoded by PyAV in tasks.
See ``docs/raw.md`` for the layout, the measurements behind it and the streaming rules.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import mmap
import os
import re
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from sscxr.errors import InconsistentSourceError, SourceFormatError, StoreExistsError

from . import write
from .crc import concat_crc32c, crc32c
from .progress import byte_bar, closing
from .provenance import HashingReader, SourceRecord
from .readers.tiff import (CHANNELS, FileIndex, RawPlan, TiffStack, close_map, data_crc32c, map_file, open_stack,
                           pixel_crc32c, plan_raw)
from .readers.video import VideoFile, VideoInfo, probe_video, trial_of, video_index
from .shards import (BloscInto, PartSink, chunk_key, index_parts, put_many, region_chunks, shard_index,
                     sharded_layout)
from .source import is_tar, iter_members
from .spec import ConversionSpec
from .tasks import Runner, options_for

MP4 = re.compile(r"\.mp4$", re.IGNORECASE)


@dataclass(frozen=True)
class RawLayout:
    """Chunking of the raw stacks: shards of ``shard_frames`` frames x ``shard_px`` x ``shard_px``
    pixels of one plane, inner chunks of ``chunk`` = (time, y, x), Blosc ``cname``/``clevel`` with
    byte shuffle. A write task fills ``shard_frames`` frames of one plane: whole shards. Measured
    in ``docs/raw.md``: a frame is 16 shard reads in parallel, a pixel tile one whole shard per
    128 frames.
    """

    shard_frames: int = 128
    shard_px: int = 128
    chunk: tuple[int, int, int] = (16, 128, 128)
    cname: str = "lz4"
    clevel: int = 1

    def to_attrs(self) -> dict[str, Any]:
        return {"shard_frames": self.shard_frames, "shard_px": self.shard_px, "chunk": list(self.chunk),
                "cname": self.cname, "clevel": self.clevel}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> RawLayout:
        return cls(**{**attrs, "chunk": tuple(attrs["chunk"])})

    def shapes(self, shape: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(shard, inner chunk)`` of a ``(plane, time, y, x)`` stack of ``shape`` frames."""
        sy, sx = (_divisor(n, self.shard_px) for n in shape)
        chunk = (_divisor(self.shard_frames, self.chunk[0]), _divisor(sy, self.chunk[1]), _divisor(sx, self.chunk[2]))
        return (1, self.shard_frames, sy, sx), (1, *chunk)


LAYOUT = RawLayout()


# --------------------------------------------------------------------------------------------
# streaming the source
# --------------------------------------------------------------------------------------------


@dataclass
class _TaskPages:
    """The pages of one TIFF that block tasks hash (their crc32c is the stored per-frame one):
    byte offsets ``starts`` (ascending, ``page`` bytes each, not overlapping) and, for each, the
    ``(plan, channel, plane, time)`` whose crc32c it is. Its whole-file crc32c is then put
    together from those and the hashes of the bytes between them (:func:`_gap_crcs`), instead of
    reading the file a second time."""

    starts: np.ndarray
    page: int
    keys: list[tuple[int, int, int, int]]

    def gaps(self, size: int) -> tuple[list[int], list[int]]:
        """``(begin, end)`` byte offsets of the runs before, between and after the pages."""
        return [0, *(self.starts + self.page).tolist()], [*self.starts.tolist(), size]


def _gap_crcs(name: str, source: bytes | Path, pages: _TaskPages) -> tuple[int, list[int]]:
    """Size of the file and the crc32c of each run of bytes outside ``pages`` (0 for an empty
    run); the pages are not read (the file is mapped without pre-faulting it)."""
    data = source if isinstance(source, bytes) else map_file(Path(source), name, populate=False)
    try:
        with memoryview(data) as view:
            begins, ends = pages.gaps(len(view))
            crcs = [crc32c(view[a:b]) if b > a else 0 for a, b in zip(begins, ends, strict=True)]
            return len(view), crcs
    finally:
        if not isinstance(data, bytes):
            data.close()


def _read(source: bytes | Path) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


# --------------------------------------------------------------------------------------------
# bounded task submission (stream -> tasks, never more than `limit` blocks in flight)
# --------------------------------------------------------------------------------------------


class Pipe:
    """Submit tasks to a :class:`~sscxr_conversion.tasks.Runner`, at most ``limit`` in flight;
    each result goes to its ``then`` callback in the driver."""

    def __init__(self, run: Any, limit: int = 3):
        self.run, self.limit = run, max(1, limit)
        self.pending: dict[Any, Callable[[Any], None] | None] = {}

    def submit(self, fn: Callable[..., Any], *args: Any, then: Callable[[Any], None] | None = None) -> None:
        while len(self.pending) >= self.limit:
            self._collect(first=True)
        client, pool = getattr(self.run, "client", None), getattr(self.run, "pool", None)
        if client is not None:
            args = tuple(client.scatter(a, direct=True, hash=False) if _is_big(a) else a for a in args)
            self.pending[client.submit(fn, *args, pure=False)] = then
        elif pool is not None:
            self.pending[pool.submit(fn, *args)] = then
        elif then is not None:
            then(fn(*args))
        else:
            fn(*args)

    def _collect(self, first: bool) -> None:
        if getattr(self.run, "client", None) is not None:
            from distributed import wait as dask_wait

            done, _ = dask_wait(list(self.pending), return_when="FIRST_COMPLETED" if first else "ALL_COMPLETED")
        else:
            done, _ = wait(list(self.pending), return_when=FIRST_COMPLETED if first else "ALL_COMPLETED")
        for future in done:
            then = self.pending.pop(future)
            result = future.result()
            if then is not None:
                then(result)

    def drain(self) -> None:
        while self.pending:
            self._collect(first=False)


def _is_big(value: Any) -> bool:
    """Task inputs scattered to a worker first rather than sent with the task: blocks holding
    pixels and large bytes. A block that refers to its TIFFs (a few kB of offsets) goes with the
    task: scattering it was a scheduler round trip per block (two warm workers: median 1.47 ->
    1.36 s for a 2.2 GB field of view)."""
    if isinstance(value, Block):
        return value.data is not None
    return isinstance(value, bytes) and len(value) > 1 << 20


# --------------------------------------------------------------------------------------------
# assembling frames into shard-sized blocks
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileRef:
    """A TIFF that the block tasks read themselves: its path, size (checked when opened) and the
    dtype of its pixels (``"<u2"``)."""

    path: str
    size: int
    dtype: str


@dataclass
class Block:
    """``shard_frames`` frames of one plane: where each frame's pixels are, and which are present.

    A frame of a TIFF on a file system the tasks share is a reference (``file`` >= 0: the byte
    ``offset`` of each channel's page in ``files[file]``), read by the task that writes the block:
    the driver only parses IFDs. Frames of in-memory members (a ``.tar.gz``) are copied into
    ``data``.
    """

    plane: int
    index: int
    t0: int
    present: np.ndarray  # (time,) bool
    frame_shape: tuple[int, int]
    files: list[FileRef]
    file: np.ndarray  # (time,) int: index into files, -1 where the pixels are in data (or absent)
    offset: np.ndarray  # (channel, time) int64 byte offsets of each page in its file
    data: np.ndarray | None = None  # (channel, time, y, x) uint16: frames copied from memory

    @property
    def n_channels(self) -> int:
        return self.offset.shape[0]

    def file_ref(self, ref: FileRef) -> int:
        """Index of ``ref`` in :attr:`files` (added if new)."""
        if ref not in self.files:
            self.files.append(ref)
        return self.files.index(ref)

    @contextmanager
    def frames(self) -> Iterator[_Pages]:
        """``frame(channel, i)``: the ``(y, x)`` pixels of frame ``i`` (None if absent); files are
        mapped read-only while the context is open. ``frame.run(...)``: several frames at once."""
        pages = _Pages(self)
        try:
            yield pages
        finally:
            pages.close()

    def scan(self, tile: tuple[int, int], frames: int,
             on_slab: Callable[[int, int, np.ndarray], None] | None = None) -> BlockSummary:
        """One pass over every present frame: its crc32c, the block's sum and max images, and
        (``on_slab``) the pixels ``frames`` frames at a time as a C-contiguous ``(tile_y, tile_x,
        frames, *tile)`` slab, so that each ``(frames, *tile)`` inner chunk is one contiguous
        run that compresses without a gather copy. Absent frames and the padding of a short last
        slab are 0. ``on_slab(channel, slab_index, slab)`` must not keep the slab (it is reused).

        Where a slab's pages lie evenly spaced in one file (every page of a channel written with
        the same header size), the slab is filled by one strided copy instead of one per frame:
        fewer hand-overs of the GIL between the threads of a worker.

        Runs where the block is written (a task): the driver only reads IFDs and places frames.
        """
        (ny, nx), (cy, cx), n = self.frame_shape, tile, len(self.present)
        ty, tx = ny // cy, nx // cx
        crc = np.zeros((self.n_channels, n), np.uint32)
        total = np.zeros((self.n_channels, ty, tx, cy, cx), np.uint32)
        top = np.zeros((self.n_channels, ty, tx, cy, cx), np.uint16)
        slab = _scratch((ty, tx, frames, cy, cx), np.dtype("<u2"))  # this thread's: no page faults per block
        with self.frames() as frame:
            for c in range(self.n_channels):
                for k0 in range(0, n, frames):
                    k1 = min(k0 + frames, n)
                    run = frame.run(c, k0, k1)
                    if run is not None:  # (frames, y, x), evenly strided in one map
                        for j in range(k1 - k0):
                            crc[c, k0 + j] = pixel_crc32c(run[j])
                        slab[:, :, :k1 - k0] = run.reshape(k1 - k0, ty, cy, tx, cx).transpose(1, 3, 0, 2, 4)
                        del run
                    else:
                        for j in range(k1 - k0):
                            pixels = frame(c, k0 + j)
                            if pixels is None:
                                slab[:, :, j] = 0
                                continue
                            crc[c, k0 + j] = pixel_crc32c(pixels)
                            slab[:, :, j] = pixels.reshape(ty, cy, tx, cx).transpose(0, 2, 1, 3)
                            del pixels
                    slab[:, :, k1 - k0:] = 0
                    _add_summary(slab, total[c], top[c])
                    if on_slab is not None:
                        on_slab(c, k0 // frames, slab)
        untile = (0, 1, 3, 2, 4)  # (channel, y tile, x tile, y, x) -> (channel, y, x)
        return BlockSummary(self.plane, self.index, crc, total.transpose(untile).reshape(-1, ny, nx),
                            top.transpose(untile).reshape(-1, ny, nx), int(self.present.sum()))

    def summarize(self) -> BlockSummary:
        """crc32c per present frame (0 for absent ones) and this block's part of the summary images."""
        return self.scan(self.frame_shape, 1)

    def pixels(self) -> np.ndarray:
        """``(channel, time, y, x)`` of every frame (0 where absent), in fresh memory."""
        out = np.zeros((self.n_channels, len(self.present), *self.frame_shape), np.uint16)
        with self.frames() as frame:
            for c in range(self.n_channels):
                for i in np.flatnonzero(self.present):
                    pixels = frame(c, int(i))
                    assert pixels is not None  # present
                    out[c, i] = pixels
        return out


class _Pages:
    """The frames of one :class:`Block` while its files are mapped (see :meth:`Block.frames`)."""

    def __init__(self, block: Block):
        self.block = block
        self.maps: dict[int, Any] = {}

    def _map(self, k: int) -> Any:
        if k not in self.maps:
            self.maps[k] = _open_ref(self.block.files[k])
        return self.maps[k]

    def __call__(self, c: int, i: int) -> np.ndarray | None:
        """Channel ``c``'s ``(y, x)`` pixels of frame ``i``, or None if it is absent."""
        b = self.block
        if not b.present[i]:
            return None
        k = int(b.file[i])
        if k < 0:
            assert b.data is not None
            return b.data[c, i]
        count = b.frame_shape[0] * b.frame_shape[1]
        return np.frombuffer(self._map(k), b.files[k].dtype, count, int(b.offset[c, i])).reshape(b.frame_shape)

    def run(self, c: int, i0: int, i1: int) -> np.ndarray | None:
        """Channel ``c``'s frames ``i0:i1`` as one ``(frames, y, x)`` view of a mapped file, if
        they are all present, in the same file and evenly spaced there; else None (read them
        one by one)."""
        b = self.block
        k = int(b.file[i0])
        if k < 0 or not b.present[i0:i1].all() or (b.file[i0:i1] != k).any():
            return None
        dtype = np.dtype(b.files[k].dtype)
        ny, nx = b.frame_shape
        size = ny * nx * dtype.itemsize
        offsets = b.offset[c, i0:i1]
        step = int(offsets[1] - offsets[0]) if i1 - i0 > 1 else size
        if step < size or (np.diff(offsets) != step).any() or int(offsets[-1]) + size > b.files[k].size:
            return None
        return np.ndarray((i1 - i0, ny, nx), dtype, buffer=self._map(k), offset=int(offsets[0]),
                          strides=(step, nx * dtype.itemsize, dtype.itemsize))

    def close(self) -> None:
        for m in self.maps.values():
            close_map(m)


_SCRATCH = threading.local()


def _add_summary(slab: np.ndarray, total: np.ndarray, top: np.ndarray) -> None:
    """Add a ``(tile_y, tile_x, frames, *tile)`` slab's sum over its frames to ``total``
    (uint32) and its max to ``top`` (uint16), through this thread's scratch buffers.

    The max comes first: where it times the frames fits in 16 bits (pixels below 4096 in a
    16-frame slab; the benchmark's frames stay below 1,500), the frames are summed in uint16,
    numpy's same-type add, exactly, instead of widening every pixel to uint32 as it adds (a
    16-frame 512 x 512 slab in cache: 1.2 -> 0.5 ms on this project's AMD VM); brighter slabs
    are summed in uint32."""
    part_max = np.maximum.reduce(slab, axis=2, out=_scratch(total.shape, np.dtype(np.uint16), "max"))
    if int(part_max.max(initial=0)) * slab.shape[2] <= np.iinfo(np.uint16).max:
        total += np.add.reduce(slab, axis=2, out=_scratch(total.shape, np.dtype(np.uint16), "sum"))
    else:
        total += np.add.reduce(slab, axis=2, dtype=np.uint32, out=_scratch(total.shape, np.dtype(np.uint32)))
    np.maximum(top, part_max, out=top)


def _scratch(shape: tuple[int, ...], dtype: np.dtype, name: str = "") -> np.ndarray:
    """A buffer of this thread, reused from block to block (contents undefined); ``name`` tells
    apart buffers of one shape and dtype used at once."""
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    key = (shape, dtype.str, name)
    if key not in buffers:
        buffers[key] = np.empty(shape, dtype)
    return buffers[key]


def _open_ref(ref: FileRef) -> Any:
    """A read-only map of a referenced TIFF, which must still have the size it had when parsed."""
    try:
        with open(ref.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size != ref.size:
                raise InconsistentSourceError(ref.path, f"changed during the conversion: it has {size} bytes, "
                                              f"{ref.size} when its pages were indexed", hint="convert again")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)  # read-only, any OS
    except OSError as exc:
        raise SourceFormatError(ref.path, f"cannot be read by the task writing its frames ({exc})",
                                hint="block tasks read the TIFFs by path: workers must see the same files "
                                "as the driver") from exc


@dataclass
class BlockSummary:
    """What the driver keeps of a written block: crc32c per frame, pixel sums and max, frame count."""

    plane: int
    index: int
    crc: np.ndarray  # (channel, time) uint32
    sum: np.ndarray  # (channel, y, x) uint32: at most 65535 x shard_frames per pixel
    max: np.ndarray  # (channel, y, x) uint16
    count: int


class BufferPool:
    """Reuses block buffers: filling a fresh array pays a page fault per 4 kB (measured 15x
    slower than refilling a used one), so buffers go back here once their block is written."""

    def __init__(self) -> None:
        self.free: dict[tuple[int, ...], list[np.ndarray]] = {}

    def take(self, shape: tuple[int, ...]) -> np.ndarray:
        stack = self.free.get(shape)
        return stack.pop() if stack else np.empty(shape, np.uint16)

    def give(self, block: Block) -> None:
        if block.data is not None:
            self.free.setdefault(block.data.shape, []).append(block.data)
            block.data = None


class _Assembler:
    """Collects one plan's frames into :class:`Block` s; keeps per-plane summary sums."""

    def __init__(self, plan: RawPlan, shape: tuple[int, int], channels: tuple[int, ...], shard_frames: int,
                 pool: BufferPool, by_reference: bool = True):
        self.plan, self.shape, self.channels, self.ts, self.pool = plan, shape, channels, shard_frames, pool
        self.by_reference = by_reference
        self.n_blocks = -(-plan.n_time // shard_frames)
        present = plan.file_index >= 0
        padded = np.zeros((plan.n_planes, self.n_blocks * shard_frames), bool)
        padded[:, : plan.n_time] = present
        self.remaining = padded.reshape(plan.n_planes, self.n_blocks, shard_frames).sum(axis=2)
        self.open: dict[tuple[int, int], Block] = {}
        self.sum = np.zeros((len(channels), plan.n_planes, *shape), np.uint64)
        self.max = np.zeros((len(channels), plan.n_planes, *shape), np.uint16)
        self.count = np.zeros(plan.n_planes, np.int64)
        self.crc = np.zeros((len(channels), plan.n_planes, plan.n_time), np.uint32)  # of every block written
        self.hashed = np.zeros((len(channels), plan.n_planes, plan.n_time), bool)
        self.seen: set[tuple[int, int]] = set()
        self.warnings: list[str] = []

    def add(self, plane: int, file: int, stack: TiffStack) -> list[Block]:
        """Place every indexed frame of ``stack`` (file ``file`` of ``plane``); return full blocks."""
        self.seen.add((plane, file))
        times, frames = self.placed(plane, file)
        self._check(stack, plane, times, frames)
        touched = set()
        ref = None
        if self.by_reference and stack.path is not None and stack.page_offset(0) is not None and stack.dtype.kind == "u" \
                and stack.dtype.itemsize == 2:  # a plain uint16 file: the task reads its pages itself
            ref = FileRef(os.fspath(stack.path), stack.size, stack.dtype.str)
        for t, f in zip(times.tolist(), frames.tolist(), strict=True):
            b, i = divmod(t, self.ts)
            block = self._block(plane, b)
            if ref is not None:
                block.file[i] = block.file_ref(ref)
                for c, channel in enumerate(self.channels):
                    block.offset[c, i] = stack.page_offset(f, channel)
            else:
                if block.data is None:
                    block.data = self.pool.take((len(self.channels), len(block.present), *self.shape))
                for c, channel in enumerate(self.channels):
                    block.data[c, i] = stack.frame(f, channel)
            block.present[i] = True
            self.remaining[plane, b] -= 1
            touched.add(b)
        return [self._close(plane, b) for b in sorted(touched) if self.remaining[plane, b] == 0]

    def placed(self, plane: int, file: int) -> tuple[np.ndarray, np.ndarray]:
        """``(times, frames)``: where the index places the frames of file ``file`` of ``plane``."""
        times = np.flatnonzero(self.plan.file_index[plane] == file)
        return times, self.plan.frame_index[plane, times]

    def _check(self, stack: TiffStack, plane: int, times: np.ndarray, frames: np.ndarray) -> None:
        where = f"{self.plan.path.replace('raw/', 'imaging/')} plane {int(self.plan.coords['plane'][plane])}"
        if stack.frame_shape != self.shape:
            raise InconsistentSourceError(stack.name, f"frames are {stack.frame_shape[0]}x{stack.frame_shape[1]} "
                                          f"but {where} has {self.shape[0]}x{self.shape[1]} frames", field="frame 1")
        if len(frames) and frames.max() >= stack.n_frames:
            bad = int(np.argmax(frames >= stack.n_frames))
            raise InconsistentSourceError(
                stack.name, f"holds {stack.n_frames} frames ({stack.n_pages} pages, {stack.n_channels} channels) but "
                f"sourceFileFrameIdx of {where} places its frame {int(frames[bad]) + 1} at time index {int(times[bad])}",
                field=f"frame {int(frames[bad]) + 1}", hint="the file is truncated or the index belongs to another file")
        unused = stack.n_frames - len(np.unique(frames))
        if unused > 0:
            self.warnings.append(f"{stack.name}: {unused} of its {stack.n_frames} frames are not in the index of "
                                 f"{where} and were not converted")

    def _block(self, plane: int, b: int) -> Block:
        if (plane, b) not in self.open:
            n = min(self.ts, self.plan.n_time - b * self.ts)
            self.open[(plane, b)] = Block(plane, b, b * self.ts, np.zeros(n, bool), self.shape, [],
                                          np.full(n, -1, np.int64), np.zeros((len(self.channels), n), np.int64))
        return self.open[(plane, b)]

    def _close(self, plane: int, b: int) -> Block:
        return self.open.pop((plane, b))

    def accumulate(self, summary: BlockSummary) -> None:
        """Add a written block's sums and max to the plane's summary images; keep its crc32c."""
        t = slice(summary.index * self.ts, summary.index * self.ts + summary.crc.shape[1])
        self.crc[:, summary.plane, t], self.hashed[:, summary.plane, t] = summary.crc, True
        self.sum[:, summary.plane] += summary.sum
        np.maximum(self.max[:, summary.plane], summary.max, out=self.max[:, summary.plane])
        self.count[summary.plane] += summary.count

    def mean(self) -> np.ndarray:
        """``(channel, plane, y, x)`` mean of the present frames (NaN for a plane with none)."""
        count = self.count[None, :, None, None]
        return np.where(count > 0, self.sum / np.maximum(count, 1), np.nan)

    def rest(self) -> list[Block]:
        """Blocks still open at the end of the stream (frames of absent files stay zero)."""
        return [self._close(*key) for key in sorted(self.open)]

    def absent_files(self) -> list[tuple[int, int]]:
        """(plane, file) named by the index but never seen in the source."""
        wanted = {(p, int(f)) for p in range(self.plan.n_planes) for f in np.unique(self.plan.file_index[p]) if f >= 0}
        return sorted(wanted - self.seen)


# --------------------------------------------------------------------------------------------
# template and region writes
# --------------------------------------------------------------------------------------------


def _array(group: zarr.Group, name: str) -> zarr.Array:
    """``group[name]``, which must be an array (KeyError otherwise)."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise KeyError(f"{group.path}/{name} is a group, expected an array")
    return node


def _values(group: zarr.Group, name: str, key: Any = slice(None)) -> np.ndarray:
    return np.asarray(_array(group, name)[key])


def _divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` not above ``at_most`` (inner chunks must tile a shard)."""
    return next(d for d in range(min(n, at_most), 0, -1) if n % d == 0)


def create_template(store: Any, plan: RawPlan, shape: tuple[int, int], names: tuple[str, ...],
                    layout: RawLayout) -> zarr.Group:
    """Coords (xarray), then the sharded stacks and per-frame arrays (zarr), all fill 0,
    replacing anything under ``plan.path``.

    Built in memory and put at once (:func:`~.write.put_group`, the group's ``zarr.json`` last):
    the same objects as building it in ``store`` directly, without the ~25 zarr round trips of
    ~2 ms each to a local folder, while no block task can start yet.
    """
    staged: dict[str, Any] = {}
    _build_template(zarr.storage.MemoryStore(staged), plan, shape, names, layout)
    write.put_group(store, plan.path, staged)
    return zarr.open_group(store, path=plan.path, mode="r+", zarr_format=3)


def _build_template(store: Any, plan: RawPlan, shape: tuple[int, int], names: tuple[str, ...],
                    layout: RawLayout) -> None:
    with _quiet():
        plan.coords.to_zarr(store, group=plan.path, mode="w", zarr_format=3, consolidated=False)
    group = zarr.open_group(store, path=plan.path, mode="r+", zarr_format=3)
    (n_p, n_t), (ny, nx), ts = plan.file_index.shape, shape, layout.shard_frames
    shards, chunks = layout.shapes(shape)
    small = [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")]  # one chunk per block, put directly (write_block)
    per_frame: dict[str, Any] = {"shape": (n_p, n_t), "chunks": (1, ts), "dimension_names": ("plane", "time"),
                                 "compressors": small}
    for name in names:
        group.create_array(name, shape=(n_p, n_t, ny, nx), dtype="uint16", chunks=chunks, shards=shards,
                           compressors=[BloscCodec(cname=layout.cname, clevel=layout.clevel,  # type: ignore[arg-type]
                                                   shuffle="shuffle")],
                           fill_value=0, dimension_names=("plane", "time", "y", "x"), attributes={
                               "coordinates": "trial frame_time", "units": "counts",
                               "description": f"registered {name} frames (TIFF pages {'even' if name == 'green' else 'odd'})"
                               ", placed by sourceFileFrameIdx; 0 where frame_present is false"})
        group.create_array(f"{name}_crc32c", dtype="uint32", fill_value=0, **per_frame, attributes={
            "description": f"crc32c of each {name} frame's little-endian uint16 pixels, as read from the TIFF "
                           "(0 where absent)"})
    group.create_array("frame_present", dtype="bool", fill_value=False, **per_frame, attributes={
        "description": "the frame was read from its TIFF (false: NaN index or absent file, pixels are 0)"})
    n_blocks = -(-n_t // ts)
    group.create_array("block_written", shape=(n_p, n_blocks), chunks=(1, 1), dtype="bool", fill_value=False,
                       dimension_names=("plane", "block"), compressors=small)
    group.attrs.update(layout=layout.to_attrs(), channels=list(names), frame_shape=list(shape))


def write_block(url: str, path: str, names: tuple[str, ...], block: Block, token: str | None = None) -> BlockSummary:
    """Task: write one block (whole shards of one plane), its crc32c and presence, then mark it.

    The frames are read once (:meth:`Block.scan`): each slab of inner-chunk-deep frames is
    compressed chunk by chunk into the shards' parts while it is in cache. ``token`` names the
    conversion: its tasks in one process open the store and arrays once (:func:`_target`).
    """
    store, arrays = _target(url, path, names, token) if token else _target.__wrapped__(url, path, names, token)
    stacks = [arrays[name] for name in names]
    shards = _ShardParts.of(stacks, block, PartSink(store))
    if shards is not None:
        try:
            summary = block.scan(shards.tile, shards.frames, shards.add)
        except BaseException:
            shards.sink.abort()
            raise
        shards.close()
    else:  # a layout shards.py does not encode (an older store being resumed): through zarr
        summary = block.summarize()
        pixels = block.pixels()
        for c, stack in enumerate(stacks):
            stack.with_config({"write_empty_chunks": True})[block.plane, block.t0: block.t0 + pixels.shape[1]] = pixels[c]
    small: dict[str, Any] = {}  # the block's one chunk of each per-frame array, put at once
    for c, name in enumerate(names):
        _put_region(arrays[f"{name}_crc32c"], (block.plane, block.t0), summary.crc[c][None], small)
    _put_region(arrays["frame_present"], (block.plane, block.t0), block.present[None], small)
    put_many(store, small)
    marker: dict[str, Any] = {}
    _put_region(arrays["block_written"], (block.plane, block.index), np.ones((1, 1), bool), marker)
    put_many(store, marker)  # last: the block counts as written only once all of it is stored
    return summary


@functools.lru_cache(maxsize=8)
def _target(url: str, path: str, names: tuple[str, ...], token: str | None) -> tuple[Any, dict[str, zarr.Array]]:
    """The store and the arrays a block task writes, opened once per process and conversion
    (``token``): opening them (reading each ``zarr.json``) was ~5 ms of every task."""
    store = write.open_store(url, options_for(url), mode="w")
    keys = [*names, *(f"{name}_crc32c" for name in names), "frame_present", "block_written"]
    return store, {key: zarr.open_array(store, path=f"{path}/{key}", mode="r+", zarr_format=3) for key in keys}


class _ShardParts:
    """The shards of one block (one plane, ``shard_frames`` frames) of every channel, built from
    the slabs of :meth:`Block.scan`: each inner chunk is compressed as it comes and goes to its
    shard object in ``sink``; :meth:`close` ends each object with its index."""

    def __init__(self, codec: Any, shard: tuple[int, ...], chunk: tuple[int, ...], block: Block,
                 arrays: list[zarr.Array], sink: PartSink):
        self.compress, self.sink = BloscInto(codec), sink
        self.frames, self.tile = chunk[1], (chunk[2], chunk[3])
        self.per_shard = (shard[2] // chunk[2], shard[3] // chunk[3])  # inner chunk tiles per shard, y and x
        grid = list(itertools.product(range(block.frame_shape[0] // shard[2]), range(block.frame_shape[1] // shard[3])))
        t = block.t0 // shard[1]
        self.keys = [{pos: chunk_key(array, (block.plane, t, *pos)) for pos in grid} for array in arrays]
        self.index = [{pos: shard_index(shard, chunk) for pos in grid} for _ in arrays]
        self.offset = [dict.fromkeys(grid, 0) for _ in arrays]

    @classmethod
    def of(cls, arrays: list[zarr.Array], block: Block, sink: PartSink) -> _ShardParts | None:
        """For ``arrays`` (one per channel) when their layout is one ``shards.py`` encodes and one
        block is whole shards of one plane with inner chunks tiling its frames, else None."""
        layout = sharded_layout(arrays[0])  # numcodecs codecs compare by their configuration
        if layout is None or any((sharded_layout(a), a.shape, a.dtype) != (layout, arrays[0].shape, arrays[0].dtype)
                                 for a in arrays[1:]):
            return None
        codec, shard, chunk = layout
        array, (ny, nx) = arrays[0], block.frame_shape
        whole = (len(shard) == 4 and shard[0] == chunk[0] == 1 and block.t0 % shard[1] == 0
                 and (len(block.present) == shard[1] or block.t0 + len(block.present) == array.shape[1])
                 and shard[1] % chunk[1] == 0 and shard[2] % chunk[2] == 0 and shard[3] % chunk[3] == 0
                 and ny % shard[2] == 0 and nx % shard[3] == 0 and array.shape[2:] == (ny, nx)
                 and np.dtype(array.dtype) == np.uint16 and array.fill_value == 0)
        return cls(codec, shard, chunk, block, arrays, sink) if whole else None

    def add(self, c: int, k: int, slab: np.ndarray) -> None:
        """Compress the inner chunks of slab ``k`` (frames ``k * chunk_frames``...) of channel ``c``."""
        py, px = self.per_shard
        for yy in range(slab.shape[0]):
            for xx in range(slab.shape[1]):
                blob = self.compress(slab[yy, xx])
                pos, inner = (yy // py, xx // px), (0, k, yy % py, xx % px)
                self.index[c][pos][inner] = (self.offset[c][pos], len(blob))
                self.sink.add(self.keys[c][pos], blob)
                self.offset[c][pos] += len(blob)

    def close(self) -> None:
        """End every shard object with its index (inner chunks never added stay empty)."""
        self.sink.close({key: index_parts(self.index[c][pos]) for c, keys in enumerate(self.keys)
                         for pos, key in keys.items()})


def _put_region(array: zarr.Array, start: tuple[int, ...], values: np.ndarray, blobs: dict[str, Any]) -> None:
    """Add the chunk objects of ``values`` at ``start`` of ``array`` to ``blobs``, or write them
    through zarr when its layout is not one :func:`~.shards.region_chunks` encodes (a store from
    an older version being resumed)."""
    chunks = region_chunks(array, start, values)
    if chunks is None:
        array[tuple(slice(s, s + n) for s, n in zip(start, values.shape, strict=True))] = values
    else:
        blobs.update(chunks)


def _resumable(store: Any, plan: RawPlan, names: tuple[str, ...], layout: RawLayout) -> zarr.Group | None:
    """The group of an interrupted attempt, when its template matches this plan and layout."""
    try:
        group = zarr.open_group(store, path=plan.path, mode="r+", zarr_format=3)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return None
    keys = set(group.array_keys())
    same = ("block_written" in keys and all(n in keys for n in names) and group.attrs.get("layout") == layout.to_attrs()
            and _array(group, names[0]).shape[:2] == plan.file_index.shape)
    return group if same else None


# --------------------------------------------------------------------------------------------
# the raw stacks pass (write or verify)
# --------------------------------------------------------------------------------------------


class RawStacks:
    """Feeds TIFF members to one :class:`_Assembler` per plan; full blocks go to ``_emit``.

    With ``hash_files``, each TIFF's whole-file crc32c (its provenance record) is put together
    (:mod:`~sscxr_conversion.crc`) from the crc32c of the pages the block tasks convert (they
    hash each frame anyway) and of the bytes between those pages, which a thread of its own hashes
    while the driver places the next file's frames (crc32c releases the GIL).
    :meth:`source_records` waits for both. Hashing whole files again was ~15% of a conversion's
    CPU time (green only: the thread still hashes the red pages).
    """

    hash_files = True
    by_reference = True  # blocks refer to TIFF files by path (the tasks can read them)

    def __init__(self, plans: list[RawPlan], spec: ConversionSpec, layout: RawLayout):
        self.plans, self.spec, self.layout = plans, spec, layout
        self.channels = (0, 1) if spec.red else (0,)
        self.names = CHANNELS[: len(self.channels)]
        self.index = FileIndex(plans)
        self.assemblers: dict[int, _Assembler] = {}
        self.pool = BufferPool()
        self.records: dict[int, list[str]] = {i: [] for i in range(len(plans))}  # member names
        self._hashes: dict[str, Future[tuple[int, list[int]]]] = {}
        self._pages: dict[str, _TaskPages] = {}
        self._records: dict[str, dict[str, Any]] = {}
        self._hasher: ThreadPoolExecutor | None = None
        self.warnings: dict[int, list[str]] = {i: [] for i in range(len(plans))}

    def wants(self, name: str) -> bool:
        return bool(self.index.lookup(name))

    def order(self, name: str) -> tuple:
        return (0, *min(self.index.lookup(name)))

    def add(self, name: str, source: bytes | Path) -> None:
        """Place the frames of one TIFF member wherever the index names it."""
        with open_stack(source, name=name) as stack:
            if self.hash_files and name not in self._hashes:
                if self._hasher is None:
                    self._hasher = ThreadPoolExecutor(1, thread_name_prefix="sscxr-tiff-crc")
                self._pages[name] = pages = self._task_pages(name, stack)
                self._hashes[name] = self._hasher.submit(_gap_crcs, name, source, pages)
            for i, plane, file in self.index.lookup(name):
                if name not in self.records[i]:
                    self.records[i].append(name)
                for block in self._assembler(i, stack.frame_shape).add(plane, file, stack):
                    self._emit(i, block)

    def _task_pages(self, name: str, stack: TiffStack) -> _TaskPages:
        """The pages of ``stack`` whose crc32c the block tasks compute: the converted channels'
        frames the index places, when the task hashes the very bytes of the file (uncompressed
        little-endian uint16 pages, each one run; else none, and the whole file is hashed)."""
        page = stack.frame_shape[0] * stack.frame_shape[1] * stack.dtype.itemsize
        at: dict[int, tuple[int, int, int, int]] = {}
        if stack.page_offset(0) is not None and stack.dtype == np.dtype("<u2"):
            for i, plane, file in self.index.lookup(name):
                times, frames = self._assembler(i, stack.frame_shape).placed(plane, file)
                for t, f in zip(times.tolist(), frames.tolist(), strict=True):
                    if f < stack.n_frames:  # else the assembler raises, naming the file
                        for c, channel in enumerate(self.channels):
                            at.setdefault(cast(int, stack.page_offset(f, channel)), (i, c, plane, t))
        starts = np.array(sorted(at), np.int64)
        if len(starts) > 1 and np.diff(starts).min() < page:  # overlapping pages: hash it all
            starts = starts[:0]
        return _TaskPages(starts, page, [at[int(s)] for s in starts])

    def source_records(self, i: int) -> list[dict[str, Any]]:
        """``{name, size, crc32c}`` of plan ``i``'s TIFFs, in the order they were read (after
        every block is written: the crc32c of their pages come from the block tasks)."""
        return [self._record(name) for name in self.records[i]]

    def _record(self, name: str) -> dict[str, Any]:
        if name not in self._records:
            size, gaps = self._hashes[name].result()
            pages = self._pages[name]
            begins, ends = pages.gaps(size)
            parts = [(gaps[0], ends[0] - begins[0])]
            for k, (i, c, plane, t) in enumerate(pages.keys):
                asm = self.assemblers[i]
                if not asm.hashed[c, plane, t]:
                    raise RuntimeError(f"{name}: the crc32c of page {k} (plane {plane}, time {t}) was never computed")
                parts += [(int(asm.crc[c, plane, t]), pages.page), (gaps[k + 1], ends[k + 1] - begins[k + 1])]
            self._records[name] = {"name": name, "size": size, "crc32c": f"{concat_crc32c(parts):08x}"}
        return self._records[name]

    def close(self) -> None:
        """Stop the hashing thread (pending hashes are dropped; call after :meth:`source_records`)."""
        if self._hasher is not None:
            self._hasher.shutdown(wait=True, cancel_futures=True)
            self._hasher = None

    def _assembler(self, i: int, shape: tuple[int, int] | None) -> _Assembler:
        if i not in self.assemblers:
            shape = self._start(i, shape or self.plans[i].frame_shape or (512, 512))
            self.assemblers[i] = _Assembler(self.plans[i], shape, self.channels, self.layout.shard_frames, self.pool,
                                            self.by_reference)
        return self.assemblers[i]

    def close_blocks(self) -> None:
        """End of stream: subvolumes without any TIFF, absent files, the last blocks.

        A subvolume none of whose TIFFs is in the source is skipped with a warning (raw data is
        published per FOV); none at all is an error unless ``allow_missing``. A subvolume with
        some of its files absent is an error naming the first, or with ``allow_missing`` its
        frames of those files are 0 and masked.
        """
        unseen = [i for i in range(len(self.plans)) if i not in self.assemblers]
        if self.plans and len(unseen) == len(self.plans) and not self.spec.allow_missing:
            plan = self.plans[0]
            raise SourceFormatError(plan.files[0][0], f"is named in sourceFileList of "
                                    f"{plan.path.replace('raw/', 'imaging/')}, but --raw found none of the "
                                    f"{sum(len(f) for p in self.plans for f in p.files)} listed TIFF files in the "
                                    "source", hint="point SRC at the session folder or tarball that holds "
                                    "imaging_data/, or convert with --no-raw (or --allow-missing)")
        for i in unseen:
            self.warnings[i].append(f"{self.plans[i].path}: none of its {sum(map(len, self.plans[i].files))} TIFF "
                                    "files is in the source; not written")
        for i in sorted(self.assemblers):
            plan, asm = self.plans[i], self.assemblers[i]
            absent = asm.absent_files()
            if absent:
                self._absent(plan, absent, i)
            for block in asm.rest():
                self._emit(i, block)
            self.warnings[i] += asm.warnings

    def _absent(self, plan: RawPlan, absent: list[tuple[int, int]], i: int) -> None:
        plane, file = absent[0]
        times = np.flatnonzero(plan.file_index[plane] == file)
        ppp = int(plan.coords["plane"][plane])
        if not self.spec.allow_missing:
            raise SourceFormatError(plan.files[plane][file], f"is named in sourceFileList of "
                                    f"{plan.path.replace('raw/', 'imaging/')} plane {ppp} (frames at time index "
                                    f"{int(times[0])}..{int(times[-1])}) but is not in the source",
                                    field=f"frame {int(plan.frame_index[plane, times[0]]) + 1}",
                                    hint=f"{len(absent)} listed file(s) are absent; pass --allow-missing to "
                                    "convert with their frames masked (frame_present = false)")
        for plane, file in absent:
            n = int((plan.file_index[plane] == file).sum())
            self.warnings[i].append(f"{plan.path}: {plan.files[plane][file]} (plane "
                                    f"{int(plan.coords['plane'][plane])}) is absent from the source; its {n} "
                                    "frame(s) are 0 and masked (frame_present = false)")

    def _start(self, i: int, shape: tuple[int, int]) -> tuple[int, int]:
        return shape

    def _emit(self, i: int, block: Block) -> None:
        raise NotImplementedError


class RawWriter(RawStacks):
    """Writes the raw groups of the plans not yet ``done``; blocks already written (resume) are
    checked against the source instead of rewritten."""

    def __init__(self, plans: list[RawPlan], spec: ConversionSpec, layout: RawLayout, *, store: Any, url: str,
                 pipe: Pipe, done: set[str]):
        super().__init__([p for p in plans if p.path not in done], spec, layout)
        self.store, self.url, self.pipe = store, url, pipe
        self.token = uuid.uuid4().hex  # this conversion's tasks share their opened arrays (write_block)
        self.groups: dict[int, zarr.Group] = {}
        self.done_blocks: dict[int, np.ndarray] = {}

    def _start(self, i: int, shape: tuple[int, int]) -> tuple[int, int]:
        plan = self.plans[i]
        group = _resumable(self.store, plan, self.names, self.layout)
        if group is None:
            group = create_template(self.store, plan, shape, self.names, self.layout)
            done = np.zeros(_array(group, "block_written").shape, bool)  # none yet: no need to read them
        else:
            done = _values(group, "block_written")
        self.groups[i], self.done_blocks[i] = group, done
        ny, nx = _array(group, self.names[0]).shape[2:]
        return ny, nx

    def _emit(self, i: int, block: Block) -> None:
        asm = self.assemblers[i]
        if self.done_blocks[i][block.plane, block.index]:
            summary = block.summarize()
            self._check_unchanged(i, block, summary)
            asm.accumulate(summary)
            self.pool.give(block)
        else:
            self.pipe.submit(write_block, self.url, self.plans[i].path, self.names, block, self.token,
                             then=partial(self._written, asm, block))

    def _written(self, asm: _Assembler, block: Block, summary: BlockSummary) -> None:
        asm.accumulate(summary)
        self.pool.give(block)

    def _check_unchanged(self, i: int, block: Block, summary: BlockSummary) -> None:
        t = slice(block.t0, block.t0 + len(block.present))
        for c, name in enumerate(self.names):
            if not np.array_equal(_values(self.groups[i], f"{name}_crc32c", (block.plane, t)), summary.crc[c]):
                raise StoreExistsError(
                    f"{self.url}: the {name} frames {t.start}..{t.stop - 1} of {self.plans[i].path} plane "
                    f"{int(self.plans[i].coords['plane'][block.plane])} written by the interrupted conversion differ "
                    "from the source TIFFs now; the source changed, so --resume cannot finish it (use --overwrite)")

    def finish(self) -> list[str]:
        """Close the last blocks, wait for every write, then summaries and markers per group."""
        self.close_blocks()
        self.pipe.drain()
        return [self._finish_group(i) for i in sorted(self.assemblers)]

    def _finish_group(self, i: int) -> str:
        """The summary images, then the group's attrs, marked written (its ``zarr.json`` last).

        Built in a memory store and put at once, as :func:`create_template` is: this runs after
        the last block, when nothing else is left to overlap the ~10 zarr round trips with.
        """
        plan, asm, group = self.plans[i], self.assemblers[i], self.groups[i]
        mean = asm.mean()
        image: dict[str, Any] = {"chunks": (1, *mean.shape[2:]), "dimension_names": ("plane", "y", "x"), "overwrite": True,
                                 "compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]}  # in the serial tail: fast
        staged: dict[str, Any] = {}
        stage = zarr.open_group(zarr.storage.MemoryStore(staged), path=plan.path, mode="w", zarr_format=3)
        for c, name in enumerate(self.names):
            stage.create_array(f"{name}_mean", data=mean[c], **image,
                               attributes={"units": "counts", "description": f"mean of the present {name} frames"})
            stage.create_array(f"{name}_max", data=asm.max[c], **image,
                               attributes={"units": "counts", "description": f"max of the {name} frames"})
        attrs = {**group.attrs.asdict(), "source_files": self.source_records(i), "warnings": self.warnings[i],
                 "frames_present": asm.count.tolist(),
                 "description": "registered imaging frames; raw frame t is the same instant as dff frame t "
                 "of the imaging subvolume (docs/raw.md)", write.WRITTEN: True}
        meta = dataclasses.replace(group.metadata, attributes=attrs)  # the staged group's own doc is empty
        staged[f"{plan.path}/zarr.json"] = meta.to_buffer_dict(default_buffer_prototype())["zarr.json"]
        sync(self.store.delete_dir(f"{plan.path}/block_written"))  # the per-block resume markers are done with
        write.put_group(self.store, plan.path, staged, replace=False)  # the arrays, then the group's zarr.json
        return plan.path


class RawVerifier(RawStacks):
    """Re-reads the TIFFs and compares every frame (crc32c of source, stored crc, store pixels)."""

    hash_files = False  # frames are compared one by one; the files' records are the writer's

    def __init__(self, plans: list[RawPlan], spec: ConversionSpec, layout: RawLayout, *, store: Any):
        super().__init__(plans, spec, layout)
        self.store = store
        self.problems: list[str] = []

    def _start(self, i: int, shape: tuple[int, int]) -> tuple[int, int]:
        try:
            group = zarr.open_group(self.store, path=self.plans[i].path, mode="r", zarr_format=3)
            ny, nx = _array(group, self.names[0]).shape[2:]
            return ny, nx
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            self.problems.append(f"/{self.plans[i].path}: group or {self.names[0]} missing from the store")
            return shape

    def _emit(self, i: int, block: Block) -> None:
        try:
            self._compare(i, block)
        finally:
            self.pool.give(block)

    def _compare(self, i: int, block: Block) -> None:
        summary = block.summarize()
        self.assemblers[i].accumulate(summary)
        path, t = self.plans[i].path, slice(block.t0, block.t0 + len(block.present))
        try:
            group = zarr.open_group(self.store, path=path, mode="r", zarr_format=3)
            present = _values(group, "frame_present", (block.plane, t))
            stored = {name: (_values(group, name, (block.plane, t)), _values(group, f"{name}_crc32c", (block.plane, t)))
                      for name in self.names}
        except KeyError as exc:
            self.problems.append(f"/{path}: {exc} missing from the store")
            return
        where = f"/{path} plane index {block.plane} time {t.start}..{t.stop - 1}"
        if not np.array_equal(present, block.present):
            self.problems.append(f"{where}: frame_present differs from the source index and files")
        for c, name in enumerate(self.names):
            pixels, crc = stored[name]
            got = np.array([pixel_crc32c(f) if p else 0 for f, p in zip(pixels, present, strict=True)])
            bad = np.flatnonzero((got != summary.crc[c]) | (crc != summary.crc[c]))
            if bad.size:
                self.problems.append(f"{where}: {bad.size} {name} frame(s) differ from the TIFF pixels, first at time "
                                     f"{block.t0 + int(bad[0])}")

    def summaries(self) -> list[str]:
        """Compare the stored mean/max images with the ones recomputed from the source."""
        problems = []
        for i, plan in enumerate(self.plans):
            if i not in self.assemblers:
                if _has_group(self.store, plan.path):
                    problems.append(f"/{plan.path}: in the store, but none of its TIFFs is in the source")
                continue
            asm = self.assemblers[i]
            group = zarr.open_group(self.store, path=plan.path, mode="r", zarr_format=3)
            for c, name in enumerate(self.names):
                if not np.array_equal(_values(group, f"{name}_mean"), asm.mean()[c], equal_nan=True):
                    problems.append(f"/{plan.path}/{name}_mean: differs from the mean of the source frames")
                if not np.array_equal(_values(group, f"{name}_max"), asm.max[c]):
                    problems.append(f"/{plan.path}/{name}_max: differs from the max of the source frames")
        return problems


# --------------------------------------------------------------------------------------------
# whisker videos
# --------------------------------------------------------------------------------------------

MP4_CHUNK = 4 << 20  # bytes per chunk of /video/mp4 (uncompressed: mp4 is compressed already)


def _probe(data: bytes, name: str) -> VideoInfo:
    return probe_video(data, name=name)


class VideoWriter:
    """Appends each trial's mp4 to ``/video/mp4`` in whole chunks; decodes (indexes) it in a task."""

    path = "video"

    def __init__(self, groups: Mapping[str, xr.Dataset], *, store: Any, pipe: Pipe):
        trials, whisker = groups["trials"], groups.get("whisker")
        self.trial_ids = trials["trial"].values
        self.trial_start = dict(zip(self.trial_ids.tolist(), trials["start_time"].values.tolist(), strict=True))
        self.whisker = ((whisker["time"].values, whisker["trial"].values) if whisker is not None
                        else (np.zeros(0), np.zeros(0, np.int64)))
        self.store, self.pipe = store, pipe
        self.files: dict[int, VideoFile] = {}
        self.infos: dict[int, VideoInfo] = {}
        self.buffer, self.flushed = bytearray(), 0
        self.array: zarr.Array | None = None

    @staticmethod
    def wants(name: str) -> bool:
        return bool(MP4.search(name))

    def add(self, name: str, source: bytes | Path) -> None:
        data = _read(source)
        trial = trial_of(name, self.trial_ids)
        if trial in self.files:
            raise InconsistentSourceError(name, f"is a second video of trial {trial} (the first is "
                                          f"{self.files[trial].name})")
        self.files[trial] = VideoFile(trial, name, self.flushed + len(self.buffer), len(data), data_crc32c(data))
        if self.array is None:
            group = zarr.open_group(self.store, path=self.path, mode="w", zarr_format=3)
            self.array = group.create_array("mp4", shape=(0,), chunks=(MP4_CHUNK,), dtype="uint8", fill_value=0,
                                            compressors=None, dimension_names=("byte",), attributes={
                                                "description": "every trial's mp4 file, byte-exact, concatenated: "
                                                "trial k is mp4[byte_offset[k]:byte_offset[k] + byte_count[k]]"})
        self.buffer += data
        self._flush(len(self.buffer) // MP4_CHUNK * MP4_CHUNK)
        self.pipe.submit(_probe, data, name, then=partial(self.infos.__setitem__, trial))

    def _flush(self, n: int) -> None:
        if n == 0 or self.array is None:
            return
        chunk = np.frombuffer(bytes(self.buffer[:n]), np.uint8)
        self.array.resize((self.flushed + n,))
        self.array[self.flushed: self.flushed + n] = chunk
        del self.buffer[:n]
        self.flushed += n

    def finish(self) -> tuple[list[str], list[str]]:
        """Write the tail and the frame index, mark the group; ``(written, warnings)``."""
        if self.array is None:
            return [], ["no whisker video (*.mp4) found in the source: /video not written"]
        self._flush(len(self.buffer))
        self.pipe.drain()
        ds = video_index(list(self.files.values()), self.infos, self.trial_start, *self.whisker)
        with _quiet():
            ds.to_zarr(self.store, group=self.path, mode="a", zarr_format=3, consolidated=False)
        zarr.open_group(self.store, path=self.path, mode="r+", zarr_format=3).attrs[write.WRITTEN] = True
        return [self.path], []


class VideoVerifier:
    """Compares each source mp4 with the stored bytes, and its decoded frames with the frame index."""

    def __init__(self, store: Any):
        try:
            self.ds: xr.Dataset | None = xr.open_dataset(store, group="video", engine="zarr", consolidated=False,
                                                         chunks=None)
        except (KeyError, FileNotFoundError, OSError):
            self.ds = None
        self.problems: list[str] = []
        self.seen: set[int] = set()
        self.wants = VideoWriter.wants

    def add(self, name: str, source: bytes | Path) -> None:
        data = _read(source)
        if self.ds is None:
            self.problems.append(f"/video: missing from the store, but the source has {name}")
            return
        trial = trial_of(name, self.ds["trial"].values)
        self.seen.add(trial)
        row = self.ds.sel(trial=trial)
        start, size = int(row["byte_offset"]), int(row["byte_count"])
        if size != len(data) or self.ds["mp4"][start: start + size].values.tobytes() != data:
            self.problems.append(f"/video/mp4: the bytes of trial {trial} differ from {name}")
        info = probe_video(data, name=name, decode_format=str(row["decode_format"].values))
        frames = slice(int(row["first_frame"]), int(row["first_frame"]) + int(row["n_frames"]))
        for var, want in (("frame_pts", info.pts), ("frame_keyframe", info.keyframe), ("frame_crc32c", info.crc32c)):
            if not np.array_equal(self.ds[var][frames].values, want):
                self.problems.append(f"/video/{var}: trial {trial} differs from the decoded frames of {name}")

    def finish(self) -> list[str]:
        if self.ds is not None:
            for trial in sorted(set(self.ds["trial"].values.tolist()) - self.seen):
                self.problems.append(f"/video: trial {trial} is in the store but its mp4 is not in the source")
        return self.problems


@contextmanager
def _quiet() -> Iterator[None]:
    """xarray warns about variable-length strings having no zarr v3 spec; they are fine here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        yield


# --------------------------------------------------------------------------------------------
# the step the pipeline calls, and verification
# --------------------------------------------------------------------------------------------


def stream_raw(src: str | os.PathLike, stacks: RawStacks, videos: VideoWriter | VideoVerifier | None,
               tar_records: list[SourceRecord], bar: Any = None) -> None:
    """One pass over the raw members of ``src``: TIFFs to ``stacks``, mp4s to ``videos``.

    A folder (or the folder of a single ``.mat``) gives paths, TIFFs in index order; a tarball is
    streamed in archive order (members' bytes, one in memory at a time) and its own record (size,
    sha256) appended to ``tar_records`` at the end. ``bar`` counts the bytes taken
    (:func:`~.source.iter_members`).
    """
    def want(name: str) -> bool:
        return stacks.wants(name) or (videos is not None and videos.wants(name))

    def order(name: str) -> tuple:
        return stacks.order(name) if stacks.wants(name) else (1, name)

    if not stacks.plans and videos is None:
        if is_tar(src):
            tar_records.append(_hash_file(Path(src)))
        return
    path = Path(src)
    root = path if is_tar(path) or path.is_dir() else path.parent  # a single .mat: the TIFFs beside it
    for member in iter_members(root, want, tar_records, order=order, bar=bar):
        if stacks.wants(member.name):
            stacks.add(member.name, member.source)
        elif videos is not None:
            videos.add(member.name, member.source)


def _hash_file(path: Path) -> SourceRecord:
    with path.open("rb") as raw:
        hashing = HashingReader(raw)
        hashing.drain()
    return SourceRecord(path.name, hashing.size, hashing.sha.hexdigest())


@dataclass
class RawStep:
    """``--raw``: write ``/raw/subvolume_NN`` and ``/video`` from ``src`` (called by the pipeline,
    inside its task runner, before finalise). Adds the tarball's record and the warnings to
    ``attrs["provenance"]``.

    >>> step = RawStep("an197522_2013_03_08.tar.gz", groups, ConversionSpec(raw=True))  # doctest: +SKIP
    >>> step(store, url, run, done=set(), attrs=attrs, warnings=[])                      # doctest: +SKIP
    ['raw/subvolume_01', 'raw/subvolume_02', 'video']
    """

    src: str | os.PathLike
    groups: Mapping[str, xr.Dataset]
    spec: ConversionSpec
    layout: RawLayout = LAYOUT
    progress: bool = False  # a byte bar over the TIFFs and videos (or the tarball) as they are read

    def __call__(self, store: Any, url: str, run: Any, done: set[str], attrs: dict, messages: list[str]) -> list[str]:
        with _block_runner(run) as run:
            pipe = Pipe(run, limit=_in_flight(run))
            stacks = RawWriter(plan_raw(self.groups), self.spec, self.layout, store=store, url=url, pipe=pipe,
                               done=done)
            stacks.by_reference = _shares_files(run)
            videos = VideoWriter(self.groups, store=store, pipe=pipe) if self.spec.video and "video" not in done else None
            tar_records: list[SourceRecord] = []
            try:
                with closing(byte_bar(None, f"reading raw frames and videos of {Path(self.src).name}",
                                      enabled=self.progress)) as bar:
                    stream_raw(self.src, stacks, videos, tar_records, bar=bar)
                    written = stacks.finish()
            finally:
                stacks.close()
            video_written, video_warnings = videos.finish() if videos is not None else ([], [])
        new = [w for ws in stacks.warnings.values() for w in ws] + video_warnings + _done_warnings(store, done)
        attrs["provenance"]["sources"] += [r.to_dict() for r in tar_records]
        attrs["provenance"]["warnings"] += new
        messages += new
        return written + video_written


    def verify(self, store: Any, attrs: dict) -> list[str]:
        """``sscxr verify`` of the raw groups: see :func:`verify_raw`."""
        return verify_raw(self.src, store, self.groups, self.spec, attrs)


@contextmanager
def _block_runner(run: Any) -> Iterator[Any]:
    """Block tasks on local threads use every core: their work (crc32c, sums, Blosc) releases
    the GIL, unlike the xarray-heavy group writes the pipeline's single thread is sized for."""
    if getattr(run, "client", None) is not None or getattr(run, "pool", None) is None:
        yield run
        return
    threads = max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        yield Runner(pool=pool, max_pending=threads + 1)


def _shares_files(run: Any) -> bool:
    """Whether block tasks see this machine's files: local threads, or dask workers on this host
    (a LocalCluster, or a scheduler whose workers all run here). Otherwise the driver copies
    the frames into the blocks it sends."""
    client = getattr(run, "client", None)
    if client is None:
        return True
    import socket
    from urllib.parse import urlsplit

    here = {"127.0.0.1", "localhost", "::1", socket.gethostname()}
    try:
        here.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    workers = client.scheduler_info().get("workers", {})
    return bool(workers) and all(addr.startswith("inproc://") or urlsplit(addr).hostname in here for addr in workers)


def _in_flight(run: Any) -> int:
    if hasattr(run, "max_pending"):
        return int(run.max_pending)
    client = getattr(run, "client", None)
    if client is not None:
        return len(client.scheduler_info().get("workers", {})) + 1
    pool = getattr(run, "pool", None)
    return getattr(pool, "_max_workers", 1) + 1 if pool is not None else 1


def _done_warnings(store: Any, done: set[str]) -> list[str]:
    """Warnings recorded by raw groups written before a resume."""
    out: list[str] = []
    for path in sorted(p for p in done if p.startswith("raw/")):
        found = zarr.open_group(store, path=path, mode="r", zarr_format=3).attrs.get("warnings", [])
        out += [str(w) for w in found] if isinstance(found, list) else []
    return out


def verify_raw(src: str | os.PathLike, store: Any, groups: Mapping[str, xr.Dataset], spec: ConversionSpec,
               attrs: dict) -> list[str]:
    """Re-read the raw members of ``src`` and compare them with the store (see ``RawVerifier``).

    Adds the tarball's record to ``attrs["provenance"]["sources"]`` like the conversion did.
    """
    stacks = RawVerifier(plan_raw(groups), spec, _stored_layout(store, groups), store=store)
    videos = VideoVerifier(store) if spec.video else None
    tar_records: list[SourceRecord] = []
    stream_raw(src, stacks, videos, tar_records)
    stacks.close_blocks()
    attrs["provenance"]["sources"] += [r.to_dict() for r in tar_records]
    return stacks.problems + stacks.summaries() + (videos.finish() if videos is not None else [])


def _has_group(store: Any, path: str) -> bool:
    try:
        zarr.open_group(store, path=path, mode="r", zarr_format=3)
    except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False
    return True


def _stored_layout(store: Any, groups: Mapping[str, xr.Dataset]) -> RawLayout:
    for plan in plan_raw(groups):
        try:
            layout = zarr.open_group(store, path=plan.path, mode="r", zarr_format=3).attrs.get("layout")
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            continue
        if isinstance(layout, Mapping):
            return RawLayout.from_attrs(layout)
    return LAYOUT
