"""The units of an archive: finding them under a source folder, and what converting one would do.

A *unit* is an ssc-1 session or an ssc-11 animal: a folder, a session file or a tarball.
:func:`find_units` walks ``src`` in name order (the rules are in :mod:`sscxr_conversion.archive`);
:func:`unit_state` tells, reading only, whether a unit's store is new, unfinished, up to date or
changed (by its recorded options, file fingerprints, or sha256).

>>> units, ignored = find_units("crcns_upload_for_manuscript/")   # doctest: +SKIP
>>> [u.name for u in units][:2]                                    # doctest: +SKIP
['an197522_2013_03_08', 'an274424']
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sscxr.errors import SourceFormatError

from .provenance import CHUNK
from .readers.ssc1 import SESSION_FILE
from .source import is_tar
from .spec import ConversionSpec

__all__ = ["Unit", "UnitClashError", "find_units", "is_archive_source", "unit_state"]

SSC11_FOLDER = re.compile(r"^session_neuropilone_(pre|post)ablate")
SSC1_UNIT = re.compile(r"^(an\d+_\d{4}_\d{2}_\d{2})")
SSC11_UNIT = re.compile(r"^(an\d+)(?=$|[._-])")


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
# what a unit needs
# --------------------------------------------------------------------------------------------


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
