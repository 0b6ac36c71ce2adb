"""A block: ``shard_frames`` frames of one plane, the unit a task writes (whole shards).

The driver (:mod:`.assemble`) fills a :class:`Block` with where each frame's pixels are: byte
offsets of pages in TIFFs the task maps itself (:class:`FileRef`), or pixels copied from
in-memory tarball members. The task reads every frame once (:meth:`Block.scan`): per-frame
crc32c, the block's sum and max images (:class:`BlockSummary`, which goes back to the driver)
and the pixels, slab by slab, for the shard encoder (:mod:`.blockwrite`).
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from sscxr.errors import InconsistentSourceError, SourceFormatError

from ..readers.tiff import close_map, pixel_crc32c


def is_big(value: Any) -> bool:
    """Task inputs scattered to a worker first rather than sent with the task: blocks holding
    pixels and large bytes. A block that refers to its TIFFs (a few kB of offsets) goes with the
    task: scattering it was a scheduler round trip per block (two warm workers: median 1.47 ->
    1.36 s for a 2.2 GB field of view)."""
    if isinstance(value, Block):
        return value.data is not None
    return isinstance(value, bytes) and len(value) > 1 << 20


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
