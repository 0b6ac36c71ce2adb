"""Write MATLAB v7.3 MAT files (HDF5) the way MATLAB does, with h5py.

* 512-byte userblock with the MATLAB header text;
* every variable carries ``MATLAB_class``; arrays are stored transposed (HDF5 shape reversed);
* char arrays are uint16 with ``MATLAB_int_decode = 2``; logicals uint8 ``'logical'``;
* cells are object-reference datasets (``MATLAB_class = 'cell'``) whose referents live in ``#refs#``;
* a struct (dict) is a group with ``MATLAB_class = 'struct'`` and ``MATLAB_fields``;
* a struct array (record array) is a group whose fields are reference datasets with no class;
* empty arrays are their dims as uint64 with ``MATLAB_empty = 1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Mar 11 12:00:00 2019 HDF5 schema 1.00 ."
CLASSES = {"f8": "double", "f4": "single", "u1": "uint8", "u2": "uint16", "u4": "uint32", "u8": "uint64",
           "i1": "int8", "i2": "int16", "i4": "int32", "i8": "int64"}


def save_v73(path: str | Path, variables: dict[str, Any]) -> Path:
    """Write ``variables`` (dicts, record arrays, object arrays, strings, numbers) as MAT v7.3."""
    import h5py

    path = Path(path)
    with h5py.File(path, "w", userblock_size=512, libver="earliest") as f:
        writer = _Writer(f)
        for name, value in variables.items():
            writer.put(f, name, value)
    header = HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with path.open("r+b") as fh:
        fh.write(header)
    return path


class _Writer:
    def __init__(self, f: Any):
        self.f = f
        self.refs = f.create_group("#refs#")
        self.count = 0

    def put(self, parent: Any, name: str, value: Any) -> Any:
        if isinstance(value, dict):
            return self._struct(parent, name, value)
        if isinstance(value, np.ndarray) and value.dtype.names is not None:
            return self._struct_array(parent, name, value)
        if isinstance(value, np.ndarray) and value.dtype == object:
            return self._cell(parent, name, value)
        if isinstance(value, str):
            return self._char(parent, name, value)
        return self._numeric(parent, name, np.asarray(value))

    def _ref(self, value: Any) -> Any:
        name = _ref_name(self.count)
        self.count += 1
        return self.put(self.refs, name, value).ref

    def _struct(self, parent: Any, name: str, value: dict) -> Any:
        import h5py

        g = parent.create_group(name)
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        vlen = h5py.vlen_dtype(np.dtype("S1"))
        fields = np.empty(len(value), dtype=object)
        for i, key in enumerate(value):
            fields[i] = np.array(list(key), dtype="S1")
        g.attrs.create("MATLAB_fields", fields, dtype=vlen)
        for key, item in value.items():
            self.put(g, key, item)
        return g

    def _struct_array(self, parent: Any, name: str, value: np.ndarray) -> Any:
        import h5py

        g = parent.create_group(name)
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        vlen = h5py.vlen_dtype(np.dtype("S1"))
        names = value.dtype.names or ()
        fields = np.empty(len(names), dtype=object)
        for i, key in enumerate(names):
            fields[i] = np.array(list(key), dtype="S1")
        g.attrs.create("MATLAB_fields", fields, dtype=vlen)
        flat = value.reshape(value.shape, order="C")
        for key in names:
            refs = np.empty(flat.shape, dtype=h5py.ref_dtype)
            for idx in np.ndindex(flat.shape):
                refs[idx] = self._ref(flat[idx][key])
            g.create_dataset(key, data=refs.T)  # no MATLAB_class: the mark of a struct array
        return g

    def _cell(self, parent: Any, name: str, value: np.ndarray) -> Any:
        import h5py

        arr = value if value.ndim == 2 else value.reshape(1, -1)
        refs = np.empty(arr.shape, dtype=h5py.ref_dtype)
        for idx in np.ndindex(arr.shape):
            refs[idx] = self._ref(arr[idx])
        ds = parent.create_dataset(name, data=refs.T)
        ds.attrs["MATLAB_class"] = np.bytes_("cell")
        return ds

    def _char(self, parent: Any, name: str, value: str) -> Any:
        if not value:
            return self._empty(parent, name, "char")
        codes = np.array([[ord(c)] for c in value], dtype=np.uint16)  # 1xN char -> HDF5 (N, 1)
        ds = parent.create_dataset(name, data=codes)
        ds.attrs["MATLAB_class"] = np.bytes_("char")
        ds.attrs["MATLAB_int_decode"] = np.int32(2)
        return ds

    def _numeric(self, parent: Any, name: str, arr: np.ndarray) -> Any:
        if arr.size == 0:
            return self._empty(parent, name, "double")
        if arr.ndim < 2:
            arr = arr.reshape(1, -1)  # MATLAB row vector / scalar
        if arr.dtype == bool:
            ds = parent.create_dataset(name, data=arr.T.astype(np.uint8))
            ds.attrs["MATLAB_class"] = np.bytes_("logical")
            ds.attrs["MATLAB_int_decode"] = np.int32(1)
            return ds
        key = arr.dtype.str[1:]
        big = arr.nbytes > 1 << 20
        ds = parent.create_dataset(name, data=arr.T, chunks=True if big else None,
                                   compression="gzip" if big else None, compression_opts=3 if big else None)
        ds.attrs["MATLAB_class"] = np.bytes_(CLASSES[key])
        return ds

    def _empty(self, parent: Any, name: str, cls: str) -> Any:
        ds = parent.create_dataset(name, data=np.array([0, 0], dtype=np.uint64))
        ds.attrs["MATLAB_class"] = np.bytes_(cls)
        ds.attrs["MATLAB_empty"] = np.uint8(1)
        return ds


def _ref_name(i: int) -> str:
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    out = ""
    while True:
        out = letters[i % len(letters)] + out
        i //= len(letters)
        if not i:
            return out
