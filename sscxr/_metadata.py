"""Reading a store's metadata and index coordinates in few round trips.

This module's one job: a remote store is slow per request, not per byte, so sscxr fetches the
root ``zarr.json`` once (consolidated: every node's metadata) and serves it to zarr and xarray
from memory (:class:`MetadataCache`), a group's own ``zarr.json`` in one GET (:func:`v3_group`),
every index coordinate chunk in one concurrent batch of plain GETs (:func:`prefetch_indexes`),
then decodes them all in one pass of zarr's event loop (:func:`read_arrays`). Used by
:mod:`sscxr.io`.

>>> import zarr
>>> store = zarr.storage.MemoryStore()
>>> _ = zarr.open_group(store, mode="w", attributes={"archive": "ssc-1"})
>>> get_document(store, "zarr.json") is not None, get_document(store, "nothing/zarr.json")
(True, None)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

from ._zarr_compat import sync

__all__ = ["MetadataCache", "dimension_names", "get_document", "has_consolidated", "index_chunk_keys",
           "prefetch_indexes", "read_arrays", "v3_group"]


class MetadataCache(zarr.storage.WrapperStore):  # type: ignore[type-arg]
    """Serves objects already fetched (metadata, index chunks), so zarr and xarray do not fetch
    them again.

    The root ``zarr.json`` of a consolidated store holds every node's metadata (hundreds of
    kB for a session); sscxr reads it once to check the store, xarray then gets it from here.
    Pickles as the wrapped store (the cache never travels in dask graphs).
    """

    def __init__(self, store: Store, documents: Mapping[str, Any]) -> None:
        super().__init__(store)
        self._documents = dict(documents)

    def __reduce__(self) -> tuple[Any, ...]:
        return self._store.__reduce__()  # type: ignore[no-any-return]

    def __dask_tokenize__(self) -> Any:
        inner = getattr(self._store, "__dask_tokenize__", None)
        return inner() if inner is not None else id(self._store)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if byte_range is None and key in self._documents:
            return self._documents[key]
        return await self._store.get(key, prototype, byte_range)


    def add(self, documents: Mapping[str, Any]) -> None:
        self._documents.update(documents)



def get_document(store: Store, key: str) -> Any:
    return sync(store.get(key, default_buffer_prototype()))



def index_chunk_keys(group: zarr.Group, paths: Sequence[str] | None) -> list[str]:
    """Keys of every chunk of the dimension coordinates of the groups at ``paths`` (None: all).

    Uses only metadata already in memory (consolidated); returns [] when it is not.
    """
    if not has_consolidated(group):
        return []
    keys = []
    for path, node in group.members(max_depth=None):
        parent, _, name = path.rpartition("/")
        if paths is not None and parent not in paths:
            continue
        if isinstance(node, zarr.Array) and dimension_names(node) == (name,):
            prefix = f"{parent}/{name}" if parent else name
            keys += [f"{prefix}/{node.metadata.encode_chunk_key(c)}" for c in np.ndindex(*node.cdata_shape)]
    return keys


def dimension_names(array: zarr.Array) -> tuple[str, ...]:
    """The array's dimension names (zarr v3 metadata, or xarray's v2 attribute)."""
    names = getattr(array.metadata, "dimension_names", None) or array.attrs.get("_ARRAY_DIMENSIONS") or ()
    return tuple(str(n) for n in names)  # type: ignore[union-attr]


def prefetch_indexes(store: Store, group: zarr.Group, paths: Sequence[str] | None, prefix: str = "",
                     *, wait: bool = True) -> Callable[[], None]:
    """Fetch the index coordinates of the groups to open concurrently, into the store's cache.

    ``xr.open_datatree`` loads them one after the other: one round trip each, which is most
    of the time it takes to open a session over S3. With ``wait=False`` the requests run in
    the background while the caller builds its Datasets (which need only metadata); call the
    function returned before reading an index: it waits for them, caches them, and raises what
    the requests raised. With ``wait=True`` (default) that is done before returning.
    """
    keys = [f"{prefix}/{k}" if prefix else k for k in index_chunk_keys(group, paths)]
    if not keys or not isinstance(store, MetadataCache):
        return lambda: None
    cache = store

    async def fetch_all() -> list[Any]:
        return await asyncio.gather(*(cache.get(k, default_buffer_prototype()) for k in keys))

    def keep(buffers: list[Any]) -> None:
        cache.add({k: buf for k, buf in zip(keys, buffers, strict=True) if buf is not None})

    if wait:
        keep(sync(fetch_all()))
        return lambda: None
    pool = ThreadPoolExecutor(1, thread_name_prefix="sscxr-prefetch")
    pending = pool.submit(sync, fetch_all())
    pool.shutdown(wait=False)
    return lambda: keep(pending.result())


def read_arrays(group: zarr.Group, paths: Sequence[str]) -> list[np.ndarray]:
    """The stored values of the arrays at ``paths`` (relative to ``group``), read in one pass of
    zarr's event loop (zarr's public async array API: concurrent requests, one hop from this
    thread) instead of one synchronous read per array. Values are as stored, not CF-decoded.
    """
    if not paths:
        return []
    members = dict(group.members(max_depth=None))
    arrays = [node for p in paths if isinstance(node := members[p], zarr.Array)]
    if len(arrays) != len(paths):
        raise KeyError(f"not arrays: {[p for p in paths if not isinstance(members[p], zarr.Array)]}")

    async def read_all() -> list[Any]:
        return await asyncio.gather(*(a.async_array.getitem(slice(None)) for a in arrays))

    return [np.asarray(v) for v in sync(read_all())]


def v3_group(store: Store, path: str) -> tuple[Store, zarr.Group | None]:
    """The group at ``path`` from one GET of its ``zarr.json`` (None: absent, an array, zarr v2)."""
    key = f"{path}/zarr.json" if path else "zarr.json"
    document = get_document(store, key)
    if document is None:
        return store, None
    store = MetadataCache(store, {key: document})
    try:
        return store, zarr.open_group(store, path=path, mode="r", zarr_format=3)
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return store, None


def has_consolidated(node: zarr.Group | None) -> bool:
    return node is not None and getattr(node.metadata, "consolidated_metadata", None) is not None

