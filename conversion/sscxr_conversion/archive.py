"""Many units: a whole CRCNS download (or any folder of sessions, animals and tarballs) at once.

``convert_archive(src, dest)`` finds every *unit* under ``src`` (an ssc-1 session, an ssc-11
animal), converts each into ``dest/<unit>.zarr`` with :func:`~sscxr_conversion.convert` (so
each store is published atomically, see :mod:`.publish`), and writes
``dest/conversion-report.json`` and ``dest/catalog.yaml``.

How units are found (:func:`find_units`), walking ``src`` in name order and never descending
into a unit, a ``*.zarr`` store or its ``*-versions`` folder:

* a folder with an ``session_neuropilone_*ablate*`` subfolder is an **ssc-11 animal** (unit =
  the folder's name, ``an274424``);
* a folder holding exactly one ssc-1 session file (``an<ID>_<YYYY_MM_DD>_session.mat`` or
  ``_data_struct.mat``) and no tarball or animal folder beside it is that **session's folder**
  (its raw TIFFs and videos are under it; unit = ``an<ID>_<YYYY_MM_DD>``);
* any other session file is a unit of its own;
* a ``.tar`` / ``.tar.gz`` / ``.tgz`` named ``an<ID>_<YYYY_MM_DD>...`` is an ssc-1 session,
  one named ``an<ID>...`` an ssc-11 animal (read as a stream, never extracted); other tarballs
  are listed as ignored.

Two sources claiming one unit (a session folder and its tarball, say) are refused before
anything is written.

Rerun = resume (:func:`unit_state`): a unit whose store is complete, was made with the same
options and from an unchanged source is skipped without writing anything. "Unchanged" is first
checked cheaply: the report of the previous run records each unit's files as (name, size,
mtime); when they and the published version are as recorded, no byte is read. Otherwise (no
previous report, a touched file, or ``check_hashes``) the source files are hashed and compared
with the store's provenance records (name, size, sha256). A changed unit is reconverted only
with ``overwrite``; an unfinished one is resumed.

This module runs the conversion (units as tasks on one dask cluster); finding units and their
state is :mod:`.archive_units`, the report and catalog it writes :mod:`.archive_report`.

>>> report = convert_archive("crcns_upload_for_manuscript/", "stores/", workers=4)  # doctest: +SKIP
>>> report.exit_code, [u.status for u in report.units][:2]                           # doctest: +SKIP
(0, ['converted', 'converted'])
"""

from __future__ import annotations

import fnmatch
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sscxr.errors import SourceFormatError, SscxrError, StorageAccessError, StoreExistsError

from .archive_report import CATALOG_NAME, REPORT_NAME, ArchiveReport, UnitReport, _join, read_json, write_report
from .archive_units import Unit, UnitClashError, _spec_for, find_units, is_archive_source, unit_state
from .spec import ConversionSpec

__all__ = ["ArchiveReport", "Unit", "UnitReport", "UnitClashError", "convert_archive", "find_units",
           "is_archive_source", "unit_state", "REPORT_NAME", "CATALOG_NAME"]

#: Throughput of one dask worker process with one core, source bytes per second, measured by
#: ``benchmarks/bench_archive.py`` (docs/benchmarks-archive.md: synthetic small presets, local
#: disk, 2-core Xeon VM: 948 MB in 22.8 s on 2 workers). Only used for the ``--dry-run`` estimate.
BYTES_PER_SECOND_PER_WORKER = 20e6
#: Bytes written per source byte read, same benchmark (float64 dF/F, Blosc-LZ4, raw uint16 shards).
WRITTEN_PER_READ = 0.66


# --------------------------------------------------------------------------------------------
# converting one unit (where it runs: a dask worker, or this process)
# --------------------------------------------------------------------------------------------


def _stored_bytes(url: str, storage_options: Mapping[str, Any] | None) -> int:
    """Bytes of the objects of the store version at ``url``."""
    from sscxr.versions import _is_local, _local_path

    if _is_local(url):
        return sum(p.stat().st_size for p in Path(_local_path(url)).rglob("*") if p.is_file())
    from sscxr._zarr_compat import sync
    from sscxr.io import make_store

    store = make_store(url, storage_options, read_only=True, resolve=False)
    return int(sync(store.getsize_prefix("")))


def _what_to_do(exc: BaseException) -> str:
    if isinstance(exc, SourceFormatError):
        return "fix or replace this unit's source (e.g. download it again), then rerun"
    if isinstance(exc, StorageAccessError):
        return "check DEST and its storage options, then rerun (finished units are kept)"
    if isinstance(exc, SscxrError):
        return "see the message; rerun resumes this unit"
    return "this looks like a bug in sscxr: please report it with this message; rerun resumes this unit"


def _convert_unit(source: str, url: str, root: str, spec: dict[str, Any], mode: str, break_lock: bool,
                  in_cluster: bool, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Convert one unit; return what happened as a dict (errors included, never raised), so one
    unit's failure is that unit's report line. On a worker, the storage options come from the
    worker plugin registered for ``root`` (never from the task graph)."""
    from .pipeline import convert
    from .tasks import options_for

    options = storage_options if storage_options is not None else options_for(root)
    start = time.perf_counter()
    out: dict[str, Any] = {}
    try:
        if in_cluster:
            from distributed import worker_client

            context: Any = worker_client()
        else:
            context = nullcontext(None)
        with warnings.catch_warnings(record=True) as caught, context as client:
            warnings.simplefilter("always")
            result = convert(source, url, storage_options=options, spec=ConversionSpec.from_dict(spec),
                             overwrite=mode == "overwrite", resume=mode == "resume", progress=False,
                             break_lock=break_lock, client=client)
        out.update(version=result.version_url.rsplit("/", 1)[-1], content_version=result.content_version,
                   warnings=[*result.warnings, *(str(w.message) for w in caught)],
                   resumed=bool(result.skipped) and mode == "resume")
        out["bytes_written"] = _stored_bytes(result.version_url, options)
    except Exception as exc:  # noqa: BLE001 - reported per unit, the others go on
        kind = type(exc).__name__
        out["error"] = f"{kind}: {exc} -> {_what_to_do(exc)}"
        if not isinstance(exc, SscxrError):
            out["traceback"] = traceback.format_exc(limit=8)
    out["seconds"] = time.perf_counter() - start
    return out


# --------------------------------------------------------------------------------------------
# the archive
# --------------------------------------------------------------------------------------------


def _check_root(dest: str, storage_options: Mapping[str, Any] | None, n_units: int) -> None:
    """Refuse a DEST that is a store (or a file) rather than a folder of stores."""
    from sscxr.versions import _is_local, _local_path

    if dest.rstrip("/").endswith(".zarr"):
        raise StoreExistsError(f"{dest} names a store, but SRC holds {n_units} units: give a folder (store root) as "
                               "DEST; each unit goes to DEST/<unit>.zarr")
    if _is_local(dest):
        path = _local_path(dest)
        if os.path.isfile(path):
            raise StoreExistsError(f"{dest} is a file: give a folder (store root) as DEST")
        if os.path.exists(os.path.join(path, "zarr.json")):
            raise StoreExistsError(f"{dest} is a zarr store, not a folder of stores: give another DEST "
                                   "(each unit goes to DEST/<unit>.zarr)")
        return
    from sscxr.io import make_store, storage_errors
    from sscxr.versions import _get

    with storage_errors(dest, storage_options):
        if _get(make_store(dest, storage_options, read_only=True, resolve=False), "zarr.json") is not None:
            raise StoreExistsError(f"{dest} is a zarr store, not a folder of stores: give another DEST")


def _bar(total: int, enabled: bool) -> Any:
    try:
        from sscxr._progress import progress_bar

        return progress_bar(total=total, desc="archive", unit="B", unit_scale=True, disable=not enabled,
                            file=sys.stderr)
    except SscxrError:  # no tqdm: no bar
        return None


@contextmanager
def _cluster(dest: str, storage_options: Mapping[str, Any] | None, workers: int | None, scheduler: str | None,
             client: Any) -> Iterator[Any]:
    if client is None and scheduler is None and not workers:
        yield None
        return
    from .tasks import cluster_client, share_options, warm_worker

    own = nullcontext(client) if client is not None else cluster_client(dest, workers=workers, scheduler=scheduler)
    with own as c:
        share_options(c, dest.rstrip("/"), storage_options)
        c.run(warm_worker)
        yield c


def convert_archive(src: str | os.PathLike[str], dest: str, *, storage_options: Mapping[str, Any] | None = None,
                    spec: ConversionSpec | None = None, workers: int | None = None, scheduler: str | None = None,
                    client: Any = None, only: str | Sequence[str] | None = None, dry_run: bool = False,
                    overwrite: bool = False, check_hashes: bool = False, units_in_flight: int | None = None,
                    progress: bool = True, verbose: bool = True, break_lock: bool = False,
                    catalog: bool = True) -> ArchiveReport:
    """Convert every unit under ``src`` into ``dest/<unit>.zarr``; write the report and catalog.

    ``dest`` is a store root (a local folder or a URL such as ``s3://bucket/stores``). Units run
    largest first on one dask.distributed cluster (``workers`` processes, a ``scheduler``
    address, or a ``client`` of yours; none of them: one unit after another in this process),
    at most ``units_in_flight`` at once (default: one per worker process). Each unit's reading
    runs in a task on a worker, its group and raw tasks on the same cluster.

    A failed unit is reported (``ArchiveReport.failed``) and the others go on; its store is
    never published. Complete, unchanged units are skipped, unfinished ones resumed, changed
    ones reconverted only with ``overwrite``. ``only``: glob(s) of unit names. ``dry_run``:
    report what would happen, write nothing. ``check_hashes``: compare sha256 even when name,
    size and mtime are as recorded.

    >>> from sscxr_conversion import convert_archive
    >>> report = convert_archive("crcns/", "s3://bucket/stores", workers=8,
    ...                          storage_options={"profile": "crcns"})      # doctest: +SKIP
    >>> print(report.summary())                                               # doctest: +SKIP
    >>> report.exit_code                                                      # doctest: +SKIP
    0
    """
    started = time.perf_counter()
    dest = os.fspath(dest).rstrip("/")
    spec = spec or ConversionSpec()
    units, ignored = find_units(src, exclude=[dest] if "://" not in dest else [])
    if only:
        patterns = [only] if isinstance(only, str) else list(only)
        units = [u for u in units if any(fnmatch.fnmatchcase(u.name, p) for p in patterns)]
        if not units:
            raise SourceFormatError(str(src), f"holds no unit matching --only {' '.join(patterns)}")
    _check_root(dest, storage_options, len(units))
    report_url = _join(dest, REPORT_NAME)
    from sscxr.io import storage_errors

    with storage_errors(dest, storage_options):
        previous = {str(u.get("unit")): u for u in read_json(report_url, storage_options).get("units", [])
                    if isinstance(u, dict)}
        states = {u.name: unit_state(u, _join(dest, f"{u.name}.zarr"), storage_options, spec, previous.get(u.name),
                                     check_hashes=check_hashes) for u in units}
    reports = {u.name: UnitReport(u.name, u.archive, str(u.path), u.size, _join(dest, f"{u.name}.zarr"),
                                  states[u.name].state, states[u.name].reason, bytes_read=states[u.name].hashed,
                                  version=states[u.name].version, content_version=states[u.name].content_version,
                                  fingerprint=u.fingerprint()) for u in units}
    todo = [u for u in units if states[u.name].state in ("new", "resume")
            or (states[u.name].state == "changed" and overwrite)]
    n_workers = workers or 1
    result = ArchiveReport(str(src), dest, [reports[u.name] for u in units], ignored, dry_run,
                           started=datetime.now(UTC).isoformat(timespec="seconds"))
    if dry_run:
        read = sum(u.read_size(spec) for u in todo)
        result.estimate = {"bytes_read": read, "bytes_written": int(read * WRITTEN_PER_READ), "workers": n_workers,
                           "seconds": read / (BYTES_PER_SECOND_PER_WORKER * n_workers),
                           "basis": f"{BYTES_PER_SECOND_PER_WORKER / 1e6:.0f} MB/s of source per worker core, "
                                    f"{WRITTEN_PER_READ} bytes written per byte read, docs/benchmarks-archive.md"}
        for u in todo:
            reports[u.name].reason = (reports[u.name].reason or "") + (" -> --overwrite reconverts it"
                                                                        if states[u.name].state == "changed" else "")
        result.seconds = time.perf_counter() - started
        return result
    for u in units:
        r = reports[u.name]
        if r.status == "up to date":
            r.status = "skipped"
        elif r.status == "changed" and not overwrite:
            r.status, r.reason = "skipped", f"{r.reason}; pass --overwrite to reconvert it"
            r.fingerprint = {}  # the store is not of these files: the next run must compare again
    from sscxr.io import check_writable

    check_writable(dest, storage_options)
    todo.sort(key=lambda u: (-u.read_size(spec), u.name))  # largest first: the long ones start early
    bar = _bar(sum(u.read_size(spec) for u in todo), progress and bool(todo))

    def finished(unit: Unit, out: dict[str, Any]) -> None:
        r = reports[unit.name]
        r.seconds = float(out.get("seconds", 0.0))
        r.warnings = list(out.get("warnings", []))
        if "error" in out:
            r.status, r.error, r.fingerprint = "failed", str(out["error"]), {}
            r.bytes_read, r.version, r.content_version = 0, "", ""
            if out.get("traceback"):
                r.warnings.append(str(out["traceback"]))
        else:
            was = states[unit.name].state
            r.status = "resumed" if was == "resume" else "converted"
            r.reason = "reconverted: " + r.reason if was == "changed" else ""
            r.bytes_read = unit.read_size(spec)
            r.bytes_written = int(out.get("bytes_written", 0))
            r.version, r.content_version = str(out["version"]), str(out["content_version"])
        if bar is not None:
            bar.update(unit.read_size(spec))
            if verbose:
                bar.write(r.line(), file=sys.stderr)
        elif verbose:
            print(r.line(), file=sys.stderr)

    def mode(unit: Unit) -> str:
        return "overwrite" if states[unit.name].state == "changed" else "resume"

    try:
        with _cluster(dest, storage_options, workers, scheduler, client) if todo else nullcontext(None) as c:
            if c is None:
                for unit in todo:
                    finished(unit, _convert_unit(str(unit.path), _join(dest, f"{unit.name}.zarr"), dest,
                                                 _spec_for(unit, spec).to_dict(), mode(unit), break_lock, False,
                                                 storage_options))
            else:
                result.workers = len(c.scheduler_info().get("workers", {}))
                for unit, out in _run_on_cluster(c, todo, dest, spec, mode, break_lock, units_in_flight):
                    finished(unit, out)
    finally:
        if bar is not None:
            bar.close()
        result.seconds = time.perf_counter() - started
        write_report(result, previous, units, dest, storage_options, catalog)
    return result


def _run_on_cluster(client: Any, todo: list[Unit], dest: str, spec: ConversionSpec, mode: Any, break_lock: bool,
                    units_in_flight: int | None) -> Iterator[tuple[Unit, dict[str, Any]]]:
    """Submit the units' tasks, at most ``units_in_flight`` at once, each pinned to the worker
    with the fewest units running (one unit's reading is GIL-bound Python: two in one process
    would share one core); yield each as it finishes."""
    from distributed import as_completed

    workers = sorted(client.scheduler_info().get("workers", {}))
    limit = max(1, units_in_flight or len(workers) or 1)
    load = dict.fromkeys(workers, 0)
    queue = iter(todo)
    running: dict[Any, tuple[Unit, str | None]] = {}

    def submit() -> Any:
        unit = next(queue, None)
        if unit is None:
            return None
        where = min(load, key=lambda w: (load[w], w)) if load else None
        if where is not None:
            load[where] += 1
        future = client.submit(_convert_unit, str(unit.path), _join(dest, f"{unit.name}.zarr"), dest,
                               _spec_for(unit, spec).to_dict(), mode(unit), break_lock, True, pure=False,
                               workers=[where] if where else None, allow_other_workers=True,
                               key=f"sscxr-unit-{unit.name}-{os.urandom(3).hex()}")
        running[future] = (unit, where)
        return future

    pending = as_completed([f for f in (submit() for _ in range(limit)) if f is not None])
    for future in pending:
        unit, where = running.pop(future)
        if where is not None:
            load[where] -= 1
        try:
            out = future.result()
        except Exception as exc:  # noqa: BLE001 - a worker died under this unit, say
            out = {"error": f"{type(exc).__name__}: {exc} -> rerun resumes this unit (a worker may have run "
                            "out of memory: lower --units-in-flight)", "seconds": 0.0}
        nxt = submit()
        if nxt is not None:
            pending.add(nxt)
        yield unit, out
