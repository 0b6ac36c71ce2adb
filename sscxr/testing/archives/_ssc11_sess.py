"""The ssc-11 ``sess`` struct (dict = struct, object array = cell), the MAT writers and the curation files.

The struct is what MATLAB's ``struct(sessionObject)`` gives for the lab's ``session.session``
class; v5 files go through ``scipy.io.savemat`` with a fixed header, v7.3 through :mod:`._matv73`.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Any

import numpy as np

from ._matv73 import savemat73
from ._ssc11_model import DERIVED, DFF_OPTS, EVDET_OPTS, NYU_SUFFIX, PROTOCOL, TRIAL_TYPE_COLOR, TRIAL_TYPES, \
    Ssc11EventSeries, Ssc11Subvolume
from ._ssc11_plan import _Plan


def _cell(items: list[Any]) -> np.ndarray:
    out = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out[0, i] = item
    return out


def _hash(d: dict[str, Any]) -> dict[str, Any]:
    """The lab's ``hash`` class as a struct: ``keys`` and ``values`` cells."""
    if not d:
        return {"keys": np.empty((0, 0), object), "values": np.empty((0, 0), object)}
    return {"keys": _cell(list(d)), "values": _cell(list(d.values()))}


def _es(es_id: int, name: str, s: Ssc11EventSeries, starts: dict[int, float]) -> dict[str, Any]:
    rel = s.times_ms - np.array([starts[t] for t in s.trials.tolist()]) if len(s.trials) else np.zeros(0)
    return {"id": float(es_id), "idStr": name, "color": np.zeros(3), "type": float(s.type), "timeUnit": 1.0,
            "eventTimes": s.times_ms.astype(float), "eventTrials": s.trials.astype(float),
            "eventTimesRelTrialStart": rel, "eventPropertiesHash": _hash(s.properties)}


def _esa(series: dict[str, Ssc11EventSeries], trial_times: np.ndarray, starts: dict[int, float]) -> dict[str, Any]:
    return {"esa": _cell([_es(i, n, s, starts) for i, (n, s) in enumerate(series.items(), 1)]),
            "ids": np.arange(1.0, len(series) + 1), "trialTimes": trial_times}


def _tsa(ids: list[float], names: list[str], time: np.ndarray, trial: np.ndarray, values: np.ndarray) -> dict:
    return {"ids": np.asarray(ids, float), "idStrs": _cell(names), "trialIndices": trial.astype(float),
            "time": time, "timeUnit": 1.0, "valueMatrix": values}


def _sess(sub: Ssc11Subvolume, plan: _Plan) -> dict[str, Any]:
    trial_times = np.column_stack([sub.trial_ids, sub.trial_start_ms, sub.trial_end_ms]).astype(float)
    starts = dict(zip(sub.trial_ids.tolist(), sub.trial_start_ms.tolist()))
    features, w = _hash(sub.cell_features), sub.whisker
    sess: dict[str, Any] = {
        "mouseId": plan.animal, "dateStr": "compound", "behavProtocolName": PROTOCOL,
        "whiskerTag": _cell(list(plan.params.whiskers)),
        "trialIds": sub.trial_ids.astype(float), "trialStartTimes": sub.trial_start_ms,
        "trialTypeMat": sub.trial_type_mat, "trialType": sub.trial_type_mat.argmax(axis=0) + 1.0,
        "trialTypeStr": _cell(TRIAL_TYPES), "trialTypeColor": TRIAL_TYPE_COLOR,
        "validTrialIds": sub.trial_ids.astype(float), "validCaTrialIds": sub.trial_ids.astype(float),
        "validWhiskerTrialIds": w.valid_trials.astype(float),
        "behavESA": _esa(sub.behaviour, trial_times, starts),
        "caTSA": _ca_tsa(sub, plan, features, trial_times),
        "whiskerAngleTSA": _tsa(list(range(1, len(w.tags) + 1)), [f"Angle {t.upper()}" for t in w.tags],
                                w.time_ms, w.trial, w.angle),
        "whiskerCurvatureChangeTSA": _tsa(list(range(1, len(w.tags) + 1)),
                                          [f"Curvature change {t.upper()}" for t in w.tags], w.time_ms, w.trial,
                                          w.curvature_change),
        "whiskerBarContactClassifiedESA": _esa(sub.touches, trial_times, starts),
        "whiskerBarInReachES": _es(1, "Bar in reach", sub.pole_in_reach, starts),
        "cellFeatures": features,
    }
    if sub.derived is not None:
        tag = plan.params.whiskers[0].upper()
        sess["derivedDataTSA"] = _tsa(list(map(float, DERIVED)), [f"{DERIVED[k]} {tag}" for k in DERIVED],
                                      sub.time_ms, sub.trial, np.vstack(list(sub.derived.values())))
    return sess


def _ca_tsa(sub: Ssc11Subvolume, plan: _Plan, features: dict[str, Any], trial_times: np.ndarray) -> dict[str, Any]:
    p, ids = plan.params, sub.roi_ids.astype(float)
    names = [f"ROI {int(r)}" for r in sub.roi_ids]
    base = _tsa(list(ids), names, sub.time_ms, sub.trial, sub.raw_f)
    depth = 128.0 + 45.0 * (sub.index - 1) + 15.0 * (sub.roi_plane - 1)
    n_events = np.bincount(np.searchsorted(sub.roi_ids, sub.ca_events["roi_id"]), minlength=len(ids))
    return {**base,
            "numFOVs": float(p.n_planes), "roiFOVidx": sub.roi_plane.astype(float),
            "roiArray": _cell([_roi_array(sub, plan, j) for j in range(p.n_planes)]),
            "activeRoiIds": ids[n_events > 0], "triggerOffsetForTrialInMS": sub.trigger_offset_ms,
            "roiDepthInMicrons": depth,
            "dffTimeSeriesArray": _tsa(list(ids), names, sub.time_ms, sub.trial, sub.dff),
            "caPeakEventSeriesArray": {"esa": _cell(_ca_event_series(sub)), "ids": ids, "trialTimes": trial_times},
            "dffOpts": DFF_OPTS, "evdetOpts": EVDET_OPTS,
            "fileList": _cell([_cell(files) for files in sub.file_list]), "fileFrameIdx": _cell(sub.file_frame_idx),
            "cellFeatures": features}


def _ca_event_series(sub: Ssc11Subvolume) -> list[dict[str, Any]]:
    """One calciumEventSeries struct per cell, in caTSA.ids order."""
    ev = sub.ca_events
    bounds = np.searchsorted(ev["roi_id"], sub.roi_ids, "left"), np.searchsorted(ev["roi_id"], sub.roi_ids, "right")
    out = []
    for rid, a, b in zip(sub.roi_ids.tolist(), *bounds):
        out.append({"id": float(rid), "idStr": f"ROI {rid}", "type": 1.0, "timeUnit": 1.0,
                    "eventTimes": ev["event_time"][a:b], "eventTrials": ev["trial"][a:b].astype(float),
                    "peakTimes": ev["peak_time"][a:b], "endTimes": ev["end_time"][a:b],
                    "peakValues": ev["peak_value"][a:b], "decayTimeConstants": ev["decay_time_constant"][a:b],
                    "riseTimeConstants": ev["rise_time_constant"][a:b]})
    return out


def _roi_array(sub: Ssc11Subvolume, plan: _Plan, j: int) -> dict[str, Any]:
    """The roiArray object of plane ``j`` (0-based) as a struct; ``rois`` is a cell of roi structs."""
    p, size = plan.params, float(plan.params.image_size)
    ids = sub.roi_ids[sub.roi_plane == j + 1]
    block = 1000 * ((sub.index - 1) * p.n_planes + j)
    rois = [{"id": float(r), "color": np.array([1.0, 0.0, 0.0]), "groups": np.zeros((0, 0)),
             "corners": sub.corners[int(r)], "indices": sub.mask_indices[int(r)].astype(float),
             "borderIndices": sub.border_indices[int(r)].astype(float), "imageBounds": np.array([size, size])}
            for r in ids]
    return {"roiIds": ids.astype(float), "rois": _cell(rois), "idStr": f"{plan.animal}_{sub.fov_names[j]}",
            "masterImage": sub.master_image[j], "imageBounds": np.array([size, size]),
            "settings": {"umPerPixel": 600.0 / size}, "metaData": {"subvolId": float(sub.index)},
            "roiIdRange": np.array([block + 1.0, block + 1000.0])}


def _created(day: str) -> str:
    """MATLAB's header date (``asctime`` style) for the evening of ``day`` (YYYY_MM_DD)."""
    d = _dt.datetime.strptime(day, "%Y_%m_%d").replace(hour=18)
    return f"{d:%a %b} {d.day:2d} {d:%H:%M:%S %Y}"


def _save_v5(path: Path, variables: dict[str, Any], created: str, compress: bool = True) -> None:
    """``scipy.io.savemat`` (zlib-compressed as MATLAB's v7, 1-D as rows, 63-char names), fixed header."""
    import scipy.io

    header = f"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: {created}".encode().ljust(116, b" ")
    with path.open("wb") as fh:
        scipy.io.savemat(fh, variables, do_compression=compress, oned_as="row", long_field_names=True)
        fh.seek(0)
        fh.write(header)


def _save_mat(path: Path, variables: dict[str, Any], version: str, created: str, compress: bool) -> None:
    if version == "7.3":
        savemat73(path, variables, created=created, compression=3 if compress else None)
    else:
        _save_v5(path, variables, created, compress)


def _write_curation(plan: _Plan) -> None:
    """Per ablation: NYU ``<date>_ablation[_kind]/manualCurationData.mat`` and/or JRC ``<animal>_<date>.mat``."""
    p = plan.params
    for abl, (ok, bad) in zip(plan.ablations, plan.attempts):
        date = abl.date.replace("-", "_")
        extra = plan.unknown_ids if abl is plan.ablations[0] else np.zeros(0, np.int64)
        if p.curation in ("nyu", "both"):
            folder = plan.animal_dir / f"{date}_ablation{NYU_SUFFIX[abl.kind]}"
            folder.mkdir(parents=True, exist_ok=True)
            targets, success = _attempts(ok, bad, extra, p.repeat_attempt, plan.seed)
            path = folder / "manualCurationData.mat"
            _save_v5(path, {"ablationTargetIds": targets, "ablationSuccessful": success}, _created(date))
            abl.curation_files.append(path)
        if p.curation in ("jrc", "both"):
            path = plan.animal_dir / f"{plan.animal}_{date}.mat"
            _save_v5(path, {"ablated_ids": np.r_[ok, extra].astype(float)}, _created(date))
            abl.curation_files.append(path)


def _attempts(ok: np.ndarray, bad: np.ndarray, extra: np.ndarray, repeat: bool,
              seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Targets in attempt order with their success flags; a repeated target first failed, then succeeded."""
    rng = np.random.default_rng([seed, 6, len(ok), len(bad)])
    ids = np.r_[ok, extra, bad].astype(float)
    success = np.r_[np.ones(len(ok) + len(extra), bool), np.zeros(len(bad), bool)]
    order = rng.permutation(len(ids))
    ids, success = ids[order], success[order]
    if repeat and len(ok):
        ids, success = np.r_[float(ok[0]), ids], np.r_[False, success]
    return ids, success
