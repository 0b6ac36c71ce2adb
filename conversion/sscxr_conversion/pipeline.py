"""The conversion pipeline: describe inputs -> read -> template -> group writes -> finalise.

It only wires steps; reading lives in ``readers/``, writing in ``write.py``, task execution in
``tasks.py``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xarray as xr

from sscxr.errors import SourceFormatError

from . import write
from .provenance import SourceRecord, provenance
from .readers._matfile import load_mat
from .readers.ssc1 import SESSION_FILE, read_session
from .source import is_tar, iter_members
from .spec import ConversionSpec
from .tasks import options_for, runner

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

    def __repr__(self) -> str:
        return (f"<ConversionResult {self.archive} -> {self.url}: {len(self.groups)} groups written, "
                f"{len(self.skipped)} resumed, version {self.content_version}, {len(self.warnings)} warning(s)>")


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
            overwrite: bool = False, resume: bool = False, progress: bool = True) -> ConversionResult:
    """Convert one ssc-1 session or ssc-11 animal at ``src`` into the zarr store at ``dest``.

    >>> convert("an197522_2013_03_08_session.mat", "an197522_2013_03_08.zarr")  # doctest: +SKIP
    <ConversionResult ssc-1 -> an197522_2013_03_08.zarr: 7 groups written, ...>
    """
    archive = detect_archive(src)
    spec = spec or ConversionSpec()
    spec = ConversionSpec.from_dict({**spec.to_dict(), "archive": archive})
    if archive == "ssc-11":
        from .ssc11_pipeline import read_animal

        attrs, groups, tasks_groups, warnings = read_animal(src, spec)
    else:
        attrs, groups, tasks_groups, warnings = read_ssc1(src, spec)
    return write_content(dest, attrs, groups, tasks_groups, spec, storage_options=storage_options,
                         workers=workers, scheduler=scheduler, overwrite=overwrite, resume=resume,
                         progress=progress, warnings=warnings)


def read_ssc1(src: str | os.PathLike, spec: ConversionSpec) -> tuple[dict, dict, list, list[str]]:
    """Read an ssc-1 session: root attrs, small groups (driver) and per-subvolume task groups."""
    records: list[SourceRecord] = []
    members = iter_members(src, lambda n: bool(SESSION_FILE.search(n)), records)
    member = next(members, None)
    if member is None:
        raise SourceFormatError(str(src), "contains no ssc-1 session file (an<ID>_<YYYY_MM_DD>_session.mat)")
    records.insert(0, member.record)
    content = read_session(load_mat(member.data, name=member.name, variable="s"))
    del member
    for _ in members:  # drain the stream so a tarball's own record is complete
        pass
    attrs = {"archive": "ssc-1", **content.attrs,
             "provenance": provenance(records, spec, content.warnings)}
    small = {k: v for k, v in content.groups.items() if not k.startswith("imaging/")}
    tasks = _subvolume_tasks(content.groups)
    return attrs, small, tasks, content.warnings


def _subvolume_tasks(groups: Mapping[str, xr.Dataset]) -> list[list[tuple[str, xr.Dataset]]]:
    names = sorted(k for k in groups if k.startswith("imaging/") and k.count("/") == 1)
    return [[(k, groups[k]), (f"{k}/rois", groups[f"{k}/rois"])] for k in names]


def write_content(dest: str, attrs: dict, groups: dict[str, xr.Dataset],
                  task_groups: list[list[tuple[str, xr.Dataset]]], spec: ConversionSpec, *,
                  storage_options: Mapping[str, Any] | None, workers: int | None, scheduler: str | None,
                  overwrite: bool, resume: bool, progress: bool, warnings: list[str]) -> ConversionResult:
    """Template, group writes (driver for small groups, tasks for the rest), finalise."""
    store = write.open_store(dest, storage_options, mode="w")
    done = write.prepare(store, dest, overwrite=overwrite, resume=resume, attrs=attrs)
    written, skipped = [], sorted(done)
    for path, ds in groups.items():
        if path not in done:
            written.append(write.write_group(store, path, ds, spec))
    todo = [t for t in task_groups if not all(p in done for p, _ in t)]
    with runner(dest, storage_options, workers=workers, scheduler=scheduler) as run:
        bar = _progress(len(todo), progress, desc=f"writing {Path(dest).name}")
        for paths in run.run(_write_task, [(dest, t, spec) for t in todo]):
            written += paths
            bar.update(1)
        bar.close()
    version = write.finalise(store, attrs)
    return ConversionResult(dest, attrs["archive"], written, skipped, version, list(warnings))


def _write_task(url: str, groups: list[tuple[str, xr.Dataset]], spec: ConversionSpec) -> list[str]:
    store = write.open_store(url, options_for(url), mode="w")
    return [write.write_group(store, path, ds, spec) for path, ds in groups]


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="group")
