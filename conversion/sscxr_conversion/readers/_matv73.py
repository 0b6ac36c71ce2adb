"""Raw layer for MAT v7.3 (HDF5) files, decoded lazily to what ``scipy.io.loadmat`` would give.

Values mimic ``loadmat(squeeze_me=True, struct_as_record=False)``: structs are objects with
``_fieldnames`` whose fields are decoded only when accessed (so a reader that needs three
fields of a 2 GB file reads three fields), cells and struct arrays are object arrays, numeric
arrays are transposed back to MATLAB order and squeezed, char arrays become ``str``.
"""

from __future__ import annotations

from typing import IO, Any

import numpy as np

from sscxr.errors import MissingFieldError, SourceFormatError

from ._matfile import MatNode

NUMERIC = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}


def load_v73(fileobj: IO[bytes], *, name: str, variable: str) -> MatNode:
    """Open a v7.3 MAT file and return its top-level ``variable`` as a lazy :class:`MatNode`."""
    import h5py

    try:
        f = h5py.File(fileobj, "r")
    except OSError as exc:
        raise SourceFormatError(name, f"cannot be read as MAT v7.3/HDF5 ({exc})",
                                hint="the file is truncated or corrupt; download it again") from exc
    if variable not in f:
        found = sorted(k for k in f if not k.startswith("#"))
        raise MissingFieldError(name, f"has no top-level variable {variable!r} (found {found})", field=variable)
    return MatNode(decode(f[variable]), variable, name)


class H5Struct:
    """A MATLAB struct in an HDF5 group; fields decode on first access."""

    def __init__(self, group: Any, fields: list[str]):
        self._group = group
        self._fieldnames = fields
        self._cache: dict[str, Any] = {}

    def __getattr__(self, field: str) -> Any:
        if field.startswith("_"):
            raise AttributeError(field)
        if field not in self._cache:
            if field not in self._fieldnames:
                raise AttributeError(field)
            self._cache[field] = decode(self._group[field])
        return self._cache[field]

    def __repr__(self) -> str:
        return f"<H5Struct {self._group.name} fields={self._fieldnames}>"


def _fields(group: Any) -> list[str]:
    raw = group.attrs.get("MATLAB_fields")
    if raw is None:
        return [k for k in group.keys()]
    return ["".join(c.decode() if isinstance(c, bytes) else str(c) for c in np.ravel(f)) for f in raw]


def decode(obj: Any) -> Any:
    """Decode an HDF5 object written by MATLAB into loadmat-like Python values."""
    import h5py

    cls = obj.attrs.get("MATLAB_class", b"")
    cls = cls.decode() if isinstance(cls, bytes) else str(cls)
    if isinstance(obj, h5py.Group):
        return _decode_struct(obj)
    if obj.attrs.get("MATLAB_empty", 0):
        return "" if cls == "char" else np.zeros(0)
    if obj.dtype == h5py.ref_dtype:
        return _decode_refs(obj)
    data = obj[()]
    if cls == "char":
        return _decode_char(data)
    if cls == "logical":
        data = data.astype(bool)
    return _squeeze(np.asarray(data).T)


def _decode_struct(group: Any) -> Any:
    import h5py

    fields = _fields(group)
    first = group[fields[0]] if fields else None
    is_array = (isinstance(first, h5py.Dataset) and first.dtype == h5py.ref_dtype
                and "MATLAB_class" not in first.attrs)
    if not is_array:
        return H5Struct(group, fields)
    assert first is not None  # is_array
    shape = first.shape[::-1]
    elems = np.empty(int(np.prod(shape)), dtype=object)
    for i in range(elems.size):
        elems[i] = _RefStruct(group, fields, i)
    return _squeeze_objects(elems.reshape(shape, order="F"))


class _RefStruct(H5Struct):
    """Element ``index`` of a struct array: each field is a reference dataset."""

    def __init__(self, group: Any, fields: list[str], index: int):
        super().__init__(group, fields)
        self._index = index

    def __getattr__(self, field: str) -> Any:
        if field.startswith("_"):
            raise AttributeError(field)
        if field not in self._cache:
            refs = self._group[field][()].T.ravel(order="F")
            self._cache[field] = decode(self._group.file[refs[self._index]])
        return self._cache[field]


def _decode_refs(ds: Any) -> Any:
    refs = ds[()].T
    out = np.empty(refs.size, dtype=object)
    for i, ref in enumerate(refs.ravel(order="F")):
        out[i] = decode(ds.file[ref])
    return _squeeze_objects(out.reshape(refs.shape, order="F"))


def _decode_char(data: np.ndarray) -> Any:
    arr = np.asarray(data).T
    if arr.ndim == 2 and arr.shape[0] > 1:
        return np.array(["".join(map(chr, row)) for row in arr])
    return "".join(map(chr, arr.ravel()))


def _squeeze(arr: np.ndarray) -> Any:
    arr = np.squeeze(arr)
    return arr[()] if arr.ndim == 0 else arr


def _squeeze_objects(arr: np.ndarray) -> Any:
    arr = np.squeeze(arr)
    return arr[()] if arr.ndim == 0 else arr
