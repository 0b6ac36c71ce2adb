"""One analysis over the whole dataset: :func:`map_catalog` runs ``func(tree, metadata)`` per catalog
entry where the data is (on the workers of a ``dask.distributed`` cluster, or here).

>>> import sscxr
>>> def touch_response(tree, meta):                                       # doctest: +SKIP
...     cond = {"condition": ["pre", "post_touch"]} if meta["archive"] == "ssc-11" else {}
...     r = tree.sscx.event_response("dff", align_to="first_touch", **cond)
...     return r.response.mean("trial")                                   # per cell (per condition)
>>> table = sscxr.map_catalog(touch_response, cat, archive="ssc-11")      # doctest: +SKIP

**What runs where.** Each selected entry is one task. The task opens the entry's store on the
worker (``entry.read(chunks="analysis")``; a worker keeps the trees it opened, keyed by the
version URL the entry resolves to and its content-version pin, so a second ``map_catalog`` over
the same stores does not open them again), calls ``func(tree, metadata)``, computes the result
there with dask's synchronous scheduler (one entry per worker thread; the result's dask graph
never reaches the scheduler), and sends back only the computed result, turned into a table
when it is one (below). Without a cluster the same runs here, one entry after the other, each
computed with dask's default (threaded) scheduler.

**The result.** When ``func`` returns, for every entry, a ``pandas.DataFrame``, a ``Series``, or
an ``xarray.Dataset``/``DataArray`` (``.to_dataframe()``; a DataArray without a name is called
``value``), the result is one DataFrame: each entry's rows (its index moved to columns) with
the entry's metadata as leading columns (``entry``, then every metadata key of the catalog
entry, lists joined with ``","``; a column ``func`` returned keeps its own values). Otherwise
it is a :class:`CatalogResults` dict ``{name: result}``. Either way ``.attrs["skipped"]`` (a
DataFrame's) or ``.skipped`` (the dict's) maps each entry whose store does not exist (or was
never finished) to the reason; they are skipped, with a warning, not an error.

**Credentials never travel in a task.** Tasks carry the entry (store name, root, public
options) and ``storage_options`` without any secret. Workers get credentials from their own
environment (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, an IAM role or instance profile, which
is how dask-gateway, Coiled and dask-jobqueue clusters are normally given access) or, when
``storage_options`` holds a key and secret, from :func:`sscxr.io.register_worker_credentials`,
which ``map_catalog`` calls for the store root: a ``distributed`` worker plugin, sent once to
each worker, outside every graph. A worker that cannot read a store raises sscxr's
:class:`~sscxr.errors.StorageAccessError` naming the URL.
"""

from __future__ import annotations

import secrets
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import xarray as xr

from .errors import IncompleteStoreError, StoreNotFoundError

__all__ = ["CatalogResults", "map_catalog"]

_OPENED: OrderedDict[tuple[Any, ...], xr.DataTree] = OrderedDict()  # per process (worker): opened trees
_OPENED_MAX = 32
_OPENED_LOCK = threading.Lock()
STATS = {"opened": 0, "reused": 0}
"""Counts of this process's store openings by :func:`map_catalog` tasks (tests, benchmarks)."""


class CatalogResults(dict):  # type: ignore[type-arg]
    """``{entry name: result}`` of :func:`map_catalog` when the results are not tables;
    ``skipped`` maps the entries that were skipped to why."""

    skipped: dict[str, str]

    def __init__(self, results: Mapping[str, Any], skipped: Mapping[str, str]):
        super().__init__(results)
        self.skipped = dict(skipped)


class _Skipped:
    def __init__(self, reason: str):
        self.reason = reason


def _get_client(client: Any) -> Any:
    if client is False:
        return None
    if client is not None:
        return client
    try:
        from distributed import get_client
    except ImportError:
        return None
    try:
        return get_client()
    except ValueError:  # no client in this process
        return None


def _entry_url(reader: Any) -> str:
    from .catalog import store_url

    return store_url(str(reader.kwargs["store"]), reader.kwargs.get("root"))


def _open(reader: Any, options: Mapping[str, Any] | None, chunks: Any) -> xr.DataTree:
    """The entry's tree, opened once per process for one version of its store."""
    from .credentials import redact as _redact
    from .versions import resolve

    from .catalog import _default_options

    url = _entry_url(reader)
    pin = reader.metadata.get("content_version")
    effective = options if options is not None else _default_options(url, reader.kwargs.get("anonymous", True),
                                                                     reader.kwargs.get("endpoint"))  # as read() does
    key = (resolve(url, effective), pin, repr(chunks), repr(sorted(_redact(dict(effective or {})).items())))
    with _OPENED_LOCK:
        if key in _OPENED:
            _OPENED.move_to_end(key)
            STATS["reused"] += 1
            return _OPENED[key]
    read: dict[str, Any] = {"chunks": chunks}
    if options is not None:
        read["storage_options"] = dict(options)
    tree = reader.read(**read)
    with _OPENED_LOCK:
        STATS["opened"] += 1
        _OPENED[key] = tree
        while len(_OPENED) > _OPENED_MAX:
            _OPENED.popitem(last=False)
    return tree


def _as_table(result: Any) -> Any:
    """A DataFrame for the results documented as tables; anything else unchanged."""
    if isinstance(result, pd.DataFrame):
        return result
    if isinstance(result, pd.Series):
        return result.to_frame(name=result.name if result.name is not None else "value")
    if isinstance(result, xr.DataArray):
        return result.to_dataframe(name=result.name if result.name is not None else "value")
    if isinstance(result, xr.Dataset):
        return result.to_dataframe()
    return result


def _run_entry(func: Callable[[xr.DataTree, dict[str, Any]], Any], name: str, reader: Any,
               options: Mapping[str, Any] | None, chunks: Any, scheduler: str | None) -> Any:  # fmt: skip
    """One entry: open (or reuse) its store, ``func(tree, metadata)``, compute, tabulate."""
    import dask

    try:
        tree = _open(reader, options, chunks)
    except (StoreNotFoundError, IncompleteStoreError) as exc:
        return _Skipped(f"{type(exc).__name__}: {exc}")
    with dask.config.set(scheduler=scheduler) if scheduler else _nothing():
        result = func(tree, dict(reader.metadata))
        if dask.is_dask_collection(result):
            (result,) = dask.compute(result)
    return _as_table(result)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _metadata_columns(name: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    columns: dict[str, Any] = {"entry": name}
    for key, value in metadata.items():
        columns[str(key)] = ",".join(map(str, value)) if isinstance(value, list | tuple) else value
    return columns


def _assemble(results: dict[str, Any], metadata: dict[str, dict[str, Any]],
              skipped: dict[str, str]) -> pd.DataFrame | CatalogResults:  # fmt: skip
    if results and all(isinstance(r, pd.DataFrame) for r in results.values()):
        parts = []
        for name, frame in results.items():
            frame = frame if isinstance(frame.index, pd.RangeIndex) and frame.index.name is None else frame.reset_index()
            columns = _metadata_columns(name, metadata[name])
            lead = {k: v for k, v in columns.items() if k not in frame.columns}
            parts.append(frame.assign(**lead)[[*lead, *frame.columns]])
        table = pd.concat(parts, ignore_index=True)
        table.attrs["skipped"] = dict(skipped)
        return table
    if not results:
        table = pd.DataFrame({"entry": pd.Series(dtype=object)})
        table.attrs["skipped"] = dict(skipped)
        return table
    return CatalogResults(results, skipped)


def _select(cat: Any, names: Sequence[str] | None, criteria: Mapping[str, Any]) -> list[str]:
    from .catalog import find

    if isinstance(names, str):
        names = [names]
    if names is None:
        return find(cat, **criteria)
    known = set(cat.aliases or cat.entries)
    unknown = [n for n in names if n not in known]
    if unknown:
        from .errors import UnknownEntryError

        raise UnknownEntryError("names", unknown[0], sorted(known), what="an entry of this catalog")
    if criteria:
        chosen = set(find(cat, **criteria))
        return [n for n in names if n in chosen]
    return list(dict.fromkeys(names))


def map_catalog(func: Callable[[xr.DataTree, dict[str, Any]], Any], catalog: Any = None,
                names: Sequence[str] | None = None, client: Any = None, *,
                storage_options: Mapping[str, Any] | None = None, chunks: Any = "analysis",
                progress: bool = True, **find_criteria: Any) -> pd.DataFrame | CatalogResults:  # fmt: skip
    """``func(tree, metadata)`` for each selected catalog entry, where the data is; one table.

    Parameters
    ----------
    func
        Called with the entry's lazy tree (a session, or an ssc-11 animal) and its catalog
        metadata (``archive``, ``animal``, ``conditions``, ``ablations``, ...). It must be
        picklable by ``cloudpickle`` (any function or lambda is) when a cluster runs it.
    catalog
        An intake catalog of sscxr stores (default: :func:`sscxr.open_catalog`). Set where its
        stores are with ``catalog(store_root=...)``.
    names, find_criteria
        The entries: ``names`` (a list), and/or :func:`sscxr.catalog.find` criteria
        (``archive=``, ``animal=``, ``ablation=``, ``condition=``, ``lab=``, ``session_date=``);
        neither: every entry.
    client
        A ``distributed.Client``; ``None``: the current one (``distributed.get_client()``) if
        any, else everything runs in this process; ``False``: in this process in any case.
    storage_options
        For every entry instead of the catalog's defaults. Secrets in it never enter a task:
        they reach the workers through :func:`sscxr.io.register_worker_credentials`.
    chunks
        How the stores are opened (:func:`sscxr.io.open_store`); ``"analysis"`` by default.
    progress
        A progress bar (tqdm, ``sscxr[progress]``; silently none without it).

    Returns one DataFrame with the entry metadata as leading columns when every result is a
    DataFrame, Series, Dataset or DataArray; else a :class:`CatalogResults` dict (module
    docstring). Entries whose store does not exist are skipped and listed in
    ``.attrs["skipped"]`` / ``.skipped``; a storage failure (e.g. a worker without
    credentials) raises :class:`~sscxr.errors.StorageAccessError` naming the URL.
    """
    from .catalog import open_catalog
    from .credentials import redact as _redact, secret_values as _secret_values

    cat = catalog if catalog is not None else open_catalog()
    chosen = _select(cat, names, find_criteria)
    readers = {name: cat[name] for name in chosen}
    metadata = {name: dict(reader.metadata) for name, reader in readers.items()}
    client = _get_client(client)
    options = None if storage_options is None else dict(storage_options)
    if client is not None and options is not None and _secret_values(options):
        from .credentials import register_worker_credentials

        for prefix in sorted({_entry_url(r).rsplit("/", 1)[0] for r in readers.values()}):
            register_worker_credentials(client, prefix, options)
        options = _redact(options)
    results: dict[str, Any] = {}
    bar = _bar(progress, len(chosen))
    try:
        if client is None:
            for name, reader in readers.items():
                results[name] = _run_entry(func, name, reader, options, chunks, None)
                bar.update(1)
        else:
            results = _run_on(client, func, readers, options, chunks, bar)
    finally:
        bar.close()
    skipped = {n: r.reason for n, r in results.items() if isinstance(r, _Skipped)}
    if skipped:
        warnings.warn(f"map_catalog skipped {len(skipped)} of {len(chosen)} entries whose store does not exist: "
                      + "; ".join(f"{n} ({r})" for n, r in skipped.items()), stacklevel=2)
    done = {n: results[n] for n in chosen if n not in skipped}
    return _assemble(done, metadata, skipped)


def _run_on(client: Any, func: Callable[..., Any], readers: Mapping[str, Any], options: Mapping[str, Any] | None,
            chunks: Any, bar: Any) -> dict[str, Any]:  # fmt: skip
    from distributed import as_completed

    token = secrets.token_hex(4)
    futures = {client.submit(_run_entry, func, name, reader, options, chunks, "sync", pure=False,
                             key=f"sscxr-map-catalog-{name}-{token}"): name
               for name, reader in readers.items()}  # fmt: skip
    results: dict[str, Any] = {}
    try:
        for future in as_completed(list(futures)):
            name = futures[future]
            try:
                results[name] = future.result()
            except Exception as exc:
                exc.add_note(f"map_catalog: while running entry {name!r}")
                raise
            bar.update(1)
    finally:
        client.cancel([f for f in futures if not f.done()])
    return results


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(progress: bool, total: int) -> Any:
    if not progress:
        return _NoBar()
    try:
        from ._progress import progress_bar

        return progress_bar(total=total, desc="entries", unit="entry")
    except ImportError:
        return _NoBar()
