"""zarr internals sscxr's small store operations use, in one place, each with a public fallback.

zarr's stores are asynchronous; zarr runs their coroutines on its own event loop thread
(``zarr.core.sync.sync``, not public API). A store bound to that loop (an s3fs-backed
``FsspecStore``) must be driven there, so that is what :func:`sync` uses: the fast path
``"zarr event loop"`` of :mod:`sscxr._fastpath`, for the zarr versions it is tested with. When
it is off (``SSCXR_NO_FASTPATH=1``, another zarr, or zarr moved it), coroutines run on a fresh
event loop in a worker thread: the same result for local, memory and obstore-backed stores.

>>> import zarr
>>> store = zarr.storage.MemoryStore()
>>> sync(store.exists("zarr.json"))
False
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from . import _fastpath

T = TypeVar("T")

FAST_SYNC = "zarr event loop"
"""The fast path's name (:func:`sscxr._fastpath.enabled`, ``sscxr info``)."""
ZARR_VERSIONS = {"at_least": "3.0", "below": "3.3"}
"""The zarr releases whose ``zarr.core.sync.sync`` sscxr is tested with."""

_checked: list[Callable[..., Any] | None] = []  # [zarr's sync, or None] once looked up


def _zarr_sync() -> Callable[..., Any] | None:
    """zarr's own ``sync``, when the fast path may run here (None: take the public path)."""
    if not _fastpath.enabled(FAST_SYNC):
        return None
    if not _checked:
        found: Callable[..., Any] | None = None
        if _fastpath.version_ok(FAST_SYNC, "zarr", **ZARR_VERSIONS):
            try:
                from zarr.core.sync import sync as zarr_sync

                found = zarr_sync
            except ImportError as exc:  # a zarr that moved it
                _fastpath.fall_back(FAST_SYNC, exc)
        _checked.append(found)
    return _checked[0]


def on_zarr_loop() -> bool:
    """Whether :func:`sync` runs coroutines on zarr's own event loop here (the fast path): stores
    whose client is bound to an event loop (asynchronous s3fs) work only then.

    >>> on_zarr_loop() in (True, False)
    True
    """
    return _zarr_sync() is not None


def run_on_fresh_loop(coro: Coroutine[Any, Any, T]) -> T:
    """The public path: run ``coro`` to completion on a new event loop in a worker thread."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a zarr store coroutine to completion from synchronous code."""
    zarr_sync = _zarr_sync()
    if zarr_sync is not None:
        return zarr_sync(coro)  # type: ignore[no-any-return]
    return run_on_fresh_loop(coro)
