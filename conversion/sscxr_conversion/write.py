"""Writing groups into a zarr store and the completion protocol (template, markers, finalise).

A store is ``incomplete`` from its first byte until :func:`finalise` writes ``complete``, the
content version and the consolidated metadata, in that order. Each group is written whole by one
task and then marked ``sscxr_written``; ``--resume`` skips marked groups.

Groups arrive finished (labeled ``xr.Dataset``s the readers returned) and are written whole:
nothing is written while a source is still being read. Public APIs throughout (``to_zarr``
into memory, ``zarr.consolidate_metadata``); :mod:`._zarr_fastpath` computes the same objects
faster where zarr's internals are the tested ones (``SSCXR_NO_FASTPATH=1`` turns it off).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype
from zarr.codecs import BloscCname, BloscCodec

from sscxr._fastpath import fall_back
from sscxr._zarr_compat import sync
from sscxr.errors import StoreExistsError
from sscxr.schema import SCHEMA_VERSION, STATUS_COMPLETE, STATUS_INCOMPLETE

from . import _zarr_fastpath
from .shards import put_many
from .spec import ConversionSpec

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


def prepare(store: Store, url: str, *, overwrite: bool, resume: bool, attrs: Mapping[str, Any]) -> set[str]:
    """Create (or reopen for resume) the root group; return the group paths already written."""
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


def write_group(store: Store, path: str, ds: xr.Dataset, spec: ConversionSpec) -> str:
    """Write one group whole (replacing any partial attempt), marked written by its last object.

    The group is encoded in memory first (:func:`encode_group`), then its objects go to ``store``
    in one batch (concurrent requests on S3, plain file writes locally), the group's own
    ``zarr.json``, which carries the ``sscxr_written`` marker, last: a group interrupted before
    that has no metadata and is rewritten on ``--resume``.

    >>> write_group(store, "trials", trials, ConversionSpec())  # doctest: +SKIP
    'trials'
    """
    put_group(store, path, encode_group(ds, path, spec))
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


def encode_group(ds: xr.Dataset, path: str, spec: ConversionSpec) -> dict[str, Any]:
    """Every object of group ``path`` (marked written) as ``ds.to_zarr(zarr_format=3)`` stores it
    with :func:`encoding_for`, computed in memory: ``{key: Buffer}``, parent groups included.

    The public path is exactly that, ``to_zarr`` into a ``zarr.storage.MemoryStore``; the fast
    path ``group encoder`` (:func:`._zarr_fastpath.encode_group`) gives the same objects without
    zarr's per-array and per-chunk event-loop round trips (``docs/benchmarks-conversion.md``).

    >>> staged = encode_group(xr.Dataset({"a": ("x", [1, 2])}), "trials", ConversionSpec())
    >>> sorted(staged)
    ['trials/a/c/0', 'trials/a/zarr.json', 'trials/zarr.json', 'zarr.json']
    """
    ds = _portable_strings(ds).assign_attrs({WRITTEN: True})
    encoding = encoding_for(ds, spec)
    with zarr.config.set(COMPACT_JSON):
        if _zarr_fastpath.usable(_zarr_fastpath.GROUP_ENCODER):
            try:
                return _zarr_fastpath.encode_group(ds, path, encoding)
            except _zarr_fastpath.CHANGED as error:
                fall_back(_zarr_fastpath.GROUP_ENCODER, error)
        staged: dict[str, Any] = {}
        ds.to_zarr(zarr.storage.MemoryStore(staged), group=path, mode="w", zarr_format=3, consolidated=False,
                   encoding=encoding)
        return staged


def finalise(store: Store, attrs: Mapping[str, Any]) -> str:
    """Mark the store complete, pin its content version and consolidate metadata; return the version.

    Every group gets its own consolidated metadata (as ``zarr.consolidate_metadata(store,
    path=group)`` writes it), so ``sscxr.io.open_group`` reads one object for one group. The
    root's document says ``complete`` only in its last write, which also carries the consolidated
    metadata, so a store never looks complete before it is. The fast path ``consolidation``
    computes every document from one walk over the store's metadata and puts them at once.

    >>> finalise(store, {"archive": "ssc-1", "provenance": {...}})  # doctest: +SKIP
    '3f1c0a9b2d4e5f60'
    """
    with zarr.config.set(COMPACT_JSON):
        return _finalise(store, attrs)


def _finalise(store: Store, attrs: Mapping[str, Any]) -> str:
    if _zarr_fastpath.usable(_zarr_fastpath.CONSOLIDATION):
        try:
            return _finalise_in_memory(store, attrs)
        except _zarr_fastpath.CHANGED as error:
            fall_back(_zarr_fastpath.CONSOLIDATION, error)
    return _finalise_with_zarr(store, attrs)


def _finalise_with_zarr(store: Store, attrs: Mapping[str, Any]) -> str:
    """The public path: ``zarr.consolidate_metadata`` for every group, deepest first, then the
    root; ``complete`` and the content version (which does not cover either) go in last, in one
    write of the root's document that keeps its consolidated metadata."""
    from sscxr.io import content_version

    root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    root.attrs.update({**attrs, "sscxr_status": STATUS_INCOMPLETE})
    version = content_version(root)
    groups = [p for p, node in root.members(max_depth=None) if isinstance(node, zarr.Group)]
    with warnings.catch_warnings():  # "consolidated metadata is not part of the zarr v3 spec"
        warnings.simplefilter("ignore", category=UserWarning)
        for path in sorted(groups, key=lambda p: -p.count("/")):
            zarr.consolidate_metadata(store, path=path, zarr_format=3)
        zarr.consolidate_metadata(store, zarr_format=3)
        root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=True)
        root.attrs.update({"sscxr_status": STATUS_COMPLETE, "content_version": version})
    return version


def _finalise_in_memory(store: Store, attrs: Mapping[str, Any]) -> str:
    """The fast path: every document computed from one walk over the store's metadata."""
    from sscxr.io import version_of_metadata

    group_meta = _zarr_fastpath.is_group_metadata
    root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    flat: dict[str, Any] = {}
    for path, node in root.members(max_depth=None):
        meta: Any = node.metadata
        flat[path] = dataclasses.replace(meta, consolidated_metadata=None) if group_meta(meta) else meta
    root_meta = dataclasses.replace(root.metadata, consolidated_metadata=None,
                                    attributes={**root.attrs.asdict(), **attrs, "sscxr_status": STATUS_COMPLETE})
    version = version_of_metadata(root_meta, flat)
    root_meta.attributes["content_version"] = version
    groups = sorted((p for p, m in flat.items() if group_meta(m)), key=lambda p: -p.count("/"))
    for path in groups:  # deepest first, so each group's children carry their own consolidation
        flat[path] = _zarr_fastpath.consolidated(
            flat[path], {k[len(path) + 1:]: m for k, m in flat.items() if k.startswith(f"{path}/")})
    root_meta = _zarr_fastpath.consolidated(root_meta, flat)
    proto = default_buffer_prototype()
    put_many(store, {f"{path}/zarr.json": flat[path].to_buffer_dict(proto)["zarr.json"] for path in groups})
    put_many(store, {"zarr.json": root_meta.to_buffer_dict(proto)["zarr.json"]})
    return version
