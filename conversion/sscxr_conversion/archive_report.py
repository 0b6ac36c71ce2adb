"""What a whole-archive conversion did: its report, and the report and catalog it writes to DEST.

:class:`ArchiveReport` (one :class:`UnitReport` per unit) is what
:func:`sscxr_conversion.convert_archive` returns and ``sscxr convert`` prints;
:func:`write_report` writes it as ``DEST/conversion-report.json`` and refreshes
``DEST/catalog.yaml``; :func:`read_json` reads the previous run's report (a rerun resumes from it).

>>> UnitReport("an274424", "ssc-11", "src/an274424", 2_500_000, "stores/an274424.zarr", "converted",
...            seconds=12.5).line()
'converted an274424                  2.5 MB    12.5 s'
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .provenance import converter_version

if TYPE_CHECKING:
    from .archive_units import Unit

__all__ = ["ArchiveReport", "CATALOG_NAME", "REPORT_NAME", "UnitReport", "read_json", "write_report"]

REPORT_NAME = "conversion-report.json"
CATALOG_NAME = "catalog.yaml"


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


def _join(root: str, name: str) -> str:
    return f"{root.rstrip('/')}/{name}"


def read_json(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
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


def write_report(result: ArchiveReport, previous: Mapping[str, Any], units: list[Unit], dest: str,
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
