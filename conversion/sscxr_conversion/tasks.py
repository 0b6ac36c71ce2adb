"""Running independent write tasks: in this process, or on dask.distributed.

Storage options (which may hold credentials) never enter a task graph: tasks carry only the
store URL; the options reach workers once through a worker plugin and are looked up by URL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from itertools import islice
from typing import Any

TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"  # None: not set (dask's own convention)
START_METHOD = "distributed.worker.multiprocessing-method"


def register_options(url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Make ``storage_options`` for ``url`` (and every URL under it) known in this process
    (driver or worker), in sscxr's one credential registry (:mod:`sscxr.credentials`); ``None``
    or ``{}`` forgets them."""
    from sscxr.credentials import register_credentials

    register_credentials(url, storage_options)


def options_for(url: str) -> dict[str, Any]:
    """The options registered for ``url``, or for the longest registered folder holding it (a
    whole-archive conversion registers its store root once for every unit's stores); ``{}``: none."""
    from sscxr.credentials import registered_options

    return registered_options(url) or {}


def options_registered(url: str) -> bool:
    """Whether :func:`options_for` knows ``url`` (itself or a folder holding it) in this process."""
    from sscxr.credentials import is_registered

    return is_registered(url)


class Runner:
    """Runs ``fn(*args)`` tasks: in this process, on a thread ``pool`` or on a dask ``client``.

    Two ways to hand it tasks, with one submission path and one bound:

    * :meth:`run` takes an iterable of argument tuples, which may be a stream (e.g. tarball
      members read one after another), and yields the results as the tasks complete;
    * :meth:`submit` takes one task at a time from a driver loop and hands its result to a
      ``then`` callback in the driver (while a later :meth:`submit` waits for room, or in
      :meth:`drain`, which waits for every task submitted).

    At most ``max_pending`` tasks are submitted and not yet finished (for each of the two), so a
    stream is consumed only as fast as the tasks complete and the driver never holds more than
    that many task inputs. On dask, the arguments ``scatter`` picks (e.g. large arrays) are sent
    to a worker ahead of the task instead of inside it. Without a pool or client each task runs
    at once, in the calling thread.

    >>> run = Runner()
    >>> list(run.run(pow, [(2, 3), (3, 2)]))
    [8, 9]
    >>> results = []
    >>> run.submit(pow, 2, 10, then=results.append)
    >>> run.drain(); results
    [1024]
    """

    def __init__(self, pool: Any = None, client: Any = None, max_pending: int = 4):
        self.pool, self.client, self.max_pending = pool, client, max(1, max_pending)
        self._pending: dict[Any, Callable[[Any], None] | None] = {}  # submit()'s futures -> their then

    def run(self, fn: Callable[..., Any], tasks: Iterable[tuple], *,
            scatter: Callable[[Any], bool] | None = None) -> Iterator[Any]:
        """``fn(*args)`` for each ``args`` of ``tasks``; results in the order the tasks complete."""
        if self.client is None and self.pool is None:
            for args in tasks:
                yield fn(*args)
            return
        tasks = iter(tasks)
        pending = {self._submit(fn, args, scatter) for args in islice(tasks, self.max_pending)}
        while pending:
            finished, pending = self._wait(pending, first=True)
            pending |= {self._submit(fn, args, scatter) for args in islice(tasks, len(finished))}
            for future in finished:
                yield future.result()

    def submit(self, fn: Callable[..., Any], *args: Any, then: Callable[[Any], None] | None = None,
               scatter: Callable[[Any], bool] | None = None) -> None:
        """Start ``fn(*args)`` once fewer than ``max_pending`` submitted tasks are unfinished
        (handing finished ones to their ``then`` meanwhile); ``then(result)`` runs in this thread.
        A task's exception is raised here or by :meth:`drain`, when it is collected."""
        while len(self._pending) >= self.max_pending:
            self._collect(first=True)
        if self.client is None and self.pool is None:
            result = fn(*args)
            if then is not None:
                then(result)
            return
        self._pending[self._submit(fn, args, scatter)] = then

    def drain(self) -> None:
        """Wait for every task of :meth:`submit`, handing each result to its ``then``."""
        while self._pending:
            self._collect(first=False)

    def _collect(self, first: bool) -> None:
        finished, _ = self._wait(list(self._pending), first=first)
        for future in finished:
            then = self._pending.pop(future)
            result = future.result()
            if then is not None:
                then(result)

    def _submit(self, fn: Callable[..., Any], args: tuple, scatter: Callable[[Any], bool] | None) -> Any:
        if self.client is not None:
            if scatter is not None:
                args = tuple(self.client.scatter(a, direct=True, hash=False) if scatter(a) else a for a in args)
            return self.client.submit(fn, *args, pure=False)
        return self.pool.submit(fn, *args)

    def _wait(self, futures: Iterable[Any], first: bool) -> tuple[set[Any], set[Any]]:
        """``(finished, pending)`` once one (``first``) or all of ``futures`` have finished."""
        if self.client is not None:
            from distributed import wait as dask_wait

            done, not_done = dask_wait(list(futures), return_when="FIRST_COMPLETED" if first else "ALL_COMPLETED")
        else:
            done, not_done = wait(list(futures), return_when=FIRST_COMPLETED if first else ALL_COMPLETED)
        return set(done), set(not_done)


WORKER_MODULES = ("sscxr_conversion.write", "sscxr_conversion.raw")


def warm_worker() -> None:
    """Import what the write tasks need (zarr, xarray, numcodecs, the conversion modules): ~0.5 s
    a fresh worker process would otherwise spend inside its first task."""
    import importlib

    for name in WORKER_MODULES:
        importlib.import_module(name)


async def _warm_worker_soon() -> None:
    """:func:`warm_worker` on a thread of the worker (``client.run(wait=False)`` takes coroutines)."""
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, warm_worker)


def _forkserver() -> bool:
    """Whether workers are forked from a forkserver here (Linux, where Python 3.14 makes it the
    default start method; macOS system libraries are not safe to fork, so Python spawns there);
    if so, have it import :data:`WORKER_MODULES` (and ``distributed``) when it starts. dask sets
    its own list the first time it asks for the forkserver context, so this comes after that; a
    forkserver already running keeps the modules it has."""
    import multiprocessing
    import sys

    if not sys.platform.startswith("linux") or "forkserver" not in multiprocessing.get_all_start_methods():
        return False
    import dask

    try:
        from distributed.utils import get_mp_context
    except ImportError:  # a distributed without it: spawn, as dask's default
        return False
    with dask.config.set({START_METHOD: "forkserver"}):
        context = get_mp_context()
    context.set_forkserver_preload(["distributed", *WORKER_MODULES])
    return True


def prestart_workers(url: str, *, workers: int | None = None, scheduler: str | None = None) -> bool:
    """Start, now, the forkserver that :func:`runner` will fork ``workers`` LocalCluster
    workers from (Linux): its imports of ``distributed``, zarr, xarray and the write tasks'
    modules (0.6-1.6 s of one core on this project's VMs) then run while this process reads the
    source, instead of before the first task. :func:`~sscxr_conversion.convert` calls it first.
    Returns whether a forkserver is running for them; nothing is started for a ``scheduler``
    address, without ``workers``, or for a ``memory://`` store (its cluster runs in this process).

    The forkserver starts with the environment dask gives a nanny's new worker (see
    :func:`_pre_spawn_env`), as when dask starts it itself, for its forked workers keep it:
    ``PYTHONHASHSEED`` and the BLAS thread counts take effect as an interpreter starts.
    ``os.environ`` is left as it was.

    >>> prestart_workers("memory://x", workers=2)
    False
    """
    import os

    if scheduler is not None or not workers:
        return False
    try:
        import dask
    except ImportError:  # runner() names what is missing
        return False
    settings = _cluster_config(url)
    if settings.get(START_METHOD) != "forkserver":
        return False
    from multiprocessing import forkserver

    with dask.config.set(settings):  # as runner() starts its LocalCluster
        env = _pre_spawn_env()
    before = {key: os.environ.get(key) for key in env}
    try:
        os.environ.update(env)
        forkserver.ensure_running()
    finally:  # only what was changed: other threads may be reading the environment
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return True


def _cluster_config(url: str) -> dict[str, Any]:
    """The dask settings :func:`runner` starts its LocalCluster for ``url`` with: workers without
    ``MALLOC_TRIM_THRESHOLD_`` (see :func:`runner`), forked from the forkserver where
    :func:`_forkserver` applies (not for a ``memory://`` store, whose cluster runs in this
    process)."""
    settings: dict[str, Any] = {TRIM: None}
    if not url.startswith("memory://") and _forkserver():
        settings[START_METHOD] = "forkserver"
    return settings


def _pre_spawn_env() -> dict[str, str]:
    """What a dask nanny writes into ``os.environ`` before it starts a worker process
    (``distributed.nanny.Nanny.pre_spawn_env``): ``distributed.nanny.pre-spawn-environ``, each
    variable already set in this process's environment keeping its value, and a fixed
    ``PYTHONHASHSEED`` (6640) unless one other than 0 is set, so that workers hash alike."""
    import os

    import dask

    config = dask.config.get("distributed.nanny.pre-spawn-environ")
    env = {key: os.environ.get(key, str(value)) for key, value in config.items() if value is not None}
    if env.get("PYTHONHASHSEED") in (None, "0"):
        env["PYTHONHASHSEED"] = "6640"
    return env


def threads_per_worker(workers: int) -> int:
    """Threads of each of ``workers`` LocalCluster workers: this machine's cores split among them.

    >>> threads_per_worker(10**6)
    1
    """
    from dask.system import CPU_COUNT

    return max(1, CPU_COUNT // max(1, workers))


@contextmanager
def cluster_client(url: str, *, workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A ``distributed.Client``: on ``scheduler``, or on a LocalCluster of ``workers`` processes
    started as :func:`runner` describes (closed on exit)."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        client, cluster = Client(scheduler), None
    else:
        in_process = url.startswith("memory://")  # a memory store lives in one process
        with dask.config.set(_cluster_config(url)):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker(workers or 1),
                                   processes=not in_process, dashboard_address=None)
        client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def share_options(client: Any, url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Hand ``storage_options`` for ``url`` (and every URL under it) to the workers of ``client``
    once, through a worker plugin, never through a task graph."""
    if storage_options:
        from sscxr.credentials import register_worker_credentials

        register_worker_credentials(client, url, storage_options)
    else:
        register_options(url, storage_options)


@contextmanager
def runner(url: str, storage_options: Mapping[str, Any] | None, *, workers: int | None = None,
           scheduler: str | None = None, threads: int = 1, client: Any = None) -> Iterator[Runner]:
    """A :class:`Runner`: ``scheduler`` address > ``workers`` LocalCluster > local threads.

    ``threads`` local threads (one by default): ssc-1's subvolume writes are GIL-bound Python, and
    a second thread measured no faster (docs/benchmarks-conversion.md); ssc-11 asks for two,
    where one task's MAT v5 inflate (GIL released) overlaps another's writing.

    A LocalCluster of ``workers`` processes shares the machine's cores among them, as dask's own
    default does (but never more threads than cores): one worker on a 2-core machine runs two
    tasks at once. Raw block tasks release the GIL for most of their work, so a worker with one
    thread left a core idle (docs/raw.md).

    Its workers start without dask's ``MALLOC_TRIM_THRESHOLD_=65536``: with any value set, glibc
    stops raising its mmap threshold, and c-blosc's ~128 kB scratch buffer, allocated for every
    inner chunk a raw task compresses, became a fresh ``mmap`` each time in the task threads:
    ~70,000 page faults and ~0.2 s of system time per 2.2 GB field of view (docs/raw.md). A
    conversion's memory is bounded by its blocks in flight, so nothing is lost by trimming less.
    Workers of a cluster given by ``scheduler`` keep whatever environment they were started with.

    On Linux, the workers are forked from a ``multiprocessing`` forkserver that has imported the
    write tasks' modules once (:func:`_forkserver`), instead of each being spawned as a new
    interpreter that imports them: a ``sscxr convert --workers 2`` run measured ~0.2 s shorter,
    mostly because a forked worker ends without tearing its modules down. The forkserver lives
    as long as this process, so the next cluster's workers start at once; they also take the
    environment the forkserver was started with (dask's pre-spawn environment, as for spawned
    workers, the first time). :func:`prestart_workers` starts it ahead of the cluster.

    With ``client`` (a whole-archive conversion: one cluster for every unit, possibly a
    ``worker_client`` inside a unit's task) that client is used and left open; storage options
    already shared for a folder holding ``url`` (:func:`share_options`) are not sent again.
    """
    if client is not None:
        if not options_registered(url):
            share_options(client, url, storage_options)
        yield Runner(client=client, max_pending=2 * max(1, sum(client.nthreads().values())))
        return
    register_options(url, storage_options)
    if scheduler is None and not workers:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            yield Runner(pool=pool, max_pending=threads + 1)
        return
    with cluster_client(url, workers=workers, scheduler=scheduler) as own:
        share_options(own, url, storage_options)
        own.run(_warm_worker_soon, wait=False)  # workers import while the driver reads its first input
        yield Runner(client=own, max_pending=2 * max(1, sum(own.nthreads().values())))
