"""Writing groups into a zarr store and the completion protocol (template, markers, finalise).

A store is ``incomplete`` from its first byte until :func:`finalise` writes ``complete``, the
content version and the consolidated metadata, in that order. Each group is written whole by one
task and then marked ``sscxr_written``; ``--resume`` skips marked groups.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec
from zarr.core.sync import sync

from sscxr.errors import StoreExistsError
from sscxr.schema import SCHEMA_VERSION, STATUS_COMPLETE, STATUS_INCOMPLETE

from .shards import array_writer, put_many
from .spec import ConversionSpec

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


def _is_large(var: xr.Variable) -> bool:
    """Numbers above :data:`LARGE` bytes: written by :func:`~.shards.array_writer`, whole."""
    return var.dtype.kind in "fiu" and var.nbytes > LARGE


def _lazy(values: np.ndarray) -> Any:
    """``values`` as a one-chunk dask array without the copy and hashing of ``from_array``."""
    import uuid

    import dask.array

    name = f"sscxr-{uuid.uuid4().hex}"
    return dask.array.Array({(name, *(0,) * values.ndim): values}, name,
                            chunks=tuple((n,) for n in values.shape), dtype=values.dtype)


def write_group(store: zarr.abc.store.Store, path: str, ds: xr.Dataset, spec: ConversionSpec) -> str:
    """Write one group whole (replacing any partial attempt), then mark it written.

    xarray encodes the group into an in-memory zarr store first, then every object goes to
    ``store`` in one concurrent batch: zarr writes arrays one after another, each a few
    sequential requests, which on S3 is a round trip per object and locally ~10 ms per
    variable (docs/benchmarks-conversion.md). Numeric variables above :data:`LARGE` bytes
    (dF/F, master images) skip zarr's per-chunk pipeline (~0.8 ms of Python per chunk): xarray
    writes only their metadata and :func:`~.shards.array_writer` encodes all their chunks in one
    pass. The marker is set only after the batch landed.
    """
    ds = _portable_strings(ds)
    staged: dict[str, Any] = {}
    staging = zarr.storage.MemoryStore(staged)
    large = {name: var.values for name, var in ds.variables.items() if _is_large(var) and name not in ds.dims}
    if large:  # lazy for xarray, which then writes their metadata only; chunks are encoded below
        lazy = {name: ds[name].variable.copy(data=_lazy(values)) for name, values in large.items()}
        ds = ds.assign_coords({k: v for k, v in lazy.items() if k in ds.coords})
        ds = ds.assign({k: v for k, v in lazy.items() if k not in ds.coords})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        ds.to_zarr(staging, group=path, mode="w", zarr_format=3, consolidated=False,
                   encoding=encoding_for(ds, spec), compute=False)
    for name, values in large.items():
        array = zarr.open_array(staging, path=f"{path}/{name}", mode="r+", zarr_format=3)
        write_all = array_writer(array) if array.dtype == values.dtype else None
        if write_all is not None:
            write_all(values)
        else:  # a layout or encoding the one-pass writer does not handle: zarr's own path
            array[...] = values
    _upload(staged, store, path)
    zarr.open_group(store, path=path, mode="r+", zarr_format=3).attrs[WRITTEN] = True
    return path


def _upload(staged: Mapping[str, Any], store: zarr.abc.store.Store, path: str) -> None:
    """Replace ``path`` in ``store`` by the staged objects under it (and create missing parents)."""
    sync(store.delete_dir(path))  # a partial attempt (interrupted conversion) goes first
    keys = [k for k in staged if k.startswith(f"{path}/")]
    parents = [k for k in staged if k.endswith("zarr.json") and not k.startswith(f"{path}/")]
    keys += [k for k in parents if not sync(store.exists(k))]  # never the root's (it holds the attrs)
    put_many(store, {k: staged[k] for k in keys})


def finalise(store: zarr.abc.store.Store, attrs: Mapping[str, Any]) -> str:
    """Mark the store complete, pin its content version and consolidate metadata (last).

    Every group gets its own consolidated metadata too, so ``sscxr.io.open_group`` reads one
    object for one group; the root's comes last, and only it makes the store look complete.
    """
    from sscxr.io import content_version

    root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    root.attrs.update({**attrs, "sscxr_status": STATUS_COMPLETE})
    version = content_version(root)
    root.attrs["content_version"] = version
    groups = [path for path, node in root.members(max_depth=None) if isinstance(node, zarr.Group)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(groups, key=lambda p: -p.count("/")):  # deepest first: one GET per group
            zarr.consolidate_metadata(store, path=path)
        zarr.consolidate_metadata(store)
    return version
