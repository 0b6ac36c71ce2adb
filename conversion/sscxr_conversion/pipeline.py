"""The conversion pipeline: describe inputs -> read -> template -> group writes -> finalise.

Read, then write: the readers return finished, labeled ``xr.Dataset`` groups and know nothing of
the store; only then is the store created (the template), the groups written and the store
finalised.

It only wires steps; reading lives in ``readers/``, writing in ``write.py``, task execution in
``tasks.py``.
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import nullcontext
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import xarray as xr

from sscxr.errors import SourceFormatError

from . import write
from .progress import closing, counted_source, group_bar, unit_name
from .provenance import SourceRecord, provenance
from .publish import Publication
from .readers._matfile import load_mat
from .readers.ssc1 import SESSION_FILE, read_session
from .source import is_tar, iter_members
from .spec import ConversionSpec
from .tasks import options_for, prestart_workers, runner

if TYPE_CHECKING:
    from .raw import RawStep

_SERIAL = threading.Lock()
SSC11_FOLDER = re.compile(r"session_neuropilone_(pre|post)ablate")


@dataclass
class ConversionResult:
    """What a conversion did: where, which groups, the content version and any warnings."""

    url: str
    archive: str
    groups: list[str]
    skipped: list[str]
    content_version: str
    warnings: list[str] = field(default_factory=list)
    version_url: str = ""  # the published version :attr:`url` now names (sscxr.versions)

    def __repr__(self) -> str:
        published = f" (published as {self.version_url})" if self.version_url and self.version_url != self.url else ""
        return (f"<ConversionResult {self.archive} -> {self.url}{published}: {len(self.groups)} groups written, "
                f"{len(self.skipped)} resumed, version {self.content_version}, {len(self.warnings)} warning(s)>")


class GroupTask(Protocol):
    """One independent unit of writing: the group paths it writes, and how to build them.

    ``build()`` runs where the task runs (a thread or a dask worker) and returns the groups and
    a small picklable summary for :attr:`ReadPlan.finish`. A task whose groups are all written
    already is skipped on ``--resume``, unless ``needs_summary`` (then it is built, not written).
    """

    @property
    def paths(self) -> tuple[str, ...]: ...

    @property
    def needs_summary(self) -> bool: ...

    def build(self) -> tuple[list[tuple[str, xr.Dataset]], Any]: ...


@dataclass
class ReadyGroups:
    """A task whose groups the driver has already read (ssc-1 subvolumes)."""

    groups: list[tuple[str, xr.Dataset]]
    needs_summary: bool = False

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(p for p, _ in self.groups)

    def build(self) -> tuple[list[tuple[str, xr.Dataset]], None]:
        """Hand the groups over: once written they are freed, not held until the end (peak memory)."""
        groups, self.groups = self.groups, []
        return groups, None


@dataclass
class Finished:
    """What :attr:`ReadPlan.finish` adds once every task ran: groups, root attrs, warnings."""

    groups: dict[str, xr.Dataset] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass
class ReadPlan:
    """Everything a conversion writes, described before any byte is written.

    ``attrs`` (with the provenance of every source file) go into the template; ``groups`` are
    written by the driver; ``tasks`` (``n_tasks`` of them, possibly a stream) run independently;
    ``finish`` turns the tasks' summaries (in task order) into the last groups and attrs.
    """

    attrs: dict[str, Any]
    groups: dict[str, xr.Dataset]
    tasks: Iterable[GroupTask]
    n_tasks: int
    warnings: list[str] = field(default_factory=list)
    finish: Callable[[list[Any]], Finished] | None = None
    raw: RawStep | None = None  # --raw: run after the tasks
    threads: int = 1  # local task threads (tasks that inflate MAT files overlap on two)


def detect_archive(src: str | os.PathLike) -> str:
    """``"ssc-1"`` or ``"ssc-11"`` from the shape of SRC (folder names, file names)."""
    path = Path(src)
    name = path.name
    if SESSION_FILE.search(name) or (is_tar(path) and re.match(r"an\d+_\d{4}_\d{2}_\d{2}", name)):
        return "ssc-1"
    if path.is_dir():
        if any(SESSION_FILE.search(p.name) for p in path.rglob("*.mat")):
            return "ssc-1"
        if any(SSC11_FOLDER.search(p.name) for p in path.rglob("*") if p.is_dir()):
            return "ssc-11"
    if is_tar(path):
        return "ssc-11"
    raise SourceFormatError(str(src), "is neither an ssc-1 session (an<ID>_<YYYY_MM_DD>_session.mat or "
                            "_data_struct.mat, its folder or tarball) nor an ssc-11 animal folder "
                            "(with session_neuropilone_*ablate*_merged/ folders)")


def convert(src: str | os.PathLike, dest: str, *, storage_options: Mapping[str, Any] | None = None,
            spec: ConversionSpec | None = None, workers: int | None = None, scheduler: str | None = None,
            overwrite: bool = False, resume: bool = False, progress: bool = True,
            break_lock: bool = False, client: Any = None) -> ConversionResult:
    """Convert one ssc-1 session or ssc-11 animal at ``src`` into the zarr store at ``dest``.

    The store is written as a new version beside whatever ``dest`` holds and published in one
    atomic step once complete (:mod:`.publish`): readers of ``dest`` see the old store or the
    new one, never a mix. One conversion writes ``dest`` at a time.

    >>> convert("an197522_2013_03_08_session.mat", "an197522_2013_03_08.zarr")  # doctest: +SKIP
    <ConversionResult ssc-1 -> an197522_2013_03_08.zarr: 7 groups written, ...>
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers={workers!r}: give a whole number of worker processes, at least 1")
    spec = ConversionSpec.from_dict({**(spec or ConversionSpec()).to_dict(), "archive": detect_archive(src)})
    with Publication(dest, storage_options, overwrite=overwrite, resume=resume, break_lock=break_lock) as pub:
        if pub.up_to_date:
            return _up_to_date(pub, spec)
        target = pub.version_url
        if client is None:
            prestart_workers(target, workers=workers, scheduler=scheduler)  # their imports overlap the read
        plan = read_plan(src, spec, progress=progress)
        result = write_plan(target, plan, spec, storage_options=storage_options, workers=workers,
                            scheduler=scheduler, overwrite=False, resume=pub.resuming, progress=progress,
                            client=client)
        pub.publish(result.content_version)
    return replace(result, url=pub.url, version_url=target)


def _up_to_date(pub: Publication, spec: ConversionSpec) -> ConversionResult:
    """``--resume`` of a complete store: nothing is written."""
    from sscxr.io import read_attrs

    attrs = read_attrs(pub.url, storage_options=pub.location.storage_options)
    url = pub.version_url if pub.name else pub.url  # the current version, or a store from before versions
    return ConversionResult(pub.url, str(attrs.get("archive", spec.archive)), [], ["(all: already complete)"],
                            str(attrs.get("content_version", "")), [], version_url=url)


def read_plan(src: str | os.PathLike, spec: ConversionSpec, *, progress: bool = False) -> ReadPlan:
    """The :class:`ReadPlan` of SRC for ``spec.archive`` (``"ssc-1"`` or ``"ssc-11"``).

    Nothing is written: the plan holds finished groups (or tasks that build them).
    With ``progress``, byte bars show the reading (:mod:`.progress`), the raw pass's too.

    >>> plan = read_plan("an197522_2013_03_08_session.mat", ConversionSpec(archive="ssc-1"))  # doctest: +SKIP
    >>> sorted(plan.groups)[:2]                                                               # doctest: +SKIP
    ['behavior/events', 'behavior/whisker']
    """
    if spec.archive == "ssc-11":
        from .ssc11_pipeline import read_animal

        return read_animal(src, spec, progress=progress)
    attrs, groups, tasks, warnings = read_ssc1(src, spec, progress=progress)
    raw = None
    if spec.raw:
        from .raw import RawStep

        raw = RawStep(src, {**groups, **{p: ds for t in tasks for p, ds in t}}, spec, progress=progress)
    ready = [ReadyGroups(t) for t in tasks]
    return ReadPlan(attrs, groups, ready, len(tasks), warnings, raw=raw)


def read_ssc1(src: str | os.PathLike, spec: ConversionSpec,
              progress: bool = False) -> tuple[dict, dict, list, list[str]]:
    """Read an ssc-1 session: root attrs, small groups (driver) and per-subvolume task groups."""
    records: list[SourceRecord] = []
    members = iter_members(src, lambda n: bool(SESSION_FILE.search(n)), records)
    member = next(members, None)
    if member is None:
        raise SourceFormatError(str(src), "contains no ssc-1 session file (an<ID>_<YYYY_MM_DD>_session.mat)")
    with ThreadPoolExecutor(2) as pool:  # hash while loading: sha256 and zlib release the GIL
        record = pool.submit(lambda: member.record)
        warmed = pool.submit(_warm_imports)
        source, bar = counted_source(member.source, member.name, enabled=progress)  # bytes as they are read
        with closing(bar):
            parsed = load_mat(source, name=member.name, variable="s")
        warmed.result()  # labeling imports dask too: two threads importing it at once can meet half of it
        content = read_session(parsed)
        records.insert(0, record.result())
    del member
    if spec.raw:  # the raw pass streams on (a second pass) and records the tarball itself
        members.close()
    for _ in members:  # drain the stream so a tarball's own record is complete
        pass
    attrs = {"archive": "ssc-1", **content.attrs,
             "provenance": provenance(records, spec, content.warnings)}
    small = {k: v for k, v in content.groups.items() if not k.startswith("imaging/")}
    tasks = _subvolume_tasks(content.groups)
    return attrs, small, tasks, content.warnings


def _warm_imports() -> None:
    """Import, while loadmat inflates (zlib releases the GIL), what labeling would import later:
    xarray loads ``dask.array`` on its first object-dtype variable (0.3 s of a conversion).
    Labeling waits for it: a thread importing dask while another is half-way through importing it
    can get a partly initialised ``dask.base`` (an ImportError, seen with dask 2024.11)."""
    try:
        import dask.array  # noqa: F401
    except ImportError:  # dask is optional for labeling
        pass


def _subvolume_tasks(groups: Mapping[str, xr.Dataset]) -> list[list[tuple[str, xr.Dataset]]]:
    names = sorted(k for k in groups if k.startswith("imaging/") and k.count("/") == 1)
    return [[(k, groups[k]), (f"{k}/rois", groups[f"{k}/rois"])] for k in names]


def write_plan(dest: str, plan: ReadPlan, spec: ConversionSpec, *, storage_options: Mapping[str, Any] | None,
               workers: int | None, scheduler: str | None, overwrite: bool, resume: bool,
               progress: bool, client: Any = None) -> ConversionResult:
    """Template, independent tasks, driver groups, the plan's finish, finalise."""
    store = write.open_store(dest, storage_options, mode="w")
    done = write.prepare(store, dest, overwrite=overwrite, resume=resume, attrs=plan.attrs)
    written: list[str] = []
    summaries: dict[int, Any] = {}
    jobs = ((dest, i, t, spec, not all(p in done for p in t.paths)) for i, t in enumerate(plan.tasks))
    jobs = (j for j in jobs if j[4] or j[2].needs_summary)
    with runner(dest, storage_options, workers=workers, scheduler=scheduler, threads=plan.threads,
                client=client) as run:
        with closing(_progress(plan.n_tasks, progress, desc=f"writing {unit_name(dest)}")) as bar:
            for index, paths, summary in run.run(_run_task, jobs):
                written += paths
                summaries[index] = summary
                bar.update(1)
        written += _write_groups(store, plan.groups, done, spec)  # after the tasks freed their groups
        if plan.raw is not None:  # adds its groups, the tarball's record and warnings to plan.attrs
            written += plan.raw(store, dest, run, done, plan.attrs, plan.warnings)
    attrs, warnings = dict(plan.attrs), list(plan.warnings)
    if plan.finish is not None:
        finished = plan.finish([summaries[i] for i in sorted(summaries)])
        written += _write_groups(store, finished.groups, done, spec)
        attrs.update(finished.attrs)
        warnings += finished.warnings
    attrs["provenance"] = {**attrs["provenance"], "warnings": warnings}
    version = write.finalise(store, attrs)
    return ConversionResult(dest, attrs["archive"], written, sorted(done), version, warnings)


def _write_groups(store: Any, groups: Mapping[str, xr.Dataset], done: set[str], spec: ConversionSpec) -> list[str]:
    return [write.write_group(store, path, ds, spec) for path, ds in groups.items() if path not in done]


def _run_task(url: str, index: int, task: GroupTask, spec: ConversionSpec,
              write_groups: bool) -> tuple[int, list[str], Any]:
    """Build one task where it runs; write its groups unless they are already written.

    A task with ``serial = True`` (a MAT v7.3 file: h5py has one global lock) never runs
    beside another such task in this process.
    """
    with _SERIAL if getattr(task, "serial", False) else nullcontext():
        groups, summary = task.build()
        if not write_groups:
            return index, [], summary
        store = write.open_store(url, options_for(url), mode="w")
        return index, [write.write_group(store, path, ds, spec) for path, ds in groups], summary


def _progress(total: int, enabled: bool, desc: str) -> Any:
    return group_bar(total, desc, enabled=enabled)  # sscxr._progress: no TqdmWarning in a notebook
