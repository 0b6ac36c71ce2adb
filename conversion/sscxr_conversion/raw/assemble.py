"""Assembling TIFF frames into :class:`~.blocks.Block` s, in the driver.

Input: one :class:`~sscxr_conversion.readers.tiff.RawPlan` (where the index places each frame
of each file) and the TIFFs as the stream (:mod:`.stream`) meets them. :class:`Assembler`
places each file's frames into the blocks of its plane and hands a block on as soon as all of
its frames are placed; it also keeps the per-plane sums, max and crc32c of the blocks written
(:meth:`Assembler.accumulate`), from which the summary images and the files' records come.
"""

from __future__ import annotations

import os

import numpy as np

from sscxr.errors import InconsistentSourceError

from ..readers.tiff import RawPlan, TiffStack
from .blocks import Block, BlockSummary, FileRef


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


class Assembler:
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
