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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import numpy as np
import tifffile

from sscxr.errors import InconsistentSourceError, SourceFormatError

CHANNELS = ("green", "red")
TRUNCATED_HINT = "the file is truncated or corrupt; download it again"


def pixel_crc32c(pixels: np.ndarray) -> int:
    """crc32c of an image's pixels as little-endian bytes, C order (what verify compares).

    >>> pixel_crc32c(np.zeros((2, 2), np.uint16))
    2351477386
    """
    view = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).view()
    view.flags.writeable = False  # google_crc32c takes read-only buffers only
    return int(google_crc32c.value(view))


@dataclass
class TiffStack:
    """An opened interleaved TIFF: ``n_frames`` frames of ``n_channels`` pages each.

    Frames of uncompressed, contiguous pages read from bytes are zero-copy views.
    """

    name: str
    n_channels: int
    n_pages: int
    frame_shape: tuple[int, int]
    dtype: np.dtype
    data: bytes | memoryview | mmap.mmap = field(repr=False)
    _offsets: np.ndarray | None = field(repr=False)
    _tif: tifffile.TiffFile = field(repr=False)

    @property
    def n_frames(self) -> int:
        """Number of whole frames (pages // channels)."""
        return self.n_pages // self.n_channels

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
            count = self.frame_shape[0] * self.frame_shape[1]
            return np.frombuffer(self.data, self.dtype, count, int(self._offsets[page])).reshape(self.frame_shape)
        with _tifffile_errors(self.name, f"frame {index + 1} (page {page + 1})"):
            return np.asarray(self._tif.pages[page].asarray()).reshape(self.frame_shape)

    def close(self) -> None:
        self._tif.close()
        if isinstance(self.data, mmap.mmap):
            try:
                self.data.close()
            except BufferError:  # a frame view is still alive; the map closes when it is freed
                pass

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
    data = source if isinstance(source, bytes | memoryview) else _map(Path(source), name)
    with _tifffile_errors(name, "header") as logged:
        tif = tifffile.TiffFile(io.BytesIO(data) if isinstance(data, bytes | memoryview) else os.fspath(source),
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
    shape = (int(key.imagelength), int(key.imagewidth))
    dtype = np.dtype(key.dtype).newbyteorder(tif.byteorder)
    offsets = _contiguous_offsets(tif, data, shape, dtype, name, n_channels)
    if n_pages % n_channels:
        raise InconsistentSourceError(name, f"has {n_pages} pages, not a multiple of {n_channels} interleaved "
                                      f"channels; the last frame ({n_pages // n_channels + 1}) is incomplete",
                                      field=f"frame {n_pages // n_channels + 1}", hint=TRUNCATED_HINT)
    return TiffStack(name, n_channels, n_pages, shape, dtype, data, offsets, tif)


def _map(path: Path, name: str) -> mmap.mmap | bytes:
    """The file's bytes without a copy (read-only map of the page cache); ``b""`` when empty."""
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size == 0:
                return b""
            return mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                             prot=mmap.PROT_READ)
    except OSError as exc:
        raise SourceFormatError(name, f"cannot be read ({exc})") from exc


def data_crc32c(data: bytes | memoryview | mmap.mmap) -> int:
    """crc32c of a whole file's bytes (bytes, memoryview or a read-only map).

    >>> data_crc32c(b"123456789") == 0xE3069283
    True
    """
    view = np.frombuffer(data, np.uint8)
    view.flags.writeable = False
    return int(google_crc32c.value(view))


def _contiguous_offsets(tif: tifffile.TiffFile, data: bytes | memoryview, shape: tuple[int, int],
                        dtype: np.dtype, name: str, n_channels: int) -> np.ndarray | None:
    """Byte offset of each page's pixels when every page is one uncompressed run, else ``None``.

    Also the truncation check: a page whose pixels run past the end of the file is an error.
    """
    size, expected = len(data), shape[0] * shape[1] * dtype.itemsize
    key = tif.pages.keyframe
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
