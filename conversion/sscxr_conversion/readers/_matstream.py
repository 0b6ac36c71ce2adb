"""Raw layer: a MAT v5 variable read as a stream, handing over its parts as they are parsed.

``scipy.io.loadmat`` returns a variable only when all of it is inflated and parsed, and zlib
inflate is nearly all of its time (an ssc-1 session: 1.6 s of inflate for 1.75 s of loadmat). Here
the compressed element is inflated in a background thread (zlib releases the GIL), with Intel's
ISA-L (``isal``, the same DEFLATE format, about twice as fast as zlib) when it is installed, while the calling
thread parses with scipy's own ``VarReader5`` and, for the struct/cell containers named in
``descend``, calls ``on_item(path, value)`` as soon as each child is parsed. The converter uses
that to write a subvolume's dF/F while the rest of the file is still being inflated.

The value returned is the one ``loadmat(squeeze_me=True, struct_as_record=False,
chars_as_strings=True)`` gives (containers are rebuilt exactly as scipy's ``read_struct`` /
``read_cells`` build them, then squeezed by scipy's ``squeeze_element``);
``tests/test_matstream.py`` compares the two on every synthetic archive.

>>> node = load_v5_streaming(open(path, "rb"), variable="s",                      # doctest: +SKIP
...                          descend={"s", "s.timeSeriesArrayHash", "s.timeSeriesArrayHash.value"},
...                          on_item=lambda path, value: print(path))
"""

from __future__ import annotations

import io
import queue
import sys
import threading
import types
import zlib
from collections.abc import Callable, Collection
from typing import IO, Any

import numpy as np

_inflate_module: types.ModuleType
try:  # ISA-L inflates the same zlib streams about twice as fast (and also releases the GIL)
    from isal import isal_zlib as _inflate_module
except ImportError:  # pragma: no cover - isal is a dependency; zlib is the fallback
    _inflate_module = zlib

INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, _inflate_module.error)  # damaged DEFLATE data

READ_BLOCK = 8 << 20  # compressed bytes per inflate step (few GIL re-acquisitions per MB)
BUFFERED = 4 << 20  # elements up to this size are read in one piece and parsed from memory
AHEAD = 4  # inflated blocks the producer may run ahead of the parser (~32 MB)
SWITCH_INTERVAL = 0.0005  # s; while streaming (CPython's default, 5 ms, starves the inflate thread)


class InflatingStream:
    """A read-only file over the inflated bytes of ``count`` zlib bytes of ``fileobj``, inflated
    in a background thread that stays at most :data:`AHEAD` blocks ahead of the reader.

    Errors of the producer (a truncated file, corrupt data) are raised by :meth:`read`.
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
                    break  # truncated: the reader gets short data and fails with its own message
                left -= len(block)
                out = inflater.decompress(block)
                if out:
                    self._put(out)
            tail = inflater.flush()
            if tail:
                self._put(tail)
            self._put(None)
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


def load_v5_streaming(fileobj: IO[bytes], *, variable: str,
                      on_item: Callable[[str, Any], None] | None = None,
                      descend: Collection[str] = ()) -> Any:
    """The top-level ``variable`` of a MAT v5 file, as ``loadmat`` (squeezed, ``mat_struct``)
    gives it; ``on_item(path, value)`` is called for every child of the containers in
    ``descend`` (paths like ``s.timeSeriesArrayHash.value{2}``) as soon as it is parsed.

    Raises ``KeyError`` when the file has no such variable; errors of damaged files are
    scipy's (the caller names the file).

    zlib releases the GIL while it inflates but takes it back after every output block; with
    CPython's default 5 ms switch interval a busy parsing thread made inflating an ssc-1 session
    take 2.8-7 s instead of 1.5 s (8-16 MB input blocks vs 1 MB). The interval is lowered to
    0.5 ms while this function runs (1.8 s) and restored after.
    """
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        return _load(fileobj, variable, on_item, descend)
    finally:
        sys.setswitchinterval(interval)


def _load(fileobj: IO[bytes], variable: str, on_item: Callable[[str, Any], None] | None,
          descend: Collection[str]) -> Any:
    from scipy.io.matlab._mio5 import MatFile5Reader
    from scipy.io.matlab._mio5_params import miCOMPRESSED, miMATRIX

    reader = MatFile5Reader(fileobj, squeeze_me=True, struct_as_record=False, chars_as_strings=True)
    fileobj.seek(0)
    reader.initialize_read()
    reader.read_file_header()
    while not reader.end_of_stream():
        mdtype, byte_count = reader._file_reader.read_full_tag()
        if not byte_count > 0:
            raise ValueError("Did not read any bytes")
        next_pos = fileobj.tell() + byte_count
        stream: Any = fileobj
        matrix = reader._matrix_reader
        if mdtype == miCOMPRESSED:
            stream = InflatingStream(fileobj, byte_count)
            matrix.set_stream(stream)
            mdtype, byte_count = matrix.read_full_tag()
        else:
            matrix.set_stream(fileobj)
        try:
            if mdtype != miMATRIX:
                raise TypeError(f"Expecting miMATRIX type here, got {mdtype}")
            header = matrix.read_header(False)
            if (header.name or b"").decode("latin1") == variable:
                walker = _Walker(matrix, stream, set(descend), on_item)
                return walker.value(header, variable)
        finally:
            if stream is not fileobj:
                stream.close()
        fileobj.seek(next_pos)
    raise KeyError(variable)


class _Walker:
    """Rebuilds the containers named in ``descend`` (and any container larger than
    :data:`BUFFERED`) child by child; everything else is scipy's.

    A child of at most :data:`BUFFERED` bytes is read in one piece and parsed from memory:
    scipy reads an element's tags and fields a few bytes at a time (510,000 reads for an ssc-1
    session, mostly its 12,000 ROI structs), which through a Python stream cost ~0.5 s.
    """

    def __init__(self, matrix: Any, stream: Any, descend: set[str], on_item: Callable[[str, Any], None] | None):
        from scipy.io.matlab._mio5_params import mat_struct, mxCELL_CLASS, mxSTRUCT_CLASS
        from scipy.io.matlab._mio5_utils import squeeze_element

        self.matrix, self.stream, self.descend, self.on_item = matrix, stream, descend, on_item
        self.mat_struct, self.squeeze = mat_struct, squeeze_element
        self.containers = {mxCELL_CLASS: "cell", mxSTRUCT_CLASS: "struct"}

    def value(self, header: Any, path: str, large: bool = False) -> Any:
        kind = self.containers.get(header.mclass)
        if kind is None or not (large or path in self.descend):
            return self.matrix.array_from_header(header, 1)
        dims = tuple(header.dims)
        count = int(np.prod(dims)) if dims else 1
        result = np.empty(count, dtype=object)
        if kind == "struct":
            names = self.matrix.read_fieldnames()
            for i in range(count):
                item = self.mat_struct()
                item._fieldnames = names
                prefix = path if count == 1 else f"{path}({i + 1})"
                for field in names:
                    item.__dict__[field] = self.child(f"{prefix}.{field}")
                result[i] = item
        else:
            for i in range(count):
                result[i] = self.child(f"{path}{{{i + 1}}}")
        return self.squeeze(result.reshape(dims[::-1]).T)

    def child(self, path: str) -> Any:
        from scipy.io.matlab._mio5_params import miMATRIX

        mdtype, byte_count = self.matrix.read_full_tag()
        if mdtype != miMATRIX:
            raise TypeError("Expecting matrix here")
        if byte_count == 0:
            value: Any = np.array([])
        elif byte_count <= BUFFERED and path not in self.descend:
            value = self.buffered(byte_count)
        else:
            value = self.value(self.matrix.read_header(False), path, large=byte_count > BUFFERED)
        if self.on_item is not None:
            self.on_item(path, value)
        return value

    def buffered(self, byte_count: int) -> Any:
        data = self.stream.read(byte_count)
        if len(data) != byte_count:
            raise OSError(f"could not read bytes: the element needs {byte_count}, {len(data)} are left")
        self.matrix.set_stream(io.BytesIO(data))
        try:
            return self.matrix.array_from_header(self.matrix.read_header(False), 1)
        finally:
            self.matrix.set_stream(self.stream)
