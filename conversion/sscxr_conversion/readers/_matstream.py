"""Raw layer: a zlib-compressed MAT v5 element inflated in a background thread, as a stream.

zlib inflate is nearly all of a MAT v5 read's time (an ssc-1 session: 1.6 s of inflate for
1.75 s of ``loadmat``). :class:`InflatingStream` inflates a compressed element in a thread of
its own (zlib releases the GIL), with Intel's ISA-L (``isal``, the same DEFLATE format, about
twice as fast as zlib) when it is installed, while the calling thread parses what is ready.
Only public APIs (``zlib``, ``isal``) are used here; the parser that reads from this stream
with scipy's internals is the fast path :mod:`._scipy_fastpath`.

A stream that ends early raises :class:`EOFError`, damaged DEFLATE data ``zlib.error``
(:data:`INFLATE_ERRORS`), from :meth:`InflatingStream.read`:

>>> import io, zlib
>>> packed = zlib.compress(b"abc" * 1000)
>>> stream = InflatingStream(io.BytesIO(packed), len(packed))
>>> stream.read(6), stream.tell()
(b'abcabc', 6)
>>> stream.close()
"""

from __future__ import annotations

import queue
import threading
import types
import zlib
from typing import IO

_inflate_module: types.ModuleType
try:  # ISA-L inflates the same zlib streams about twice as fast (and also releases the GIL)
    from isal import isal_zlib as _inflate_module
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflate_module = zlib

INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate_module.error)  # damaged DEFLATE data

FAST_READER = "MAT v5 reader"  # the fast path's name in sscxr._fastpath (and in its warning)
READ_BLOCK = 8 << 20  # compressed bytes per inflate step (few GIL re-acquisitions per MB)
AHEAD = 4  # inflated blocks the producer may run ahead of the parser (~32 MB)
SWITCH_INTERVAL = 0.0005  # s; while streaming (CPython's default, 5 ms, starves the inflate thread)


class TruncatedError(EOFError):
    """The file (or a compressed element's data) ends inside an element."""


class InflatingStream:
    """A read-only file over the inflated bytes of ``count`` zlib bytes of ``fileobj``, inflated
    in a background thread that stays at most :data:`AHEAD` blocks ahead of the reader.

    Errors of the producer are raised by :meth:`read`: :class:`TruncatedError` when the file
    ends before ``count`` bytes, ``zlib.error`` for corrupt data. A DEFLATE stream without its
    end (or checksum) is not an error here, as in ``loadmat``: the parser fails if it needs
    more than there is.
    """

    def __init__(self, fileobj: IO[bytes], count: int):
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(AHEAD)
        self._buf = b""
        self._pos = 0
        self._offset = 0  # inflated bytes handed out before self._buf
        self._done = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, args=(fileobj, count), daemon=True,
                                        name="sscxr-inflate")
        self._thread.start()

    def _produce(self, fileobj: IO[bytes], count: int) -> None:
        inflater = _inflate_module.decompressobj()
        try:
            left = count
            while left > 0 and not self._stop.is_set():
                block = fileobj.read(min(READ_BLOCK, left))
                if not block:
                    raise TruncatedError(f"the file ends {left} bytes short of a {count}-byte compressed element")
                left -= len(block)
                out = inflater.decompress(block)
                if out:
                    self._put(out)
            if self._stop.is_set():
                return
            tail = inflater.flush()
            if tail:
                self._put(tail)
            self._put(None)
        except TruncatedError as exc:
            self._put(exc)
        except _inflate_module.error as exc:  # the same error whichever library inflates
            self._put(zlib.error(str(exc)))
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            self._put(exc)

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _next_block(self) -> bool:
        if self._done:
            return False
        item = self._queue.get()
        if item is None:
            self._done = True
            return False
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._offset += len(self._buf)
        self._buf, self._pos = item, 0
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts: list[bytes | memoryview] = [self._buf[self._pos:]]
            self._pos = len(self._buf)
            while self._next_block():
                parts.append(self._buf)
                self._pos = len(self._buf)
            return b"".join(parts)
        if self._pos + n <= len(self._buf):
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out
        parts = [memoryview(self._buf)[self._pos:]]
        got = len(parts[0])
        self._pos = len(self._buf)
        while got < n and self._next_block():
            take = min(n - got, len(self._buf))
            parts.append(memoryview(self._buf)[:take])
            self._pos = take
            got += take
        return b"".join(parts)

    def tell(self) -> int:
        return self._offset + self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        """Only forward, relative to the current position (scipy skips padding that way)."""
        target = {0: offset, 1: self.tell() + offset}.get(whence)
        if target is None or target < self.tell():
            raise OSError("an inflating stream only seeks forward")
        self.read(target - self.tell())
        return self.tell()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
