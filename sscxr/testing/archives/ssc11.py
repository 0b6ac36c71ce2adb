"""A synthetic ssc-11 animal with the real on-disk layout (shared/FORMATS.md §2 and §4).

>>> truth = write_ssc11_animal(tmp_path, animal="an274424", preset="tiny")   # doctest: +SKIP
>>> sorted(p.name for p in truth.animal_dir.iterdir())                     # doctest: +SKIP
['2019_01_14_ablation', 'an274424_2019_01_14.mat', 'session_neuropilone_postablate_touch_merged',
 'session_neuropilone_preablate_merged']

One ``sess`` struct per subvolume per condition (``an<ID>_vol_NN_sess_struct.mat``), merged over
days as the lab's ``session_merge`` does (trial ids + 1000 and time + 1 day per day), some files
MAT v5 and some v7.3; NYU and JRC curation files. :class:`Ssc11Truth` holds what was written.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._matv5 import cell, save_v5
from ._matv73 import save_v73

FOLDERS = {"pre": "session_neuropilone_preablate_merged", "post": "session_neuropilone_postablate_merged",
           "post_silent": "session_neuropilone_postablate_silent_merged",
           "post_whisking": "session_neuropilone_postablate_whisking_merged",
           "post_touch": "session_neuropilone_postablate_touch_merged"}
DAY_MS = 86_400_000.0
TRIAL_TYPES = ["HitL", "HitR", "ErrL", "ErrR", "NoLickL", "NoLickR"]


@dataclass(frozen=True)
class Ssc11Params:
    """Sizes and switches of a synthetic animal; every field can be overridden by name."""

    n_subvolumes: int = 2
    n_planes: int = 3
    cells_per_plane: int = 8
    n_days: int = 3
    trials_per_day: int = 6
    frames_per_trial: int = 70
    volume_rate_hz: float = 7.0
    image_size: int = 64
    conditions: tuple[str, ...] = ("pre", "post_touch")
    mat_versions: tuple[tuple[str, str], ...] = (("pre", "5"), ("post_touch", "7.3"))
    dropped_post_cells: int = 2
    curation: tuple[str, ...] = ("nyu", "jrc")
    orphan_ablation_id: bool = False
    whisker_rate_hz: float = 100.0
    derived: bool = True


SSC11_PRESETS: dict[str, Ssc11Params] = {
    "tiny": Ssc11Params(),
    "small": Ssc11Params(cells_per_plane=20, trials_per_day=15),
    "full": Ssc11Params(n_subvolumes=4, cells_per_plane=500, trials_per_day=200, frames_per_trial=75,
                        image_size=512, derived=False),
}


@dataclass
class SubvolumeTruth11:
    """One merged subvolume file as written (ms clock, 1-based)."""

    path: Path
    mat_version: str
    roi_ids: np.ndarray
    roi_plane: np.ndarray
    fov_names: list[str]
    raw_f: np.ndarray
    dff: np.ndarray
    time_ms: np.ndarray
    trial: np.ndarray
    day: np.ndarray
    masks: dict[int, np.ndarray]
    features: dict[str, np.ndarray]
    ca_events: dict[int, dict[str, np.ndarray]]
    trial_ids: np.ndarray
    trial_start_ms: np.ndarray
    trial_type_mat: np.ndarray
    whisker_time_ms: np.ndarray
    whisker_angle: np.ndarray
    events: dict[str, tuple[int, np.ndarray, np.ndarray]]


@dataclass
class Ssc11Truth:
    """What :func:`write_ssc11_animal` wrote."""

    root: Path
    animal: str
    animal_dir: Path
    params: Ssc11Params
    subvolumes: dict[str, list[SubvolumeTruth11]]
    ablated: dict[str, np.ndarray]
    ablation_dates: dict[str, str]
    unsuccessful: np.ndarray
    orphan_ids: np.ndarray
    curation_files: list[Path] = field(default_factory=list)


def write_ssc11_animal(root: str | Path, *, animal: str = "an274424", preset: str = "tiny", seed: int = 0,
                       **overrides: Any) -> Ssc11Truth:
    """Write ``<root>/<animal>/`` with condition folders, subvolume files and curation files."""
    p = dataclasses.replace(SSC11_PRESETS[preset], **overrides)
    rng = np.random.default_rng(seed)
    adir = Path(root) / animal
    cells = _animal_cells(p, rng)
    versions = dict(p.mat_versions)
    subs: dict[str, list[SubvolumeTruth11]] = {}
    for c, cond in enumerate(p.conditions):
        folder = adir / FOLDERS[cond]
        folder.mkdir(parents=True, exist_ok=True)
        day0 = 0 if cond == "pre" else p.n_days + 2
        subs[cond] = [_write_subvolume(folder / f"{animal}_vol_{v + 1:02d}_sess_struct.mat", versions.get(cond, "5"),
                                       animal, p, rng, cells[v], v, day0, drop=cond != "pre")
                      for v in range(p.n_subvolumes)]
    truth = Ssc11Truth(Path(root), animal, adir, p, subs, {}, {}, np.zeros(0, np.int64), np.zeros(0, np.int64))
    _write_curation(truth, rng, cells)
    return truth


def _animal_cells(p: Ssc11Params, rng: np.random.Generator) -> list[dict]:
    """Per subvolume: ROI ids in blocks of 1000 per FOV, plane index, masks, master images."""
    out, fov = [], 0
    for v in range(p.n_subvolumes):
        ids, planes, masks, images = [], [], {}, []
        for j in range(p.n_planes):
            block = np.sort(rng.choice(np.arange(1, 1000), p.cells_per_plane, replace=False)) + 1000 * fov
            fov += 1
            ids += list(block); planes += [j + 1] * len(block)
            for rid in block:
                cy, cx = rng.integers(3, p.image_size - 3, 2)
                yy, xx = np.mgrid[cy - 1:cy + 2, cx - 1:cx + 2]
                masks[int(rid)] = (xx * p.image_size + yy + 1).ravel().astype(float)  # 1-based column-major
            images.append(rng.integers(0, 4096, (p.image_size, p.image_size, 2)).astype(np.uint16))
        out.append({"ids": np.array(ids, np.int64), "plane": np.array(planes), "masks": masks, "images": images})
    return out


def _write_subvolume(path: Path, version: str, animal: str, p: Ssc11Params, rng: np.random.Generator,
                     cells: dict, v: int, day0: int, *, drop: bool) -> SubvolumeTruth11:
    keep = np.ones(len(cells["ids"]), bool)
    if drop and p.dropped_post_cells:
        keep[rng.choice(len(keep), p.dropped_post_cells, replace=False)] = False
    ids, plane = cells["ids"][keep], cells["plane"][keep]
    trials, starts, days = _trials(p, rng, day0)
    period = 1000.0 / p.volume_rate_hz
    time = np.concatenate([s + period * np.arange(p.frames_per_trial) for s in starts])
    frame_trial = np.repeat(trials, p.frames_per_trial)
    n, f = len(ids), len(time)
    raw = 100 + rng.gamma(2.0, 10.0, (n, f))
    dff = raw / raw.mean(axis=1, keepdims=True) - 1
    dff[:, rng.random(f) < 0.01] = np.nan
    ttm = np.zeros((6, len(trials)))
    ttm[rng.integers(0, 6, len(trials)), np.arange(len(trials))] = 1
    features = _features(ids, rng)
    ca_events = _ca_events(ids, time, frame_trial, rng)
    w_time = np.concatenate([s + 100 + (1000 / p.whisker_rate_hz) * np.arange(int(3 * p.whisker_rate_hz)) for s in starts])
    w_trial = np.repeat(trials, int(3 * p.whisker_rate_hz))
    angle = 10 + 15 * np.sin(w_time / 50.0) + rng.normal(0, 1, len(w_time))
    events = _events(trials, starts, rng)
    sess = _sess(animal, p, ids, plane, cells, v, raw, dff, time, frame_trial, features, ca_events,
                 trials, starts, ttm, w_time, w_trial, angle, events)
    (save_v73 if version == "7.3" else save_v5)(path, {"sess": sess})
    mask_of = {int(r): cells["masks"][int(r)] for r in ids}
    fovs = [f"fov_{v + 1:02d}{pl + 1:03d}" for pl in range(p.n_planes)]
    return SubvolumeTruth11(path, version, ids, plane, fovs, raw, dff, time, frame_trial,
                            (frame_trial - 1) // 1000 + 1, mask_of, features, ca_events, trials, starts, ttm,
                            w_time, angle, events)


def _trials(p: Ssc11Params, rng: np.random.Generator, day0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    trials, starts, days = [], [], []
    for d in range(p.n_days):
        ids = 1000 * d + 1 + np.sort(rng.choice(np.arange(p.trials_per_day + 3), p.trials_per_day, replace=False))
        base = (day0 + d) * DAY_MS + 36_000_000.0  # merged files offset each day by one day (ms)
        t = base + np.cumsum(np.full(p.trials_per_day, p.frames_per_trial * 1000 / p.volume_rate_hz + 2000.0))
        trials += list(ids); starts += list(np.round(t, 1)); days += [d + 1] * len(ids)
    return np.array(trials, float), np.array(starts), np.array(days)


def _features(ids: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(ids)
    return {"eventBasedDff_k16t14_MeanWhiskerAmplitudeGLMScore": rng.random(n),
            "eventBasedDff_k16t14_MeanWhiskerAmplitudeGLMShuffleScore": rng.random(n) * 0.1,
            "eventBasedDff_k16t14_c2AbsMaxKappaZeroNotouchGLMScore": rng.random(n),
            "eventBasedDff_k16t14_c2AbsMaxKappaZeroNotouchGLMShuffleScore": rng.random(n) * 0.1,
            "eventBasedDff_k16t14_c2AbsMaxKappaZeroNotouchGLMStimKernelWeight": rng.normal(0, 1, (8, n)),
            "eventRateHz": rng.gamma(1.0, 0.1, n),
            "dffBased_HitLTrialAvg": rng.normal(0, 0.1, (70, n)),
            "dffBased_HitRTrialAvg": rng.normal(0, 0.1, (70, n))}


def _ca_events(ids, time, frame_trial, rng) -> dict[int, dict[str, np.ndarray]]:
    out = {}
    for rid in ids:
        k = rng.integers(0, 4)
        at = np.sort(rng.choice(len(time), k, replace=False))
        out[int(rid)] = {"eventTimes": time[at], "peakTimes": time[at] + 200, "endTimes": time[at] + 1500,
                         "peakValues": rng.uniform(0.2, 2, k), "decayTimeConstants": rng.uniform(500, 1500, k),
                         "riseTimeConstants": rng.uniform(50, 150, k), "eventTrials": frame_trial[at]}
    return out


def _events(trials, starts, rng) -> dict[str, tuple[int, np.ndarray, np.ndarray]]:
    pole_in = starts + rng.uniform(500, 1000, len(starts))
    pairs = lambda a, b: np.column_stack([a, b]).ravel()  # noqa: E731
    touch = pole_in + 300
    return {"Pole Movement": (2, pairs(pole_in, pole_in + 1500), np.repeat(trials, 2)),
            "Left Licks": (1, starts[::2] + 3150, trials[::2]),
            "Right Licks": (1, starts[1::2] + 3170, trials[1::2]),
            "Response Cue": (2, pairs(starts + 3000, starts + 3100), np.repeat(trials, 2)),
            "c2 protraction": (2, pairs(touch, touch + 30), np.repeat(trials, 2)),
            "c2 retraction": (2, pairs(touch[::3] + 400, touch[::3] + 420), np.repeat(trials[::3], 2)),
            "Bar in reach": (2, pairs(pole_in + 50, pole_in + 1450), np.repeat(trials, 2))}


def _series(name: str, spec: tuple[int, np.ndarray, np.ndarray]) -> dict[str, Any]:
    type_, times, trials = spec
    return {"idStr": name, "type": float(type_), "timeUnit": 1.0, "eventTimes": times, "eventTrials": trials}


def _sess(animal, p, ids, plane, cells, v, raw, dff, time, frame_trial, features, ca_events, trials, starts, ttm,
          w_time, w_trial, angle, events) -> dict[str, Any]:
    ids_f = ids.astype(float)
    roi_arrays = [{"roiIds": ids_f[plane == j + 1],
                   "rois": cell([{"id": float(r), "indices": cells["masks"][int(r)], "corners": np.zeros((2, 4)),
                                  "borderIndices": cells["masks"][int(r)][:3], "imageBounds": np.array([p.image_size] * 2, float),
                                  "color": np.array([1.0, 0, 0]), "groups": np.zeros((0, 0))}
                                 for r in ids[plane == j + 1]]),
                   "idStr": f"{animal} fov_{v + 1:02d}{j + 2:03d}",
                   "masterImage": cells["images"][j], "imageBounds": np.array([p.image_size] * 2, float),
                   "settings": {"umPerPixel": 600.0 / p.image_size}, "metaData": {"subvolId": float(v + 1)}}
                  for j in range(p.n_planes)]
    esa = [{**{k: ca_events[int(r)][k] for k in ca_events[int(r)]}, "timeUnit": 1.0} for r in ids]
    feature_hash = {"keys": cell(list(features)), "values": cell(list(features.values()))}
    whisk = lambda values, label: {"ids": np.array([1.0]), "idStrs": cell([label]), "time": w_time, "timeUnit": 1.0,  # noqa: E731
                                   "trialIndices": w_trial, "valueMatrix": values}
    sess = {
        "mouseId": animal, "dateStr": "compound", "behavProtocolName": "pole_detect_twoport_sp",
        "whiskerTag": cell(["c2"]),
        "caTSA": {"ids": ids_f, "idStrs": cell([str(int(r)) for r in ids]), "time": time, "timeUnit": 1.0,
                  "trialIndices": frame_trial, "valueMatrix": raw,
                  "dffTimeSeriesArray": {"ids": ids_f, "time": time, "timeUnit": 1.0, "valueMatrix": dff},
                  "caPeakEventSeriesArray": {"esa": cell(esa), "trialTimes": np.column_stack([trials, starts, starts + 12000])},
                  "roiArray": cell(roi_arrays), "roiFOVidx": plane.astype(float), "numFOVs": float(p.n_planes),
                  "cellFeatures": feature_hash, "fileList": cell([f"fov_{v + 1:02d}{j + 2:03d}_main.tif" for j in range(p.n_planes)]),
                  "triggerOffsetForTrialInMS": np.zeros(len(trials)), "roiDepthInMicrons": 45.0 * v,
                  "dffOpts": {"method": "percentile"}, "evdetOpts": {"threshold": 2.0}, "activeRoiIds": ids_f},
        "behavESA": {"esa": cell([_series(n, events[n]) for n in ("Pole Movement", "Left Licks", "Right Licks", "Response Cue")]),
                     "ids": np.arange(1.0, 5.0), "trialTimes": np.column_stack([trials, starts, starts + 12000])},
        "whiskerAngleTSA": whisk(angle, "c2"),
        "whiskerCurvatureChangeTSA": whisk(np.sin(w_time / 70.0) * 0.01, "c2"),
        "whiskerBarContactClassifiedESA": {"esa": cell([_series(n, events[n]) for n in ("c2 protraction", "c2 retraction")]),
                                           "ids": np.array([1.0, 2.0])},
        "whiskerBarInReachES": _series("Bar in reach", events["Bar in reach"]),
        "trialIds": trials, "trialStartTimes": starts, "trialTypeMat": ttm,
        "trialType": ttm.argmax(0).astype(float) + 1, "trialTypeStr": cell(TRIAL_TYPES),
        "trialTypeColor": np.eye(3)[np.arange(6) % 3],
        "validTrialIds": trials, "validCaTrialIds": trials, "validWhiskerTrialIds": trials,
        "cellFeatures": feature_hash,
    }
    if p.derived:
        sess["derivedDataTSA"] = {"ids": np.array([10000.0, 10010.0]), "time": time, "timeUnit": 1.0,
                                  "trialIndices": frame_trial, "valueMatrix": np.random.default_rng(v).normal(0, 1, (2, len(time)))}
    return sess


def _write_curation(truth: Ssc11Truth, rng: np.random.Generator, cells: list[dict]) -> None:
    """NYU manualCurationData.mat (with an unsuccessful target) and/or JRC an<ID>_<date>.mat."""
    p, adir, date = truth.params, truth.animal_dir, "2019_01_14"
    all_ids = np.concatenate([c["ids"] for c in cells])
    targets = rng.choice(all_ids, min(6, len(all_ids)), replace=False)
    kind = next((c.split("_", 1)[1] for c in p.conditions if c.startswith("post_")), "touch")
    ablated: list[int] = []
    if "nyu" in p.curation:
        ok = np.ones(len(targets), bool)
        ok[-1] = False
        extra = [9_999_999] if p.orphan_ablation_id else []
        folder = adir / (f"{date}_ablation" if kind == "touch" else f"{date}_ablation_{kind}")
        folder.mkdir(parents=True, exist_ok=True)
        path = save_v5(folder / "manualCurationData.mat", {"ablationTargetIds": np.r_[targets, extra].astype(float),
                                                         "ablationSuccessful": np.r_[ok, [True] * len(extra)]})
        truth.curation_files.append(path)
        truth.unsuccessful = targets[~ok].astype(np.int64)
        ablated += list(targets[ok]) + extra
    if "jrc" in p.curation:
        jrc = rng.choice(all_ids, 3, replace=False)
        path = save_v5(adir / f"{truth.animal}_{date}.mat", {"ablated_ids": jrc.astype(float)})
        truth.curation_files.append(path)
        ablated += list(jrc)
    truth.ablated[kind] = np.unique(np.array(ablated, np.int64))
    truth.ablation_dates[kind] = date.replace("_", "-")
    truth.orphan_ids = np.array([9_999_999] if p.orphan_ablation_id and "nyu" in p.curation else [], np.int64)
