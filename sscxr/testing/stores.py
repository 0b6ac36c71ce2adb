"""In-memory store-shaped trees with known events: ``make_session_tree`` and ``make_animal_tree``.

They build, without any file, exactly what ``docs/store-layout.md`` says a converted store holds
(ssc-1 session, ssc-11 animal), so analysis code and its tests do not need the converter.
Everything is deterministic in ``seed``; the events are simple enough that oracles are easy:

* trial ``i`` starts at ``t0 + i * (trial_duration_s + iti_s)``; frames of every plane lie on one
  global grid ``t0 + m / frame_rate_hz`` (plus each plane's offset) and belong to the trial whose
  ``[start, start + trial_duration_s)`` holds them, so ``iti_s=0`` gives regular sampling;
* the pole is in reach from ``start + 1.0 (+ <0.2 s jitter)`` for 2 s; the response cue comes
  1 s after the pole leaves; every 4th trial (index 3, 7, ...) has no touch; others have one or
  two bursts of 1-3 touches 10-40 ms apart;
* dF/F is noise plus, for every 3rd cell, a decaying response to each touch.

>>> from sscxr.testing.stores import make_session_tree
>>> tree = make_session_tree(n_cells=6, n_trials=4)
>>> sorted(tree["imaging"].children)
['subvolume_01', 'subvolume_02']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

TRIAL_TYPE_CYCLE = ("HitL", "HitR", "HitL", "ErrR", "HitR", "ErrL", "NoLickL", "HitR", "", "NoLickR")
TRIAL_TYPES = ("HitL", "HitR", "ErrL", "ErrR", "NoLickL", "NoLickR")
PLANES_PER_VOLUME = 4
UM_PER_FIELD = 600.0
DAY_S = 86400.0


@dataclass
class _Session:
    """The plain-numpy truth one session (or one ssc-11 condition) is built from."""

    trial: np.ndarray
    start: np.ndarray
    trial_type: list[str]
    subvolume: np.ndarray
    has_whisker: np.ndarray
    day: np.ndarray | None = None
    events: dict[str, list] = field(default_factory=dict)


# --- trials and events --------------------------------------------------------------------------
def _outcome(tt: str) -> str:
    return {"Hit": "hit", "Err": "error", "NoL": "no_lick"}.get(tt[:3], "none")


def _side(tt: str) -> str:
    return tt[-1] if tt else ""


def _trials_dataset(s: _Session, rng: np.random.Generator) -> xr.Dataset:
    n = s.trial.size
    sides = np.array([_side(t) for t in s.trial_type])
    steps = np.where(sides == "R", 150000.0, 50000.0) + rng.integers(-2000, 2000, n)
    matrix = np.array([[t == name for t in s.trial_type] for name in TRIAL_TYPES])
    ds = xr.Dataset(
        {
            "start_time": ("trial", s.start, {"units": "s"}),
            "trial_type": ("trial", np.array(s.trial_type, dtype=str)),
            "outcome": ("trial", np.array([_outcome(t) for t in s.trial_type], dtype=str)),
            "correct_side": ("trial", sides.astype(str)),
            "trial_type_matrix": (("trial_type_name", "trial"), matrix),
            "pole_position": ("trial", steps / 10000.0, {"units": "mm"}),
            "pole_position_steps": ("trial", steps, {"units": "steps"}),
            "subvolume": ("trial", s.subvolume.astype(np.int64)),
            "has_whisker": ("trial", s.has_whisker),
        },
        coords={"trial": ("trial", s.trial), "trial_type_name": ("trial_type_name", list(TRIAL_TYPES))},
    )
    if s.day is not None:
        ds.coords["day"] = ("trial", s.day)
    return ds.assign_attrs(sscxr_written=True)


def _trial_events(rng: np.random.Generator, index: int, start: float, trial_type: str) -> list[tuple]:
    """(kind, series, start, stop, properties) rows of one trial."""
    pole_in = start + 1.0 + rng.uniform(0.0, 0.2)
    pole_out = pole_in + 2.0
    cue = pole_out + 1.0
    rows: list[tuple] = [("pole_in_reach", "poleInReach", pole_in, pole_out, {}),
                         ("response_cue", "rewardCue", cue, cue + 0.1, {})]
    if index % 4 != 3:
        rows += _touches(rng, pole_in, pole_out)
    rows += _licks_and_reward(cue, trial_type)
    return rows


def _touches(rng: np.random.Generator, pole_in: float, pole_out: float) -> list[tuple]:
    rows, t, number = [], pole_in + rng.uniform(0.15, 0.3), 1
    for _ in range(int(rng.integers(1, 3))):
        for _ in range(int(rng.integers(1, 4))):
            kind = "touch_protraction" if rng.random() < 0.6 else "touch_retraction"
            stop = t + rng.uniform(0.02, 0.04)
            sign = 1.0 if kind == "touch_protraction" else -1.0
            props = {"touchNumberWithinTrial": float(number), "kappaMaxAbsOverTouch": sign * rng.uniform(0.002, 0.01),
                     "thetaAtTouchOnset": rng.uniform(-10, 20)}
            rows.append((kind, "touches", t, stop, props))
            t, number = stop + rng.uniform(0.01, 0.04), number + 1
        t += rng.uniform(0.25, 0.4)
        if t > pole_out - 0.3:
            break
    return rows


def _licks_and_reward(cue: float, trial_type: str) -> list[tuple]:
    outcome = _outcome(trial_type)
    if outcome not in ("hit", "error"):
        return []
    side = _side(trial_type) if outcome == "hit" else {"L": "R", "R": "L"}[_side(trial_type)]
    name = "left" if side == "L" else "right"
    rows: list[tuple] = [(f"lick_{name}", f"{name}Licks", cue + dt, cue + dt, {}) for dt in (0.2, 0.35, 0.5)]
    if outcome == "hit":
        rows.append((f"reward_{name}", f"{name}Reward", cue + 0.21, cue + 0.26, {}))
    return rows


def _events_dataset(s: _Session, rng: np.random.Generator) -> xr.Dataset:
    rows: list[tuple] = []
    for i, (tid, start, tt) in enumerate(zip(s.trial, s.start, s.trial_type, strict=True)):
        rows += [(tid, i, *r) for r in _trial_events(rng, i, float(start), tt)]
    rows.sort(key=lambda r: r[4])
    props = ("touchNumberWithinTrial", "kappaMaxAbsOverTouch", "thetaAtTouchOnset")
    ds = xr.Dataset(
        {
            "kind": ("event", np.array([r[2] for r in rows], dtype=str)),
            "series": ("event", np.array([r[3] for r in rows], dtype=str)),
            "start_time": ("event", np.array([r[4] for r in rows]), {"units": "s"}),
            "stop_time": ("event", np.array([r[5] for r in rows]), {"units": "s"}),
            "trial": ("event", np.array([r[0] for r in rows], dtype=np.int64)),
            **{p: ("event", np.array([r[6].get(p, np.nan) for r in rows])) for p in props},
        }
    )
    ds["kappaMaxAbsOverTouch"].attrs["units"] = "1/mm"
    ds["thetaAtTouchOnset"].attrs["units"] = "deg"
    if s.day is not None:
        ds.coords["day"] = ("event", s.day[np.array([r[1] for r in rows], dtype=np.int64)])
    return ds.assign_attrs(sscxr_written=True)


# --- whisker ------------------------------------------------------------------------------------
def _whisker_dataset(s: _Session, events: xr.Dataset, rng: np.random.Generator, rate: float,
                     video_s: float, whiskers: Sequence[str]) -> xr.Dataset:
    times, trials, days = [], [], []
    for i in np.flatnonzero(s.has_whisker):
        t = s.start[i] + 0.1 + np.arange(int(round(video_s * rate))) / rate
        times.append(t)
        trials.append(np.full(t.size, s.trial[i]))
        days.append(np.full(t.size, s.day[i] if s.day is not None else 0))
    time = np.concatenate(times) if times else np.zeros(0)
    angle = np.stack([_angle(time, rng, w) for w in range(len(whiskers))])
    kappa = np.stack([_curvature(time, events, rng) for _ in whiskers])
    for a in (angle, kappa):
        a[:, rng.choice(time.size, size=min(time.size, 5), replace=False)] = np.nan
    ds = xr.Dataset(
        {"angle": (("whisker", "time"), angle, {"units": "deg"}),
         "curvature_change": (("whisker", "time"), kappa, {"units": "1/mm"})},
        coords={"whisker": ("whisker", list(whiskers)), "time": ("time", time, {"units": "s"}),
                "trial": ("time", np.concatenate(trials).astype(np.int64) if trials else np.zeros(0, np.int64))},
    )
    if s.day is not None:
        ds.coords["day"] = ("time", np.concatenate(days).astype(np.int64) if days else np.zeros(0, np.int64))
    return ds.assign_attrs(sscxr_written=True)


def _angle(time: np.ndarray, rng: np.random.Generator, w: int) -> np.ndarray:
    setpoint = 5.0 * w + 3.0 * np.sin(2 * np.pi * 0.3 * time)
    amplitude = 8.0 + 4.0 * np.sin(2 * np.pi * 0.5 * time + w)
    return setpoint + amplitude * np.sin(2 * np.pi * 15.0 * time) + rng.normal(0, 0.2, time.size)


def _curvature(time: np.ndarray, events: xr.Dataset, rng: np.random.Generator) -> np.ndarray:
    kappa = rng.normal(0, 2e-4, time.size)
    touch = np.isin(events["kind"].values, ("touch_protraction", "touch_retraction"))
    for a, b, k in zip(events.start_time.values[touch], events.stop_time.values[touch],
                       events.kappaMaxAbsOverTouch.values[touch], strict=True):
        kappa[(time >= a) & (time < b)] += k
    return kappa


# --- imaging ------------------------------------------------------------------------------------
def _frame_grid(s: _Session, rows: np.ndarray, rate: float, duration: float) -> tuple[np.ndarray, np.ndarray]:
    """Volume start times and trial id of every frame of the trials ``rows``."""
    t0 = float(s.start[0])
    times, trials = [], []
    for i in rows:
        m = np.arange(np.ceil((s.start[i] - t0) * rate - 1e-9), np.ceil((s.start[i] + duration - t0) * rate - 1e-9))
        times.append(t0 + m / rate)
        trials.append(np.full(m.size, s.trial[i], dtype=np.int64))
    return np.concatenate(times), np.concatenate(trials)


def _cell_table(vv: int, n_cells: int, planes: np.ndarray, rng: np.random.Generator,
                shuffle: bool) -> dict[str, np.ndarray]:
    plane_of = planes[np.arange(n_cells) * planes.size // max(n_cells, 1)]
    rank = np.array([np.sum(plane_of[:i] == plane_of[i]) for i in range(n_cells)])
    fov_block = (vv - 1) * PLANES_PER_VOLUME + plane_of
    ids = fov_block.astype(np.int64) * 1000 + 1 + rank
    order = rng.permutation(n_cells) if shuffle else np.arange(n_cells)
    xy = rng.uniform(20, 580, (n_cells, 2))
    z = ((plane_of - 1) + (vv - 1) * 3) * 15.0
    return {"cell": ids[order], "cell_plane": plane_of[order], "x": xy[order, 0], "y": xy[order, 1], "z": z[order]}


def _dff(cells: dict, frame_time: np.ndarray, planes: np.ndarray, events: xr.Dataset,
         rng: np.random.Generator) -> np.ndarray:
    n_cells, n_frames = cells["cell"].size, frame_time.shape[1]
    dff = rng.normal(0.0, 0.05, (n_cells, n_frames))
    touch = np.isin(events["kind"].values, ("touch_protraction", "touch_retraction"))
    onsets = events.start_time.values[touch]
    for c in range(0, n_cells, 3):
        ft = frame_time[int(np.flatnonzero(planes == cells["cell_plane"][c])[0])]
        for t in onsets:
            after = (ft >= t) & (ft < t + 3.0)
            dff[c, after] += 0.5 * np.exp(-(ft[after] - t) / 0.8)
    return dff


def _subvolume_dataset(s: _Session, vv: int, rows: np.ndarray, events: xr.Dataset, rng: np.random.Generator,
                       *, n_cells: int, n_planes: int, rate: float, duration: float, nan_frames: int,
                       shuffle_cells: bool, animal: str, date: str) -> xr.Dataset:
    time, frame_trial = _frame_grid(s, rows, rate, duration)
    planes = np.arange(2, 2 + n_planes, dtype=np.int64)
    period = 1.0 / rate
    offsets = (planes - 1) * period / PLANES_PER_VOLUME
    frame_time = time[None, :] + offsets[:, None]
    cells = _cell_table(vv, n_cells, planes, rng, shuffle_cells)
    dff = _dff(cells, frame_time, planes, events, rng)
    if nan_frames:
        dff[:, rng.choice(time.size, size=min(nan_frames, time.size), replace=False)] = np.nan
    ds = xr.Dataset(
        {"dff": (("cell", "time"), dff, {"units": "dF/F"})},
        coords={
            "cell": ("cell", cells["cell"], {"description": "ROI id (source)"}),
            "time": ("time", time, {"units": "s", "description": "volume start time (source 'time')"}),
            "trial": ("time", frame_trial, {"missing": -1}),
            "plane": ("plane", planes),
            "cell_plane": ("cell", cells["cell_plane"]),
            "fov": ("cell", np.array([f"fov_{vv:02d}{p:03d}" for p in cells["cell_plane"]])),
            "x_um": ("cell", cells["x"], {"units": "um"}),
            "y_um": ("cell", cells["y"], {"units": "um"}),
            "z_um": ("cell", cells["z"], {"units": "um"}),
            "frame_time": (("plane", "time"), frame_time, {"units": "s"}),
        },
    )
    _add_source_files(ds, s, rows, vv, animal, date)
    ds["ca_valid_trial"] = ("ca_valid_trial", s.trial[rows].astype(np.int64))
    if s.day is not None:
        ds.coords["day"] = ("time", s.day[np.searchsorted(s.trial, frame_trial)])
    return ds.assign_attrs(
        subvolume=vv, hash_key="", hash_index=vv + 1, frame_rate_hz=rate, volume_period_s=period,
        planes_per_volume=PLANES_PER_VOLUME, plane_offset_s=offsets.tolist(), sscxr_written=True,
        frame_time_rule="time + (plane - 1) * volume_period_s / planes_per_volume")


def _add_source_files(ds: xr.Dataset, s: _Session, rows: np.ndarray, vv: int, animal: str, date: str) -> None:
    planes, frame_trial = ds["plane"].values, ds["trial"].values
    names = [[f"imaging_data/fov_{vv:02d}{p:03d}/fluo_batch_out/Image_Registration_4_{animal}_{date}_main_"
              f"{k + 1:03d}.tif" for k in range(rows.size)] for p in planes]
    file_index = np.searchsorted(s.trial[rows], frame_trial)
    first = np.searchsorted(frame_trial, frame_trial, side="left")
    frame_index = np.arange(frame_trial.size) - first
    attrs = {"index_base": 0, "missing": -1}
    ds["source_file"] = (("plane", "file"), np.array(names, dtype=str))
    ds["source_file_index"] = (("plane", "time"), np.tile(file_index, (planes.size, 1)).astype(np.int64), attrs)
    ds["source_frame_index"] = (("plane", "time"), np.tile(frame_index, (planes.size, 1)).astype(np.int64), attrs)


def _rois_dataset(sub: xr.Dataset, image_size: int, rng: np.random.Generator) -> xr.Dataset:
    scale = UM_PER_FIELD / image_size
    cy = np.clip(np.round(sub.y_um.values / scale), 1, image_size - 2).astype(np.int64)
    cx = np.clip(np.round(sub.x_um.values / scale), 1, image_size - 2).astype(np.int64)
    dy, dx = np.array([0, -1, 1, 0, 0]), np.array([0, 0, 0, -1, 1])
    my, mx = (cy[:, None] + dy).ravel(), (cx[:, None] + dx).ravel()
    cell = np.repeat(sub.cell.values, dy.size)
    corners = np.array([(-1, -1), (-1, 1), (1, 1), (1, -1)])
    images = rng.integers(0, 200, (sub.plane.size, 2, image_size, image_size)).astype(np.uint16)
    return xr.Dataset(
        {"mask_cell": ("pixel", cell), "mask_y": ("pixel", my), "mask_x": ("pixel", mx),
         "mask_index": ("pixel", mx * image_size + my + 1, {"index_base": 1}),
         "corner_cell": ("corner", np.repeat(sub.cell.values, 4)),
         "corner_x": ("corner", (cx[:, None] + corners[:, 1]).ravel().astype(float)),
         "corner_y": ("corner", (cy[:, None] + corners[:, 0]).ravel().astype(float)),
         "master_image": (("plane", "channel", "y", "x"), images)},
        coords={"plane": sub.plane.values, "channel": ["green", "red"]},
    ).assign_attrs(sscxr_written=True)


# --- root attrs ---------------------------------------------------------------------------------
def _root_attrs(archive: str, animal: str, seed: int, **extra: object) -> dict:
    provenance = {"sources": [], "converter": "sscxr.testing.stores", "created": "2000-01-01T00:00:00Z",
                  "spec": {"factory": archive, "seed": seed}, "warnings": []}
    return {"sscxr_schema_version": "1", "archive": archive, "sscxr_status": "complete",
            "content_version": f"synthetic{seed:07d}", "provenance": provenance, "animal_id": animal, **extra}


def _session_truth(rng: np.random.Generator, trial_ids: np.ndarray, t0: float, step: float,
                   subvolume: np.ndarray, day: np.ndarray | None = None) -> _Session:
    n = trial_ids.size
    start = t0 + np.arange(n) * step if day is None else t0 + (day - 1) * DAY_S + _index_within(day) * step
    types = [TRIAL_TYPE_CYCLE[i % len(TRIAL_TYPE_CYCLE)] for i in range(n)]
    has_whisker = np.ones(n, bool)
    has_whisker[2::7] = False
    return _Session(trial_ids.astype(np.int64), start, types, subvolume, has_whisker, day)


def _index_within(day: np.ndarray) -> np.ndarray:
    return np.array([np.sum(day[:i] == day[i]) for i in range(day.size)], dtype=np.float64)


def _groups(s: _Session, rng: np.random.Generator, opts: dict) -> dict[str, xr.Dataset]:
    events = _events_dataset(s, rng)
    return {"trials": _trials_dataset(s, rng), "events": events,
            "whisker": _whisker_dataset(s, events, rng, opts["whisker_rate_hz"], opts["video_s"], opts["whiskers"])}


def _subvolumes(s: _Session, events: xr.Dataset, rng: np.random.Generator, numbers: Sequence[int],
                opts: dict) -> dict[int, xr.Dataset]:
    out = {}
    for vv in numbers:
        rows = np.flatnonzero(s.subvolume == vv)
        out[vv] = _subvolume_dataset(
            s, vv, rows, events, rng, n_cells=opts["n_cells"], n_planes=opts["n_planes"], rate=opts["frame_rate_hz"],
            duration=opts["trial_duration_s"], nan_frames=opts["nan_frames"], shuffle_cells=opts["shuffle_cells"],
            animal=opts["animal"], date=opts["date"])
    return out


def make_session_tree(
    seed: int = 0,
    n_subvolumes: int = 2,
    n_cells: int = 12,
    n_trials: int = 8,
    *,
    n_planes: int = 3,
    n_unimaged_trials: int = 1,
    frame_rate_hz: float = 7.0,
    trial_duration_s: float = 10.0,
    iti_s: float = 1.0,
    whisker_rate_hz: float = 500.0,
    video_s: float = 4.0,
    whiskers: Sequence[str] = ("C2",),
    nan_frames: int = 0,
    shuffle_cells: bool = False,
    image_size: int = 64,
    animal: str = "an197522",
    date: str = "2013_03_08",
) -> xr.DataTree:
    """A store-shaped ssc-1 session tree (``docs/store-layout.md``), in memory, numpy-backed.

    ``n_cells`` and ``n_trials`` are per subvolume: subvolume ``k`` (group ``subvolume_0k``)
    images trials ``(k-1)*n_trials ... k*n_trials - 1``; ``n_unimaged_trials`` trailing trials
    have ``subvolume == -1``. ``nan_frames`` frames of each subvolume are NaN in every cell;
    ``shuffle_cells`` interleaves planes along ``cell``. ``image_size`` is the master-image side
    (the real one is 512; small keeps the tree light).

    >>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=2)
    >>> tree["imaging/subvolume_01"].dff.dims
    ('cell', 'time')
    """
    rng = np.random.default_rng(seed)
    n_total = n_subvolumes * n_trials + n_unimaged_trials
    sub = np.full(n_total, -1, dtype=np.int64)
    sub[: n_subvolumes * n_trials] = np.repeat(np.arange(1, n_subvolumes + 1), n_trials)
    s = _session_truth(rng, np.arange(1, n_total + 1), 12.5, trial_duration_s + iti_s, sub)
    opts = dict(locals())
    groups = _groups(s, rng, opts)
    tree = {f"/{k}": v for k, v in groups.items()}
    for vv, ds in _subvolumes(s, groups["events"], rng, range(1, n_subvolumes + 1), opts).items():
        tree[f"/imaging/subvolume_{vv:02d}"] = ds
        tree[f"/imaging/subvolume_{vv:02d}/rois"] = _rois_dataset(ds, image_size, rng)
    metadata = {"animalID": animal, "dateOfExperiment": date.replace("_", ""), "species": "Mus musculus"}
    tree["/"] = xr.Dataset(attrs=_root_attrs("ssc-1", animal, seed, session_date=date.replace("_", "-"),
                                             metadata=metadata))
    return xr.DataTree.from_dict(tree)


def make_animal_tree(
    seed: int = 0,
    conditions: Sequence[str] = ("pre", "post_touch"),
    n_subvolumes: int = 2,
    n_cells: int = 12,
    n_days: int = 2,
    trials_per_day: int = 3,
    *,
    n_planes: int = 3,
    n_ablated: int = 2,
    frame_rate_hz: float = 7.0,
    trial_duration_s: float = 10.0,
    iti_s: float = 1.0,
    whisker_rate_hz: float = 500.0,
    video_s: float = 2.0,
    whiskers: Sequence[str] = ("c2",),
    animal: str = "an274424",
) -> xr.DataTree:
    """A store-shaped ssc-11 animal tree: ``/cells`` and ``/<condition>/...`` per condition.

    Each condition merges ``n_days`` days (``day`` is 1-based and counts on across conditions;
    times are offset by 86400 s and trial ids by 1000 per day, as the lab's merge does);
    on every day each subvolume images ``trials_per_day`` trials of its own. ``n_ablated`` cells
    per subvolume are ablated (kind ``touch``), a neighbour of each sits within 5 um (so it is
    ``near_ablated``); the last cell of each subvolume is missing from every condition after the
    first, so pairing conditions drops it.

    >>> tree = make_animal_tree(n_cells=6)
    >>> sorted(tree.children)
    ['cells', 'post_touch', 'pre']
    """
    rng = np.random.default_rng(seed)
    opts = dict(locals(), nan_frames=0, shuffle_cells=False, date="compound")
    tree: dict[str, xr.Dataset] = {}
    base: dict[int, xr.Dataset] = {}
    for ci, cond in enumerate(conditions):
        s = _condition_truth(rng, ci, n_days, trials_per_day, n_subvolumes, trial_duration_s + iti_s)
        groups = _groups(s, rng, opts)
        tree.update({f"/{cond}/{k}": v for k, v in groups.items()})
        for vv, ds in _subvolumes(s, groups["events"], rng, range(1, n_subvolumes + 1), opts).items():
            ds = _same_cells_as(ds, base.setdefault(vv, ds), drop_last=ci > 0)
            tree[f"/{cond}/subvolume_{vv}"] = _ssc11_extras(ds, rng)
    cells, ablations = _cells_dataset(base, tree, conditions, n_ablated, rng)
    tree["/cells"] = cells
    tree["/"] = xr.Dataset(attrs=_root_attrs("ssc-11", animal, seed, ablations=ablations,
                                             conditions=list(conditions)))
    return xr.DataTree.from_dict(tree)


def _condition_truth(rng: np.random.Generator, ci: int, n_days: int, per_day: int, n_sub: int,
                     step: float) -> _Session:
    day = np.repeat(np.arange(n_days), per_day * n_sub) + ci * n_days + 1
    within = np.tile(np.arange(per_day * n_sub), n_days)
    trial_ids = (day - 1) * 1000 + 1 + within
    sub = np.tile(np.repeat(np.arange(1, n_sub + 1), per_day), n_days)
    return _session_truth(rng, trial_ids, 40.0, step, sub, day)


def _same_cells_as(ds: xr.Dataset, base: xr.Dataset, *, drop_last: bool) -> xr.Dataset:
    """Give ``ds`` the cell table of ``base`` (same ROI ids and positions across conditions)."""
    cell_coords = ["cell", "cell_plane", "fov", "x_um", "y_um", "z_um"]
    ds = ds.assign_coords({c: base[c] for c in cell_coords})
    return ds.isel(cell=slice(0, -1)) if drop_last else ds


def _ssc11_extras(ds: xr.Dataset, rng: np.random.Generator) -> xr.Dataset:
    raw = 100.0 * (1.0 + np.nan_to_num(ds.dff.values))
    return ds.assign(
        raw_f=(("cell", "time"), raw, {"units": "a.u."}),
        feature_eventRateHz=("cell", rng.uniform(0.01, 0.5, ds.cell.size), {"units": "Hz"}),
    )


def _cells_dataset(base: dict[int, xr.Dataset], tree: dict[str, xr.Dataset], conditions: Sequence[str],
                   n_ablated: int, rng: np.random.Generator) -> tuple[xr.Dataset, list[dict]]:
    ids, sub, plane, x, y, z = [], [], [], [], [], []
    for vv, ds in base.items():
        ids.append(ds.cell.values)
        sub.append(np.full(ds.cell.size, vv))
        plane.append(ds.cell_plane.values)
        x.append(ds.x_um.values)
        y.append(ds.y_um.values)
        z.append(ds.z_um.values)
    ids_a, x_a, y_a, z_a = np.concatenate(ids), np.concatenate(x), np.concatenate(y), np.concatenate(z)
    ablated = np.zeros(ids_a.size, bool)
    offset = 0
    for chunk in ids:
        pick = offset + np.arange(0, min(2 * n_ablated, chunk.size - 1), 2)
        ablated[pick] = True
        x_a[pick + 1], y_a[pick + 1], z_a[pick + 1] = x_a[pick] + 3.0, y_a[pick] + 3.0, z_a[pick]
        offset += chunk.size
    near = _near(ablated, x_a, y_a, z_a)
    present = {f"present_{c}": ("cell", np.isin(ids_a, np.concatenate(
        [tree[f"/{c}/subvolume_{vv}"].cell.values for vv in base]))) for c in conditions}
    ds = xr.Dataset(
        {"subvolume": ("cell", np.concatenate(sub)), "plane": ("cell", np.concatenate(plane)),
         "x_um": ("cell", x_a, {"units": "um"}), "y_um": ("cell", y_a, {"units": "um"}),
         "z_um": ("cell", z_a, {"units": "um"}), "ablated_touch": ("cell", ablated),
         "ablated": ("cell", ablated.copy()), "near_ablated": ("cell", near), **present},
        coords={"cell": ("cell", ids_a)},
    ).assign_attrs(sscxr_written=True)
    _sync_positions(tree, ds)
    ablations = [{"kind": "touch", "date": "2019_01_10", "source": "manualCurationData.mat",
                  "ids": ids_a[ablated].tolist()}]
    return ds, ablations


def _near(ablated: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    if not ablated.any():
        return np.zeros(ablated.size, bool)
    lateral = np.hypot(x[:, None] - x[ablated][None], y[:, None] - y[ablated][None])
    dz = np.abs(z[:, None] - z[ablated][None])
    return ((lateral < 10.0) & (dz < 30.0)).any(axis=1) & ~ablated


def _sync_positions(tree: dict[str, xr.Dataset], cells: xr.Dataset) -> None:
    """Subvolume ``x_um``/``y_um`` follow ``/cells`` (the near-ablated neighbours were moved)."""
    for path, ds in tree.items():
        if "/subvolume_" in path:
            table = cells.sel(cell=ds.cell.values)
            tree[path] = ds.assign_coords(x_um=("cell", table.x_um.values, {"units": "um"}),
                                          y_um=("cell", table.y_um.values, {"units": "um"}))
