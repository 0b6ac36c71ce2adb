"""Fast path: a MAT v5 variable parsed with scipy's internal reader while it is inflated.

``scipy.io.loadmat`` inflates a compressed variable in the thread that parses it, with zlib.
Here it is inflated ahead of the parser in a background thread, with ISA-L when installed
(:class:`~._matstream.InflatingStream`), and parsed by scipy's own ``VarReader5`` from
``scipy.io.matlab._mio5*``: private modules, so this reader runs only with the scipy releases it
is tested with (:data:`SCIPY_TESTED`), and raises :class:`Unsupported` when those internals are
not what it expects. ``_matfile.load_mat`` then takes the public path (``loadmat``) and warns
once (:func:`sscxr._fastpath.fall_back`); ``SSCXR_NO_FASTPATH=1`` never imports this module.

The value returned is the one ``loadmat(squeeze_me=True, struct_as_record=False,
chars_as_strings=True)`` gives: containers are rebuilt exactly as scipy's ``read_struct`` /
``read_cells`` build them, then squeezed by scipy's ``squeeze_element``;
``tests/test_matstream.py`` compares the two on every synthetic archive.

>>> value = load_v5(open(path, "rb"), variable="s")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import sys
from types import SimpleNamespace
from typing import IO, Any

import numpy as np

from sscxr import _fastpath

from ._matstream import FAST_READER, SWITCH_INTERVAL, InflatingStream, TruncatedError

NAME = FAST_READER
#: scipy releases whose ``_mio5*`` internals this reader is tested with, [at least, below):
#: tests/test_matstream.py and tests/test_mat_fastpath.py pass with 1.15.3, 1.16.3 and 1.17.1
SCIPY_TESTED = ("1.15", "1.18")
BUFFERED = 4 << 20  # elements up to this size are read in one piece and parsed from memory


class VariableMissing(KeyError):
    """The file has no top-level variable of that name."""


class Unsupported(Exception):
    """scipy's internals are not what this reader expects (a release that moved or renamed them)."""


def supported() -> bool:
    """Whether this fast path may run: on, and this scipy in :data:`SCIPY_TESTED` (else it is
    turned off with one :class:`~sscxr._fastpath.FastPathWarning`)."""
    return _fastpath.enabled(NAME) and _fastpath.version_ok(NAME, "scipy", at_least=SCIPY_TESTED[0],
                                                            below=SCIPY_TESTED[1])


def _internals() -> SimpleNamespace:
    """scipy's private names this reader uses, or :class:`Unsupported` naming the missing one."""
    try:
        from scipy.io.matlab._mio5 import MatFile5Reader
        from scipy.io.matlab._mio5_params import mat_struct, miCOMPRESSED, miMATRIX, mxCELL_CLASS, mxSTRUCT_CLASS
        from scipy.io.matlab._mio5_utils import squeeze_element
    except (ImportError, AttributeError) as exc:
        raise Unsupported(f"{type(exc).__name__}: {exc}") from exc
    return SimpleNamespace(MatFile5Reader=MatFile5Reader, mat_struct=mat_struct, miCOMPRESSED=miCOMPRESSED,
                           miMATRIX=miMATRIX, mxCELL_CLASS=mxCELL_CLASS, mxSTRUCT_CLASS=mxSTRUCT_CLASS,
                           squeeze_element=squeeze_element)


def load_v5(fileobj: IO[bytes], *, variable: str) -> Any:
    """The top-level ``variable`` of a MAT v5 file, as ``loadmat`` (squeezed, ``mat_struct``)
    gives it.

    Raises :class:`VariableMissing` when the file has no such variable, :class:`Unsupported` when scipy's
    internals are missing, and whatever the parser raises on bad data (``zlib.error``,
    :class:`~._matstream.TruncatedError`, scipy's ``ValueError``/``TypeError``/``OSError``):
    the caller tells a damaged file from changed internals.

    zlib releases the GIL while it inflates but takes it back after every output block; with
    CPython's default 5 ms switch interval a busy parsing thread made inflating an ssc-1 session
    take 2.8-7 s instead of 1.5 s (8-16 MB input blocks vs 1 MB). The interval is lowered to
    0.5 ms while this function runs (1.8 s) and restored after.
    """
    names = _internals()
    interval = sys.getswitchinterval()
    sys.setswitchinterval(min(interval, SWITCH_INTERVAL))
    try:
        return _load(fileobj, variable, names)
    finally:
        sys.setswitchinterval(interval)


def _load(fileobj: IO[bytes], variable: str, names: SimpleNamespace) -> Any:
    reader = names.MatFile5Reader(fileobj, squeeze_me=True, struct_as_record=False, chars_as_strings=True)
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
        if mdtype == names.miCOMPRESSED:
            stream = InflatingStream(fileobj, byte_count)
            matrix.set_stream(stream)
            mdtype, byte_count = matrix.read_full_tag()
        else:
            matrix.set_stream(fileobj)
        try:
            if mdtype != names.miMATRIX:
                raise TypeError(f"Expecting miMATRIX type here, got {mdtype}")
            header = matrix.read_header(False)
            if (header.name or b"").decode("latin1") == variable:
                value = _Walker(matrix, stream, names).value(header, large=True)
                if stream is not fileobj and stream.read():  # as loadmat: the whole element is the variable
                    raise ValueError("the compressed element holds more than the variable")
                return value
        finally:
            if stream is not fileobj:
                stream.close()
        fileobj.seek(next_pos)
    raise VariableMissing(variable)


class _Walker:
    """Rebuilds the top-level container, and any container larger than :data:`BUFFERED`, child
    by child; everything else is scipy's.

    A child of at most :data:`BUFFERED` bytes is read in one piece and parsed from memory:
    scipy reads an element's tags and fields a few bytes at a time (510,000 reads for an ssc-1
    session, mostly its 12,000 ROI structs), which through a Python stream cost ~0.5 s.
    """

    def __init__(self, matrix: Any, stream: Any, names: SimpleNamespace):
        self.matrix, self.stream, self.names = matrix, stream, names
        self.containers = {names.mxCELL_CLASS: "cell", names.mxSTRUCT_CLASS: "struct"}

    def value(self, header: Any, large: bool = False) -> Any:
        kind = self.containers.get(header.mclass)
        if kind is None or not large:
            return self.matrix.array_from_header(header, 1)
        dims = tuple(header.dims)
        count = int(np.prod(dims)) if dims else 1
        result = np.empty(count, dtype=object)
        if kind == "struct":
            fields = self.matrix.read_fieldnames()
            for i in range(count):
                item = self.names.mat_struct()
                item._fieldnames = fields
                for field in fields:
                    item.__dict__[field] = self.child()
                result[i] = item
        else:
            for i in range(count):
                result[i] = self.child()
        return self.names.squeeze_element(result.reshape(dims[::-1]).T)

    def child(self) -> Any:
        mdtype, byte_count = self.matrix.read_full_tag()
        if mdtype != self.names.miMATRIX:
            raise TypeError("Expecting matrix here")
        if byte_count == 0:
            return np.array([])
        if byte_count <= BUFFERED:
            return self.buffered(byte_count)
        return self.value(self.matrix.read_header(False), large=True)

    def buffered(self, byte_count: int) -> Any:
        data = self.stream.read(byte_count)
        if len(data) != byte_count:
            raise TruncatedError(f"the data ends inside an element of {byte_count} bytes ({len(data)} are left)")
        self.matrix.set_stream(io.BytesIO(data))
        try:
            return self.matrix.array_from_header(self.matrix.read_header(False), 1)
        finally:
            self.matrix.set_stream(self.stream)
