"""The converter's fast paths into zarr's, xarray's and c-blosc's internals, each with a public twin.

Every use of another package's private API by the conversion write path is here, behind
:mod:`sscxr._fastpath`: each fast path checks that it may run (:func:`usable`: not
``SSCXR_NO_FASTPATH=1``, not failed before, the package's version in the range it is tested
with) and, when the internals it uses fail, :func:`sscxr._fastpath.fall_back` warns once in one
line and the caller takes the public path, which writes the same objects (``tests/
test_fastpath_write.py`` converts the same sources both ways and compares the stores).

Fast paths (what each buys: ``docs/benchmarks-conversion.md``):

``group encoder`` (:func:`encode_group`)
    a group's objects in memory without zarr's per-array and per-chunk event-loop round trips:
    xarray's own encoding is recorded by a ``ZarrStore`` subclass (overriding its private
    ``_create_new_array``), array metadata is built by zarr's private parsers, and chunks are
    encoded in one pass. Public twin: ``Dataset.to_zarr`` into a ``zarr.storage.MemoryStore``.
``consolidation`` (:func:`consolidated`)
    every group's consolidated metadata from one walk over the store (zarr's private
    ``ConsolidatedMetadata._flat_to_nested``). Public twin: ``zarr.consolidate_metadata`` per group.
``blosc into`` (:func:`blosc_compress_ctx`)
    c-blosc's ``blosc_compress_ctx`` (shipped inside numcodecs) called through ctypes into a
    reused buffer. Public twin: ``numcodecs.Blosc.encode`` (same bytes, a new object per chunk).

>>> usable(GROUP_ENCODER) in (True, False)
True
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.buffer import default_buffer_prototype

from sscxr._fastpath import enabled, fall_back, version_ok

GROUP_ENCODER = "group encoder"
CONSOLIDATION = "consolidation"
BLOSC_INTO = "blosc into"

#: The versions each fast path is tested with (``at_least``, ``below``): outside them it is off.
TESTED = {GROUP_ENCODER: ("zarr", "3.1", "3.2"), CONSOLIDATION: ("zarr", "3.1", "3.2"),
          BLOSC_INTO: ("numcodecs", "0.16", "0.17")}

#: What a changed internal raises: an attribute, import or signature that is gone.
CHANGED = (ImportError, AttributeError, TypeError, NotImplementedError)


def usable(name: str) -> bool:
    """Whether fast path ``name`` may run here (on, not failed, a tested package version)."""
    if not enabled(name):
        return False
    package, at_least, below = TESTED[name]
    return version_ok(name, package, at_least=at_least, below=below)


# --- group encoder ------------------------------------------------------------------------------

def encode_group(ds: xr.Dataset, path: str, encoding: Mapping[Hashable, dict[str, Any]]) -> dict[str, Any]:
    """Every object of group ``path`` as ``ds.to_zarr(store, group=path, mode="w", zarr_format=3,
    consolidated=False, encoding=encoding)`` writes it into an empty ``MemoryStore``:
    ``{key: Buffer}``. Raises one of :data:`CHANGED` when zarr's or xarray's internals moved.
    """
    from xarray.backends.common import ArrayWriter

    from .shards import array_chunks

    try:  # xarray >= 2025.x keeps it in writers.py
        from xarray.backends.writers import dump_to_store
    except ImportError:  # pragma: no cover - older xarray
        from xarray.backends.api import dump_to_store  # type: ignore[attr-defined,no-redef]

    staged: dict[str, Any] = {}
    staging = zarr.storage.MemoryStore(staged)
    zstore = _planning_store().open_group(staging, mode="w", group=path, zarr_format=3, consolidated=False)
    zstore.planned = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        dump_to_store(ds, zstore, ArrayWriter(), encoding=dict(encoding))
    proto = default_buffer_prototype()
    blobs: dict[str, bytes] = {}
    for p in zstore.planned:
        target = _new_array(staging, f"{path}/{p.name}", p)
        data = np.asarray(p.data)
        chunks = array_chunks(target, data, skip_empty=True) if data.dtype == target.dtype else None
        if chunks is None and data.size:  # strings: their own codecs, in this thread
            chunks = codec_chunks(target, data)
        if chunks is not None:
            blobs.update(chunks)
        elif data.size:  # anything neither encoder handles: zarr's own path
            target[...] = data
    staged.update({k: proto.buffer.from_bytes(v) for k, v in blobs.items()})
    return staged


def _new_array(staging: zarr.storage.MemoryStore, key: str, p: _Planned) -> zarr.Array:
    """The array xarray planned, its ``zarr.json`` put straight into ``staging``: the metadata
    ``zarr.create_array`` builds (zarr's own parsers for dtype, chunks and codecs), without its
    event-loop round trips, existence checks and parent writes (~1 ms per array)."""
    from zarr.storage import StorePath

    meta = _metadata_v3(p)
    staging._store_dict[f"{key}/zarr.json"] = meta.to_buffer_dict(default_buffer_prototype())["zarr.json"]
    config = p.encoding.get("config") or None
    return zarr.Array(zarr.AsyncArray(metadata=meta, store_path=StorePath(staging, key), config=config))


@functools.lru_cache(maxsize=64)
def _cached_zarr_dtype(dtype: Any) -> Any:
    return zarr.dtype.parse_dtype(dtype, zarr_format=3)


def _zarr_dtype(dtype: Any) -> Any:
    """zarr's data type for a numpy dtype (or ``str``), cached: its registry lookup is ~0.2 ms."""
    try:
        return _cached_zarr_dtype(dtype)
    except TypeError:  # unhashable
        return zarr.dtype.parse_dtype(dtype, zarr_format=3)


def _metadata_v3(p: _Planned) -> Any:
    from zarr.core.array import (AsyncArray, _auto_partition, _parse_chunk_encoding_v3,
                                 _parse_chunk_key_encoding)
    from zarr.core.common import parse_shapelike

    enc = p.encoding
    unknown = set(enc) - {"chunks", "compressors", "filters", "serializer", "dimension_names", "overwrite",
                          "config", "chunk_key_encoding", "shards"}
    if unknown or enc.get("shards") is not None:
        raise NotImplementedError(f"encoding {sorted(unknown)} or shards: left to zarr.create_array")
    zdtype = _zarr_dtype(p.dtype)
    shape = parse_shapelike(p.shape)
    item_size = getattr(zdtype, "item_size", 1)
    _, chunks = _auto_partition(array_shape=shape, shard_shape=None, chunk_shape=enc.get("chunks", "auto"),
                                item_size=item_size)
    array_array, array_bytes, bytes_bytes = _parse_chunk_encoding_v3(
        compressors=enc.get("compressors", "auto"), filters=enc.get("filters", "auto"),
        serializer=enc.get("serializer", "auto"), dtype=zdtype)
    return AsyncArray._create_metadata_v3(
        shape=shape, dtype=zdtype, fill_value=p.fill_value, chunk_shape=chunks,
        chunk_key_encoding=_parse_chunk_key_encoding(enc.get("chunk_key_encoding"), zarr_format=3),
        codecs=(*array_array, array_bytes, *bytes_bytes), dimension_names=enc.get("dimension_names"),
        attributes=p.attrs)


class _Planned:
    """An array xarray would create, and the data it would write into it."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: Any, fill_value: Any,
                 encoding: dict[str, Any], attrs: dict[str, Any]):
        self.name, self.shape, self.dtype, self.fill_value = name, shape, dtype, fill_value
        self.encoding, self.attrs = encoding, attrs
        self.data: Any = None

    def __setitem__(self, key: Any, value: Any) -> None:
        whole = key is Ellipsis or key == () or all(k == slice(None) for k in key)
        if not whole:
            raise NotImplementedError(f"a region write {key!r} into {self.name}")
        self.data = value


@functools.cache
def _planning_store() -> Any:
    """xarray's ZarrStore, recording the arrays it would create instead of creating them."""
    from xarray import coding
    from xarray.backends.zarr import ZarrStore

    class PlanningStore(ZarrStore):
        __slots__ = ("planned",)
        planned: list[_Planned]

        def _create_new_array(self, *, name: str, shape: Any, dtype: Any, fill_value: Any,  # type: ignore[override]
                              encoding: dict[str, Any], attrs: dict[str, Any]) -> _Planned:
            encoding = dict(encoding)
            if coding.strings.check_vlen_dtype(dtype) is str:
                dtype = str
            encoding["config"] = {c: encoding.pop(c) for c in ("write_empty_chunks", "order") if c in encoding}
            encoding.pop("fill_value", None)
            planned = _Planned(name, shape, dtype, fill_value, encoding, attrs)
            self.planned.append(planned)
            return planned

    if not hasattr(ZarrStore, "_create_new_array"):  # the hook this class overrides is gone
        raise AttributeError("xarray's ZarrStore has no _create_new_array")
    return PlanningStore


def codec_chunks(array: zarr.Array, data: np.ndarray) -> dict[str, bytes] | None:
    """Every chunk object of ``array`` holding ``data``, encoded in this thread by the array's own
    codecs (each codec's synchronous encoder, as zarr's pipeline runs them), or None when the
    layout is not one array-to-bytes codec followed by bytes-to-bytes codecs on a regular grid,
    or this fast path is off (then ``array[...] = data``).

    For the layouts :func:`~.shards.array_chunks` does not encode, such as variable-length strings
    (``vlen-utf8`` + ``zstd``): ``array[...] = data`` costs ~1.5 ms of event-loop round trips
    per array, ~60 arrays of a session. As zarr does, chunks equal to the fill value are not
    written (unless the array's ``write_empty_chunks`` is set); edge chunks are padded with it.

    >>> blobs = codec_chunks(group["kind"], np.array(["touch", "lick"], dtype=object))  # doctest: +SKIP
    """
    from zarr.abc.codec import ArrayBytesCodec, BytesBytesCodec
    from zarr.codecs import ShardingCodec

    from .shards import _all_fill, _chunks_of, _padded, chunk_key, regular_chunks

    if not usable(GROUP_ENCODER):
        return None
    meta = array.metadata
    codecs: list[Any] = list(getattr(meta, "codecs", ()))
    if (not codecs or not isinstance(codecs[0], ArrayBytesCodec) or isinstance(codecs[0], ShardingCodec)
            or not all(isinstance(c, BytesBytesCodec) for c in codecs[1:])
            or not all(hasattr(c, "_encode_sync") for c in codecs)):
        return None
    chunk_shape = regular_chunks(array)
    if chunk_shape is None:
        return None
    if data.shape != array.shape:
        raise ValueError(f"data of shape {data.shape} for an array of shape {array.shape}")
    config, proto = array.async_array.config, default_buffer_prototype()
    data = np.asarray(data, dtype=array.dtype)
    head: Any = codecs[0]
    blobs = {}
    for pos, chunk in _chunks_of(data, chunk_shape):
        spec = meta.get_chunk_spec(pos, config, proto)
        chunk = _padded(chunk, chunk_shape, spec.fill_value)
        if not config.write_empty_chunks and _all_fill(chunk, spec.fill_value):
            continue
        encoded = head._encode_sync(proto.nd_buffer.from_numpy_array(chunk), spec)
        for codec in codecs[1:]:
            if encoded is None:
                break
            encoded = codec._encode_sync(encoded, spec)
        if encoded is not None:
            blobs[chunk_key(array, pos)] = encoded.to_bytes()
    return blobs


# --- consolidation ------------------------------------------------------------------------------

def is_group_metadata(meta: Any) -> bool:
    """Whether ``meta`` (a node's ``.metadata``) is a group's."""
    from zarr.core.group import GroupMetadata

    return isinstance(meta, GroupMetadata)


def consolidated(group: Any, members: Mapping[str, Any]) -> Any:
    """``group`` (metadata) with the consolidated metadata of ``members`` (flat, keyed by relative
    path), as ``zarr.consolidate_metadata`` would write it."""
    from zarr.core.group import ConsolidatedMetadata

    flat = {k: dataclasses.replace(m, consolidated_metadata=ConsolidatedMetadata(metadata={}))
            if is_group_metadata(m) and m.consolidated_metadata is None else m for k, m in members.items()}
    ConsolidatedMetadata._flat_to_nested(flat)
    return dataclasses.replace(group, consolidated_metadata=ConsolidatedMetadata(metadata=flat))


# --- blosc into ---------------------------------------------------------------------------------

@functools.cache
def _blosc_ctx() -> Any:
    import ctypes

    import numcodecs.blosc

    fn = ctypes.CDLL(numcodecs.blosc.__file__).blosc_compress_ctx  # ctypes releases the GIL while it runs
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_void_p,
                   ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def blosc_compress_ctx() -> Any:
    """c-blosc's ``blosc_compress_ctx`` from the library numcodecs ships (the very function
    ``numcodecs.Blosc.encode`` calls off the main thread), or None: this fast path is off, or
    the symbol is not there (a numcodecs without c-blosc 1), which falls back once."""
    if not usable(BLOSC_INTO):
        return None
    try:
        return _blosc_ctx()
    except (OSError, AttributeError) as error:
        fall_back(BLOSC_INTO, error)
        return None
