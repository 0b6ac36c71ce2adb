"""Open sscxr stores lazily from a URL: the public opening module.

The library knows storage only as a URL plus ``storage_options`` (STYLE rule 3): a local path,
``memory://``, ``s3://bucket/prefix/x.zarr``, a cached ``simplecache::s3://...`` chain, or any
URL fsspec opens. S3 support is the ``s3`` extra; when `obstore <https://developmentseed.org/obstore>`_
is installed, ``s3://`` URLs use it (faster than s3fs on every measurement in
``docs/benchmarks-remote.md``); set ``SSCXR_S3_CLIENT=s3fs`` to force s3fs. s3fs is also used when
credentials can come only from an AWS profile (``AWS_PROFILE``, ``~/.aws/credentials``), which
obstore does not read.

>>> import sscxr.io as sio
>>> tree = sio.open_session("s3://bucket/an197522_2013_03_08.zarr",
...                         storage_options={"anon": True})              # doctest: +SKIP
>>> one = sio.open_group("s3://bucket/an197522_2013_03_08.zarr",
...                      "imaging/subvolume_05", storage_options={"anon": True})  # doctest: +SKIP
>>> one.dff.sel(cell=12).isel(time=slice(0, 80)).values                  # doctest: +SKIP

Credentials never leave the process that was given them: stores built here pickle (for dask
graphs, ``distributed`` workers, ``cloudpickle``) without any secret. Unpickled in the same
process they find the secret again in the process-local credential registry
(:mod:`sscxr.credentials`); elsewhere they use the options registered there for their URL
(:func:`register_worker_credentials`), else the worker's own credential chain
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, roles; with s3fs also ``~/.aws`` profiles).

This module opens stores; the other jobs live beside it and their public names are re-exported
here: building stores (:func:`make_store`, :func:`check_writable`, :func:`storage_errors`:
``sscxr._stores``), content versions (:func:`content_version`, :func:`version_of_metadata`:
:mod:`sscxr.content`) and credentials (:func:`register_credentials`,
:func:`register_worker_credentials`: :mod:`sscxr.credentials`).
"""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import secrets
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import numpy as np
import xarray as xr
import zarr
from zarr.abc.store import Store
from zarr.storage import StorePath

from . import _stores
from ._checks import (  # noqa: F401  (ARCHIVE_OPENERS: re-exported)
    ARCHIVE_OPENERS,
    check_root as _check_root,
    check_version as _check_version,
    refuse_removed as _refuse_removed,
    refuse_unfinished as _refuse_unfinished,
)
from ._metadata import (
    MetadataCache as _MetadataCache,
    dimension_names as _dimension_names,
    get_document as _get_document,
    has_consolidated as _has_consolidated,
    prefetch_indexes as _prefetch_indexes,
    read_arrays as _read_arrays,
    v3_group as _v3_group,
)
from ._storage_errors import translated as _translated
from ._stores import (  # noqa: F401  (re-exported: sscxr.io is where users and the converter find them)
    LOCAL_PROTOCOLS as _LOCAL_PROTOCOLS,
    OBSTORE_RETRY,
    Recipe as _Recipe,
    _obstore_s3_kwargs,
    _resolve,
    check_writable,
    make_store,
    protocol as _protocol,
    storage_errors,
)
from .content import (  # noqa: F401  (re-exported)
    VERSION_EXCLUDED_ATTRS,
    VERSION_EXCLUDED_PROVENANCE,
    _version_of_group,
    content_version,
    version_of_metadata,
)
from .credentials import (  # noqa: F401  (re-exported)
    is_secret as _is_secret,
    redact as _redact,
    register_credentials,
    register_worker_credentials,
    secret_values as _secret_values,
)
from .errors import MissingDependencyError, SchemaError, SscxrError

__all__ = [
    "ANALYSIS_BLOCK_BYTES",
    "Chunks",
    "StoreLike",
    "GroupNotFoundError",
    "content_version",
    "describe",
    "make_store",
    "open_animal",
    "open_group",
    "open_session",
    "open_store",
    "read_attrs",
    "register_credentials",
    "register_worker_credentials",
    "analysis_chunks",
    "check_writable",
    "storage_errors",
    "version_of_metadata",
]

Chunks: TypeAlias = Literal["auto", "analysis"] | Mapping[str, Any] | None
"""``"auto"``: the store's own chunks with dask (numpy-backed lazy arrays without dask);
``"analysis"``: dask blocks of many store chunks, sized for a scheduler (:data:`ANALYSIS_BLOCK_BYTES`);
``None``: lazy numpy-backed arrays; a mapping: dimension -> chunk size, as xarray's ``chunks=``
(dimensions not named keep the store's chunks); dask keys always name the group."""

ANALYSIS_BLOCK_BYTES = 64 * 2**20
"""Target size of one dask block with ``chunks="analysis"``: a block of cells x every frame.

A real subvolume's dF/F (1,500 cells x 45,150 frames, float64, store chunks of 32 x 512) is then
10 blocks of 160 cells (58 MB) instead of 4,183 store chunks, and an ssc-11 condition's
``event_response(subvolume="all")`` about 100 tasks per subvolume (``docs/benchmarks-dataset.md``).
Each block is a whole number of store chunks, and every frame of its cells: analyses along
``time`` (trial tensors, event responses) need no rechunking."""



class GroupNotFoundError(SscxrError, KeyError):
    """A group asked for in ``groups=`` or ``open_group`` is not in the store."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])



# --------------------------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------------------------


def _xarray_chunks(chunks: Chunks) -> Any:
    if isinstance(chunks, str):
        if chunks not in ("auto", "analysis"):
            raise ValueError(f"chunks={chunks!r}: expected 'auto', 'analysis', None or a mapping of dim -> chunk size")
        if not importlib.util.find_spec("dask"):
            if chunks == "analysis":
                raise MissingDependencyError("dask", 'chunks="analysis"', "dask")
            return None
        return chunks if chunks == "analysis" else {}
    return chunks


def analysis_chunks(dims: Sequence[str], shape: Sequence[int], stored: Sequence[int], itemsize: int,
                    target: int | None = None) -> tuple[int, ...]:
    """Block shape of ``chunks="analysis"``: whole when it fits ``target`` bytes, else whole along
    ``time`` and the other dims split, first dim first, in whole numbers of store chunks.

    >>> analysis_chunks(("cell", "time"), (1500, 45150), (32, 512), 8)     # 160 cells x all frames
    (160, 45150)
    >>> analysis_chunks(("cell",), (1500,), (1500,), 8)
    (1500,)
    """
    target = ANALYSIS_BLOCK_BYTES if target is None else target
    shape = tuple(int(n) for n in shape)
    if int(np.prod(shape, dtype=np.int64)) * itemsize <= target:
        return shape
    blocks = list(shape)
    order = [i for i, d in enumerate(dims) if d != "time"] + [i for i, d in enumerate(dims) if d == "time"]
    for i in order:
        rest = int(np.prod([b for j, b in enumerate(blocks) if j != i], dtype=np.int64)) * itemsize
        step = max(1, int(stored[i]))
        blocks[i] = min(shape[i], max(1, target // max(1, step * rest)) * step)
        if int(np.prod(blocks, dtype=np.int64)) * itemsize <= target:
            break
    return tuple(blocks)


StoreLike: TypeAlias = str | os.PathLike[str] | Store
"""A URL or path (with ``storage_options``), or a zarr store you built yourself."""


def _target(where: StoreLike, storage_options: Mapping[str, Any] | None) -> tuple[str, Store, _Recipe]:
    """(label for messages, store, recipe) of a URL or of a zarr store built elsewhere."""
    return _stores.target(where, storage_options, resolve=_resolve)


def _open_root(target: StoreLike, storage_options: Mapping[str, Any] | None
               ) -> tuple[str, Store, zarr.Group, _Recipe]:  # fmt: skip
    """(label, store, root group, recipe): one GET of the root metadata (zarr v3)."""
    url, store, recipe = _target(target, storage_options)
    with _translated(url, recipe, store):
        try:
            document = _get_document(store, "zarr.json")
        except FileNotFoundError:  # a local path that does not exist
            document = None
        if document is None and not isinstance(target, Store):
            _refuse_removed(url, recipe.url)
            _refuse_unfinished(url, storage_options)
        if document is not None:
            store = _MetadataCache(store, {"zarr.json": document})
            root = zarr.open_group(store, mode="r", zarr_format=3)
        else:  # zarr v2, or nothing there (zarr says which)
            root = zarr.open_group(store, mode="r")
    return url, store, root, recipe


def _select_groups(root: zarr.Group, patterns: Sequence[str], url: str) -> list[str]:
    all_groups = [path for path, node in root.members(max_depth=None) if isinstance(node, zarr.Group)]
    chosen: list[str] = []
    for pattern in patterns:
        pattern = pattern.strip("/")
        hits = [g for g in all_groups if fnmatch.fnmatchcase(g, pattern)]
        if not hits:
            raise GroupNotFoundError(f"{url}: no group matches {pattern!r}; groups: {', '.join(sorted(all_groups))}")
        chosen += [g for g in hits if g not in chosen]
    with_data = {path for path, node in root.members(max_depth=None) if isinstance(node, zarr.Group)
                 and any(True for _ in node.array_keys())}  # fmt: skip
    ancestors = {"/".join(g.split("/")[:i]) for g in chosen for i in range(1, g.count("/") + 1)}
    return sorted(set(chosen) | (ancestors & with_data))


def _chunk_on_store_chunks(ds: xr.Dataset, path: str, token: str, chunks: Any = None) -> xr.Dataset:
    """Dask arrays named after the group ``path``, chunked as xarray's ``chunks=`` would chunk them.

    ``chunks`` maps dimensions to sizes (``None``, ``{}``: each variable's own zarr chunks; a
    size of ``-1``: whole; ``"auto"``: dask's choice, aligned with the zarr chunks); dimensions
    it does not name keep their zarr chunks, as in ``xr.open_dataset(..., chunks=...)``.
    xarray names its dask arrays ``open_dataset-<variable>-<token of the store and chunks>``,
    without the group: two groups' same-named variables then share their keys, and one
    ``dask.compute`` of both returns one group's values for the other. Here the name holds the
    group path and a token of this opening.

    The freshly opened dataset is ours alone, so each variable's data is swapped in place
    (``assign`` would re-merge the dataset once per call: a third of the open time).
    """
    from dask.array.core import normalize_chunks

    analysis = isinstance(chunks, str) and chunks == "analysis"
    asked = {} if analysis else dict.fromkeys(ds.dims, chunks) if isinstance(chunks, int | str) else dict(chunks or {})
    for name, var in ds.variables.items():
        if name in ds.xindexes or var.ndim == 0:
            continue
        preferred = var.encoding.get("preferred_chunks", {})
        stored = tuple(preferred.get(d, size) for d, size in zip(var.dims, var.shape, strict=True))
        wanted: tuple[Any, ...]
        if analysis:  # big variables in blocks of whole store chunks; small ones (coordinates) whole
            wanted = analysis_chunks([str(d) for d in var.dims], var.shape, stored, var.dtype.itemsize or 8)
        else:
            wanted = tuple(asked.get(d) or own for d, own in zip(var.dims, stored, strict=True))
        blocks = normalize_chunks(wanted, var.shape, dtype=var.dtype, previous_chunks=stored)
        kwargs = {"name": f"sscxr-open-{name}-{path}-{token}"}
        var.data = var.chunk(dict(zip(var.dims, blocks, strict=True)), from_array_kwargs=kwargs).data
    return ds


def _open_datasets(store: Store | StorePath, paths: Sequence[str] | None, chunks: Any, consolidated: bool,
                   zarr_format: int | None = None, group: zarr.Group | None = None,
                   prefetched: Callable[[], None] | None = None) -> dict[str, xr.Dataset]:  # fmt: skip
    """Open groups (all when ``paths`` is None) as Datasets keyed by ``/path``.

    With dask (``chunks`` not None), arrays are chunked here, not by xarray, so that their dask
    keys name the group (:func:`_chunk_on_store_chunks`). With ``group`` (the zarr group ``store``
    is opened at, its metadata consolidated), every group's index coordinates are read in one
    batch (:func:`_load_coordinates`), not one after the other; ``prefetched`` (from
    :func:`sscxr._metadata.prefetch_indexes` with ``wait=False``) is called first, so their
    requests run while xarray builds the Datasets.
    """
    kwargs: dict[str, Any] = {"engine": "zarr", "consolidated": consolidated, "zarr_format": zarr_format,
                              "chunks": None}  # fmt: skip
    batched = group is not None and _has_consolidated(group)
    if batched:
        kwargs["create_default_indexes"] = False
    if chunks is not None:
        kwargs["cache"] = False
    target: Any = store  # xarray's annotations do not list zarr stores, which it opens
    if paths is None:
        datasets = dict(xr.open_groups(target, **kwargs))
    else:
        datasets = {"/" + p.strip("/"): xr.open_dataset(target, group=p or None, **kwargs) for p in paths}
    if prefetched is not None:
        prefetched()
    if batched:
        assert group is not None
        datasets = _load_coordinates(group, datasets)
    if chunks is None:
        return datasets
    token = secrets.token_hex(8)
    return {path: _chunk_on_store_chunks(ds, path, token, chunks) for path, ds in datasets.items()}


def _load_coordinates(group: zarr.Group, datasets: dict[str, xr.Dataset]) -> dict[str, xr.Dataset]:
    """Read every dimension coordinate of ``datasets`` in one batch
    (:func:`sscxr._metadata.read_arrays`) and give each its default index, as xarray does on
    opening (where it reads them one after the other). A coordinate whose CF decoding would change
    its stored values (scale, offset, a fill value other than NaN, another dtype) is left to
    xarray. Other coordinates stay lazy: reading them at open would cost requests nobody asked for."""
    wanted: list[tuple[str, Hashable]] = []
    for path, ds in datasets.items():
        for name, var in ds.variables.items():
            if name in ds.dims and var.ndim == 1 and _stored_as_decoded(var):
                wanted.append((path, name))
    keys = [f"{path.strip('/')}/{name}".lstrip("/") for path, name in wanted]
    values = dict(zip(wanted, _read_arrays(group, keys), strict=True))
    out = {}
    for path, ds in datasets.items():
        index_coords = {}
        for name in ds.dims:
            if name in ds.variables and name not in ds.xindexes and ds.variables[name].ndim == 1:
                var = ds.variables[name]
                raw = values.get((path, name))
                index_coords[name] = var.copy(data=raw) if raw is not None else var.load()
        out[path] = ds.assign_coords(index_coords) if index_coords else ds
    return out


def _stored_as_decoded(var: xr.Variable) -> bool:
    """Whether xarray's CF decoding leaves this variable's stored values as they are."""
    enc = var.encoding
    fill = enc.get("_FillValue", enc.get("missing_value"))
    dtype = enc.get("dtype", var.dtype)
    return (np.dtype(dtype) == var.dtype and var.dtype.kind in "biuf" and "scale_factor" not in enc
            and "add_offset" not in enc and (fill is None or (var.dtype.kind == "f" and np.isnan(fill))))


def _open_subtree(store: Store, root: zarr.Group, paths: Sequence[str], chunks: Any, consolidated: bool) -> xr.DataTree:
    with_root = any(True for _ in root.array_keys())
    prefetched = _prefetch_indexes(store, root, [""] * with_root + list(paths), wait=False)
    nodes = _open_datasets(store, [""] * with_root + list(paths), chunks, consolidated, root.metadata.zarr_format,
                           root, prefetched)
    if not with_root:
        nodes["/"] = xr.Dataset(attrs=dict(root.attrs))
    return xr.DataTree.from_dict(nodes)


def _validate(tree: xr.DataTree, url: str, opened: Sequence[str] | None) -> None:
    from .schema import problems_in, validate

    problems = validate(tree, raise_on_error=False)
    if opened is not None:
        problems = problems_in(problems, opened)
    if problems:
        raise SchemaError(problems, where=url)


def open_store(
    url: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Chunks = "auto",
    groups: Sequence[str] | None = None,
    check_version: str | bool | None = None,
    archive: str | None = None,
    validate: bool = True,
    require_complete: bool = True,
) -> xr.DataTree:
    """Open any sscxr store (session or animal) lazily as a DataTree.

    Parameters
    ----------
    url, storage_options
        Where the store is; see :func:`make_store`. ``url`` may also be a zarr store object
        (then without ``storage_options``).
    chunks
        ``"auto"`` (default): dask arrays on the store's own chunks when dask is installed,
        lazily indexed numpy-backed arrays otherwise; ``"analysis"``: dask blocks of many store
        chunks (a block of cells x every frame, about :data:`ANALYSIS_BLOCK_BYTES`), for graphs a
        scheduler handles well (``docs/analysis.md``); ``None``: lazy numpy arrays; a mapping:
        dimension -> chunk size, as xarray's ``chunks=`` (dimensions not named keep the store's
        chunks). Dask keys name the group, so same-named variables of different groups can be
        computed together.
    groups
        Open only these groups (paths such as ``"imaging/subvolume_05"``, or glob patterns such
        as ``"imaging/*"``) plus the root attrs. Much faster than the whole tree on S3: the
        whole tree loads every group's index coordinates.
    check_version
        A content version (16 hex) this store should have, e.g. a catalog pin, or ``True`` to
        check the store against its own recorded ``content_version``. A mismatch warns
        :class:`~sscxr.errors.StoreVersionWarning` (``warnings.simplefilter("error",
        StoreVersionWarning)`` makes it an error).
    archive
        ``"ssc-1"`` or ``"ssc-11"`` to refuse the other kind.
    validate, require_complete
        Refuse schema-invalid (:class:`~sscxr.errors.SchemaError`) and unfinished
        (:class:`~sscxr.errors.IncompleteStoreError`) stores. Turn off only to inspect one.

    >>> tree = open_store("s3://bucket/an274424.zarr", storage_options={"anon": True},
    ...                   groups=["cells"])                                    # doctest: +SKIP
    """
    url, store, root, recipe = _open_root(url, storage_options)
    attrs = dict(root.attrs)
    _check_root(url, attrs, archive, require_complete)
    if check_version:
        _check_version(url, root, check_version)
    xr_chunks = _xarray_chunks(chunks)
    consolidated = _has_consolidated(root)
    with _translated(url, recipe, store):
        if groups is None:
            # plain concurrent GETs while xarray builds the Datasets, then decoded in one batch
            prefetched = _prefetch_indexes(store, root, None, wait=False)
            datasets = _open_datasets(store, None, xr_chunks, consolidated, root.metadata.zarr_format, root,
                                      prefetched)  # fmt: skip
            tree = xr.DataTree.from_dict(datasets)
            opened = None
        else:
            opened = _select_groups(root, [groups] if isinstance(groups, str) else groups, url)
            tree = _open_subtree(store, root, opened, xr_chunks, consolidated)
    if validate:
        _validate(tree, url, opened)
    return tree


def open_session(
    url: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Chunks = "auto",
    groups: Sequence[str] | None = None,
    check_version: str | bool | None = None,
) -> xr.DataTree:
    """Open an ssc-1 session store lazily (see :func:`open_store` for the parameters).

    >>> s = open_session("s3://bucket/an197522_2013_03_08.zarr",
    ...                  storage_options={"anon": True})                       # doctest: +SKIP
    >>> s["imaging/subvolume_05"].dff.sel(cell=12).values                      # doctest: +SKIP
    """
    return open_store(url, storage_options=storage_options, chunks=chunks, groups=groups,
                      check_version=check_version, archive="ssc-1")  # fmt: skip


def open_animal(
    url: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Chunks = "auto",
    groups: Sequence[str] | None = None,
    check_version: str | bool | None = None,
) -> xr.DataTree:
    """Open an ssc-11 animal store lazily (see :func:`open_store` for the parameters).

    >>> a = open_animal("an274424.zarr", groups=["cells", "pre/*"])             # doctest: +SKIP
    """
    return open_store(url, storage_options=storage_options, chunks=chunks, groups=groups,
                      check_version=check_version, archive="ssc-11")  # fmt: skip


def open_group(
    url: StoreLike,
    group: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Chunks = "auto",
    require_complete: bool = True,
) -> xr.Dataset:
    """Open one group of a store as a Dataset: the fastest way to one cell x one trial.

    Reads only that group's metadata (a session's root metadata, which describes every
    group, is hundreds of kB) and its index coordinates: one GET when the group carries its
    own consolidated metadata (``zarr.consolidate_metadata(store, path=group)``), else one
    listing and one GET per member. A group the converter marked
    ``sscxr_written`` is complete whatever the rest of the store; for other groups the root
    status is checked as in :func:`open_store`. Root attrs: :func:`read_attrs`.

    >>> sv = open_group("s3://bucket/an197522_2013_03_08.zarr", "imaging/subvolume_05",
    ...                 storage_options={"anon": True})                       # doctest: +SKIP
    >>> sv.dff.sel(cell=12).where((sv.trial == 7).compute(), drop=True).values  # doctest: +SKIP
    """
    label, store, recipe = _target(url, storage_options)
    path = group.strip("/")
    with _translated(label, recipe, store):
        store, node = _v3_group(store, path)
        root = None
        if node is None or (require_complete and node.attrs.get("sscxr_written") is not True):
            _, store, root, _ = _open_root(store, None)
            _check_root(label, dict(root.attrs), None, require_complete)
            if node is None:
                _select_groups(root, [path], label)  # raises GroupNotFoundError listing the groups
        known = node if node is not None else root
        zarr_format = known.metadata.zarr_format if known is not None else None
        if path and node is not None and _has_consolidated(node):  # its own consolidated metadata: one GET
            view = StorePath(store, path)  # xarray reads consolidated metadata only at its root
            # one group builds in ~10 ms: a background thread for its few index GETs would cost more
            _prefetch_indexes(store, node, [""], prefix=path)
            return _open_datasets(view, [""], _xarray_chunks(chunks), True, zarr_format, node)["/"]
        # xarray would take a sub-group's consolidated metadata from the store's root, i.e. the whole
        # session's (hundreds of kB): listing the group's own members is ~20x fewer bytes.
        consolidated = not path and _has_consolidated(known)
        return _open_datasets(store, [path], _xarray_chunks(chunks), consolidated, zarr_format)["/" + path]


def describe(url: StoreLike, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every group's variables (dims, shape, dtype, chunks, units) from metadata alone.

    One read of the consolidated metadata, no xarray objects: the cheap way to list what a
    store holds (``sscxr info``), ~10x faster than opening the whole tree.

    >>> describe("s3://bucket/an197522_2013_03_08.zarr", storage_options={"anon": True}
    ...          )["imaging/subvolume_05"]["dff"]["dims"]                                 # doctest: +SKIP
    ('cell', 'time')
    """
    _, _, root, _ = _open_root(url, storage_options)
    groups: dict[str, dict[str, Any]] = {"": {}}
    for path, node in root.members(max_depth=None):
        parent, _, name = path.rpartition("/")
        if isinstance(node, zarr.Group):
            groups.setdefault(path, {})
            continue
        groups.setdefault(parent, {})[name] = {
            "dims": _dimension_names(node), "shape": node.shape, "dtype": str(node.dtype), "chunks": node.chunks,
            "units": node.attrs.get("units"),
        }  # fmt: skip
    return groups


def read_attrs(url: StoreLike, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The root attrs of a store (one metadata read), without any check.

    >>> read_attrs("s3://bucket/an274424.zarr", storage_options={"anon": True})["archive"]  # doctest: +SKIP
    'ssc-11'
    """
    return dict(_open_root(url, storage_options)[2].attrs)

