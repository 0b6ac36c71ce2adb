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

>>> report = convert_archive("crcns_upload_for_manuscript/", "stores/", workers=4)  # doctest: +SKIP
>>> report.exit_code, [u.status for u in report.units][:2]                           # doctest: +SKIP
(0, ['converted', 'converted'])
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import sys
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sscxr.errors import SourceFormatError, SscxrError, StorageAccessError, StoreExistsError

from .provenance import CHUNK, converter_version
from .readers.ssc1 import SESSION_FILE
from .source import TAR_SUFFIXES, is_tar
from .spec import ConversionSpec

__all__ = ["ArchiveReport", "Unit", "UnitReport", "convert_archive", "find_units", "is_archive_source",
           "REPORT_NAME", "CATALOG_NAME"]

REPORT_NAME = "conversion-report.json"
CATALOG_NAME = "catalog.yaml"
SSC11_FOLDER = re.compile(r"^session_neuropilone_(pre|post)ablate")
SSC1_UNIT = re.compile(r"^(an\d+_\d{4}_\d{2}_\d{2})")
SSC11_UNIT = re.compile(r"^(an\d+)(?=$|[._-])")

#: Throughput of one dask worker process with one core, source bytes per second, measured by
#: ``benchmarks/bench_archive.py`` (docs/benchmarks-archive.md: synthetic small presets, local
#: disk, 2-core Xeon VM: 948 MB in 22.8 s on 2 workers). Only used for the ``--dry-run`` estimate.
BYTES_PER_SECOND_PER_WORKER = 20e6
#: Bytes written per source byte read, same benchmark (float64 dF/F, Blosc-LZ4, raw uint16 shards).
WRITTEN_PER_READ = 0.66


# --------------------------------------------------------------------------------------------
# units
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One unit of an archive: its name, archive, source path and files (name, size, mtime_ns)."""

    name: str
    archive: str  # "ssc-1" or "ssc-11"
    path: Path
    files: tuple[tuple[str, int, int], ...]

    @property
    def kind(self) -> str:
        return "tarball" if is_tar(self.path) else "folder" if self.path.is_dir() else "file"

    @property
    def size(self) -> int:
        return sum(size for _, size, _ in self.files)

    def read_size(self, spec: ConversionSpec) -> int:
        """Bytes a conversion reads: all of a tarball or animal; of an ssc-1 folder without
        ``--raw`` only its session file."""
        if self.archive == "ssc-1" and self.kind == "folder" and not spec.raw:
            return sum(size for name, size, _ in self.files if SESSION_FILE.search(name) and "/" not in name)
        return self.size

    def fingerprint(self) -> dict[str, list[int]]:
        return {name: [size, mtime] for name, size, mtime in self.files}


def _files(path: Path) -> tuple[tuple[str, int, int], ...]:
    if not path.is_dir():
        st = path.stat()
        return ((path.name, st.st_size, st.st_mtime_ns),)
    out = []
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        st = file.stat()
        out.append((file.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _tar_unit(path: Path) -> tuple[str, str] | None:
    m = SSC1_UNIT.match(path.name)
    if m:
        return m.group(1), "ssc-1"
    m = SSC11_UNIT.match(path.name)
    return (m.group(1), "ssc-11") if m else None


def _is_animal(path: Path) -> bool:
    try:
        return any(SSC11_FOLDER.match(p.name) and p.is_dir() for p in path.iterdir())
    except OSError:
        return False


def _session_files(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_file() and SESSION_FILE.search(p.name))


def _skip_dir(path: Path) -> bool:
    return path.name.startswith(".") or path.name.endswith(".zarr") or "-versions" in path.name


def _holds_units_below(path: Path) -> bool:
    """Whether a subfolder of ``path`` holds a session file, a unit tarball or an animal folder."""
    for sub in path.iterdir():
        if not sub.is_dir() or _skip_dir(sub):
            continue
        for p in sub.rglob("*"):
            if p.is_dir() and SSC11_FOLDER.match(p.name):
                return True
            if p.is_file() and (SESSION_FILE.search(p.name) or (is_tar(p) and _tar_unit(p))):
                return True
    return False


def _unit_of_folder(path: Path) -> Unit | None:
    """The unit ``path`` itself is, if it is one (see the module docstring)."""
    if _is_animal(path):
        return Unit(path.name, "ssc-11", path, _files(path))
    sessions = _session_files(path)
    if len(sessions) != 1:
        return None
    if any(p.is_file() and is_tar(p) and _tar_unit(p) for p in path.iterdir()) or _holds_units_below(path):
        return None  # a folder of units that also holds a loose session file
    m = SSC1_UNIT.match(sessions[0].name)
    return Unit(m.group(1) if m else sessions[0].stem, "ssc-1", path, _files(path))


def find_units(src: str | os.PathLike[str], *, exclude: Iterable[str | os.PathLike[str]] = ()) -> tuple[list[Unit], list[str]]:
    """The units under ``src`` (name order) and the paths ignored (tarballs of no unit).

    Raises :class:`~sscxr.errors.SourceFormatError` when ``src`` does not exist, holds no unit, or
    two sources claim one unit (naming both).

    >>> find_units("crcns_upload_for_manuscript")   # doctest: +SKIP
    ([Unit(name='an250220', archive='ssc-11', ...), ...], [])
    """
    root = Path(src)
    if not root.exists():
        raise SourceFormatError(str(src), "does not exist")
    skip = {os.path.abspath(os.fspath(p)) for p in exclude}
    found: list[Unit] = []
    ignored: list[str] = []

    def visit(path: Path) -> None:
        if os.path.abspath(path) in skip:
            return
        if path.is_file():
            if is_tar(path):
                named = _tar_unit(path)
                if named:
                    found.append(Unit(named[0], named[1], path, _files(path)))
                else:
                    ignored.append(f"{path}: a tarball whose name starts with no an<ID> (not a unit)")
            elif SESSION_FILE.search(path.name):
                m = SSC1_UNIT.match(path.name)
                found.append(Unit(m.group(1) if m else path.stem, "ssc-1", path, _files(path)))
            return
        if not path.is_dir() or (path != root and _skip_dir(path)):
            return
        unit = _unit_of_folder(path)
        if unit is not None:
            found.append(unit)
            return
        for child in sorted(path.iterdir()):
            visit(child)

    visit(root)
    _refuse_clashes(str(src), found)
    if not found:
        raise SourceFormatError(str(src), "holds no unit to convert: no ssc-1 session (an<ID>_<YYYY_MM_DD>_session.mat "
                                "or _data_struct.mat, its folder or tarball) and no ssc-11 animal folder (with "
                                "session_neuropilone_*ablate*_merged/ folders) or tarball (an<ID>.tar.gz)")
    return sorted(found, key=lambda u: u.name), ignored


class UnitClashError(SourceFormatError):
    """Two sources under SRC claim the same unit."""


def _refuse_clashes(src: str, found: list[Unit]) -> None:
    by_name: dict[str, list[Unit]] = {}
    for unit in found:
        by_name.setdefault(unit.name, []).append(unit)
    clashes = {name: units for name, units in by_name.items() if len(units) > 1}
    if clashes:
        name, units = sorted(clashes.items())[0]
        raise UnitClashError(src, f"unit {name} is claimed by {len(units)} sources: "
                             f"{' and '.join(str(u.path) for u in units)}",
                             hint="keep one of them in SRC (move the other out)")


def is_archive_source(src: str | os.PathLike[str], dest: str) -> bool:
    """Whether ``sscxr convert SRC DEST`` converts several units (DEST a store root) rather
    than one (DEST a store, today's behaviour).

    A file, a tarball or a folder that is itself one unit is one unit; a folder holding units is
    an archive, except a folder holding exactly one unit with a DEST ending in ``.zarr``.
    """
    path = Path(src)
    if not path.is_dir() or _unit_of_folder(path) is not None:
        return False
    try:
        units, _ = find_units(path, exclude=[dest] if "://" not in dest else [])
    except UnitClashError:
        raise
    except SourceFormatError:
        return False  # no unit: convert() names what is wrong with SRC, as it always did
    return len(units) > 1 or not dest.rstrip("/").endswith(".zarr")


# --------------------------------------------------------------------------------------------
# reports
# --------------------------------------------------------------------------------------------


@dataclass
class UnitReport:
    """What happened to one unit (or, in a dry run, what would)."""

    unit: str
    archive: str
    source: str
    source_bytes: int
    store: str
    status: str  # converted | resumed | skipped | failed (dry run: new | resume | up to date | changed)
    reason: str = ""
    error: str = ""
    seconds: float = 0.0
    bytes_read: int = 0
    bytes_written: int = 0
    version: str = ""
    content_version: str = ""
    fingerprint: dict[str, list[int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def line(self) -> str:
        """One line: status, unit, size, time, and the reason or error."""
        size = _size(self.bytes_read or self.source_bytes)
        what = f"{self.status:>9} {self.unit:<22} {size:>9}"
        if self.seconds:
            what += f" {self.seconds:7.1f} s"
        detail = self.error or self.reason
        return f"{what}  {detail}" if detail else what


@dataclass
class ArchiveReport:
    """The result of :func:`convert_archive`: one :class:`UnitReport` per unit, in name order.

    ``exit_code`` is 0 unless a unit failed; ``summary()`` is what ``sscxr convert`` prints.
    """

    src: str
    dest: str
    units: list[UnitReport]
    ignored: list[str] = field(default_factory=list)
    dry_run: bool = False
    seconds: float = 0.0
    workers: int = 0
    started: str = ""
    estimate: dict[str, Any] = field(default_factory=dict)
    catalog: str = ""
    report: str = ""

    @property
    def failed(self) -> list[UnitReport]:
        return [u for u in self.units if u.status == "failed"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def __getitem__(self, unit: str) -> UnitReport:
        for u in self.units:
            if u.unit == unit:
                return u
        raise KeyError(unit)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """A readable summary: one line per unit, then the totals and what to do next."""
        lines = [f"{'dry run: ' if self.dry_run else ''}{self.src} -> {self.dest}: {len(self.units)} unit(s)"]
        for u in self.units:
            lines.append(f"  {u.line()}")
            if self.dry_run:
                lines.append(f"{'':13}from {u.source} ({len(u.fingerprint)} file(s)) -> {u.store}")
        lines += [f"  ignored: {i}" for i in self.ignored]
        counts: dict[str, int] = {}
        for u in self.units:
            counts[u.status] = counts.get(u.status, 0) + 1
        lines.append("  " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        if self.dry_run and self.estimate:
            e = self.estimate
            lines.append(f"  would read {_size(e['bytes_read'])}, write ~{_size(e['bytes_written'])}, in ~"
                         f"{_duration(e['seconds'])} on {e['workers']} worker(s) (at {e['basis']})")
        elif not self.dry_run:
            read = sum(u.bytes_read for u in self.units)
            written = sum(u.bytes_written for u in self.units)
            lines.append(f"  read {_size(read)}, wrote {_size(written)} in {_duration(self.seconds)}")
            if self.report:
                lines.append(f"  report: {self.report}")
            if self.catalog:
                lines.append(f"  catalog: {self.catalog}")
        changed = [u.unit for u in self.units if u.status in ("changed",) or u.reason.startswith("changed")]
        if changed:
            lines.append(f"  changed since converted: {', '.join(changed)}; rerun with --overwrite to reconvert them")
        if self.failed:
            lines.append(f"  {len(self.failed)} unit(s) failed; fix or remove them and rerun: finished units are "
                         "skipped, unfinished ones resumed")
        return "\n".join(lines)


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------------------------
# what a unit needs
# --------------------------------------------------------------------------------------------


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def _spec_for(unit: Unit, spec: ConversionSpec) -> ConversionSpec:
    return ConversionSpec.from_dict({**spec.to_dict(), "archive": unit.archive})


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            sha.update(block)
    return sha.hexdigest()


def _source_changes(unit: Unit, sources: Sequence[Mapping[str, Any]]) -> tuple[str, int]:
    """What differs between ``unit``'s files and the provenance ``sources`` ('' if nothing),
    and how many bytes were hashed to tell."""
    if unit.kind == "tarball":  # the tarball's own record (its members are inside it)
        records = [r for r in sources if r.get("name") == unit.path.name]
        paths = [unit.path]
    elif unit.kind == "file":
        records = [r for r in sources if r.get("name") == unit.path.name]
        paths = [unit.path]
    else:
        records = list(sources)
        paths = [unit.path / str(r.get("name")) for r in records]
    if not records:
        return "its store's provenance records none of its files", 0
    for record, path in zip(records, paths, strict=True):
        if not path.is_file():
            return f"{record.get('name')} is gone", 0
        if path.stat().st_size != record.get("size"):
            return f"{record.get('name')} has {path.stat().st_size} bytes, was {record.get('size')}", 0
    hashed = 0
    for record, path in zip(records, paths, strict=True):
        hashed += path.stat().st_size
        if _sha256(path) != record.get("sha256"):
            return f"{record.get('name')} has other content (sha256)", hashed
    return "", hashed


@dataclass
class _State:
    state: str  # new | resume | up to date | changed
    reason: str = ""
    hashed: int = 0
    version: str = ""
    content_version: str = ""


def unit_state(unit: Unit, url: str, storage_options: Mapping[str, Any] | None, spec: ConversionSpec,
               previous: Mapping[str, Any] | None, *, check_hashes: bool = False) -> _State:
    """What converting ``unit`` to ``url`` would do, reading only (see the module docstring)."""
    from sscxr.versions import Location, newer_than

    loc = Location(url, storage_options)
    current = loc.current()
    versions = loc.versions()
    if newer_than(versions, current):
        return _State("resume", "an unfinished conversion is there")
    attrs: Mapping[str, Any] = {}
    if current is not None:
        listed = {v.name: v.attrs for v in versions}
        attrs = listed[current] if current in listed else loc.info(current).attrs
    elif (legacy := loc.legacy()) is not None:
        attrs = legacy.attrs
        if not legacy.complete:
            return _State("resume", "an unfinished conversion is there")
    else:
        return _State("new")
    cv = str(attrs.get("content_version", ""))
    prov = attrs.get("provenance") or {}
    wanted = _spec_for(unit, spec).to_dict()
    stored = prov.get("spec") or {}
    if stored != wanted:
        diff = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        return _State("changed", f"changed options: {', '.join(f'{k}={stored.get(k)!r}->{wanted.get(k)!r}' for k in diff)}",
                      version=current or "", content_version=cv)
    if (not check_hashes and previous and previous.get("fingerprint") == unit.fingerprint()
            and previous.get("source") == str(unit.path) and previous.get("version") == (current or "")
            and previous.get("content_version") == cv):
        return _State("up to date", "unchanged (name, size, mtime as recorded)", version=current or "",
                      content_version=cv)
    change, hashed = _source_changes(unit, prov.get("sources") or [])
    if change:
        return _State("changed", f"changed source: {change}", hashed, current or "", cv)
    return _State("up to date", "unchanged (sha256 as recorded)", hashed, current or "", cv)


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


def _read_json(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    import fsspec

    options = dict(storage_options or {}) if "://" in url else {}
    try:
        with fsspec.open(url, "rt", **options) as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except ValueError:
        warnings.warn(f"{url} is not valid JSON: ignored (every unit is checked by sha256)", stacklevel=3)
        return {}
    return data if isinstance(data, dict) else {}


def _exists(url: str, storage_options: Mapping[str, Any] | None) -> bool:
    import fsspec

    fs, path = fsspec.core.url_to_fs(url, **(dict(storage_options or {}) if "://" in url else {}))
    return bool(fs.exists(path))


def _write_text(url: str, text: str, storage_options: Mapping[str, Any] | None) -> None:
    import fsspec

    options = dict(storage_options or {}) if "://" in url else {}
    if "://" not in url:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        tmp = f"{url}.tmp-{os.getpid()}"
        Path(tmp).write_text(text)
        os.replace(tmp, url)  # a reader never sees half a report
        return
    with fsspec.open(url, "wt", **options) as f:
        f.write(text)


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
        previous = {str(u.get("unit")): u for u in _read_json(report_url, storage_options).get("units", [])
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
        _finish(result, previous, units, dest, storage_options, catalog)
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


def _finish(result: ArchiveReport, previous: Mapping[str, Any], units: list[Unit], dest: str,
            storage_options: Mapping[str, Any] | None, catalog: bool) -> None:
    """Write ``DEST/conversion-report.json`` (units of this run, and earlier units not in it)
    and refresh ``DEST/catalog.yaml`` (rewritten only if it changes)."""
    names = {u.name for u in units}
    data = result.to_dict()
    data["converter"] = f"sscxr-conversion {converter_version()}"
    data["units"] = [*data["units"], *({**v, "from_previous_run": True} for k, v in sorted(previous.items())
                                       if k not in names)]
    result.report = _join(dest, REPORT_NAME)
    _write_text(result.report, json.dumps(data, indent=1, default=str) + "\n", storage_options)
    if not catalog:
        return
    from sscxr.catalog import build_catalog

    out = _join(dest, CATALOG_NAME)
    if not any(u.status in ("converted", "resumed") for u in result.units) and _exists(out, storage_options):
        result.catalog = out  # no store changed: the catalog stands (rebuilding reads every store's metadata)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # failed units are in the report already
        build_catalog(dest, storage_options=storage_options, out=out, only_found=True)
    result.catalog = out
