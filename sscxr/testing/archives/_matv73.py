"""Write MATLAB v7.3 MAT files (HDF5) laid out the way MATLAB itself writes them.

Values follow the conventions of ``scipy.io.savemat`` so one Python value can be written as v5
or v7.3: ``dict`` -> 1x1 struct (fields in dict order), numpy object array -> cell, numpy
structured array -> struct array, ``str`` -> char row, bool arrays -> logical, other numpy
values -> the numeric class of their dtype (a Python ``float`` is a 1x1 double, a Python ``int``
an int64, as in scipy). 1-D arrays become 1xN rows (scipy's ``oned_as="row"``).

The layout copies MATLAB R2019 files (checked against MATLAB-written files shipped as test data
with libmatio):

* a 512-byte userblock: ``MATLAB 7.3 MAT-file, Platform: ..., Created on: ... HDF5 schema
  1.00 .`` padded with spaces to 116 bytes, 8 zero bytes, version ``0x0200`` and ``IM``;
* every variable is a dataset or group with a ``MATLAB_class`` attribute (scalar fixed-length
  ASCII string, null-terminated);
* arrays are stored transposed: a MATLAB ``m x n x p`` array is an HDF5 ``(p, n, m)`` dataset;
* char: uint16 code units, ``MATLAB_int_decode = 2`` (int32); logical: uint8,
  ``MATLAB_int_decode = 1``;
* empty arrays: a uint64 dataset holding the MATLAB dims, ``MATLAB_empty = 1`` (uint8);
* cells: datasets of HDF5 object references whose targets live in ``/#refs#`` (named
  ``b, c, ... z, A, ... Z, ba, ...``; ``/#refs#/a`` is MATLAB's ``canonical empty``);
* structs: groups with ``MATLAB_fields`` (vlen of 1-char strings); struct arrays: groups whose
  fields are reference datasets without attributes, one reference per element;
* ``H5PATH`` attributes as MATLAB writes them: a ``/#refs#`` target carries its own path, a
  field of a struct carries the struct's ``H5PATH`` (``/`` for a top-level variable) followed
  directly by the struct's name (so fields of ``/#refs#/h`` say ``/#refs#/hh``);
* small datasets use the compact layout; large numeric ones are chunked and deflated (level 3).

>>> import numpy as np, tempfile, pathlib                           # doctest: +SKIP
>>> savemat73(pathlib.Path(tempfile.mkdtemp()) / "x.mat", {"s": {"a": np.arange(3.0)}})  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["savemat73", "mat73_header"]

COMPACT_MAX_BYTES = 4096  # below this MATLAB writes datasets with the compact layout
DEFLATE_MIN_BYTES = 65536  # above this: chunked + deflate
REF_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
INT_CLASSES = {np.dtype(t): t for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")}


def mat73_header(created: str = "Mon Apr  1 12:00:00 2019", platform: str = "GLNXA64") -> bytes:
    """The 512-byte userblock MATLAB writes in front of the HDF5 data."""
    text = f"MATLAB 7.3 MAT-file, Platform: {platform}, Created on: {created} HDF5 schema 1.00 ."
    head = text.encode("ascii").ljust(116, b" ")[:116] + bytes(8) + b"\x00\x02IM"
    return head.ljust(512, b"\x00")


def savemat73(path: str | os.PathLike[str], variables: Mapping[str, Any], *,
              created: str = "Mon Apr  1 12:00:00 2019", platform: str = "GLNXA64",
              compression: int | None = 3) -> None:  # fmt: skip
    """Write ``variables`` (name -> value) to a MATLAB v7.3 MAT file at ``path``.

    The same inputs always give the same bytes (``created`` is the header's fixed date).
    """
    import h5py

    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        writer = _Writer(f, compression)
        for name, value in variables.items():
            writer.write(f, name, value, None)
    with open(path, "r+b") as fh:
        fh.write(mat73_header(created, platform))


def _ref_name(index: int) -> str:
    name = REF_ALPHABET[index % 52]
    while index >= 52:
        index //= 52
        name = REF_ALPHABET[index % 52] + name
    return name


def _matlab_array(value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return arr.reshape(1, 1)
    return arr.reshape(1, -1) if arr.ndim == 1 else arr


class _Writer:
    """Writes values into an open h5py file, keeping the ``/#refs#`` counter."""

    def __init__(self, f: Any, compression: int | None):
        self.file = f
        self.compression = compression
        self.refs: Any = None
        self.n_refs = 0

    # --- dispatch -------------------------------------------------------------------------------
    def write(self, parent: Any, name: str, value: Any, h5path: str | None) -> Any:
        """Write ``value`` as ``parent[name]``; ``h5path`` is its ``H5PATH`` attribute or None."""
        if isinstance(value, Mapping):
            return self._struct(parent, name, value, h5path)
        if isinstance(value, str):
            return self._char(parent, name, value, h5path)
        arr = np.asarray(value)
        if arr.dtype.names is not None:
            return self._struct_array(parent, name, arr, h5path)
        if arr.dtype == object:
            return self._cell(parent, name, arr, h5path)
        if arr.dtype.kind in "US":
            return self._char(parent, name, "".join(arr.ravel().tolist()), h5path)
        return self._numeric(parent, name, arr, h5path)

    def ref(self, value: Any) -> Any:
        """Write ``value`` into ``/#refs#`` under the next free name; return its reference."""
        if self.refs is None:
            self.refs = self.file.create_group("#refs#")
            _empty(self.refs, "a", (0, 0), "canonical empty")
            self.n_refs = 1
        name = _ref_name(self.n_refs)
        self.n_refs += 1
        return self.write(self.refs, name, value, f"/#refs#/{name}").ref

    # --- MATLAB classes --------------------------------------------------------------------------
    def _numeric(self, parent: Any, name: str, arr: np.ndarray, h5path: str | None) -> Any:
        if arr.dtype == bool:
            cls, data, decode = "logical", arr.astype(np.uint8), 1
        elif arr.dtype in INT_CLASSES:
            cls, data, decode = INT_CLASSES[arr.dtype], arr, 0
        elif arr.dtype in (np.float32, np.float64):
            cls, data, decode = ("single" if arr.dtype == np.float32 else "double"), arr, 0
        else:
            raise TypeError(f"cannot write {name!r}: dtype {arr.dtype} has no MATLAB class "
                            "(use float64/float32, an integer type, bool, str, dict or object arrays)")
        data = _matlab_array(data)
        if data.size == 0:
            ds = _empty(parent, name, data.shape, cls)
        else:
            ds = self._dataset(parent, name, data.T, cls)
        if decode:
            ds.attrs.create("MATLAB_int_decode", np.int32(decode))
        return _tag(ds, h5path)

    def _char(self, parent: Any, name: str, text: str, h5path: str | None) -> Any:
        if not text:
            return _tag(_empty(parent, name, (0, 0), "char"), h5path)
        codes = np.frombuffer(text.encode("utf-16-le"), dtype="<u2").reshape(1, -1)
        ds = self._dataset(parent, name, codes.T, "char")
        ds.attrs.create("MATLAB_int_decode", np.int32(2))
        return _tag(ds, h5path)

    def _cell(self, parent: Any, name: str, arr: np.ndarray, h5path: str | None) -> Any:
        arr = _matlab_array(arr)
        if arr.size == 0:
            return _tag(_empty(parent, name, arr.shape, "cell"), h5path)
        refs = self._refs_for(arr)
        return _tag(self._dataset(parent, name, refs.T, "cell"), h5path)

    def _refs_for(self, arr: np.ndarray) -> np.ndarray:
        import h5py

        out = np.empty(arr.shape, dtype=h5py.ref_dtype)
        for index in np.ndindex(*arr.shape[::-1]):  # MATLAB's column-major element order
            index = index[::-1]
            out[index] = self.ref(arr[index])
        return out

    def _struct(self, parent: Any, name: str, fields: Mapping[str, Any], h5path: str | None) -> Any:
        group = _tag(parent.create_group(name), h5path)
        _set_class(group, "struct")
        _set_fields(group, list(fields))
        child_path = (h5path or "/") + name
        for field, value in fields.items():
            self.write(group, field, value, child_path)
        return group

    def _struct_array(self, parent: Any, name: str, arr: np.ndarray, h5path: str | None) -> Any:
        arr, fields = _matlab_array(arr), list(arr.dtype.names or ())
        if arr.size == 1:
            element = arr.reshape(-1)[0]
            return self._struct(parent, name, {f: element[f] for f in fields}, h5path)
        if arr.size == 0:
            ds = _tag(_empty(parent, name, arr.shape, "struct"), h5path)
            _set_fields(ds, fields)
            return ds
        group = _tag(parent.create_group(name), h5path)
        _set_class(group, "struct")
        _set_fields(group, fields)
        for field in fields:  # MATLAB writes element by element; here field by field
            refs = self._refs_for(arr[field])
            self._dataset(group, field, refs.T, None)
        return group

    # --- storage ---------------------------------------------------------------------------------
    def _dataset(self, parent: Any, name: str, data: np.ndarray, cls: str | None) -> Any:
        data = np.ascontiguousarray(data)
        if data.nbytes <= COMPACT_MAX_BYTES:
            ds = _compact_dataset(parent, name, data)
        elif self.compression and data.nbytes >= DEFLATE_MIN_BYTES and data.dtype != object:
            ds = parent.create_dataset(name, data=data, chunks=True, compression="gzip",
                                       compression_opts=self.compression, track_times=False)
        else:
            ds = parent.create_dataset(name, data=data, track_times=False)
        if cls is not None:
            _set_class(ds, cls)
        return ds


@functools.lru_cache(maxsize=1)
def _compact_dcpl() -> Any:
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_layout(h5py.h5d.COMPACT)
    dcpl.set_obj_track_times(False)
    return dcpl


def _compact_dataset(parent: Any, name: str, data: np.ndarray) -> Any:
    """A small dataset with the compact layout (through the low-level API: 2x faster for many objects)."""
    import h5py

    tid = h5py.h5t.STD_REF_OBJ if data.dtype == object else h5py.h5t.py_create(data.dtype)
    dsid = h5py.h5d.create(parent.id, name.encode(), tid, h5py.h5s.create_simple(data.shape), dcpl=_compact_dcpl())
    dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, data)
    return h5py.Dataset(dsid)


def _empty(parent: Any, name: str, dims: tuple[int, ...], cls: str) -> Any:
    ds = parent.create_dataset(name, data=np.asarray(dims, dtype=np.uint64), track_times=False)
    _set_class(ds, cls)
    ds.attrs.create("MATLAB_empty", np.uint8(1))
    return ds


@functools.lru_cache(maxsize=256)
def _string_type(size: int) -> Any:
    import h5py

    tid = h5py.h5t.C_S1.copy()
    tid.set_size(size)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    return tid


def _set_string_attr(obj: Any, name: str, text: str) -> None:
    """A scalar fixed-length, null-terminated ASCII string attribute, as MATLAB writes them."""
    import h5py

    raw = text.encode("ascii")
    tid = _string_type(max(len(raw), 1))
    attr = h5py.h5a.create(obj.id, name.encode(), tid, h5py.h5s.create(h5py.h5s.SCALAR))
    attr.write(np.array(raw, dtype=f"S{max(len(raw), 1)}"), mtype=tid)


def _set_class(obj: Any, cls: str) -> None:
    _set_string_attr(obj, "MATLAB_class", cls)


def _tag(obj: Any, h5path: str | None) -> Any:
    if h5path is not None:
        _set_string_attr(obj, "H5PATH", h5path)
    return obj


def _set_fields(obj: Any, fields: list[str]) -> None:
    import h5py

    names = np.empty(len(fields), dtype=object)
    for i, field in enumerate(fields):
        names[i] = np.array(list(field), dtype="S1")
    obj.attrs.create("MATLAB_fields", names, dtype=h5py.vlen_dtype(np.dtype("S1")))
