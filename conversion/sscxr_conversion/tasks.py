"""Running independent write tasks: in this process, or on dask.distributed.

Storage options (which may hold credentials) never enter a task graph: tasks carry only the
store URL; the options reach workers once through a worker plugin and are looked up by URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Any

_OPTIONS: dict[str, dict[str, Any]] = {}


def register_options(url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Make ``storage_options`` for ``url`` known in this process (driver or worker)."""
    _OPTIONS[url] = dict(storage_options or {})


def options_for(url: str) -> dict[str, Any]:
    return _OPTIONS.get(url, {})


class Runner:
    """Runs ``fn(*args)`` tasks and yields their results as they complete."""

    def __init__(self, pool: Any = None, client: Any = None):
        self.pool, self.client = pool, client

    def run(self, fn: Callable[..., Any], tasks: Iterable[tuple]) -> Iterator[Any]:
        if self.client is not None:
            from distributed import as_completed as dask_completed

            futures = [self.client.submit(fn, *args, pure=False) for args in tasks]
            for future in dask_completed(futures):
                yield future.result()
        elif self.pool is not None:
            futures = [self.pool.submit(fn, *args) for args in tasks]
            for future in as_completed(futures):
                yield future.result()
        else:
            for args in tasks:
                yield fn(*args)


@contextmanager
def runner(url: str, storage_options: Mapping[str, Any] | None, *, workers: int | None = None,
           scheduler: str | None = None, threads: int = 2) -> Iterator[Runner]:
    """A :class:`Runner`: ``scheduler`` address > ``workers`` LocalCluster > local threads."""
    register_options(url, storage_options)
    if scheduler is None and not workers:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            yield Runner(pool=pool)
        return
    from distributed import Client, LocalCluster

    if scheduler is not None:
        client, cluster = Client(scheduler), None
    else:
        in_process = url.startswith("memory://")  # a memory store lives in one process
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=not in_process,
                               dashboard_address=None)
        client = Client(cluster)
    try:
        if storage_options:
            from ._plugin import StorageOptionsPlugin

            client.register_plugin(StorageOptionsPlugin(url, storage_options))
        yield Runner(client=client)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
