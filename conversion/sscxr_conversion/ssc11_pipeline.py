"""The ssc-11 plan: one animal folder (or its tarball) -> the :class:`~.pipeline.ReadPlan` of its store.

1. **Inventory** (driver): every ``session_neuropilone_<condition>_merged/an*sess_struct.mat``
   (subvolume N = N-th in sorted order within its folder) and every curation file, with size
   and sha256 for the provenance; curation files are read here (they are small).
2. **Tasks** (one per condition and subvolume, independent): a task opens its own file (folder
   SRC) or gets the member's bytes from the stream (tarball SRC, read in archive order), writes
   ``/<condition>/subvolume_N`` with ``rois`` and ``ca_events``, and returns a small summary:
   that file's trials, events, whisker samples and cell rows.
3. **Finish** (driver): per condition the union of the files' ``trials``, ``events`` and
   ``whisker`` (a trial held by several files must be identical in each), and ``/cells``.

>>> plan = read_animal("an274424/", ConversionSpec(archive="ssc-11"))   # doctest: +SKIP
>>> [t.paths[0] for t in plan.tasks]                                    # doctest: +SKIP
['post_touch/subvolume_1', 'post_touch/subvolume_2', 'pre/subvolume_1', 'pre/subvolume_2']
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from sscxr.errors import InconsistentSourceError, SourceFormatError
from sscxr.schema import CONDITIONS

from .cells import cell_rows, cell_table
from .pipeline import Finished, ReadPlan
from .progress import byte_bar, closing
from .provenance import SourceRecord, provenance
from .readers._matfile import load_mat, mat_version
from .readers.curation import Ablation, curation_file, kind_of, read_curation
from .readers.ssc11 import read_sess
from .source import Member, is_tar, iter_members
from .spec import ConversionSpec

SUBVOLUME_FILE = re.compile(r"(?:^|/)session_neuropilone_(" + "|".join(sorted(CONDITIONS, key=len, reverse=True))
                            + r")_merged/(an[^/]*sess_struct\.mat)$")
ANIMAL = re.compile(r"^(an\d+)")
CONDITION_ORDER = list(CONDITIONS.values())


@dataclass(frozen=True)
class SubvolumeFile:
    """One subvolume file of the inventory: its condition, number, name and sha256."""

    condition: str
    number: int
    name: str
    sha256: str
    path: str | None = None  # a local file the task opens itself (folder SRC)
    version: str = ""  # "5" or "7.3", read from the header by the inventory

    @property
    def group(self) -> str:
        return f"{self.condition}/subvolume_{self.number}"


@dataclass
class Inventory:
    """What SRC holds: animal id, subvolume files (numbered), curation files and provenance records."""

    src: str
    animal: str
    files: list[SubvolumeFile]
    curation: list[tuple[str, bytes]]
    records: list[SourceRecord]

    @property
    def conditions(self) -> list[str]:
        present = {f.condition for f in self.files}
        return [c for c in CONDITION_ORDER if c in present]


@dataclass
class FileSummary:
    """A task's summary for the finish step: the file's share of the condition's tables."""

    file: SubvolumeFile
    trials: xr.Dataset
    events: xr.Dataset
    whisker: xr.Dataset
    cells: xr.Dataset
    frame_trials: np.ndarray
    attrs: dict
    warnings: list[str] = field(default_factory=list)


@dataclass
class SubvolumeTask:
    """Reads one subvolume file where it runs and labels it (see :func:`read_sess`)."""

    file: SubvolumeFile
    data: bytes | None = None
    needs_summary: bool = True

    @property
    def paths(self) -> tuple[str, ...]:
        g = self.file.group
        return g, f"{g}/rois", f"{g}/ca_events"

    @property
    def serial(self) -> bool:
        """MAT v7.3 files are converted one at a time: h5py serialises every call on one lock,
        and two threads contending for it measured slower (23 s vs 15 s for the benchmark
        animal). v5 tasks overlap two at a time: one inflates (zlib releases the GIL) while
        the other labels and writes (docs/benchmarks-conversion-ssc11.md)."""
        return self.file.version == "7.3"

    def build(self) -> tuple[list[tuple[str, xr.Dataset]], FileSummary]:
        source = self.data if self.data is not None else _local(self.file)
        try:
            content = read_sess(load_mat(source, name=self.file.name, variable="sess"), subvolume=self.file.number)
        except OSError as exc:  # h5py reading a damaged v7.3 file lazily, past its header
            raise SourceFormatError(self.file.name, f"cannot be read ({type(exc).__name__}: {exc})",
                                    hint="the file is truncated or corrupt; download it again") from exc
        imaging = content.imaging.assign_attrs(condition=self.file.condition, source_file=self.file.name,
                                               **content.attrs)
        groups = list(zip(self.paths, (imaging, content.rois, content.ca_events), strict=True))
        summary = FileSummary(self.file, content.trials, content.events, content.whisker,
                              cell_rows(imaging, self.file.number, self.file.name),
                              np.unique(imaging["trial"].values), content.attrs, content.warnings)
        return groups, summary


def _local(file: SubvolumeFile) -> Path:
    path = Path(file.path or "")
    if not path.is_file():
        raise SourceFormatError(file.name, f"is not readable here ({path}); with --scheduler the workers must "
                                "see SRC at the same path, or convert the animal's tarball")
    return path


def read_animal(src: str | os.PathLike, spec: ConversionSpec, *, progress: bool = False) -> ReadPlan:
    """The plan for one ssc-11 animal folder or tarball (see the module docstring).

    With ``progress``, a byte bar shows the inventory's pass over SRC (every file is hashed);
    the tasks, which read the files again, show on the pipeline's group bar."""
    with closing(byte_bar(None, f"reading {Path(src).name}", enabled=progress)) as bar:
        inv = take_inventory(src, bar=bar)
    warnings: list[str] = []
    ablations = _ablations(inv, warnings)
    if not ablations:
        warnings.append(f"{src}: no curation file (manualCurationData.mat or an<ID>_<date>.mat); no cell is "
                        "flagged as ablated")
    attrs = {"archive": "ssc-11", **_root_attrs(inv, ablations),
             "provenance": provenance(inv.records, spec, warnings)}
    tasks: Iterable[SubvolumeTask] = _stream_tasks(inv) if is_tar(src) else [SubvolumeTask(f) for f in inv.files]
    return ReadPlan(attrs, {}, tasks, len(inv.files), warnings, threads=_task_threads(inv),
                    finish=lambda summaries: finish(summaries, inv, ablations))


TASK_MEMORY_FACTOR = 3  # a task's peak RSS growth / its file's size (measured 2.5x, v5 benchmark animal)


def _task_threads(inv: Inventory) -> int:
    """Two local tasks at once (see :attr:`SubvolumeTask.serial`), unless the two largest
    subvolume files, labeled, would not fit in half the machine's memory: then one."""
    sizes = sorted((r.size for r in inv.records if SUBVOLUME_FILE.search(r.name)), reverse=True)
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: stay on the safe side
        return 1
    return 2 if TASK_MEMORY_FACTOR * sum(sizes[:2]) < memory / 2 else 1


def _ablations(inv: Inventory, warnings: list[str]) -> list[Ablation]:
    names = [name for name, _ in inv.curation]
    out = []
    for name, data in inv.curation:
        kind, guess = kind_of(name, names, inv.conditions, inv.animal)
        if guess:
            warnings.append(f"{name}: {guess}")
        out.append(read_curation(name, data, kind))
    return out


def _root_attrs(inv: Inventory, ablations: list[Ablation]) -> dict[str, Any]:
    return {"animal_id": inv.animal, "conditions": inv.conditions, "ablations": [a.to_dict() for a in ablations]}


# --- inventory ---------------------------------------------------------------------------------
def take_inventory(src: str | os.PathLike, *, bar: Any = None) -> Inventory:
    """Find, number and hash the subvolume files and read the curation files of SRC."""
    found: list[tuple[str, str, str, str | None, str]] = []  # condition, name, sha256, path, MAT version
    curation: list[tuple[str, bytes]] = []
    records: list[SourceRecord] = []
    tarball: list[SourceRecord] = []  # a tarball's own record, once its stream is exhausted
    want = lambda n: bool(SUBVOLUME_FILE.search(n) or curation_file(n))  # noqa: E731
    for member, record in _hashed(iter_members(src, want, tarball, bar=bar)):
        version = _check_mat(member)
        records.append(record)
        m = SUBVOLUME_FILE.search(member.name)
        if m:
            found.append((CONDITIONS[m.group(1)], member.name, record.sha256,
                          str(member.path) if member.path else None, version))
        else:
            curation.append((member.name, member.data if member.data is not None else _read(member)))
    if not found:
        raise SourceFormatError(str(src), "contains no ssc-11 subvolume file "
                                "(session_neuropilone_<pre|post>ablate*_merged/an*sess_struct.mat)")
    records = sorted(records, key=lambda r: r.name) + tarball
    return Inventory(str(src), _animal(src, [f[1] for f in found]), _numbered(found), curation, records)


def _read(member: Member) -> bytes:
    assert member.path is not None  # a member has bytes or a path
    return member.path.read_bytes()


def _hashed(members: Iterator[Member]) -> Iterator[tuple[Member, SourceRecord]]:
    """Members with their records; local files are hashed two at a time (sha256 releases the GIL)."""
    with ThreadPoolExecutor(2) as pool:
        pending = []
        for member in members:
            pending.append((member, pool.submit(_record, member)))
            if member.data is not None or len(pending) > 2:
                m, rec = pending.pop(0)
                yield m, rec.result()
        for m, rec in pending:
            yield m, rec.result()


def _record(member: Member) -> SourceRecord:
    return member.record


def _check_mat(member: Member) -> str:
    """The MAT version of ``member``; a non-MAT file is refused before anything is written
    (full reading happens in the tasks)."""
    if member.data is not None:
        head = member.data[:520]
    else:
        with open(member.path, "rb") as f:  # type: ignore[arg-type]
            head = f.read(520)
    version = mat_version(head)
    if not version:
        raise SourceFormatError(member.name, "is not a MATLAB MAT file (no v5 or v7.3 header)",
                                hint="the download is damaged or the file was replaced")
    return version


def _numbered(found: list[tuple[str, str, str, str | None, str]]) -> list[SubvolumeFile]:
    out = []
    for condition in CONDITION_ORDER:
        names = sorted((n, sha, p, v) for c, n, sha, p, v in found if c == condition)
        out += [SubvolumeFile(condition, i, n, sha, p, v) for i, (n, sha, p, v) in enumerate(names, start=1)]
    return out


def _animal(src: str | os.PathLike, names: list[str]) -> str:
    animals = {m.group(1) for n in names if (m := ANIMAL.match(n.rsplit("/", 1)[-1]))}
    if len(animals) > 1:
        raise SourceFormatError(str(src), f"holds subvolume files of several animals {sorted(animals)}; "
                                "convert one animal folder at a time")
    if animals:
        return animals.pop()
    m = ANIMAL.match(Path(src).name)
    return m.group(1) if m else ""


def _stream_tasks(inv: Inventory) -> Iterator[SubvolumeTask]:
    """Tarball SRC: stream it again and hand each subvolume member's bytes to its task."""
    by_name = {f.name: f for f in inv.files}
    for member in iter_members(inv.src, lambda n: n in by_name):
        file = by_name[member.name]
        if member.record.sha256 != file.sha256:
            raise SourceFormatError(inv.src, f"member {member.name} changed while it was being converted")
        yield SubvolumeTask(file, member.data)


# --- finish ------------------------------------------------------------------------------------
def finish(summaries: list[FileSummary], inv: Inventory, ablations: list[Ablation]) -> Finished:
    """Per-condition ``trials``/``events``/``whisker`` unions and ``/cells`` from every task's summary."""
    summaries = sorted(summaries, key=lambda s: (CONDITION_ORDER.index(s.file.condition), s.file.number))
    warnings = [w for s in summaries for w in s.warnings]
    groups: dict[str, xr.Dataset] = {}
    for condition in inv.conditions:
        parts = [s for s in summaries if s.file.condition == condition]
        groups.update(condition_tables(condition, parts))
    groups["cells"] = cell_table([(s.file.condition, s.cells) for s in summaries], inv.conditions, ablations, warnings)
    warnings += _mouse_ids(summaries, inv.animal)
    return Finished(groups, _root_attrs(inv, ablations), warnings)


def condition_tables(condition: str, parts: list[FileSummary]) -> dict[str, xr.Dataset]:
    """``<condition>/trials``, ``/events`` and ``/whisker``: the union of the files' tables."""
    trials = union_by_trial([(s.file.name, s.trials) for s in parts], "trial", "trial")
    trials["subvolume"] = ("trial", _subvolume_of(trials["trial"].values, parts),
                           {"description": "subvolume (file number) whose frames include the trial; -1: none"})
    events = union_by_trial([(s.file.name, s.events) for s in parts], "event", "start_time")
    events = events.assign_coords(event=np.arange(events.sizes["event"], dtype=np.int64))
    whisker = union_by_trial([(s.file.name, s.whisker) for s in parts], "time", "time")
    return {f"{condition}/trials": trials, f"{condition}/events": events, f"{condition}/whisker": whisker}


def _subvolume_of(trial_ids: np.ndarray, parts: list[FileSummary]) -> np.ndarray:
    out = np.full(len(trial_ids), -1, dtype=np.int64)
    for s in reversed(parts):  # the lowest number wins when several files image a trial
        out[np.isin(trial_ids, s.frame_trials)] = s.file.number
    return out


def _mouse_ids(summaries: list[FileSummary], animal: str) -> list[str]:
    return [f"{s.file.name}: sess.mouseId is {s.attrs['mouse_id']!r}, the folder says {animal!r}"
            for s in summaries if s.attrs.get("mouse_id") not in (None, "", animal)]


# --- union of per-file tables ------------------------------------------------------------------
def union_by_trial(parts: list[tuple[str, xr.Dataset]], dim: str, sort_by: str) -> xr.Dataset:
    """Rows of every file along ``dim``; a trial's rows come from the first file that has it.

    A later file holding the same trial id must hold the same rows for it (same count, same
    values, NaN equal to NaN); otherwise an :class:`InconsistentSourceError` names both files.
    """
    kept: list[xr.Dataset] = []
    owner: dict[int, int] = {}  # trial id -> index of the first table holding it
    parts = _same_columns(parts, dim)
    for name, ds in parts:
        trial = ds["trial"].values
        shared = np.isin(trial, np.fromiter(owner, dtype=np.int64, count=len(owner)))
        for other in {owner[t] for t in np.unique(trial[shared])}:
            _check_same_trials(parts[other], (name, ds), dim, [t for t in np.unique(trial[shared]) if owner[t] == other])
        kept.append(ds.isel({dim: ~shared}))
        index = len(kept) - 1
        owner.update({int(t): index for t in np.unique(trial[~shared])})
    if not kept:
        raise ValueError("union_by_trial needs at least one table")
    out = xr.concat(kept, dim=dim, data_vars="all", coords="different", compat="equals", join="outer",
                    combine_attrs="drop_conflicts") if len(kept) > 1 else kept[0]
    return out.isel({dim: np.argsort(out[sort_by].values, kind="stable")})


def _same_columns(parts: list[tuple[str, xr.Dataset]], dim: str) -> list[tuple[str, xr.Dataset]]:
    """Give every table the variables of all (a file without touches has no ``whisker`` column):
    missing columns are ``""`` (str), ``-1`` (int), ``False`` (bool) or NaN."""
    every: dict[str, xr.Variable] = {}
    for _, ds in parts:
        for name, var in ds.variables.items():
            if dim in var.dims:
                every.setdefault(str(name), var)
    out = []
    for name, ds in parts:
        missing = {k: _filler(v, ds.sizes[dim], dim) for k, v in every.items() if k not in ds.variables}
        out.append((name, ds.assign(missing) if missing else ds))
    return out


def _filler(like: xr.Variable, n: int, dim: str) -> xr.Variable:
    shape = tuple(n if d == dim else s for d, s in zip(like.dims, like.shape, strict=True))
    kind = like.dtype.kind
    value = "" if kind in "OUT" else -1 if kind in "iu" else False if kind == "b" else np.nan
    dtype = like.dtype if kind in "iub" else object if kind in "OUT" else np.float64
    return xr.Variable(like.dims, np.full(shape, value, dtype=dtype), like.attrs)


def _check_same_trials(first: tuple[str, xr.Dataset], later: tuple[str, xr.Dataset], dim: str,
                       trials: list[int]) -> None:
    rows = [_trial_rows(ds, dim, trials) for _, ds in (first, later)]
    counts = [np.bincount(np.searchsorted(trials, ds["trial"].values[r]), minlength=len(trials))
              for (_, ds), r in zip((first, later), rows, strict=True)]
    if not np.array_equal(counts[0], counts[1]):
        t = trials[int(np.flatnonzero(counts[0] != counts[1])[0])]
        _conflict(later[0], first[0], t, f"{counts[1][trials.index(t)]} {dim} rows vs {counts[0][trials.index(t)]}")
    a, b = first[1].isel({dim: rows[0]}), later[1].isel({dim: rows[1]})
    for var in a.variables:
        if dim not in a[var].dims or var == "event":
            continue
        bad = _differs(a[var], b[var] if var in b.variables else None, dim)
        if bad is not None:
            _conflict(later[0], first[0], int(a["trial"].values[bad]), f"{var!r} differs")


def _trial_rows(ds: xr.Dataset, dim: str, trials: list[int]) -> np.ndarray:
    trial = ds["trial"].values
    rows = np.flatnonzero(np.isin(trial, trials))
    return rows[np.argsort(trial[rows], kind="stable")]


def _differs(a: xr.DataArray, b: xr.DataArray | None, dim: str) -> int | None:
    """The first row (position along ``dim``) where ``a`` and ``b`` differ, else None."""
    if b is None or a.dims != b.dims or a.shape != b.shape:
        return 0
    x, y = np.moveaxis(a.values, a.dims.index(dim), 0), np.moveaxis(b.values, b.dims.index(dim), 0)
    same = x == y
    if x.dtype.kind == "f":
        same |= np.isnan(x) & np.isnan(y)
    rows = np.flatnonzero(~same.reshape(len(same), -1).all(axis=1))
    return int(rows[0]) if rows.size else None


def _conflict(file: str, other: str, trial: int, what: str) -> None:
    raise InconsistentSourceError(file, f"trial {trial}: {what} from {other}; a trial held by several subvolume "
                                  "files of one condition must have the same values in each")
