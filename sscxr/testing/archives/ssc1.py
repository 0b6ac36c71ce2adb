"""A synthetic ssc-1 session with the real on-disk layout (shared/FORMATS.md §1 and §4).

>>> truth = write_ssc1_session(tmp_path / "an197522_2013_03_08", preset="tiny")  # doctest: +SKIP
>>> truth.mat_path.name                                                          # doctest: +SKIP
'an197522_2013_03_08_session.mat'
>>> truth.subvolumes[0].dff.shape       # (cells, frames), as written            # doctest: +SKIP
(30, 420)

Everything is in source units (ms, 1-based indices); :class:`Ssc1Truth` holds what was written,
so tests compare converted values to it rather than to a reader's own output.
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._matv5 import cell, save_v5, struct_array
from .media import tiff_pages, video_frames, write_mp4, write_tiff

TRIAL_TYPES = ["HitL", "HitR", "ErrL", "ErrR", "NoLickL", "NoLickR"]
META_KEYS = ["species", "experimentType", "animalStrain1", "animalSource1", "animalGeneModification1",
             "animalStrain2", "animalSource2", "animalGeneModification2", "animalID", "sex",
             "dateOfExperiment", "timeOfExperiment", "experimenters"]


@dataclass(frozen=True)
class Ssc1Params:
    """Sizes and switches of a synthetic session; every field can be overridden by name."""

    n_subvolumes: int = 2
    n_planes: int = 3
    cells_per_plane: int = 10
    n_trials: int = 12
    trial_s: float = 10.0
    volume_rate_hz: float = 7.0
    whisker_rate_hz: float = 500.0
    whisker_s: float = 4.0
    whisker_fraction: float = 0.75
    n_whiskers: int = 1
    image_size: int = 64
    nan_fraction: float = 0.01
    single_plane_subvolume: bool = False
    extra_traces: bool = False
    extra_event_series: bool = False
    raw: bool = False
    raw_subvolumes: tuple[int, ...] | None = None
    frames_per_tiff: int = 500
    video: bool = False
    n_video_trials: int | None = None
    video_size: tuple[int, int] = (24, 32)
    tar: str | None = None


SSC1_PRESETS: dict[str, Ssc1Params] = {
    "tiny": Ssc1Params(),
    "small": Ssc1Params(n_subvolumes=3, cells_per_plane=30, n_trials=45, image_size=128, raw=True,
                        raw_subvolumes=(1,), frames_per_tiff=200, video=True, n_video_trials=6, whisker_s=2.0),
    "full": Ssc1Params(n_subvolumes=12, cells_per_plane=333, n_trials=400, trial_s=11.5, image_size=512,
                       whisker_s=5.0, whisker_fraction=1.0, nan_fraction=0.002),
}


@dataclass
class WhiskerTruth:
    time_ms: np.ndarray
    trial: np.ndarray
    value_matrix: np.ndarray
    id_strs: list[str]
    valid_trials: np.ndarray


@dataclass
class SubvolumeTruth:
    """One imaging subvolume as written (``timeSeriesArrayHash.value{k}``, ``descrHash{k}``)."""

    hash_key: str
    vv: int
    planes: list[int]
    roi_ids: np.ndarray
    roi_plane: np.ndarray
    dff: np.ndarray
    time_ms: np.ndarray
    trial: np.ndarray
    source_file_list: list[list[str]]
    source_file_frame_idx: list[np.ndarray]
    mask_indices: dict[int, np.ndarray]
    corners: dict[int, np.ndarray]
    master_image: list[np.ndarray]
    valid_ca_trials: np.ndarray
    extra_traces: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class EventSeriesTruth:
    type: int
    times_ms: np.ndarray
    trials: np.ndarray
    properties: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Ssc1Truth:
    """What :func:`write_ssc1_session` wrote, in source units (ms, 1-based)."""

    directory: Path
    mat_path: Path
    tar_path: Path | None
    params: Ssc1Params
    seed: int
    trial_ids: np.ndarray
    trial_start_ms: np.ndarray
    trial_type_mat: np.ndarray
    trial_properties: dict[str, np.ndarray]
    metadata: dict[str, str]
    whisker: WhiskerTruth
    subvolumes: list[SubvolumeTruth]
    events: dict[str, list[EventSeriesTruth]]
    tiffs: dict[str, int] = field(default_factory=dict)
    videos: dict[int, tuple[str, np.ndarray]] = field(default_factory=dict)

    def tiff_pages(self, relpath: str) -> np.ndarray:
        """Regenerate the pages of a written TIFF (green/red interleaved) without reading it."""
        return tiff_pages(self.seed, relpath, self.tiffs[relpath], self.params.image_size)


def write_ssc1_session(directory: str | Path, *, animal: str = "an197522", date: str = "2013_03_08",
                       preset: str = "tiny", seed: int = 0, **overrides: Any) -> Ssc1Truth:
    """Write a synthetic ssc-1 session folder (``<animal>_<date>_session.mat`` + raw media).

    ``preset`` is one of :data:`SSC1_PRESETS`; ``overrides`` set fields of :class:`Ssc1Params`.
    Deterministic: the same arguments give the same bytes.
    """
    params = dataclasses.replace(SSC1_PRESETS[preset], **overrides)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    b = _Builder(params, rng, animal, date, seed, directory)
    mat_path = save_v5(directory / f"{animal}_{date}_session.mat", {"s": b.struct()})
    truth = b.truth(mat_path)
    if params.tar:
        truth.tar_path = pack_tar(directory, params.tar)
    return truth


def pack_tar(directory: Path, kind: str = "tar.gz") -> Path:
    """Pack ``directory`` as ``<name>_session.tar[.gz]`` beside it, deterministically."""
    out = directory.parent / f"{directory.name}_session.{kind}"
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f"{directory.name}/{path.relative_to(directory).as_posix()}")
            info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
            with path.open("rb") as f:
                tar.addfile(info, f)
    data = raw.getvalue()
    if kind == "tar.gz":
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, filename="") as gz:
            gz.write(data)
        data = buf.getvalue()
    out.write_bytes(data)
    return out


class _Builder:
    """Builds the ``s`` struct and the truth together, one section per method."""

    def __init__(self, p: Ssc1Params, rng: np.random.Generator, animal: str, date: str, seed: int, root: Path):
        self.p, self.rng, self.animal, self.date, self.seed, self.root = p, rng, animal, date, seed, root
        self.trial_ids = np.arange(1, p.n_trials + 1, dtype=float)
        gaps = p.trial_s * 1000 + rng.uniform(1500, 3000, p.n_trials)
        self.starts = np.round(1_234_567.8 + np.concatenate([[0], np.cumsum(gaps[:-1])]), 1)
        self.whisker_trials = np.sort(rng.choice(self.trial_ids, max(1, int(p.whisker_fraction * p.n_trials)),
                                                 replace=False))
        self.pole_in = self.starts + rng.uniform(500, 1000, p.n_trials)
        self.tiffs: dict[str, int] = {}
        self.videos: dict[int, tuple[str, np.ndarray]] = {}

    # --- top level ----------------------------------------------------------------------------
    def struct(self) -> dict[str, Any]:
        self.ttm = self._trial_type_mat()
        self.props = self._trial_properties()
        self.meta = self._metadata()
        whisker, whisker_descr = self._whisker()
        self.touch_series = self._touches()  # before imaging: touch-responsive cells follow them
        subs = [self._subvolume(i) for i in range(self.p.n_subvolumes)]
        self.events = self._events()
        return {
            "timeUnitIds": np.arange(1.0, 6.0),
            "timeUnitNames": cell(["millisecond", "second", "minute", "hour", "day"]),
            "trialTimeUnit": 1.0,
            "metaDataHash": {"keyNames": cell(META_KEYS), "value": cell([self.meta[k] for k in META_KEYS]),
                             "descr": cell([f"{k} of the experiment" for k in META_KEYS])},
            "trialIds": self.trial_ids,
            "trialStartTimes": self.starts,
            "trialTypeMat": self.ttm,
            "trialTypeStr": cell(TRIAL_TYPES),
            "trialPropertiesHash": _hash(list(self.props), [f"{k} per trial" for k in self.props],
                                         list(self.props.values())),
            "timeSeriesArrayHash": {**_hash(["whiskerVars"] + [s[0].hash_key for s in subs],
                                            ["Angle of whiskers and the curvature (relative) of the whiskers."]
                                            + ["dF/F of one imaging subvolume"] * len(subs),
                                            [whisker] + [s[1] for s in subs]),
                                    "descrHash": cell([whisker_descr] + [s[2] for s in subs])},
            "eventSeriesArrayHash": _hash(list(self.events), [f"{k} events" for k in self.events],
                                          [e[0] for e in self.events.values()]),
        }

    def truth(self, mat_path: Path) -> Ssc1Truth:
        return Ssc1Truth(self.root, mat_path, None, self.p, self.seed, self.trial_ids, self.starts, self.ttm,
                         self.props, self.meta, self.whisker_truth, self.sub_truths,
                         {k: v[1] for k, v in self.events.items()}, self.tiffs, self.videos)

    def _trial_type_mat(self) -> np.ndarray:
        ttm = np.zeros((6, self.p.n_trials))
        rows = self.rng.integers(0, 6, self.p.n_trials)
        ttm[rows, np.arange(self.p.n_trials)] = 1
        ttm[:, self.rng.random(self.p.n_trials) < 0.1] = 0
        ttm[:, 1] = 0  # at least one trial without outcome
        return ttm

    def _trial_properties(self) -> dict[str, np.ndarray]:
        n = self.p.n_trials
        return {"TrialNumber": self.trial_ids.copy(),
                "PoleMotorSpeed": np.round(self.rng.uniform(1, 3, n), 2),
                "StimulusPosition": self.rng.choice([60000.0, 80000.0, 100000.0, 120000.0], n)}

    def _metadata(self) -> dict[str, str]:
        values = ["mouse", "pole localization, 2-photon imaging", "C57BL/6J", "JAX", "none",
                  "GCaMP6s", "JAX", "Ai94", self.animal, "male", self.date.replace("_", ""), "120000",
                  "Simon Peron"]
        return dict(zip(META_KEYS, values, strict=True))

    # --- whisker ------------------------------------------------------------------------------
    def _whisker(self) -> tuple[dict, dict]:
        p, step = self.p, 1000.0 / self.p.whisker_rate_hz
        n = int(p.whisker_s * p.whisker_rate_hz)
        time = np.concatenate([self.starts[int(t) - 1] + 100 + step * np.arange(n) for t in self.whisker_trials])
        trial = np.repeat(self.whisker_trials, n)
        names = [f"C{i + 1}" for i in range(p.n_whiskers)]
        ids_strs = [f"{w} {kind}" for w in names for kind in ("Angle", "Curvature")]
        phase = 2 * np.pi * 10 * (time - time[0]) / 1000
        rows = []
        for i in range(p.n_whiskers):
            rows.append(10 + 15 * np.sin(phase + i) + self.rng.normal(0, 1, len(time)))
            rows.append(self.rng.normal(0, 0.002, len(time)))
        values = np.array(rows)
        values[:, self.rng.random(len(time)) < 0.02] = np.nan
        self.whisker_truth = WhiskerTruth(time, trial, values, ids_strs, self.whisker_trials.copy())
        self._videos(values[0], trial)
        struct = {"ids": np.arange(1.0, len(ids_strs) + 1), "idStrs": cell(ids_strs),
                  "idStrDetailed": cell([f"{s} (whisker tracker)" for s in ids_strs]),
                  "timeUnit": 1.0, "time": time, "trial": trial, "valueMatrix": values}
        descr = {"keyNames": cell(["validTrials"]), "descr": cell(["trials with whisker data"]),
                 "value": self.whisker_trials.copy()}
        return struct, descr

    def _videos(self, angle: np.ndarray, trial: np.ndarray) -> None:
        if not self.p.video:
            return
        n = self.p.n_video_trials or len(self.whisker_trials)
        for t in self.whisker_trials[:n]:
            sel = trial == t
            rel = f"whisker_video/{self.animal}_{self.date}_trial_{int(t):04d}.mp4"
            write_mp4(self.root / rel, video_frames(angle[sel], self.p.video_size), int(self.p.whisker_rate_hz))
            self.videos[int(t)] = (rel, self.whisker_truth.time_ms[sel])

    # --- imaging ------------------------------------------------------------------------------
    def _blocks(self) -> list[np.ndarray]:
        imaged = self.trial_ids[:-1] if self.p.n_trials > self.p.n_subvolumes + 1 else self.trial_ids
        return np.array_split(imaged, self.p.n_subvolumes)

    def _subvolume(self, i: int) -> tuple[SubvolumeTruth, dict, dict]:
        p, rng = self.p, self.rng
        vv = i + 1 if i < 2 else i + 2  # non-contiguous numbering: 01, 02, 04, 05, ...
        single = p.single_plane_subvolume and i == p.n_subvolumes - 1
        planes = [1] if single else list(range(2, 2 + p.n_planes))
        trials = self._blocks()[i]
        period = 1000.0 / p.volume_rate_hz
        n_per = int(p.trial_s * p.volume_rate_hz)
        time = np.concatenate([self.starts[int(t) - 1] + period * np.arange(n_per) for t in trials])
        trial = np.repeat(trials, n_per)
        ids, plane_of, plane_ids = [], [], []
        for j, ppp in enumerate(planes):
            fov = sum(1 if (self.p.single_plane_subvolume and k == p.n_subvolumes - 1) else p.n_planes
                      for k in range(i)) + j
            block = np.sort(rng.choice(np.arange(1, 1000), p.cells_per_plane, replace=False)) + 1000 * fov
            ids += list(block); plane_of += [ppp] * len(block); plane_ids.append(block.astype(float))
        ids_arr = np.array(ids, dtype=float)
        missing = rng.random(len(time)) < p.nan_fraction
        dff = rng.normal(0, 0.05, (len(ids), len(time))) + self._touch_responses(len(ids), time)
        dff[:, missing] = np.nan
        files, frame_idx = self._source_files(vv, planes, missing)
        masks, corners, images = self._masks(plane_ids)
        sv = SubvolumeTruth(f"caTSA_fov_{vv:02d}", vv, planes, ids_arr.astype(np.int64), np.array(plane_of), dff,
                            time, trial, files, frame_idx, masks, corners, images, trials.copy())
        struct = {"ids": ids_arr, "idStrs": cell([f"roi {int(r)}" for r in ids]),
                  "idStrDetailed": cell([f"fov_{vv:02d}{pp:03d} roi {int(r)}" for r, pp in zip(ids, plane_of)]),
                  "timeUnit": 1.0, "time": time, "trial": trial, "valueMatrix": dff,
                  "imagingPlane": self._imaging_plane(plane_ids, files, frame_idx, single)}
        if p.extra_traces:
            raw = 100 + 50 * rng.random((len(ids), len(time)))
            struct["rawF"] = raw
            sv.extra_traces["rawF"] = raw
        self.sub_truths = getattr(self, "sub_truths", []) + [sv]
        return sv, struct, self._subvolume_descr(plane_ids, masks, corners, images, trials, single)

    def _touch_responses(self, n_cells: int, time: np.ndarray) -> np.ndarray:
        """A third of the cells respond to protraction touches (0.4 dF/F, 1 s decay), as in S1."""
        onsets = self.touch_series[1][0].times_ms[0::2]
        lag = time[None, :] - onsets[:, None]
        drive = np.where(lag >= 0, np.exp(-np.clip(lag, 0, None) / 1000.0), 0.0).sum(axis=0)
        gain = np.where(self.rng.random(n_cells) < 1 / 3, self.rng.uniform(0.2, 0.6, n_cells), 0.0)
        return gain[:, None] * drive[None, :]

    def _imaging_plane(self, plane_ids, files, frame_idx, single: bool) -> Any:
        planes = [{"ids": ids, "sourceFileList": cell(f), "sourceFileFrameIdx": idx}
                  for ids, f, idx in zip(plane_ids, files, frame_idx, strict=True)]
        return planes[0] if single else cell(planes)

    def _source_files(self, vv: int, planes: list[int], missing: np.ndarray) -> tuple[list, list]:
        files, idxs = [], []
        present = np.flatnonzero(~missing)
        n_files = max(1, -(-len(present) // self.p.frames_per_tiff))
        raw = self.p.raw and (self.p.raw_subvolumes is None or vv in self.p.raw_subvolumes)
        for ppp in planes:
            names = [f"/data/{self.animal}/scanimage/imaging_data/fov_{vv:02d}{ppp:03d}/fluo_batch_out/"
                     f"Image_Registration_4_{self.animal}_{self.date}_main_{k + 1:03d}.tif" for k in range(n_files)]
            idx = np.full((2, len(missing)), np.nan)
            idx[0, present] = np.arange(len(present)) // self.p.frames_per_tiff + 1
            idx[1, present] = np.arange(len(present)) % self.p.frames_per_tiff + 1
            files.append(names); idxs.append(idx)
            if raw:
                self._write_tiffs(names, len(present))
        return files, idxs

    def _write_tiffs(self, names: list[str], n_present: int) -> None:
        for k, name in enumerate(names):
            rel = name[name.index("imaging_data/"):]
            n = min(self.p.frames_per_tiff, n_present - k * self.p.frames_per_tiff)
            write_tiff(self.root / rel, tiff_pages(self.seed, rel, n, self.p.image_size))
            self.tiffs[rel] = n

    def _masks(self, plane_ids: list[np.ndarray]) -> tuple[dict, dict, list]:
        size, masks, corners, images = self.p.image_size, {}, {}, []
        for ids in plane_ids:
            for rid in ids.astype(int):
                cy, cx = self.rng.integers(3, size - 3, 2)
                yy, xx = np.mgrid[cy - 2:cy + 3, cx - 2:cx + 3]
                keep = (yy - cy) ** 2 + (xx - cx) ** 2 <= 5
                masks[rid] = np.sort(xx[keep] * size + yy[keep] + 1).astype(float)  # 1-based column-major
                corners[rid] = np.array([[cx - 2, cx + 2, cx + 2, cx - 2], [cy - 2, cy - 2, cy + 2, cy + 2]], float)
            images.append(self.rng.integers(0, 4096, (size, size, 2)).astype(np.uint16))
        return masks, corners, images

    def _subvolume_descr(self, plane_ids, masks, corners, images, trials, single: bool) -> dict:
        planes = [{"masterImage": img, "roiIds": ids,
                   "rois": struct_array([{"id": float(r), "cornersXY": corners[int(r)],
                                          "indicesWithinImage": masks[int(r)]} for r in ids])}
                  for ids, img in zip(plane_ids, images, strict=True)]
        value1 = planes[0] if single else struct_array(planes)
        return {"keyNames": cell(["roiArray", "validCaTrials"]),
                "descr": cell(["ROI masks per plane", "trials with valid Ca data"]),
                "value": cell([value1, trials.astype(float)])}

    # --- events -------------------------------------------------------------------------------
    def _events(self) -> dict[str, tuple[dict, list[EventSeriesTruth]]]:
        ids, s = self.trial_ids, self.starts
        cue = s + 3000
        hit = self.ttm[0] + self.ttm[1] > 0
        left_correct = (self.ttm[0] + self.ttm[2] + self.ttm[4]) > 0
        out = {"poleInReach": _simple(1, "pole in reach", 2, _pairs(self.pole_in, self.pole_in + 1500), np.repeat(ids, 2)),
               "touches": self.touch_series,
               "leftLicks": _simple(3, "left licks", 1, cue[hit & left_correct] + 150, ids[hit & left_correct]),
               "rightLicks": _simple(4, "right licks", 1, cue[hit & ~left_correct] + 170, ids[hit & ~left_correct]),
               "leftReward": _simple(5, "left water", 2, _pairs(cue[hit & left_correct] + 160, cue[hit & left_correct] + 200),
                                     np.repeat(ids[hit & left_correct], 2)),
               "rightReward": _simple(6, "right water", 2, _pairs(cue[hit & ~left_correct] + 180, cue[hit & ~left_correct] + 220),
                                      np.repeat(ids[hit & ~left_correct], 2)),
               "rewardCue": _simple(7, "response cue", 2, _pairs(cue, cue + 100), np.repeat(ids, 2))}
        if self.p.extra_event_series:
            out["leftPoleMotor"] = _simple(8, "pole motor", 2, _pairs(s + 200, s + 400), np.repeat(ids, 2))
        return out

    def _touches(self) -> tuple[dict, list[EventSeriesTruth]]:
        series = []
        for kind, n_max in (("protraction", 4), ("retraction", 2)):
            on, trials = [], []
            for t in self.whisker_trials:
                k = int(self.rng.integers(0, n_max + 1))
                starts = self.pole_in[int(t) - 1] + np.sort(self.rng.choice(np.arange(50, 1400, 60), k, replace=False))
                on += list(starts); trials += [t] * k
            on_arr = np.array(on, float)
            times = _pairs(on_arr, on_arr + self.rng.uniform(10, 40, len(on_arr)))
            number = np.concatenate([np.arange(1, np.sum(np.array(trials) == t) + 1) for t in self.whisker_trials]) \
                if trials else np.zeros(0)
            props = {"touchNumberWithinTrial": np.repeat(number.astype(float), 2),
                     "kappaMaxAbsOverTouch": np.repeat(self.rng.normal(0, 0.01, len(on_arr)), 2),
                     "thetaAtTouchOnset": np.repeat(self.rng.normal(10, 5, len(on_arr)), 2)}
            series.append(EventSeriesTruth(2, times, np.repeat(np.array(trials, float), 2), props))
        struct = {"id": 2.0, "idStr": cell(["protraction touches", "retraction touches"]),
                  "idStrDetailed": "whisker-pole contacts", "type": 2.0,
                  "eventTimes": cell([e.times_ms for e in series]), "eventTrials": cell([e.trials for e in series]),
                  "eventPropertiesHash": cell([_hash(list(e.properties), list(e.properties), list(e.properties.values()))
                                               for e in series])}
        return struct, series


def _pairs(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    return np.column_stack([on, off]).ravel()


def _hash(keys: list[str], descr: list[str], values: list[Any]) -> dict[str, Any]:
    return {"keyNames": cell(keys), "descr": cell(descr), "value": cell(values)}


def _simple(id_: int, name: str, type_: int, times: np.ndarray, trials: np.ndarray) -> tuple[dict, list[EventSeriesTruth]]:
    struct = {"id": float(id_), "idStr": name, "idStrDetailed": f"{name} (Solo state log)", "type": float(type_),
              "timeUnit": 1.0, "eventTimes": np.asarray(times, float), "eventTrials": np.asarray(trials, float),
              "eventPropertiesHash": np.zeros((0, 0))}
    return struct, [EventSeriesTruth(type_, np.asarray(times, float), np.asarray(trials, float))]
