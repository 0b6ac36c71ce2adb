"""Labeling layer for ssc-11: one subvolume file's ``sess`` struct -> labeled Datasets.

``read_sess(sess, subvolume=N)`` returns a :class:`SessContent`: the imaging group of that
subvolume (``dff``, ``raw_f``, features, ``day`` ...) with its ``rois`` and ``ca_events``
children, and the file's own trials, behavioural events and whisker series (each with a ``day``
coordinate), which the pipeline unions per condition. Names follow ``docs/store-layout.md``;
fields follow FORMATS.md §2.3. Nothing here knows about zarr, files or tasks.

>>> content = read_sess(load_mat(data, name=name, variable="sess"), subvolume=1)  # doctest: +SKIP
>>> content.imaging["dff"].dims                                                   # doctest: +SKIP
('cell', 'time')
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from sscxr.errors import InconsistentSourceError

from ._hashes import EventSeries, decode_series, event_table, hash_entries, node_unit, snake
from ._matfile import MatNode
from .imaging import (FOV, MISSING, UM_PER_FIELD, add_frame_times, add_positions, add_roi, add_source_files,
                      cell_planes, imaging_coords, master_image, roi_columns, rois_dataset)
from .ssc1 import trial_table

DAY_S = 86_400.0
TRIALS_PER_DAY = 1000  # the merge offsets trial ids by 1000 per day (FORMATS.md §2.4)
DAY_GAP_S = 6 * 3600.0  # fallback: a pause this long between trials starts a new day
IMAGE_SIZE = 512
CA_EVENT_FIELDS = {"eventTimes": "start_time", "peakTimes": "peak_time", "endTimes": "end_time",
                   "riseTimeConstants": "rise_time_constant", "decayTimeConstants": "decay_time_constant"}
WHISKER_TSA = re.compile(r"^whisker(\w+)TSA$")
WHISKER_UNITS = {"angle": "deg", "curvature": "1/mm", "curvature_change": "1/mm"}
CA_KNOWN = {"ids", "idStrs", "idStrDetailed", "time", "timeUnit", "trialIndices", "trial", "valueMatrix",
            "dffTimeSeriesArray", "caPeakEventSeriesArray", "roiArray", "cellFeatures"}


@dataclass
class SessContent:
    """One subvolume file, labeled: its imaging groups and its share of the condition's tables."""

    imaging: xr.Dataset
    rois: xr.Dataset
    ca_events: xr.Dataset
    trials: xr.Dataset
    events: xr.Dataset
    whisker: xr.Dataset
    attrs: dict
    warnings: list[str] = field(default_factory=list)


def read_sess(sess: MatNode, *, subvolume: int) -> SessContent:
    """Label the ``sess`` struct of subvolume file number ``subvolume`` (1-based sorted order)."""
    warnings: list[str] = []
    trials = trial_table(sess)
    days = trial_days(trials["trial"].values, trials["start_time"].values, sess.file, warnings)
    trials.coords["day"] = ("trial", days, {"rule": "floor((trial - 1) / 1000) + 1"})
    whisker = read_whisker(sess, warnings)
    _add_has_whisker(sess, trials, whisker)
    imaging, rois = read_imaging(sess, subvolume, warnings)
    ca_events = read_ca_events(sess["caTSA"], warnings)
    features(sess, imaging, warnings)
    _derived(sess, imaging, warnings)
    _valid_ca_trials(sess, imaging)
    day_of = DayLookup(trials["trial"].values, days)
    imaging.coords["day"] = ("time", day_of(imaging["trial"].values))
    events = read_events(sess, warnings)
    events.coords["day"] = ("event", day_of(events["trial"].values))
    whisker.coords["day"] = ("time", day_of(whisker["trial"].values))
    ca_events["day"] = ("event", day_of(ca_events["trial"].values))
    return SessContent(imaging, rois, ca_events, trials, events, whisker, _attrs(sess), warnings)


def _attrs(sess: MatNode) -> dict:
    out = {}
    for name, key in (("mouseId", "mouse_id"), ("dateStr", "date_str"), ("behavProtocolName", "behav_protocol")):
        if sess.has(name):
            out[key] = sess[name].text()
    return out


# --- days --------------------------------------------------------------------------------------
def trial_days(ids: np.ndarray, start_s: np.ndarray, file: str, warnings: list[str]) -> np.ndarray:
    """Day (1-based) of each trial of a merged file: ``floor((id - 1) / 1000) + 1``.

    The id blocks are checked against the merge's 1-day time offsets (block - floor(t / 1 day)
    constant). If the ids are not in blocks but the times span days, days come from gaps of
    more than 6 h between trial starts, with a warning.

    >>> trial_days(np.array([1, 2, 1001]), np.array([10.0, 20.0, 86410.0]), "x.mat", []).tolist()
    [1, 1, 2]
    """
    blocks = (ids.astype(np.int64) - 1) // TRIALS_PER_DAY
    finite = np.isfinite(start_s)
    clock = np.floor(start_s[finite] / DAY_S).astype(np.int64)
    if np.unique(blocks[finite] - clock).size <= 1:
        return blocks + 1
    if np.unique(blocks).size > 1:
        warnings.append(f"{file}: trial ids are in blocks of 1000 but trialStartTimes do not follow the merge's "
                        "1-day offsets; days are taken from the trial ids")
        return blocks + 1
    warnings.append(f"{file}: trial ids are not in blocks of 1000 per day; days are taken from gaps of more "
                    f"than {DAY_GAP_S / 3600:.0f} h in trialStartTimes")
    return _days_from_gaps(start_s)


def _days_from_gaps(start_s: np.ndarray) -> np.ndarray:
    order = np.argsort(start_s, kind="stable")
    gaps = np.diff(start_s[order]) > DAY_GAP_S
    days = np.empty(len(start_s), np.int64)
    days[order] = 1 + np.concatenate([[0], np.cumsum(gaps)])
    return days


class DayLookup:
    """Day of any trial id: from the trial table, else by the id rule; -1 for a missing trial.

    >>> DayLookup(np.array([5, 1001]), np.array([1, 2]))(np.array([1001, 5, 2001, -1])).tolist()
    [2, 1, 3, -1]
    """

    def __init__(self, trial_ids: np.ndarray, days: np.ndarray):
        order = np.argsort(trial_ids, kind="stable")
        self.ids, self.days = trial_ids.astype(np.int64)[order], days.astype(np.int64)[order]

    def __call__(self, trials: np.ndarray) -> np.ndarray:
        trials = np.asarray(trials).astype(np.int64)
        out = np.where(trials > 0, (trials - 1) // TRIALS_PER_DAY + 1, MISSING)
        at = np.minimum(np.searchsorted(self.ids, trials), max(len(self.ids) - 1, 0))
        known = (self.ids[at] == trials) if len(self.ids) else np.zeros(len(trials), bool)
        out[known] = self.days[at[known]]
        return out


# --- imaging -----------------------------------------------------------------------------------
def read_imaging(sess: MatNode, subvolume: int, warnings: list[str]) -> tuple[xr.Dataset, xr.Dataset]:
    """The ``/<condition>/subvolume_N`` Dataset (dff, raw_f, coords) and its ``rois`` Dataset."""
    ca = sess["caTSA"]
    ids = ca["ids"].vector().astype(np.int64)
    time = ca["time"].vector() * node_unit(sess, ca)
    trial = _frame_trials(ca, len(time))
    planes = _planes(ca, len(ids), len(time))
    vv = {p["vv"] for p in planes if p["vv"] is not None}
    cell_plane = cell_planes(ids, planes, ca, "roiArray{p}.roiIds")
    ds = xr.Dataset(coords=imaging_coords(ids, time, trial, planes, cell_plane, vv.pop() if len(vv) == 1 else subvolume))
    ds["dff"] = (("cell", "time"), ca["dffTimeSeriesArray"]["valueMatrix"].matrix(len(ids), len(time)), {"units": "dF/F"})
    ds["raw_f"] = (("cell", "time"), ca["valueMatrix"].matrix(len(ids), len(time)),
                   {"units": "a.u.", "description": "raw fluorescence (caTSA.valueMatrix)"})
    for name in ca.fields():
        if name not in CA_KNOWN:
            _carry_ca_matrix(ds, ca[name], name, warnings)
    add_source_files(ds, planes, len(time))
    rois, centroid = _rois(planes)
    add_positions(ds, centroid, cell_plane, planes, subvolume)
    add_frame_times(ds, planes)
    ds.attrs.update(subvolume=subvolume, fov_subvolume=sorted({p["vv"] for p in planes if p["vv"] is not None}))
    return ds, rois


def _frame_trials(ca: MatNode, n_time: int) -> np.ndarray:
    node = ca["trialIndices"] if ca.has("trialIndices") or not ca.has("trial") else ca["trial"]
    trial = node.vector()
    if len(trial) != n_time:
        raise InconsistentSourceError(node.file, f"has {len(trial)} entries but time has {n_time}", field=node.path)
    return trial


def _planes(ca: MatNode, n_cells: int, n_time: int) -> list[dict]:
    """One dict per roiArray{p}: ids, PPP and VV from ``idStr`` (fov_VVPPP), files, image size."""
    files = ca["fileList"].items() if ca.has("fileList") else []
    frame_idx = ca["fileFrameIdx"].items() if ca.has("fileFrameIdx") else []
    out = []
    for i, node in enumerate(ca["roiArray"].items()):
        fov = FOV.search(node["idStr"].text()) if node.has("idStr") else None
        image = master_image(node)
        out.append({"index": i, "node": node, "image": image,
                    "ids": node["roiIds"].vector().astype(np.int64),
                    "vv": int(fov.group(1)) if fov else None, "ppp": int(fov.group(2)) if fov else i + 2,
                    "files": files[i].texts() if i < len(files) else [],
                    "frame_idx": frame_idx[i] if i < len(frame_idx) else None,
                    "height": _image_height(node, image), "um_per_px": _um_per_px(node, image)})
    return out


def _image_height(node: MatNode, image: np.ndarray | None) -> int:
    if image is not None:
        return int(image.shape[-2])
    if node.has("imageBounds"):
        return int(node["imageBounds"].vector()[0])
    return IMAGE_SIZE


def _um_per_px(node: MatNode, image: np.ndarray | None) -> float:
    settings = node.get("settings")
    if settings is not None and settings.has("umPerPixel"):
        return settings["umPerPixel"].scalar()
    width = image.shape[-1] if image is not None else IMAGE_SIZE
    return UM_PER_FIELD / width


def _rois(planes: list[dict]) -> tuple[xr.Dataset, dict]:
    cols = roi_columns()
    for p in planes:
        node = p["node"]
        ids = p["ids"]
        for r, roi in enumerate(node["rois"].items() if node.has("rois") else []):
            rid = int(roi["id"].scalar()) if roi.has("id") else int(ids[r])
            corners = roi["corners"].matrix(2, None) if roi.has("corners") else None
            add_roi(cols, rid, roi["indices"].vector().astype(np.int64), corners, p["height"], p["um_per_px"])
    return rois_dataset(cols, [p["image"] for p in planes], planes)


def _carry_ca_matrix(ds: xr.Dataset, node: MatNode, name: str, warnings: list[str]) -> None:
    """Other numeric ``caTSA`` fields shaped like the data: (cell, time) series (e.g.
    ``eventBasedDffTimeSeriesArray``), per-cell vectors (``roiDepthInMicrons``) or per-frame
    vectors (``triggerOffsetForTrialInMS``); ``activeRoiIds`` becomes the bool ``active``."""
    n_cell, n_time = ds.sizes["cell"], ds.sizes["time"]
    source = node["valueMatrix"] if node.fields() and node.has("valueMatrix") else node
    try:
        arr = source.array(np.float64)
    except ValueError:
        return  # settings, file lists and other structs stay in the source
    units = "um" if name.endswith("Microns") else "ms" if name.endswith("InMS") else None
    attrs = {"source_field": f"caTSA.{name}", **({"units": units} if units else {})}
    var = snake(re.sub(r"TimeSeriesArray$", "", name))
    if name == "activeRoiIds":
        ds["active"] = ("cell", np.isin(ds["cell"].values, arr.ravel()), attrs)
    elif arr.shape == (n_cell, n_time):
        ds[var] = (("cell", "time"), arr, attrs)
    elif arr.ndim <= 1 and arr.size == n_cell:
        ds[var] = ("cell", arr.reshape(n_cell), attrs)
    elif arr.ndim <= 1 and arr.size == n_time:
        ds[var] = ("time", arr.reshape(n_time), attrs)


def _valid_ca_trials(sess: MatNode, ds: xr.Dataset) -> None:
    if sess.has("validCaTrialIds"):
        ds["ca_valid_trial"] = ("ca_valid_trial", sess["validCaTrialIds"].vector().astype(np.int64),
                                {"description": "trial ids with valid Ca data (validCaTrialIds)"})


def _derived(sess: MatNode, ds: xr.Dataset, warnings: list[str]) -> None:
    """``derivedDataTSA``: whisker variables on the imaging time base (derived_id, time)."""
    node = sess.get("derivedDataTSA")
    if node is None:
        return
    ids = node["ids"].vector().astype(np.int64)
    if len(node["time"].vector()) != ds.sizes["time"]:
        warnings.append(f"{node.file}: {node.path} is not on the caTSA time base; not carried")
        return
    ds["derived"] = (("derived_id", "time"), node["valueMatrix"].matrix(len(ids), ds.sizes["time"]),
                     {"source_field": "derivedDataTSA", "description": "whisker variables per imaging frame"})
    ds.coords["derived_id"] = ("derived_id", ids)
    labels = node["idStrs"].texts() if node.has("idStrs") else []
    if len(labels) == len(ids):
        ds.coords["derived_label"] = ("derived_id", np.array(labels, dtype=str))


def features(sess: MatNode, ds: xr.Dataset, warnings: list[str]) -> None:
    """``feature_<key>`` per ``cellFeatures`` key: (cell) or (``<key>_lag``, cell) for kernels.

    ``caTSA.cellFeatures`` is read; a session-level ``sess.cellFeatures`` adds keys it lacks.
    """
    n = ds.sizes["cell"]
    for node in (sess["caTSA"].get("cellFeatures"), sess.get("cellFeatures")):
        if node is None:
            continue
        for key, value in hash_entries(node, keys="keys", values="values").items():
            if f"feature_{key}" not in ds:
                _add_feature(ds, key, value, n, warnings)


def _add_feature(ds: xr.Dataset, key: str, node: MatNode, n: int, warnings: list[str]) -> None:
    try:
        arr = node.array(np.float64)
    except ValueError:
        warnings.append(f"{node.file}: cellFeatures {key!r} is not numeric; not carried")
        return
    if arr.ndim == 1 and arr.size == n:
        ds[f"feature_{key}"] = ("cell", arr, {"source_key": key})
    elif (arr.ndim == 2 and arr.shape[1] == n) or (arr.ndim == 1 and n == 1):  # a K' x C kernel
        ds[f"feature_{key}"] = ((f"{key}_lag", "cell"), arr.reshape(-1, n), {"source_key": key})
    else:
        warnings.append(f"{node.file}: cellFeatures {key!r} has shape {arr.shape}, not aligned with "
                        f"{n} caTSA.ids; not carried")


def read_ca_events(ca: MatNode, warnings: list[str]) -> xr.Dataset:
    """Per-cell calcium events (``caPeakEventSeriesArray.esa{c}``) as one table (dim ``event``)."""
    ids = ca["ids"].vector().astype(np.int64)
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ["event_cell", "trial", "peak_value", *CA_EVENT_FIELDS.values()]}
    esa = ca["caPeakEventSeriesArray"]["esa"].items() if ca.has("caPeakEventSeriesArray") else []
    if not esa:
        warnings.append(f"{ca.file}: no caTSA.caPeakEventSeriesArray.esa; ca_events is empty")
    elif len(esa) != len(ids):
        raise InconsistentSourceError(ca.file, f"has {len(esa)} event series for {len(ids)} caTSA.ids",
                                      field=f"{ca.path}.caPeakEventSeriesArray.esa")
    for rid, series in zip(ids, esa, strict=False):
        _add_ca_events(cols, int(rid), series, ca)
    ds = xr.Dataset({k: ("event", np.concatenate(v) if v else np.zeros(0)) for k, v in cols.items()})
    ds["event_cell"] = ds["event_cell"].astype(np.int64).assign_attrs(description="ROI id")
    ds["trial"] = ds["trial"].astype(np.int64)
    for name in CA_EVENT_FIELDS.values():
        ds[name].attrs["units"] = "s"
    ds["peak_value"].attrs["units"] = "dF/F"
    order = np.lexsort((ds["start_time"].values, ds["event_cell"].values))
    return ds.isel(event=order).assign_coords(event=np.arange(ds.sizes["event"], dtype=np.int64))


def _add_ca_events(cols: dict, rid: int, series: MatNode, ca: MatNode) -> None:
    unit = node_unit(ca, series)
    times = series["eventTimes"].vector() * unit
    cols["event_cell"].append(np.full(len(times), rid))
    for name, column in CA_EVENT_FIELDS.items():
        values = series[name].vector() * unit if series.has(name) else np.full(len(times), np.nan)
        cols[column].append(_same_length(values, len(times), series, name))
    peak = series["peakValues"].vector() if series.has("peakValues") else np.full(len(times), np.nan)
    cols["peak_value"].append(_same_length(peak, len(times), series, "peakValues"))
    trials = series["eventTrials"].vector() if series.has("eventTrials") else np.full(len(times), np.nan)
    cols["trial"].append(np.where(np.isfinite(trials), trials, MISSING))


def _same_length(values: np.ndarray, n: int, node: MatNode, name: str) -> np.ndarray:
    if len(values) != n:
        raise InconsistentSourceError(node.file, f"has {len(values)} entries for {n} eventTimes",
                                      field=f"{node.path}.{name}")
    return values


# --- behaviour ---------------------------------------------------------------------------------
def whisker_names(sess: MatNode) -> list[str]:
    """``whiskerTag`` as a list of names (e.g. ``["c2"]``), empty when absent."""
    return sess["whiskerTag"].texts() if sess.has("whiskerTag") else []


def read_whisker(sess: MatNode, warnings: list[str]) -> xr.Dataset:
    """Every ``whisker*TSA`` on one time axis: ``angle``, ``curvature_change``... (whisker, time)."""
    found = {snake(m.group(1)): sess[name] for name in sess.fields() if (m := WHISKER_TSA.match(name))}
    if not found:
        warnings.append(f"{sess.file}: no whisker*TSA field; /whisker gets no samples from this file")
        return _whisker_dataset(np.zeros(0), np.zeros(0), whisker_names(sess) or ["w0"])
    first = next(iter(found.values()))
    time = first["time"].vector() * node_unit(sess, first)
    trial = _frame_trials(first, len(time))
    names = whisker_names(sess)
    ds = _whisker_dataset(time, trial, names or [f"w{i}" for i in range(_rows(first))])
    for var, node in found.items():
        _add_whisker_rows(ds, var, node, time, sess, warnings)
    return ds


def _rows(node: MatNode) -> int:
    arr = node["valueMatrix"].array()
    return 1 if arr.ndim < 2 else arr.shape[0]


def _whisker_dataset(time: np.ndarray, trial: np.ndarray, names: list[str]) -> xr.Dataset:
    trial_ids = np.where(np.isfinite(trial), trial, MISSING).astype(np.int64)
    return xr.Dataset(coords={"time": ("time", time, {"units": "s"}), "trial": ("time", trial_ids),
                              "whisker": ("whisker", np.array(names, dtype=str))})


def _add_whisker_rows(ds: xr.Dataset, var: str, node: MatNode, time: np.ndarray, sess: MatNode,
                      warnings: list[str]) -> None:
    own = node["time"].vector() * node_unit(sess, node)
    if own.shape != time.shape or not np.array_equal(own, time, equal_nan=True):
        warnings.append(f"{node.file}: {node.path} has its own time base; not carried into /whisker")
        return
    values = node["valueMatrix"].matrix(None, len(time))
    attrs = {"source_field": node.path.split(".")[-1], **({"units": WHISKER_UNITS[var]} if var in WHISKER_UNITS else {})}
    if values.shape[0] == ds.sizes["whisker"]:
        ds[var] = (("whisker", "time"), values, attrs)
        return
    labels = node["idStrs"].texts() if node.has("idStrs") else []
    ds[var] = ((f"{var}_row", "time"), values, attrs)
    if len(labels) == values.shape[0]:
        ds.coords[f"{var}_row"] = (f"{var}_row", np.array(labels, dtype=str))


def _add_has_whisker(sess: MatNode, trials: xr.Dataset, whisker: xr.Dataset) -> None:
    valid = (sess["validWhiskerTrialIds"].vector() if sess.has("validWhiskerTrialIds")
             else np.unique(whisker["trial"].values))
    trials["has_whisker"] = ("trial", np.isin(trials["trial"].values, valid),
                             {"description": "trial has valid whisker data (validWhiskerTrialIds)"})


def read_events(sess: MatNode, warnings: list[str]) -> xr.Dataset:
    """``behavESA``, ``whiskerBarInReachES``, touch ESAs and any other ``*ES``/``*ESA`` field."""
    series: list[EventSeries] = []
    whiskers = whisker_names(sess)
    for name in sess.fields():
        if not re.search(r"ESA?$", name):
            continue
        node = sess[name]
        items = node["esa"].items() if node.has("esa") else [node]
        for i, item in enumerate(items):
            series.append(_series(sess, name, item, i, whiskers))
    if not series:
        warnings.append(f"{sess.file}: no behavioural event series (behavESA, whisker*ES/ESA)")
    return event_table(series)


def _series(sess: MatNode, key: str, node: MatNode, index: int, whiskers: list[str]) -> EventSeries:
    label = node["idStr"].text() if node.has("idStr") else ""
    touch = key.startswith("whiskerBarContact")
    kind = touch_kind(label, index, key) if touch else event_kind(label or key)
    type_id = int(node["type"].scalar()) if node.has("type") else 1
    times = node["eventTimes"].vector() * node_unit(sess, node)
    trials = node["eventTrials"].vector() if node.has("eventTrials") else np.full(len(times), np.nan)
    trials = np.where(np.isfinite(trials), trials, MISSING)
    out = decode_series(times, trials, _properties(node), type_id, f"{key}:{label}" if label else key, kind,
                        node["eventTimes"])
    if touch:
        out.labels["whisker"] = _whisker_of(label, index, key, whiskers)
    return out


def _properties(node: MatNode) -> dict[str, np.ndarray]:
    props = node.get("eventPropertiesHash")
    if props is None or not props.fields():
        return {}
    keys, values = ("keys", "values") if props.has("keys") else ("keyNames", "value")
    out = {}
    for key, value in hash_entries(props, keys=keys, values=values).items():
        try:
            out[key] = value.vector()
        except ValueError:
            continue
    return out


def event_kind(label: str) -> str:
    """The store's event kind for a behavioural series name.

    >>> [event_kind(s) for s in ("Left Licks", "Right Reward", "Response Cue", "Bar in reach", "Pole Movement")]
    ['lick_left', 'reward_right', 'response_cue', 'pole_in_reach', 'pole_movement']
    """
    low = label.lower()
    side = "left" if "left" in low else "right" if "right" in low else ""
    if "lick" in low and side:
        return f"lick_{side}"
    if ("reward" in low or "water" in low) and side:
        return f"reward_{side}"
    if "cue" in low:
        return "response_cue"
    if "reach" in low:
        return "pole_in_reach"
    return snake(label)


def touch_kind(label: str, index: int, key: str) -> str:
    """``touch_protraction``/``touch_retraction`` (classified: by name, else 2 series per whisker)."""
    low = label.lower()
    if "protraction" in low or "retraction" in low:
        return "touch_protraction" if "protraction" in low else "touch_retraction"
    if "Classified" in key:
        return ("touch_protraction", "touch_retraction")[index % 2]
    return "touch"


def _whisker_of(label: str, index: int, key: str, whiskers: list[str]) -> str:
    named = [w for w in whiskers if re.search(rf"\b{re.escape(w)}\b", label, re.IGNORECASE)]
    if named:
        return named[0]
    position = index // 2 if "Classified" in key else index
    return whiskers[position] if position < len(whiskers) else f"w{position}"
