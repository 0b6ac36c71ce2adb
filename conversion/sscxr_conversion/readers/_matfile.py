"""Raw layer: MAT files (v5/v7 and v7.3) as path-aware nodes of numpy arrays and strings.

It hides MATLAB's quirks and nothing else: squeezed singletons (a 1-element cell collapses to
its element), cells vs struct arrays (both become lists), char arrays with padding, row vectors
vs matrices. It knows nothing of the archives' meaning; ``ssc1.py`` / ``ssc11.py`` do.

Every accessor raises :class:`~sscxr.errors.MissingFieldError` or
:class:`~sscxr.errors.SourceFormatError` naming the file and the field path.

>>> node = MatNode({"a": np.arange(3.0)}, "s", "x.mat")
>>> node["a"].vector().tolist()
[0.0, 1.0, 2.0]
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from sscxr.errors import InconsistentSourceError, MissingFieldError, SourceFormatError

from ._inflate import INFLATE_ERRORS

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def mat_version(head: bytes) -> str:
    """``"5"`` or ``"7.3"`` from a file's first 520 bytes; ``""`` when it is no MAT file."""
    if len(head) >= 520 and head[512:520] == HDF5_SIGNATURE:
        return "7.3"
    if len(head) >= 128 and head[126:128] in (b"IM", b"MI") and head[:6] == b"MATLAB":
        return "5"
    return ""


def load_mat(fileobj: IO[bytes] | bytes | os.PathLike[str], *, name: str, variable: str) -> MatNode:
    """Load the top-level ``variable`` of a MAT file (v5 or v7.3) as a :class:`MatNode`.

    ``fileobj`` is a path, a seekable binary file or bytes; ``name`` is used in error messages.
    A v5 file is read whole by ``scipy.io.loadmat`` (squeezed, structs as ``mat_struct``);
    a v7.3 file lazily with h5py (:mod:`._matv73`).

    Raises :class:`~sscxr.errors.SourceFormatError` ("truncated or corrupt") for a damaged
    file (scipy's ``MatReadError``, a short read, bad DEFLATE data, a bad tag or size) and
    :class:`~sscxr.errors.MissingFieldError` when ``variable`` is absent; anything else (a bug,
    a scipy that behaves differently) is raised as it is, never blamed on the file.

    >>> import scipy.io
    >>> buf = io.BytesIO()
    >>> scipy.io.savemat(buf, {"s": {"a": [1.0, 2.0]}})
    >>> load_mat(buf.getvalue(), name="x.mat", variable="s")["a"].vector().tolist()
    [1.0, 2.0]
    """
    if isinstance(fileobj, os.PathLike):
        opened = open(fileobj, "rb")  # noqa: SIM115 - v7.3 nodes read lazily from it: kept open
        lazy = mat_version(opened.read(520)) == "7.3"
        opened.seek(0)
        try:
            return load_mat(opened, name=name, variable=variable)
        except BaseException:
            lazy = False
            raise
        finally:
            if not lazy:
                opened.close()
    if isinstance(fileobj, bytes | bytearray | memoryview):
        fileobj = io.BytesIO(fileobj)
    head = fileobj.read(520)
    fileobj.seek(0)
    version = mat_version(head)
    if not version:
        raise SourceFormatError(name, "is not a MATLAB MAT file (no v5 or v7.3 header)")
    if version == "7.3":
        from ._matv73 import load_v73

        return load_v73(fileobj, name=name, variable=variable)
    return _load_v5(fileobj, name=name, variable=variable)


#: scipy.io.loadmat's errors for a damaged file (zlib.error, a short read, a bad tag or size)
READ_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, OSError, EOFError, IndexError,
                                                   UnicodeDecodeError, OverflowError, *INFLATE_ERRORS)


def _load_v5(fileobj: IO[bytes], *, name: str, variable: str) -> MatNode:
    import scipy.io
    from scipy.io.matlab import MatReadError

    try:
        data = scipy.io.loadmat(fileobj, squeeze_me=True, struct_as_record=False,
                                chars_as_strings=True, variable_names=[variable])
    except (MatReadError, *READ_ERRORS) as exc:
        raise _damaged(name, exc) from exc
    if variable not in data:
        fileobj.seek(0)
        found = sorted(v[0] for v in scipy.io.whosmat(fileobj))
        raise MissingFieldError(name, f"has no top-level variable {variable!r} (found {found})", field=variable)
    return MatNode(data[variable], variable, name)


def _damaged(name: str, exc: BaseException) -> SourceFormatError:
    return SourceFormatError(name, f"cannot be read as MAT v5 ({type(exc).__name__}: {exc})",
                             hint="the file is truncated or corrupt; download it again")


class Deferred:
    """A value the converter has already stored and dropped from the parsed tree (ssc-1 dF/F
    written while the file was read). It keeps ``shape``, ``ndim`` and ``dtype``; numeric
    accessors return it as is, and ``numpy.asarray`` reads it back."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


class MatNode:
    """One value inside a MAT file, with its field path for error messages."""

    __slots__ = ("value", "path", "file")

    def __init__(self, value: Any, path: str, file: str):
        self.value = value
        self.path = path
        self.file = file

    def __repr__(self) -> str:
        return f"<MatNode {self.file}:{self.path} {type(self.value).__name__}>"

    # --- structs ---------------------------------------------------------------------------
    def fields(self) -> list[str]:
        """Field names of a struct, in file order (empty for non-structs)."""
        return list(self._names())

    def _names(self) -> Any:
        """The field names as stored (no copy): accessors run for thousands of ROI structs."""
        v = self.value
        return v.keys() if isinstance(v, dict) else getattr(v, "_fieldnames", None) or ()

    def has(self, name: str) -> bool:
        return name in self._names()

    def __getitem__(self, name: str) -> MatNode:
        names = self._names()
        if not names:
            raise SourceFormatError(self.file, f"expected a struct with field {name!r}, found "
                                    f"{_describe(self.value)}", field=self.path)
        if name not in names:
            raise MissingFieldError(self.file, f"required field is missing (the struct has "
                                    f"{self.fields()})", field=f"{self.path}.{name}")
        v = self.value[name] if isinstance(self.value, dict) else getattr(self.value, name)
        return MatNode(v, f"{self.path}.{name}", self.file)

    def get(self, name: str) -> MatNode | None:
        """The field ``name``, or ``None`` when absent."""
        return self[name] if self.has(name) else None

    # --- cells and struct arrays ----------------------------------------------------------------
    def items(self) -> list[MatNode]:
        """Elements of a cell or struct array as a list (a squeezed singleton gives one item)."""
        v = self.value
        if isinstance(v, np.ndarray) and v.dtype == object:
            flat = v.ravel(order="F")
            return [MatNode(x, f"{self.path}{{{i + 1}}}", self.file) for i, x in enumerate(flat)]
        if isinstance(v, list):
            return [MatNode(x, f"{self.path}{{{i + 1}}}", self.file) for i, x in enumerate(v)]
        if _is_empty(v):
            return []
        return [MatNode(v, f"{self.path}{{1}}", self.file)]

    def __iter__(self) -> Iterator[MatNode]:
        return iter(self.items())

    def item(self, index: int) -> MatNode:
        """Element ``index`` (0-based) of a cell/struct array, with a clear error if absent."""
        items = self.items()
        if index >= len(items):
            raise MissingFieldError(self.file, f"has {len(items)} element(s), element {index + 1} "
                                    "was expected", field=self.path)
        return items[index]

    # --- numbers and strings -------------------------------------------------------------------
    def vector(self, dtype: Any = np.float64) -> np.ndarray:
        """A 1-D array (row or column vector, scalar, or empty)."""
        arr = self._numeric(dtype)
        if arr.ndim > 1 and sum(s > 1 for s in arr.shape) > 1:
            raise SourceFormatError(self.file, f"expected a vector, found shape {arr.shape}",
                                    field=self.path)
        return arr.reshape(-1)

    def matrix(self, n_rows: int | None = None, n_cols: int | None = None,
               dtype: Any = np.float64) -> np.ndarray:
        """A 2-D array; a squeezed 1-row/1-column matrix is restored from the expected shape."""
        arr = self._numeric(dtype)
        if arr.ndim < 2:
            if n_rows == 1 or (n_cols is not None and arr.size == n_cols and n_rows in (None, 1)):
                arr = arr.reshape(1, -1)
            elif n_cols == 1 or (n_rows is not None and arr.size == n_rows):
                arr = arr.reshape(-1, 1)
            elif arr.size == 0:
                arr = arr.reshape(n_rows or 0, n_cols or 0)
            else:
                arr = arr.reshape(1, -1)
        expected = (n_rows if n_rows is not None else arr.shape[0],
                    n_cols if n_cols is not None else arr.shape[1])
        if arr.shape != expected:
            raise InconsistentSourceError(self.file, f"shape is {arr.shape}, expected {expected}",
                                          field=self.path)
        return arr

    def array(self, dtype: Any = None) -> np.ndarray:
        """The value as an array with its stored shape (MATLAB order: rows, cols, pages)."""
        return self._numeric(dtype)

    def scalar(self) -> float:
        arr = self.vector()
        if arr.size != 1:
            raise SourceFormatError(self.file, f"expected a scalar, found {arr.size} values",
                                    field=self.path)
        return float(arr[0])

    def text(self) -> str:
        """A char array as a stripped str ("" for an empty value)."""
        v = self.value
        if isinstance(v, str):
            return v.strip()
        if isinstance(v, np.ndarray) and v.dtype.kind in "US":
            return "".join(str(x) for x in v.ravel()).strip()
        if _is_empty(v):
            return ""
        if isinstance(v, np.ndarray) and v.dtype.kind in "ui" and v.ndim <= 1:  # v7.3 char codes
            return "".join(map(chr, v.ravel())).strip()
        raise SourceFormatError(self.file, f"expected text, found {_describe(v)}", field=self.path)

    def texts(self) -> list[str]:
        """A cell of strings (or one squeezed string) as a list of str."""
        v = self.value
        if isinstance(v, str):
            return [v.strip()]
        if isinstance(v, np.ndarray) and v.dtype.kind in "US":
            return [str(x).strip() for x in v.ravel()]
        return [node.text() for node in self.items()]

    def _numeric(self, dtype: Any) -> np.ndarray:
        v = self.value
        if isinstance(v, Deferred) and (dtype is None or np.dtype(dtype) == v.dtype):
            return v  # type: ignore[return-value]
        if isinstance(v, np.ndarray) and v.dtype == object or self.fields():
            raise SourceFormatError(self.file, f"expected a numeric array, found {_describe(v)}",
                                    field=self.path)
        try:
            arr = np.asarray(v) if dtype is None else np.asarray(v, dtype=dtype)
        except (TypeError, ValueError) as exc:
            raise SourceFormatError(self.file, f"expected numbers, found {_describe(v)}",
                                    field=self.path) from exc
        return arr


def _is_empty(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.size == 0 or (isinstance(v, str) and not v)


def _describe(v: Any) -> str:
    if isinstance(v, np.ndarray):
        kind = "cell/struct array" if v.dtype == object else f"{v.dtype} array"
        return f"a {kind} of shape {v.shape}"
    if hasattr(v, "_fieldnames"):
        return f"a struct with fields {list(v._fieldnames)}"
    return f"a {type(v).__name__}"
