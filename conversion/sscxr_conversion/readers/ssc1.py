"""Labeling layer for ssc-1 (and ssc-2): the ``s`` struct of a session file -> labeled Datasets.

``read_session(node)`` returns a :class:`SessionContent`: root attrs and one ``xarray.Dataset``
per store group, named as ``docs/store-layout.md`` says. Nothing here knows about zarr or S3.

>>> content = read_session(load_mat(path, name=path.name, variable="s"))  # doctest: +SKIP
>>> content.groups["trials"]                                              # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from sscxr.errors import InconsistentSourceError, MissingFieldError
from sscxr.schema import EVENT_KINDS, TOUCH_KINDS, TRIAL_TYPES

from ._hashes import EventSeries, decode_series, event_table, hash_descriptions, hash_entries, node_unit, snake
from ._matfile import MatNode
from .imaging import read_subvolume

SESSION_FILE = re.compile(r"(an\d+)_(\d{4})_(\d{2})_(\d{2})_(session|data_struct)\.mat$")
OUTCOME_BY_PREFIX = {"Hit": "hit", "Err": "error", "NoLick": "no_lick"}
STEPS_PER_MM = 10_000.0


@dataclass
class SessionContent:
    """Everything read from one session file: root attrs and a Dataset per group path."""

    attrs: dict
    groups: dict[str, xr.Dataset]
    warnings: list[str] = field(default_factory=list)


def read_session(s: MatNode) -> SessionContent:
    """Label the ``s`` struct of an ssc-1 session file (see FORMATS.md §1.3)."""
    warnings: list[str] = []
    metadata = _metadata(s)
    trials = trial_table(s)
    whisker, valid_whisker = _whisker(s, warnings)
    groups: dict[str, xr.Dataset] = {"trials": trials, "events": _events(s, warnings), "whisker": whisker}
    subvolume_of_trial = np.full(trials.sizes["trial"], -1, dtype=np.int64)
    for position, (key, entry, descr) in enumerate(_imaging_entries(s), start=1):
        imaging, rois = read_subvolume(s, entry, descr, key=key, position=position, warnings=warnings)
        name = f"imaging/subvolume_{imaging.attrs['subvolume']:02d}"
        if name in groups:
            raise InconsistentSourceError(s.file, f"two subvolumes are numbered "
                                          f"{imaging.attrs['subvolume']}", field=entry.path)
        groups[name], groups[f"{name}/rois"] = imaging, rois
        seen = np.isin(trials["trial"].values, np.unique(imaging["trial"].values))
        subvolume_of_trial[seen] = imaging.attrs["subvolume"]
    trials["subvolume"] = ("trial", subvolume_of_trial, {"description": "imaging subvolume that saw the trial (-1: none)"})
    trials["has_whisker"] = ("trial", np.isin(trials["trial"].values, valid_whisker),
                             {"description": "trial has valid whisker data (whiskerVars descrHash)"})
    attrs = {"animal_id": metadata.get("animalID", "") or _name_part(s.file, 1),
             "session_date": _session_date(metadata, s.file), "metadata": metadata}
    return SessionContent(attrs, groups, warnings)


def _name_part(file: str, index: int) -> str:
    m = SESSION_FILE.search(file)
    return m.group(index) if m else ""


def _session_date(metadata: dict, file: str) -> str:
    raw = str(metadata.get("dateOfExperiment", ""))
    if re.fullmatch(r"\d{8}", raw):
        return f"{raw[:4]}-{raw[4:6]}-{raw[6:]}"
    m = SESSION_FILE.search(file)
    return f"{m.group(2)}-{m.group(3)}-{m.group(4)}" if m else ""


def _metadata(s: MatNode) -> dict:
    if not s.has("metaDataHash"):
        return {}
    out = {}
    for key, node in hash_entries(s["metaDataHash"]).items():
        try:
            out[key] = node.text()
        except ValueError:
            values = node.vector().tolist()
            out[key] = values[0] if len(values) == 1 else values
    return out


# --- trials ------------------------------------------------------------------------------------
def trial_table(s: MatNode) -> xr.Dataset:
    """``/trials`` from ``trialIds``, ``trialStartTimes``, ``trialTypeMat``/``Str`` and ``trialPropertiesHash``."""
    ids = s["trialIds"].vector()
    n = len(ids)
    start = s["trialStartTimes"].vector()
    if len(start) != n:
        raise InconsistentSourceError(s.file, f"has {len(start)} values for {n} trialIds",
                                      field=f"{s.path}.trialStartTimes")
    names = s["trialTypeStr"].texts() if s.has("trialTypeStr") else list(TRIAL_TYPES)
    onehot = s["trialTypeMat"].matrix(len(names), n) != 0
    trial_type = np.array([_trial_type(onehot[:, j], names) for j in range(n)], dtype=object)
    ds = xr.Dataset(coords={"trial": ("trial", ids.astype(np.int64)),
                            "trial_type_name": ("trial_type_name", np.array(names, dtype=object))})
    ds["start_time"] = ("trial", start * node_unit(s, s, "trialTimeUnit"), {"units": "s"})
    ds["trial_type"] = ("trial", trial_type.astype(str))
    ds["outcome"] = ("trial", np.array([_outcome(t) for t in trial_type]))
    ds["correct_side"] = ("trial", np.array([t[-1] if t[-1:] in ("L", "R") else "" for t in trial_type]))
    ds["trial_type_matrix"] = (("trial_type_name", "trial"), onehot, {"description": "trialTypeMat"})
    _trial_properties(s, ds, n)
    return ds


def _trial_type(column: np.ndarray, names: list[str]) -> str:
    return "+".join(name for name, on in zip(names, column, strict=True) if on)


def _outcome(trial_type: str) -> str:
    if not trial_type or "+" in trial_type:
        return "none"
    return next((v for k, v in OUTCOME_BY_PREFIX.items() if trial_type.startswith(k)), "none")


def _trial_properties(s: MatNode, ds: xr.Dataset, n: int) -> None:
    steps = np.full(n, np.nan)
    if s.has("trialPropertiesHash"):
        descr = hash_descriptions(s["trialPropertiesHash"])
        for key, node in hash_entries(s["trialPropertiesHash"]).items():
            values = _per_trial(node, n)
            if key == "StimulusPosition":
                steps = values.astype(float)
                continue
            ds[f"property_{snake(key)}"] = ("trial", values, {"source_key": key, "description": descr.get(key, "")})
    ds["pole_position_steps"] = ("trial", steps, {"units": "steps", "source_key": "StimulusPosition"})
    ds["pole_position"] = ("trial", steps / STEPS_PER_MM, {"units": "mm", "steps_per_mm": STEPS_PER_MM})


def _per_trial(node: MatNode, n: int) -> np.ndarray:
    try:
        values = node.vector()
    except ValueError:
        values = np.array(node.texts())
    if len(values) != n:
        raise InconsistentSourceError(node.file, f"has {len(values)} values for {n} trials", field=node.path)
    return values


# --- whisker -----------------------------------------------------------------------------------
def _tsa_entries(s: MatNode) -> list[tuple[str, MatNode, MatNode | None]]:
    tsa = s["timeSeriesArrayHash"]
    entries = hash_entries(tsa)
    descr = tsa["descrHash"].items() if tsa.has("descrHash") else []
    return [(k, v, descr[i] if i < len(descr) else None) for i, (k, v) in enumerate(entries.items())]


def _imaging_entries(s: MatNode) -> list[tuple[str, MatNode, MatNode | None]]:
    return [e for e in _tsa_entries(s) if e[1].has("imagingPlane")]


def _whisker(s: MatNode, warnings: list[str]) -> tuple[xr.Dataset, np.ndarray]:
    found = [(k, v, d) for k, v, d in _tsa_entries(s) if k == "whiskerVars"]
    if not found:
        warnings.append(f"{s.file}: no 'whiskerVars' entry in timeSeriesArrayHash; /whisker is empty")
        return _whisker_dataset(np.zeros(0), np.zeros(0, np.int64), {}, {}), np.zeros(0)
    _, node, descr = found[0]
    time = node["time"].vector() * node_unit(s, node)
    trial = node["trial"].vector()
    labels = node["idStrs"].texts() if node.has("idStrs") else []
    values = node["valueMatrix"].matrix(len(labels) or None, len(time))
    if len(trial) != len(time):
        raise InconsistentSourceError(s.file, f"has {len(trial)} entries for {len(time)} samples",
                                      field=f"{node.path}.trial")
    angle, curv, extra = _split_whisker_rows(values, labels)
    valid = descr["value"].vector() if descr is not None and descr.has("value") else np.unique(trial)
    ds = _whisker_dataset(time, trial, {"angle": angle, "curvature_change": curv}, extra)
    ds.attrs["id_strs"] = labels
    return ds, valid


def _split_whisker_rows(values: np.ndarray, labels: list[str]) -> tuple[dict, dict, dict]:
    if not labels:
        labels = ["Angle", "Curvature"][: len(values)] + [f"row{i + 1}" for i in range(2, len(values))]
    angle: dict[str, np.ndarray] = {}
    curv: dict[str, np.ndarray] = {}
    extra: dict[str, np.ndarray] = {}
    for i, label in enumerate(labels):
        low = label.lower()
        name = re.sub(r"(?i)\b(angle|curvature\w*|kappa\w*|theta)\b", "", label).strip(" _-:") or "w0"
        target = angle if "angle" in low else curv if "curvature" in low or "kappa" in low else None
        if target is None or name in target:
            extra[f"extra_{snake(label)}"] = values[i]
        else:
            target[name] = values[i]
    return angle, curv, extra


def _whisker_dataset(time: np.ndarray, trial: np.ndarray, rows: dict, extra: dict) -> xr.Dataset:
    names = sorted(set(rows.get("angle", {})) | set(rows.get("curvature_change", {})))
    ds = xr.Dataset(coords={"time": ("time", time, {"units": "s"}),
                            "trial": ("time", trial.astype(np.int64)),
                            "whisker": ("whisker", np.array(names, dtype=str))})
    for var, units in (("angle", "deg"), ("curvature_change", "1/mm")):
        by_name = rows.get(var, {})
        stack = [by_name.get(w, np.full(len(time), np.nan)) for w in names]
        ds[var] = (("whisker", "time"), np.array(stack).reshape(len(names), len(time)), {"units": units})
    for name, row in extra.items():
        ds[name] = ("time", row)
    return ds


# --- events ------------------------------------------------------------------------------------
def _events(s: MatNode, warnings: list[str]) -> xr.Dataset:
    if not s.has("eventSeriesArrayHash"):
        raise MissingFieldError(s.file, "required field is missing", field=f"{s.path}.eventSeriesArrayHash")
    series: list[EventSeries] = []
    for key, node in hash_entries(s["eventSeriesArrayHash"]).items():
        series += _event_series(s, key, node, warnings)
    return event_table(series)


def _event_series(s: MatNode, key: str, node: MatNode, warnings: list[str]) -> list[EventSeries]:
    times, trials, props = node["eventTimes"], node["eventTrials"], node.get("eventPropertiesHash")
    multi = _is_multi(times)
    time_items = times.items() if multi else [times]
    trial_items = trials.items() if multi else [trials]
    prop_items = (props.items() if multi else [props]) if props is not None else [None] * len(time_items)
    unit = node_unit(s, node)
    type_id = int(node["type"].scalar()) if node.has("type") else _infer_type(node, warnings)
    out = []
    for i, (t, tr) in enumerate(zip(time_items, trial_items, strict=True)):
        p = prop_items[i] if i < len(prop_items) else None
        kind = _event_kind(key, i, len(time_items))
        out.append(decode_series(t.vector() * unit, tr.vector(), _properties(p), type_id, key, kind, t))
    return out


def _is_multi(node: MatNode) -> bool:
    return isinstance(node.value, np.ndarray) and node.value.dtype == object


def _infer_type(node: MatNode, warnings: list[str]) -> int:
    warnings.append(f"{node.file}: {node.path} has no 'type' field; treated as on/off pairs (type 2)")
    return 2


def _event_kind(key: str, index: int, count: int) -> str:
    if key == "touches":
        return TOUCH_KINDS[index] if index < len(TOUCH_KINDS) else f"touch_{index + 1}"
    kind = EVENT_KINDS.get(key, snake(key))
    return kind if count == 1 else f"{kind}_{index + 1}"


def _properties(node: MatNode | None) -> dict[str, np.ndarray]:
    if node is None or not node.fields():
        return {}
    out = {}
    for key, value in hash_entries(node).items():
        try:
            out[key] = value.vector()
        except ValueError:
            continue  # non-numeric properties: kept out of the numeric table
    return out
