"""Progress of a conversion from its first byte: the source's bytes as they are read, then groups.

A conversion spends most of its time reading (inflating a session ``.mat``, streaming a tarball,
taking TIFFs and videos) before any group is written. Each reading pass shows a byte bar: the
parser's file object, or the tarball's, is wrapped in a :class:`CountingReader` that reports every
byte read to the bar, so the bar moves while the reading happens. Files taken by path (a folder's TIFFs,
which write tasks map themselves) count when the converter has taken them.

Bars come from :func:`sscxr._progress.progress_bar`: a widget in a notebook with ipywidgets,
the text bar elsewhere, and never ``TqdmWarning: IProgress not found``.

>>> import io
>>> class Bar:  # what a tqdm bar does with updates
...     total, n = 10, 0
...     def update(self, k): self.n += k
>>> f = CountingReader(io.BytesIO(b"0123456789"), bar := Bar())
>>> _ = f.read(4); _ = f.read(); _ = f.seek(0); _ = f.read()
>>> bar.n
10
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from sscxr._progress import progress_bar

__all__ = ["CountingReader", "byte_bar", "closing", "group_bar", "counted_source", "unit_name"]


def unit_name(url: str) -> str:
    """The name a user knows a store by: the location, not the version being written.

    >>> unit_name("out/an274424.zarr-versions/v20261207T153119Z-ba665d")
    'an274424.zarr'
    """
    from sscxr.versions import VERSIONS_SUFFIX

    parts = url.rstrip("/").split("/")
    if len(parts) > 1 and parts[-2].endswith(VERSIONS_SUFFIX):
        return parts[-2].removesuffix(VERSIONS_SUFFIX)
    return parts[-1]


def byte_bar(total: int | None, desc: str, *, enabled: bool) -> Any:
    """A bar counting bytes (shown as kB/MB/GB) up to ``total``."""
    return progress_bar(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, disable=not enabled)


def group_bar(total: int, desc: str, *, enabled: bool) -> Any:
    """A bar counting groups written."""
    return progress_bar(total=total, desc=desc, unit="group", disable=not enabled)


@contextlib.contextmanager
def closing(bar: Any) -> Iterator[Any]:
    """Close ``bar`` after the block; when the block fails, clear it first, so the error line
    that follows stands alone (a bar closed later by the garbage collector is drawn after it).

    >>> with closing(group_bar(3, "writing", enabled=False)) as bar:
    ...     bar.update(1)
    """
    try:
        yield bar
    except BaseException:
        with contextlib.suppress(Exception):
            bar.leave = False
            bar.close()
        raise
    bar.close()


class CountingReader(io.RawIOBase):
    """A read-only binary file over ``raw`` that reports every byte read to ``bar.update``.

    The count never passes ``bar.total`` (a reader that seeks back and reads again, as h5py
    does, would otherwise show more than 100%). Reads may come from another thread (the MAT
    stream inflates on one); updates are serialised. No ``fileno``: a reader must not bypass it.
    """

    def __init__(self, raw: IO[bytes], bar: Any):
        super().__init__()
        self.raw, self.bar = raw, bar
        self._lock = threading.Lock()

    def _count(self, n: int) -> None:
        if n <= 0:
            return
        with self._lock:
            total = self.bar.total
            left = n if total is None else max(0, int(total) - int(self.bar.n))
            if left:
                self.bar.update(min(n, left))

    def read(self, n: int | None = -1) -> bytes:
        data = self.raw.read(-1 if n is None else n)
        self._count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self._count(n or 0)
        return n or 0

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return bool(getattr(self.raw, "seekable", lambda: False)())

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


def counted_source(source: bytes | Path, name: str, *, enabled: bool) -> tuple[IO[bytes] | bytes | Path, Any]:
    """``(file, bar)``: ``source`` (a path or a member's bytes) opened for a reader, counting into a
    byte bar ``reading <name>`` whose total is its size. Close the bar when the reading is done;
    the file stays open for readers that read lazily (MAT v7.3). Not ``enabled``: the source as
    it is (a path or bytes, which readers open themselves) and a disabled bar."""
    if not enabled:
        return source, byte_bar(None, name, enabled=False)
    if isinstance(source, bytes | bytearray | memoryview):
        raw: IO[bytes] = io.BytesIO(source)
        size = len(source)
    else:
        raw = open(source, "rb")  # noqa: SIM115 - handed to the reader, which may read lazily
        size = os.fstat(raw.fileno()).st_size
    bar = byte_bar(size, f"reading {Path(name).name}", enabled=enabled)
    return io.BufferedReader(CountingReader(raw, bar)), bar
