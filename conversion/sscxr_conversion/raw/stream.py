"""The pass over the source: TIFFs to :class:`RawStacks`, mp4s to the video writer.

:func:`stream_raw` reads a session folder (TIFFs in index order) or a tarball (members in
archive order, one in memory at a time) once, through :func:`~sscxr_conversion.source.iter_members`.
:class:`RawStacks` looks each TIFF up in the imaging groups' source index
(:class:`~sscxr_conversion.readers.tiff.FileIndex`), places its frames with one
:class:`~.assemble.Assembler` per subvolume and hands full blocks to ``_emit``: the writer
(:mod:`.writer`) sends them to tasks, the verifier (:mod:`.verify`) compares them with the store.
It also puts together each TIFF's whole-file crc32c (:class:`TaskPages`, :func:`gap_crcs`).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from sscxr.errors import SourceFormatError

from ..crc import concat_crc32c, crc32c
from ..provenance import HashingReader, SourceRecord
from ..readers.tiff import CHANNELS, FileIndex, RawPlan, TiffStack, map_file, open_stack
from ..source import is_tar, iter_members
from ..spec import ConversionSpec
from .assemble import Assembler, BufferPool
from .blocks import Block
from .layout import RawLayout

if TYPE_CHECKING:
    from .video import VideoVerifier, VideoWriter


@dataclass
class TaskPages:
    """The pages of one TIFF that block tasks hash (their crc32c is the stored per-frame one):
    byte offsets ``starts`` (ascending, ``page`` bytes each, not overlapping) and, for each, the
    ``(plan, channel, plane, time)`` whose crc32c it is. Its whole-file crc32c is then put
    together from those and the hashes of the bytes between them (:func:`gap_crcs`), instead of
    reading the file a second time."""

    starts: np.ndarray
    page: int
    keys: list[tuple[int, int, int, int]]

    def gaps(self, size: int) -> tuple[list[int], list[int]]:
        """``(begin, end)`` byte offsets of the runs before, between and after the pages."""
        return [0, *(self.starts + self.page).tolist()], [*self.starts.tolist(), size]


def gap_crcs(name: str, source: bytes | Path, pages: TaskPages) -> tuple[int, list[int]]:
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


class RawStacks:
    """Feeds TIFF members to one :class:`Assembler` per plan; full blocks go to ``_emit``.

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
        self.assemblers: dict[int, Assembler] = {}
        self.pool = BufferPool()
        self.records: dict[int, list[str]] = {i: [] for i in range(len(plans))}  # member names
        self._hashes: dict[str, Future[tuple[int, list[int]]]] = {}
        self._pages: dict[str, TaskPages] = {}
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
                self._hashes[name] = self._hasher.submit(gap_crcs, name, source, pages)
            for i, plane, file in self.index.lookup(name):
                if name not in self.records[i]:
                    self.records[i].append(name)
                for block in self._assembler(i, stack.frame_shape).add(plane, file, stack):
                    self._emit(i, block)

    def _task_pages(self, name: str, stack: TiffStack) -> TaskPages:
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
        return TaskPages(starts, page, [at[int(s)] for s in starts])

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

    def _assembler(self, i: int, shape: tuple[int, int] | None) -> Assembler:
        if i not in self.assemblers:
            shape = self._start(i, shape or self.plans[i].frame_shape or (512, 512))
            self.assemblers[i] = Assembler(self.plans[i], shape, self.channels, self.layout.shard_frames, self.pool,
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
