"""zarr internals sscxr's small store operations use, in one place, each with a public fallback.

zarr's stores are asynchronous; zarr runs their coroutines on its own event loop thread
(``zarr.core.sync.sync``, not public API). A store bound to that loop (an s3fs-backed
``FsspecStore``) must be driven there, so that is what :func:`sync` uses when it exists; without
it (a zarr that moved it), coroutines run on a fresh event loop in a worker thread, which is right
for local and obstore-backed stores.

>>> import zarr
>>> store = zarr.storage.MemoryStore()
>>> sync(store.exists("zarr.json"))
False
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

try:  # zarr 3.0-3.1
    from zarr.core.sync import sync as _zarr_sync
except ImportError:  # pragma: no cover - a zarr that moved it
    _zarr_sync = None  # type: ignore[assignment]


def sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a zarr store coroutine to completion from synchronous code."""
    if _zarr_sync is not None:
        return _zarr_sync(coro)  # type: ignore[no-any-return]
    with ThreadPoolExecutor(1) as pool:  # pragma: no cover - fallback
        return pool.submit(asyncio.run, coro).result()
