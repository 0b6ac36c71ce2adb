"""Shared decoding of the Svoboda-lab struct conventions: Hashes, time units, event series.

Used by both archive readers (``ssc1.py`` and ``ssc11.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from sscxr.errors import InconsistentSourceError

from ._matfile import MatNode

#: seconds per unit, by the names of ``timeUnitNames``; id 1 (ms) is the archives' default
TIME_UNITS = {"millisecond": 1e-3, "second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}
DEFAULT_UNIT_NAMES = ("millisecond", "second", "minute", "hour", "day")


def hash_entries(node: MatNode, keys: str = "keyNames", values: str = "value") -> dict[str, MatNode]:
    """A Hash struct (``keyNames``/``value`` cells, or ``keys``/``values``) as {key: value node}."""
    names = node[keys].texts()
    items = node[values].items()
    if len(items) == 1 and len(names) > 1:  # a squeezed 1xK numeric cell is impossible; be strict
        items = [node[values]]
    if len(names) != len(items):
        raise InconsistentSourceError(node.file, f"has {len(names)} {keys} but {len(items)} "
                                      f"{values}", field=node.path)
    return dict(zip(names, items, strict=True))


def hash_descriptions(node: MatNode) -> dict[str, str]:
    """The ``descr`` texts of a Hash by key ({} when it has none)."""
    if not node.has("descr"):
        return {}
    names, descr = node["keyNames"].texts(), node["descr"].texts()
    return dict(zip(names, descr, strict=False))


def unit_seconds(root: MatNode, unit_id: float | None) -> float:
    """Seconds per unit for a ``timeUnit`` id, through the file's ``timeUnitNames`` if present."""
    if unit_id is None or not np.isfinite(unit_id):
        unit_id = 1.0
    names = root["timeUnitNames"].texts() if root.has("timeUnitNames") else list(DEFAULT_UNIT_NAMES)
    ids = root["timeUnitIds"].vector().tolist() if root.has("timeUnitIds") else list(range(1, len(names) + 1))
    lookup = dict(zip(ids, names, strict=False))
    name = lookup.get(float(unit_id))
    if name is None or name.lower() not in TIME_UNITS:
        raise InconsistentSourceError(root.file, f"time unit id {unit_id!r} is not one of "
                                      f"{lookup}", field=f"{root.path}.timeUnitNames")
    return TIME_UNITS[name.lower()]


def node_unit(root: MatNode, node: MatNode, default_field: str = "trialTimeUnit") -> float:
    """Seconds per unit of a series (its own ``timeUnit``, else the file's default)."""
    if node.has("timeUnit"):
        return unit_seconds(root, node["timeUnit"].scalar())
    if root.has(default_field):
        return unit_seconds(root, root[default_field].scalar())
    return 1e-3


def snake(name: str) -> str:
    """``leftPoleMotor`` -> ``left_pole_motor``; anything not alphanumeric becomes ``_``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name.strip())
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower() or "unnamed"


@dataclass
class EventSeries:
    """One decoded event series: on/off times in seconds and per-event properties."""

    key: str
    kind: str
    start: np.ndarray
    stop: np.ndarray
    trial: np.ndarray
    properties: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


def decode_series(times_s: np.ndarray, trials: np.ndarray, props: dict[str, np.ndarray],
                  type_id: int, key: str, kind: str, where: MatNode) -> EventSeries:
    """Split type-2 interleaved [on off on off ...] series; type-1 point events have stop == start.

    Properties stored once per entry (twice per on/off event) are taken at the onsets; when the
    offset copy differs, it is kept as ``<name>_at_stop`` so no value is lost.
    """
    if len(trials) != len(times_s):
        raise InconsistentSourceError(where.file, f"eventTimes has {len(times_s)} entries but "
                                      f"eventTrials has {len(trials)}", field=where.path)
    if type_id != 2:
        return EventSeries(key, kind, times_s, times_s.copy(), trials, dict(props))
    if len(times_s) % 2:
        raise InconsistentSourceError(where.file, f"a type-2 (on/off) series has an odd number "
                                      f"of times ({len(times_s)})", field=where.path)
    out = {}
    for name, values in props.items():
        out[name] = values[0::2]
        if not _same(values[0::2], values[1::2]):
            out[f"{name}_at_stop"] = values[1::2]
    return EventSeries(key, kind, times_s[0::2], times_s[1::2], trials[0::2], out)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def event_table(series: list[EventSeries]) -> xr.Dataset:
    """The ``/events`` table (dim ``event``, sorted by ``start_time``) of decoded series.

    Columns: ``trial``, ``kind``, ``series``, ``start_time``, ``stop_time``, one float column per
    property (NaN on rows of other series) and one str column per label (``""`` elsewhere).
    """
    start = np.concatenate([e.start for e in series]) if series else np.zeros(0)
    order = np.argsort(start, kind="stable")
    columns = {
        "kind": np.concatenate([[e.kind] * len(e.start) for e in series]).astype(str) if series else np.zeros(0, str),
        "series": np.concatenate([[e.key] * len(e.start) for e in series]).astype(str) if series else np.zeros(0, str),
        "start_time": start,
        "stop_time": np.concatenate([e.stop for e in series]) if series else np.zeros(0),
    }
    ds = xr.Dataset(coords={"event": ("event", np.arange(len(start), dtype=np.int64))})
    trial = np.concatenate([e.trial for e in series]) if series else np.zeros(0)
    ds["trial"] = ("event", trial[order].astype(np.int64))
    for name, values in columns.items():
        ds[name] = ("event", values[order], {"units": "s"} if name.endswith("_time") else {})
    for prop in sorted({p for e in series for p in e.properties}):
        col = np.concatenate([e.properties.get(prop, np.full(len(e.start), np.nan)) for e in series])
        ds[prop] = ("event", col[order].astype(float))
    for label in sorted({k for e in series for k in e.labels}):
        col = np.concatenate([[e.labels.get(label, "")] * len(e.start) for e in series]).astype(str)
        ds[label] = ("event", col[order])
    return ds
