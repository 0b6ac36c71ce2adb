"""Writing groups into a zarr store and the completion protocol (template, markers, finalise).

A store is ``incomplete`` from its first byte until :func:`finalise` writes ``complete``, the
content version and the consolidated metadata, in that order. Each group is written whole by one
task and then marked ``sscxr_written``; ``--resume`` skips marked groups.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr
from xarray import coding
from xarray.backends.common import ArrayWriter
from xarray.backends.zarr import ZarrStore
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import ConsolidatedMetadata, GroupMetadata
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from sscxr.errors import StoreExistsError
from sscxr.schema import SCHEMA_VERSION, STATUS_COMPLETE, STATUS_INCOMPLETE

from .shards import array_chunks, put_many
from .spec import ConversionSpec

try:  # xarray >= 2025.x keeps it in writers.py
    from xarray.backends.writers import dump_to_store as _dump_to_store
except ImportError:  # pragma: no cover - older xarray
    from xarray.backends.api import dump_to_store as _dump_to_store  # type: ignore[attr-defined,no-redef]

WRITTEN = "sscxr_written"
LARGE = 1 << 20  # variables above this many bytes get explicit chunks


def open_store(url: str, storage_options: Mapping[str, Any] | None, *, mode: str = "r+") -> zarr.abc.store.Store:
    """A zarr store for any fsspec URL (local path, memory://, s3://, ...), secret-free when pickled."""
    from sscxr.io import make_store

    return make_store(url, storage_options, read_only=mode == "r")


def store_state(store: zarr.abc.store.Store) -> str | None:
    """``None`` (no store), ``"incomplete"`` or ``"complete"``."""
    try:
        root = zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, KeyError):
        return None
    return str(root.attrs.get("sscxr_status", STATUS_INCOMPLETE))


def prepare(store: zarr.abc.store.Store, url: str, *, overwrite: bool, resume: bool,
            attrs: Mapping[str, Any]) -> set[str]:
    """Create (or reopen for resume) the root group; return the group paths already written."""
    state = store_state(store)
    if state is not None and not (overwrite or resume):
        what = "a complete store" if state == STATUS_COMPLETE else "an unfinished conversion"
        raise StoreExistsError(f"{url} already holds {what}; pass --overwrite to replace it"
                               + (" or --resume to finish it" if state != STATUS_COMPLETE else ""))
    if state is not None and resume and not overwrite:
        root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
        _check_same_source(root.attrs.asdict(), attrs, url)
        root.attrs["sscxr_status"] = STATUS_INCOMPLETE
        return _written_groups(root)
    root = zarr.open_group(store, mode="w", zarr_format=3)
    root.attrs.update({**attrs, "sscxr_schema_version": SCHEMA_VERSION, "sscxr_status": STATUS_INCOMPLETE})
    return set()


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


def encoding_for(ds: xr.Dataset, spec: ConversionSpec) -> dict[str, dict[str, Any]]:
    """Chunks and codecs per variable: (cell, time) matrices get the measured dF/F chunking."""
    compressor = BloscCodec(cname=spec.cname, clevel=spec.clevel, shuffle="shuffle")
    enc: dict[str, dict[str, Any]] = {}
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
    out = ds.copy()
    for name, var in ds.variables.items():
        if var.dtype.kind == "U":
            out[name] = var.copy(data=var.values.astype(object))
    return out


def write_group(store: zarr.abc.store.Store, path: str, ds: xr.Dataset, spec: ConversionSpec) -> str:
    """Write one group whole (replacing any partial attempt), marked written by its last object.

    The group is encoded in memory first (:func:`encode_group`), then its objects go to ``store``
    in one batch (concurrent requests on S3, plain file writes locally), the group's own
    ``zarr.json``, which carries the ``sscxr_written`` marker, last: a group interrupted before
    that has no metadata and is rewritten on ``--resume``.
    """
    staged = encode_group(ds, path, spec)
    sync(store.delete_dir(path))  # a partial attempt (interrupted conversion) goes first
    head = f"{path}/zarr.json"
    keys = [k for k in staged if k.startswith(f"{path}/") and k != head]
    parents = [k for k in staged if k.endswith("zarr.json") and not k.startswith(f"{path}/")]
    keys += [k for k in parents if not sync(store.exists(k))]  # never the root's (it holds the attrs)
    put_many(store, {k: staged[k] for k in keys})
    put_many(store, {head: staged[head]})
    return path


def encode_group(ds: xr.Dataset, path: str, spec: ConversionSpec) -> dict[str, Any]:
    """Every object of group ``path`` (marked written) as ``ds.to_zarr(zarr_format=3)`` would
    store it with :func:`encoding_for`, computed in memory: ``{key: bytes or Buffer}``.

    xarray's own encoding decides every array's dtype, fill value, chunks, attributes and
    dimension names (a :class:`_PlanningStore` records what it would create); zarr creates the
    metadata of all arrays in one event-loop call and :func:`~.shards.array_chunks` encodes
    numeric chunks in one pass. Through ``to_zarr`` the same group costs ~2 ms of zarr
    round trips per variable and ~0.8 ms per chunk, most of a session's conversion
    (docs/benchmarks-conversion.md); ``tests/test_write.py`` checks that both give the same
    metadata documents and values.
    """
    ds = _portable_strings(ds)
    ds = ds.assign_attrs({WRITTEN: True})
    staged: dict[str, Any] = {}
    staging = zarr.storage.MemoryStore(staged)
    zstore = _PlanningStore.open_group(staging, mode="w", group=path, zarr_format=3, consolidated=False)
    zstore.planned = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        _dump_to_store(ds, zstore, ArrayWriter(), encoding=encoding_for(ds, spec))
    group = zstore.zarr_group._async_group
    blobs: dict[str, bytes] = {}

    async def create(p: _Planned) -> None:
        array = await group.create_array(p.name, shape=p.shape, dtype=p.dtype, fill_value=p.fill_value,
                                         attributes=p.attrs, **p.encoding)
        data, target = np.asarray(p.data), zarr.Array(array)
        chunks = array_chunks(target, data) if data.dtype == target.dtype else None
        if chunks is not None:
            blobs.update(chunks)
        elif data.size:  # strings and anything the one-pass encoder does not handle: zarr's own path
            await array.setitem(Ellipsis, data)

    sync(_gather(create(p) for p in zstore.planned))
    proto = default_buffer_prototype()
    staged.update({k: proto.buffer.from_bytes(v) for k, v in blobs.items()})
    return staged


async def _gather(coroutines: Any) -> None:
    await asyncio.gather(*coroutines)


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


def finalise(store: zarr.abc.store.Store, attrs: Mapping[str, Any]) -> str:
    """Mark the store complete, pin its content version and consolidate metadata; return the version.

    Every group gets its own consolidated metadata (as ``zarr.consolidate_metadata(store,
    path=group)`` would write it), so ``sscxr.io.open_group`` reads one object for one group.
    All of it is computed from one walk over the store's metadata; the groups' documents are
    put at once, and the root's last: its single write carries the attrs, ``complete`` and the
    consolidated metadata, so a store never looks complete before it is.
    """
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
