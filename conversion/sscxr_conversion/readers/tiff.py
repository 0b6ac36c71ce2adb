"""Raw layer for registered imaging TIFFs: frames of an interleaved two-channel stack.

ssc-1 registered stacks (``Image_Registration_4_<animal>_<date>_main_NNN.tif``, FORMATS.md §1.1)
interleave two channels page by page: even pages (0, 2, ...) are green, odd pages red, so frame
``f`` (0-based) is page ``2 f`` (green) and page ``2 f + 1`` (red). Pages are 512 x 512 uint16.

This module turns such a file (its bytes, or a path) into numpy frames and nothing else: no
dims, no store. Errors name the file, the frame and the problem.

>>> stack = open_stack(tiff_bytes, name="fov_01002/fluo_batch_out/x_main_001.tif")  # doctest: +SKIP
>>> stack.n_frames, stack.frame_shape                                                   # doctest: +SKIP
(120, (512, 512))
>>> green = stack.frame(0, channel=0)                                                   # doctest: +SKIP
"""

from __future__ import annotations

import io
import logging
import mmap
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import crc32c
import numpy as np
import tifffile
import xarray as xr

from sscxr.errors import InconsistentSourceError, SourceFormatError

CHANNELS = ("green", "red")
TIFF = re.compile(r"\.tiff?$", re.IGNORECASE)
_FOV_DIR = re.compile(r"(?:^|/)(fov_\d{5})(?:/|$)")
TRUNCATED_HINT = "the file is truncated or corrupt; download it again"


def pixel_crc32c(pixels: np.ndarray) -> int:
    """crc32c of an image's pixels as little-endian bytes, C order (what verify compares).

    >>> pixel_crc32c(np.zeros((2, 2), np.uint16))
    2351477386
    """
    return int(crc32c.crc32c(np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).data))


def close_map(data: mmap.mmap) -> None:
    """Close a file map, unless a frame view of it is still alive (then it closes when freed)."""
    try:
        data.close()
    except BufferError:
        pass


@dataclass
class TiffStack:
    """An opened interleaved TIFF: ``n_frames`` frames of ``n_channels`` pages each.

    Frames of uncompressed, contiguous pages are zero-copy views of the bytes, or of a read-only
    map of the file (made on the first :meth:`frame`: opening a file reads only its IFDs).
    """

    name: str
    n_channels: int
    n_pages: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    data: bytes | memoryview | mmap.mmap | None = field(repr=False)
    _offsets: np.ndarray | None = field(repr=False)
    _tif: tifffile.TiffFile = field(repr=False)
    path: Path | None = None
    size: int = 0

    @property
    def n_frames(self) -> int:
        """Number of whole frames (pages // channels)."""
        return self.n_pages // self.n_channels

    def page_offset(self, index: int, channel: int = 0) -> int | None:
        """Byte offset in the file of frame ``index``'s ``channel`` pixels when every page is one
        uncompressed run (the frame is then ``frame_shape`` pixels of ``dtype`` from there), else None."""
        if self._offsets is None:
            return None
        return int(self._offsets[index * self.n_channels + channel])

    def frame(self, index: int, channel: int = 0) -> np.ndarray:
        """Frame ``index`` (0-based) of ``channel`` (0 green, 1 red) as a ``(y, x)`` array.

        >>> stack.frame(3, channel=1).shape  # doctest: +SKIP
        (512, 512)
        """
        if not 0 <= index < self.n_frames:
            raise InconsistentSourceError(self.name, f"has {self.n_frames} frames ({self.n_pages} pages, "
                                          f"{self.n_channels} channels interleaved); frame {index + 1} "
                                          "(1-based) was asked for", field=f"frame {index + 1}")
        page = index * self.n_channels + channel
        if self._offsets is not None:
            if self.data is None:
                assert self.path is not None
                self.data = map_file(self.path, self.name)
            count = self.frame_shape[0] * self.frame_shape[1]
            return np.frombuffer(self.data, self.dtype, count, int(self._offsets[page])).reshape(self.frame_shape)
        with _tifffile_errors(self.name, f"frame {index + 1} (page {page + 1})"):
            return np.asarray(self._tif.pages[page].asarray()).reshape(self.frame_shape)

    def close(self) -> None:
        self._tif.close()
        if isinstance(self.data, mmap.mmap):
            close_map(self.data)

    def __enter__(self) -> TiffStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_stack(source: bytes | memoryview | str | os.PathLike, *, name: str | None = None,
               n_channels: int = len(CHANNELS)) -> TiffStack:
    """Open an interleaved TIFF from its bytes or a path; check every page is complete.

    Raises :class:`~sscxr.errors.SourceFormatError` naming the file (and the first bad frame)
    when the file is not a TIFF, is truncated, or its pages do not hold whole frames.
    """
    name = name or (os.fspath(source) if isinstance(source, str | os.PathLike) else "<bytes>")
    in_memory = isinstance(source, bytes | memoryview)
    data = source if isinstance(source, bytes | memoryview) else None
    size = len(source) if isinstance(source, bytes | memoryview) else _size(Path(source), name)
    with _tifffile_errors(name, "header") as logged:
        tif = tifffile.TiffFile(io.BytesIO(data) if in_memory else Path(source),  # type: ignore[arg-type]
                                name=Path(name).name)
        pages = tif.pages
        pages.useframes = True  # parse only offsets beyond the first page (16 ms per 1000 pages)
        pages.set_keyframe(0)
        n_pages = len(pages)
    if logged:  # tifffile logs a broken IFD chain and silently drops the pages after it
        frame = n_pages // n_channels + 1
        raise SourceFormatError(name, f"page list breaks after page {n_pages} ({logged[0]}); frame {frame} "
                                "and later are lost", field=f"frame {frame}", hint=TRUNCATED_HINT)
    if n_pages == 0:
        raise SourceFormatError(name, "holds no image pages", hint=TRUNCATED_HINT)
    key = pages.keyframe
    assert key is not None  # set_keyframe(0) above
    shape = (int(key.imagelength), int(key.imagewidth))
    dtype = np.dtype(key.dtype).newbyteorder(tif.byteorder)
    offsets = _contiguous_offsets(tif, size, shape, dtype, name, n_channels)
    if n_pages % n_channels:
        raise InconsistentSourceError(name, f"has {n_pages} pages, not a multiple of {n_channels} interleaved "
                                      f"channels; the last frame ({n_pages // n_channels + 1}) is incomplete",
                                      field=f"frame {n_pages // n_channels + 1}", hint=TRUNCATED_HINT)
    return TiffStack(name, n_channels, n_pages, shape, dtype, data, offsets, tif,
                     path=None if in_memory else Path(source), size=size)  # type: ignore[arg-type]


def _size(path: Path, name: str) -> int:
    try:
        return path.stat().st_size
    except OSError as exc:
        raise SourceFormatError(name, f"cannot be read ({exc})") from exc


def map_file(path: Path, name: str, *, populate: bool = True) -> mmap.mmap | bytes:
    """The file's bytes without a copy (read-only map of the page cache); ``b""`` when empty.
    ``populate``: map all of it at once (fewer faults when every byte is read)."""
    flags = mmap.MAP_SHARED | (getattr(mmap, "MAP_POPULATE", 0) if populate else 0)
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            return mmap.mmap(f.fileno(), 0, flags=flags, prot=mmap.PROT_READ)
    except OSError as exc:
        raise SourceFormatError(name, f"cannot be read ({exc})") from exc


def data_crc32c(data: bytes | memoryview | mmap.mmap) -> int:
    """crc32c of a whole file's bytes (bytes, memoryview or a read-only map).

    >>> data_crc32c(b"123456789") == 0xE3069283
    True
    """
    return int(crc32c.crc32c(data))


def _contiguous_offsets(tif: tifffile.TiffFile, size: int, shape: tuple[int, int], dtype: np.dtype, name: str,
                        n_channels: int) -> np.ndarray | None:
    """Byte offset of each page's pixels when every page is one uncompressed run, else ``None``.

    Also the truncation check: a page whose pixels run past the end of the file is an error.
    """
    expected = shape[0] * shape[1] * dtype.itemsize
    key = tif.pages.keyframe
    assert key is not None
    simple = key.compression == 1 and key.samplesperpixel == 1 and key.planarconfig in (1, 2)
    offsets = np.empty(len(tif.pages), dtype=np.int64)
    for i, page in enumerate(tif.pages):
        starts, counts = page.dataoffsets, page.databytecounts
        end = max((o + c for o, c in zip(starts, counts, strict=True)), default=0)
        if end > size or (simple and sum(counts) < expected) or not starts:
            frame = i // n_channels + 1
            raise SourceFormatError(name, f"page {i + 1} (frame {frame}) ends at byte {end} but the file has "
                                    f"{size} bytes", field=f"frame {frame}", hint=TRUNCATED_HINT)
        contiguous = len(starts) == 1 or all(starts[j] + counts[j] == starts[j + 1] for j in range(len(starts) - 1))
        if not (simple and contiguous and sum(counts) == expected):
            simple = False
        offsets[i] = starts[0]
    return offsets if simple else None


@contextmanager
def _tifffile_errors(name: str, where: str) -> Iterator[list[str]]:
    """Turn tifffile's exceptions into a SourceFormatError for ``name``; yield its logged errors."""
    handler = _Collect()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield handler.messages
    except Exception as exc:  # tifffile raises TiffFileError, ValueError, struct.error, ...
        if isinstance(exc, SourceFormatError):
            raise
        raise SourceFormatError(name, f"cannot be read as a TIFF at {where} ({type(exc).__name__}: {exc})",
                                field=where, hint=TRUNCATED_HINT) from exc
    finally:
        logger.removeHandler(handler)


class _Collect(logging.Handler):
    """Collects tifffile's error records (it logs, and drops pages, on a broken IFD chain)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def iter_frames(source: bytes | memoryview | str | os.PathLike, *, name: str | None = None,
                channels: tuple[int, ...] = (0,), n_channels: int = len(CHANNELS)
                ) -> Iterator[tuple[int, tuple[np.ndarray, ...]]]:
    """Yield ``(frame_index, (channel arrays...))`` for every frame, in file order.

    >>> for i, (green,) in iter_frames(path):  # doctest: +SKIP
    ...     ...
    """
    with open_stack(source, name=name, n_channels=n_channels) as stack:
        for i in range(stack.n_frames):
            yield i, tuple(stack.frame(i, c) for c in channels)


# --------------------------------------------------------------------------------------------
# labeling: where each raw frame of a subvolume comes from (sourceFileList, sourceFileFrameIdx)
# --------------------------------------------------------------------------------------------


@dataclass
class RawPlan:
    """One subvolume's raw stack: per plane, its files and (file, frame) per time index."""

    path: str
    coords: xr.Dataset
    files: list[list[str]]
    file_index: np.ndarray  # (plane, time), 0-based into files[plane], -1 missing
    frame_index: np.ndarray  # (plane, time), 0-based frame within that file
    frame_shape: tuple[int, int] | None = None

    @property
    def n_planes(self) -> int:
        return self.file_index.shape[0]

    @property
    def n_time(self) -> int:
        return self.file_index.shape[1]


def plan_raw(groups: Mapping[str, xr.Dataset]) -> list[RawPlan]:
    """A :class:`RawPlan` per imaging subvolume that names source files.

    >>> plans = plan_raw(groups)          # doctest: +SKIP
    >>> plans[0].path                     # doctest: +SKIP
    'raw/subvolume_01'
    """
    plans = []
    for name in sorted(k for k in groups if k.startswith("imaging/") and k.count("/") == 1):
        ds = groups[name]
        if "source_file" not in ds or not ds.sizes.get("file", 0):
            continue
        names = [[str(f) for f in row if str(f)] for row in ds["source_file"].values]
        coords = xr.Dataset(coords={k: ds.coords[k] for k in ("time", "trial", "plane", "frame_time") if k in ds.coords})
        file_index = ds["source_file_index"].values.astype(np.int64)
        frame_index = ds["source_frame_index"].values.astype(np.int64)
        file_index[frame_index < 0] = -1  # a frame needs both its file and its frame number
        plans.append(RawPlan(name.replace("imaging/", "raw/"), coords, names, file_index,
                             frame_index, _master_shape(groups.get(f"{name}/rois"))))
    return plans


def _master_shape(rois: xr.Dataset | None) -> tuple[int, int] | None:
    if rois is None or "master_image" not in rois:
        return None
    return int(rois.sizes["y"]), int(rois.sizes["x"])


def file_key(path: str) -> tuple[str, str]:
    """``(fov_VVPPP folder or "", base name)``: how a listed TIFF path meets an archive member.

    >>> file_key(r"D:\\data\\imaging_data\\fov_01002\\fluo_batch_out\\x_main_001.tif")
    ('fov_01002', 'x_main_001.tif')
    """
    p = path.replace("\\", "/")
    fov = _FOV_DIR.search(p)
    return (fov.group(1) if fov else "", p.rsplit("/", 1)[-1])


class FileIndex:
    """Which (plan, plane, file) each listed TIFF feeds, looked up by :func:`file_key`."""

    def __init__(self, plans: list[RawPlan]):
        self.by_key: dict[tuple[str, str], list[tuple[int, int, int]]] = {}
        self.by_base: dict[str, list[tuple[int, int, int]]] = {}
        for i, plan in enumerate(plans):
            for p, files in enumerate(plan.files):
                for f, name in enumerate(files):
                    key = file_key(name)
                    self.by_key.setdefault(key, []).append((i, p, f))
                    self.by_base.setdefault(key[1], []).append((i, p, f))

    def lookup(self, member: str) -> list[tuple[int, int, int]]:
        if not TIFF.search(member):
            return []
        key = file_key(member)
        if key in self.by_key:
            return self.by_key[key]
        hits = self.by_base.get(key[1], [])
        return hits if len({(h[0], h[1]) for h in hits}) == 1 else []  # base name alone only when unique
