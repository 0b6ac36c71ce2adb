"""Writing groups into a zarr store and the completion protocol (template, markers, finalise).

A store is ``incomplete`` from its first byte until :func:`finalise` writes ``complete``, the
content version and the consolidated metadata, in that order. Each group is written whole by one
task and then marked ``sscxr_written``; ``--resume`` skips marked groups.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Hashable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr
import zarr
from xarray import coding
from xarray.backends.common import ArrayWriter
from xarray.backends.zarr import ZarrStore
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import ConsolidatedMetadata, GroupMetadata
from zarr.codecs import BloscCname, BloscCodec
from zarr.core.sync import sync

from sscxr.errors import StoreExistsError
from sscxr.schema import SCHEMA_VERSION, STATUS_COMPLETE, STATUS_INCOMPLETE

from .readers._matfile import Deferred
from .shards import array_chunks, codec_chunks, put_many
from .spec import ConversionSpec

try:  # xarray >= 2025.x keeps it in writers.py
    from xarray.backends.writers import dump_to_store as _dump_to_store
except ImportError:  # pragma: no cover - older xarray
    from xarray.backends.api import dump_to_store as _dump_to_store  # type: ignore[attr-defined,no-redef]

WRITTEN = "sscxr_written"
# zarr.json documents without indentation: json's C encoder instead of its pure-Python one
# (indent forces the latter), 0.27 of a session's 0.43 s of finalise; same documents as parsed JSON
COMPACT_JSON = {"json_indent": None}
LARGE = 1 << 20  # variables above this many bytes get explicit chunks


def open_store(url: str, storage_options: Mapping[str, Any] | None, *, mode: str = "r+") -> Store:
    """A zarr store for any fsspec URL (local path, memory://, s3://, ...), secret-free when pickled."""
    from sscxr.io import make_store

    return make_store(url, storage_options, read_only=mode == "r")


def store_state(store: Store) -> str | None:
    """``None`` (no store), ``"incomplete"`` or ``"complete"``."""
    try:
        root = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return None
    return str(root.attrs.get("sscxr_status", STATUS_INCOMPLETE))


def prepare(store: Store, url: str, *, overwrite: bool, resume: bool,
            attrs: Mapping[str, Any], early: EarlyArrays | None = None) -> set[str]:
    """Create (or reopen for resume) the root group; return the group paths already written.

    With ``early`` (arrays written while reading), the root this conversion created is kept
    and only given its attrs.
    """
    if early is not None and early.created:
        root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
        root.attrs.update({**attrs, "sscxr_schema_version": SCHEMA_VERSION, "sscxr_status": STATUS_INCOMPLETE})
        return set()
    state = _refuse_existing(store, url, overwrite=overwrite, resume=resume)
    if state is not None and resume and not overwrite:
        root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
        if "provenance" in root.attrs:  # else it died while reading its source: nothing to keep
            _check_same_source(root.attrs.asdict(), attrs, url)
            root.attrs["sscxr_status"] = STATUS_INCOMPLETE
            return _written_groups(root)
    _new_root(store, attrs)
    return set()


def _new_root(store: Store, attrs: Mapping[str, Any]) -> None:
    """A fresh, empty store whose root holds ``attrs`` and says ``incomplete``."""
    zarr.open_group(store, mode="w", zarr_format=3,
                    attributes={**attrs, "sscxr_schema_version": SCHEMA_VERSION, "sscxr_status": STATUS_INCOMPLETE})


def _refuse_existing(store: Store, url: str, *, overwrite: bool, resume: bool) -> str | None:
    """The store's state; a :class:`StoreExistsError` if it exists and neither flag allows it."""
    state = store_state(store)
    if state is not None and not (overwrite or resume):
        what = "a complete store" if state == STATUS_COMPLETE else "an unfinished conversion"
        raise StoreExistsError(f"{url} already holds {what}; pass --overwrite to replace it"
                               + (" or --resume to finish it" if state != STATUS_COMPLETE else ""))
    return state


def _check_same_source(old: Mapping[str, Any], new: Mapping[str, Any], url: str) -> None:
    key = lambda a: [(s["name"], s["sha256"]) for s in a.get("provenance", {}).get("sources", [])]  # noqa: E731
    if key(old) != key(new) or old.get("provenance", {}).get("spec") != new.get("provenance", {}).get("spec"):
        raise StoreExistsError(f"{url} holds an unfinished conversion of other sources or options; "
                               "--resume needs the same SRC and options (use --overwrite to start anew)")


def _written_groups(root: zarr.Group) -> set[str]:
    done = set()
    for path, node in root.members(max_depth=None):
        if isinstance(node, zarr.Group) and node.attrs.get(WRITTEN):
            done.add(path)
    return done


def encoding_for(ds: xr.Dataset, spec: ConversionSpec) -> dict[Hashable, dict[str, Any]]:
    """Chunks and codecs per variable: (cell, time) matrices get the measured dF/F chunking."""
    compressor = BloscCodec(cname=BloscCname(spec.cname), clevel=spec.clevel, shuffle="shuffle")
    enc: dict[Hashable, dict[str, Any]] = {}
    for name, var in ds.variables.items():
        if var.dtype == object:
            enc[name] = {}
            continue
        enc[name] = {"compressors": [compressor]}
        if var.dims == ("cell", "time"):
            enc[name]["chunks"] = tuple(min(c, s) or 1 for c, s in zip(spec.dff_chunks, var.shape, strict=True))
        elif var.nbytes > LARGE:
            enc[name]["chunks"] = _default_chunks(var)
    return enc


def _default_chunks(var: xr.Variable) -> tuple[int, ...]:
    """About 1 MiB chunks along the last axis, whole along the others (e.g. whisker rows)."""
    row = int(np.prod(var.shape[:-1])) * var.dtype.itemsize
    return (*var.shape[:-1], max(1, min(var.shape[-1], LARGE // max(row, 1))))


def _portable_strings(ds: xr.Dataset) -> xr.Dataset:
    """Fixed-width numpy strings have no zarr v3 spec; store them as variable-length strings."""
    strings = {name: var.copy(data=var.values.astype(object)) for name, var in ds.variables.items()
               if var.dtype.kind == "U"}
    if not strings:
        return ds
    coords = {k: v for k, v in strings.items() if k in ds.coords}
    out = ds.assign_coords(coords) if coords else ds  # one merge each, not one per variable
    data = {k: v for k, v in strings.items() if k not in ds.coords}
    return out.assign(data) if data else out


def write_group(store: Store, path: str, ds: xr.Dataset, spec: ConversionSpec,
                prewritten: Mapping[str, dict[str, Any]] | None = None) -> str:
    """Write one group whole (replacing any partial attempt), marked written by its last object.

    The group is encoded in memory first (:func:`encode_group`), then its objects go to ``store``
    in one batch (concurrent requests on S3, plain file writes locally), the group's own
    ``zarr.json``, which carries the ``sscxr_written`` marker, last: a group interrupted before
    that has no metadata and is rewritten on ``--resume``.

    ``prewritten`` names arrays whose chunks :class:`EarlyArrays` already stored under ``path``
    in this conversion (``{name: layout}``): they are kept, not re-encoded, if the group's
    encoding gives them the same layout; otherwise the group is rewritten from scratch.
    """
    staged, kept = encode_group(ds, path, spec, prewritten=prewritten)
    if prewritten and kept != set(prewritten):
        staged, kept = encode_group(ds, path, spec)
    put_group(store, path, staged, replace=not kept)
    return path


def put_group(store: Store, path: str, staged: Mapping[str, Any], *, replace: bool = True) -> None:
    """Put group ``path`` from ``staged`` (``{key: bytes or Buffer}``, e.g. the dict behind a
    ``zarr.storage.MemoryStore`` it was built in) into ``store``: with ``replace``, whatever is
    under ``path`` goes first (a partial attempt of an interrupted conversion); then the group's
    objects and the parent groups' ``zarr.json`` the store lacks (never the root's, which holds
    the attrs), and the group's own ``zarr.json`` last, so a group is only there once all of it is.
    """
    if replace:
        sync(store.delete_dir(path))
    head = f"{path}/zarr.json"
    keys = [k for k in staged if k.startswith(f"{path}/") and k != head]
    parents = [k for k in staged if k.endswith("zarr.json") and not k.startswith(f"{path}/")]
    keys += [k for k in parents if not sync(store.exists(k))]
    put_many(store, {k: staged[k] for k in keys})
    put_many(store, {head: staged[head]})


def array_layout(array: Any) -> dict[str, Any]:
    """What decides an array's chunk objects: shape, dtype, chunk grid, key encoding, codecs."""
    doc = array.metadata.to_dict()
    return {k: doc.get(k) for k in ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "codecs")}


class EarlyArrays:
    """Chunks of large arrays written while the source is still being read (ssc-1 dF/F).

    The destination is checked at once (an existing store needs ``overwrite``) but created
    only at the first :meth:`write`: the root group, ``incomplete`` and without provenance
    (which needs the whole source), then the group path is cleared. The array's chunks,
    encoded exactly as :func:`encode_group` will encode them, are compressed and put by one
    background thread (Blosc and file writes release the GIL), so the reading thread goes
    on parsing. :meth:`layouts` waits for them and tells :func:`write_group` what it may keep;
    :meth:`abandon` removes a store this object created when reading fails.

    >>> early = EarlyArrays(store, "x.zarr", spec, overwrite=False)   # doctest: +SKIP
    >>> early.write("imaging/subvolume_02", "dff", ("cell", "time"), dff)  # doctest: +SKIP
    >>> early.layouts("imaging/subvolume_02")                          # doctest: +SKIP
    {'dff': {'shape': [...], ...}}
    """

    def __init__(self, store: Store, url: str, spec: ConversionSpec, *, overwrite: bool):
        self.store, self.url, self.spec = store, url, spec
        self.existed = _refuse_existing(store, url, overwrite=overwrite, resume=False) is not None
        self.created = False
        self._layouts: dict[str, dict[str, dict[str, Any]]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._pending: list[Future[None]] = []

    def write(self, path: str, name: str, dims: tuple[str, ...], values: np.ndarray) -> StoredArray:
        """Start writing ``values`` as array ``name`` of group ``path`` (returns at once).

        Returns a :class:`StoredArray` standing for ``values``: the caller may drop ``values``
        and keep that instead (the converter puts it in the parsed tree), so a session's dF/F
        is not held in memory until the whole file is read.
        """
        if not self.created:
            _new_root(self.store, {})
            self.created = True
        if path not in self._layouts:
            sync(self.store.delete_dir(path))
            self._layouts[path] = {}
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sscxr-early")
        self._pending.append(self._pool.submit(self._write, path, name, dims, values))
        return StoredArray(self.store, self.url, f"{path}/{name}", values.shape, values.dtype)

    def _write(self, path: str, name: str, dims: tuple[str, ...], values: np.ndarray) -> None:
        """Chunks, then the array's ``zarr.json`` (so a :class:`StoredArray` can read it back);
        the group's own document, which marks it written, comes only with :func:`write_group`."""
        staged, _ = encode_group(xr.Dataset({name: (dims, values)}), path, self.spec)
        prefix = f"{path}/{name}/"
        chunks = {k: v for k, v in staged.items() if k.startswith(prefix) and not k.endswith("zarr.json")}
        array = zarr.open_array(zarr.storage.MemoryStore(staged), path=f"{path}/{name}", mode="r", zarr_format=3)
        put_many(self.store, chunks)
        put_many(self.store, {f"{prefix}zarr.json": staged[f"{prefix}zarr.json"]})
        self._layouts[path][name] = array_layout(array)

    def wait(self) -> None:
        """Block until every started write is stored; the first failure is raised."""
        pending, self._pending = self._pending, []
        try:
            for future in pending:
                future.result()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def layouts(self, path: str) -> dict[str, dict[str, Any]]:
        """``{array name: layout}`` of the arrays written early under group ``path``."""
        self.wait()
        return dict(self._layouts.get(path, {}))

    def abandon(self) -> None:
        """Remove what this object wrote, if it created the store (reading the source failed)."""
        try:
            self.wait()
        except Exception:  # noqa: BLE001 - the reading error is the one to report
            pass
        if self.created and not self.existed:
            sync(self.store.delete_dir(""))
            root = getattr(self.store, "root", None)
            if root is not None and isinstance(self.store, zarr.storage.LocalStore):
                import shutil

                shutil.rmtree(root, ignore_errors=True)


class StoredArray(Deferred):
    """An array :class:`EarlyArrays` wrote, standing in for its values: a numpy duck array for
    xarray (shape, dtype; labeling and :func:`encode_group` never touch its values), read back
    from the store by ``numpy.asarray`` or indexing. Pickles without its store (a dask worker
    reopens the URL with the options registered there).

    >>> dff = early.write("imaging/subvolume_02", "dff", ("cell", "time"), values)  # doctest: +SKIP
    >>> np.asarray(dff[:2, :3])                                                     # doctest: +SKIP
    """

    def __init__(self, store: Any, url: str, key: str, shape: tuple[int, ...], dtype: Any):
        self._store, self.url, self.key = store, url, key
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)

    def __repr__(self) -> str:
        return f"<StoredArray {self.key} {self.shape} {self.dtype} in {self.url}>"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_store": None}

    def __len__(self) -> int:
        return self.shape[0]

    def _array(self) -> zarr.Array:
        if self._store is None:
            from .tasks import options_for

            self._store = open_store(self.url, options_for(self.url), mode="r")
        return zarr.open_array(self._store, path=self.key, mode="r", zarr_format=3)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._array()[key])

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[...]
        return values if dtype is None else values.astype(dtype, copy=False)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return NotImplemented

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return NotImplemented


def encode_group(ds: xr.Dataset, path: str, spec: ConversionSpec,
                 prewritten: Mapping[str, dict[str, Any]] | None = None) -> tuple[dict[str, Any], set[str]]:
    """Every object of group ``path`` (marked written) as ``ds.to_zarr(zarr_format=3)`` would
    store it with :func:`encoding_for`, computed in memory: ``({key: bytes or Buffer}, kept)``,
    where ``kept`` are the arrays of ``prewritten`` whose layout matched, so their chunks were
    left out (they are in the store already).

    xarray's own encoding decides every array's dtype, fill value, chunks, attributes and
    dimension names (a :class:`_PlanningStore` records what it would create); zarr creates the
    metadata of all arrays in one event-loop call and :func:`~.shards.array_chunks` encodes
    numeric chunks in one pass (:func:`~.shards.codec_chunks` the strings, with their own
    codecs). Through ``to_zarr`` the same group costs ~2 ms of zarr round trips per variable
    and ~0.8 ms per chunk, most of a session's conversion
    (docs/benchmarks-conversion.md); ``tests/test_write.py`` checks that both give the same
    metadata documents and values.
    """
    with zarr.config.set(COMPACT_JSON):
        return _encode_group(ds, path, spec, prewritten)


def _encode_group(ds: xr.Dataset, path: str, spec: ConversionSpec,
                  prewritten: Mapping[str, dict[str, Any]] | None) -> tuple[dict[str, Any], set[str]]:
    ds = _portable_strings(ds)
    ds = ds.assign_attrs({WRITTEN: True})
    staged: dict[str, Any] = {}
    staging = zarr.storage.MemoryStore(staged)
    zstore = _PlanningStore.open_group(staging, mode="w", group=path, zarr_format=3, consolidated=False)
    zstore.planned = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        _dump_to_store(ds, zstore, ArrayWriter(), encoding=encoding_for(ds, spec))
    proto = default_buffer_prototype()
    blobs: dict[str, bytes] = {}
    kept: set[str] = set()
    for p in zstore.planned:
        target = _new_array(staging, f"{path}/{p.name}", p)
        if prewritten and p.name in prewritten and array_layout(target) == prewritten[p.name]:
            kept.add(p.name)
            continue
        data = np.asarray(p.data)
        chunks = array_chunks(target, data) if data.dtype == target.dtype else None
        if chunks is None and data.size:  # strings: their own codecs, in this thread
            chunks = codec_chunks(target, data)
        if chunks is not None:
            blobs.update(chunks)
        elif data.size:  # anything neither encoder handles: zarr's own path
            target[...] = data
    staged.update({k: proto.buffer.from_bytes(v) for k, v in blobs.items()})
    return staged, kept


def _new_array(staging: zarr.storage.MemoryStore, key: str, p: _Planned) -> zarr.Array:
    """The array xarray planned, its ``zarr.json`` put straight into ``staging``.

    Builds the metadata the way ``zarr.create_array`` does (zarr's own parsers for dtype, chunks
    and codecs) but without its event-loop round trips, store existence checks and parent
    writes (~1 ms per array); falls back to ``create_array`` if those internals change.
    """
    from zarr.core.array import AsyncArray
    from zarr.storage import StorePath

    try:
        meta = _metadata_v3(p)
    except (ImportError, AttributeError, TypeError):  # pragma: no cover - other zarr versions
        return zarr.create_array(staging, name=key, shape=p.shape, dtype=p.dtype, fill_value=p.fill_value,
                                 attributes=p.attrs, zarr_format=3, **p.encoding)
    staging._store_dict[f"{key}/zarr.json"] = meta.to_buffer_dict(default_buffer_prototype())["zarr.json"]
    config = p.encoding.get("config") or None
    return zarr.Array(AsyncArray(metadata=meta, store_path=StorePath(staging, key), config=config))


@functools.lru_cache(maxsize=64)
def _cached_zarr_dtype(dtype: Any) -> Any:
    from zarr.core.dtype import parse_dtype

    return parse_dtype(dtype, zarr_format=3)


def _zarr_dtype(dtype: Any) -> Any:
    """zarr's data type for a numpy dtype (or ``str``), cached: its registry lookup is ~0.2 ms."""
    try:
        return _cached_zarr_dtype(dtype)
    except TypeError:  # unhashable
        from zarr.core.dtype import parse_dtype

        return parse_dtype(dtype, zarr_format=3)


def _metadata_v3(p: _Planned) -> Any:
    from zarr.core.array import (AsyncArray, _auto_partition, _parse_chunk_encoding_v3,
                                 _parse_chunk_key_encoding)
    from zarr.core.common import parse_shapelike

    enc = p.encoding
    unknown = set(enc) - {"chunks", "compressors", "filters", "serializer", "dimension_names", "overwrite",
                          "config", "chunk_key_encoding", "shards"}
    if unknown or enc.get("shards") is not None:
        raise TypeError(f"encoding {sorted(unknown)} or shards: leave it to zarr.create_array")
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


class _PlanningStore(ZarrStore):
    """xarray's ZarrStore, recording the arrays it would create instead of creating them."""

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


def finalise(store: Store, attrs: Mapping[str, Any]) -> str:
    """Mark the store complete, pin its content version and consolidate metadata; return the version.

    Every group gets its own consolidated metadata (as ``zarr.consolidate_metadata(store,
    path=group)`` would write it), so ``sscxr.io.open_group`` reads one object for one group.
    All of it is computed from one walk over the store's metadata; the groups' documents are
    put at once, and the root's last: its single write carries the attrs, ``complete`` and the
    consolidated metadata, so a store never looks complete before it is.
    """
    with zarr.config.set(COMPACT_JSON):
        return _finalise(store, attrs)


def _finalise(store: Store, attrs: Mapping[str, Any]) -> str:
    from sscxr.io import version_of_metadata

    root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    flat: dict[str, Any] = {}
    for path, node in root.members(max_depth=None):
        meta = node.metadata
        flat[path] = dataclasses.replace(meta, consolidated_metadata=None) if isinstance(meta, GroupMetadata) else meta
    root_meta = dataclasses.replace(root.metadata, consolidated_metadata=None,
                                    attributes={**root.attrs.asdict(), **attrs, "sscxr_status": STATUS_COMPLETE})
    version = version_of_metadata(root_meta, flat)
    root_meta.attributes["content_version"] = version
    groups = sorted((p for p, m in flat.items() if isinstance(m, GroupMetadata)), key=lambda p: -p.count("/"))
    for path in groups:  # deepest first, so each group's children carry their own consolidation
        flat[path] = _consolidated(flat[path], {k[len(path) + 1:]: m for k, m in flat.items() if k.startswith(f"{path}/")})
    root_meta = _consolidated(root_meta, flat)
    proto = default_buffer_prototype()
    put_many(store, {f"{path}/zarr.json": flat[path].to_buffer_dict(proto)["zarr.json"] for path in groups})
    put_many(store, {"zarr.json": root_meta.to_buffer_dict(proto)["zarr.json"]})
    return version


def _consolidated(group: GroupMetadata, members: Mapping[str, Any]) -> GroupMetadata:
    """``group`` with the consolidated metadata of ``members`` (flat, keyed by relative path)."""
    flat = {k: dataclasses.replace(m, consolidated_metadata=ConsolidatedMetadata(metadata={}))
            if isinstance(m, GroupMetadata) and m.consolidated_metadata is None else m for k, m in members.items()}
    ConsolidatedMetadata._flat_to_nested(flat)
    return dataclasses.replace(group, consolidated_metadata=ConsolidatedMetadata(metadata=flat))
