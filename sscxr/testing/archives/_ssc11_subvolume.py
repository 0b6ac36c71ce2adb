"""One ssc-11 subvolume file's content: trials, frames, behaviour, whisker, calcium, cell features.

:func:`_make_subvolume` draws everything from ``[seed, 4, condition, subvolume]`` (plus the
condition's shared trial schedule), so any file's :class:`Ssc11Subvolume` can be regenerated alone.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ._ssc11_model import (DAY_MS, KERNEL_LAGS, TRIAL_AVG_FRAMES, TRIAL_TYPE_P, TRIAL_TYPES, Ssc11EventSeries,
                           Ssc11Params, Ssc11Subvolume, Ssc11Whisker, _mat_version)
from ._ssc11_plan import _corners, _file_path, _mask, _Plan


def _schedule(p: Ssc11Params, seed: int, ci: int) -> dict[str, np.ndarray]:
    """Every trial of every day of condition ``ci``: subvolumes imaged one block after another."""
    rng = np.random.default_rng([seed, 3, ci])
    period, per_block = 1000.0 / p.volume_rate_hz, p.trials_per_day + 1
    parts = []
    for d in range(p.n_days):
        n = p.n_subvolumes * per_block
        n_frames = np.maximum(p.frames_per_trial + rng.integers(-2, 3, n), 5)
        length = n_frames * period + 100.0
        gaps = length + rng.uniform(2e3, 4e3, n)  # trial + inter-trial interval
        start = d * DAY_MS + 3.6e7 + rng.uniform(0, 3.6e6) + np.r_[0, np.cumsum(gaps)[:-1]]
        kept = np.ones(n, bool)
        dropped = rng.integers(1, max(per_block - 1, 2), p.n_subvolumes)  # never a block's first or last
        kept[np.arange(p.n_subvolumes) * per_block + dropped] = False
        parts.append((1000 * d + np.arange(1, n + 1), np.round(start, 3), n_frames, length,
                      np.repeat(np.arange(p.n_subvolumes), per_block), kept))
    names = ("ids", "start", "n_frames", "length", "subvolume", "kept")
    return {k: np.concatenate(col) for k, col in zip(names, zip(*parts))}


def _make_subvolume(plan: _Plan, ci: int, v: int) -> Ssc11Subvolume:
    p, cond = plan.params, plan.params.conditions[ci]
    rng = np.random.default_rng([plan.seed, 4, ci, v])
    sched = _schedule(p, plan.seed, ci)
    sel = (sched["subvolume"] == v) & sched["kept"]
    trials = {k: a[sel] for k, a in sched.items()}
    frames = _frames(trials, p, rng)
    beh = _behaviour(trials, rng)
    whisker, touches, in_reach, labels = _whisker(trials, beh, p, rng)
    cells = _cells(plan, ci, v)
    ca = _calcium(cells, frames, touches, p, rng)
    features = _features(cells, ca, frames, beh["type"], p, rng)
    return _assemble(plan, ci, v, cells, trials, frames, beh, (whisker, touches, in_reach, labels), ca, features)


def _frames(trials: dict[str, np.ndarray], p: Ssc11Params, rng: np.random.Generator) -> dict[str, np.ndarray]:
    period, n = 1000.0 / p.volume_rate_hz, trials["n_frames"]
    offset = rng.uniform(10, 60, len(n))
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    nan = rng.random(n.sum()) < p.nan_fraction
    if p.nan_fraction > 0 and not nan.any():
        nan[rng.integers(n.sum())] = True
    return {"time": np.repeat(trials["start"] + offset, n) + k * period, "trial": np.repeat(trials["ids"], n),
            "offset": np.repeat(offset, n), "frame_in_trial": k + 1, "trial_pos": np.repeat(np.arange(len(n)), n),
            "nan": nan}


def _behaviour(trials: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, Any]:
    """Trial outcomes and behavESA series (pole, licks, water, cue) in ms on the merged clock."""
    t, start = trials["ids"], trials["start"]
    kind = rng.choice(6, len(t), p=TRIAL_TYPE_P)
    move_in = start + rng.uniform(400, 700, len(t))
    move_out = move_in + 1500.0
    cue = move_out + rng.uniform(450, 550, len(t))
    left, right, water = _licks(kind, t, cue, rng)
    series = {"Pole Movement": _pairs(move_in, move_out, t),
              "Left Licks": Ssc11EventSeries(1, left[0], left[1]),
              "Right Licks": Ssc11EventSeries(1, right[0], right[1]),
              "Water Delivery": _pairs(water[0], water[0] + 40.0, water[1]),
              "Response Cue": _pairs(cue, cue + 100.0, t)}
    return {"type": kind, "series": series, "in_reach": move_in + 200.0, "out_of_reach": move_out + 100.0}


def _licks(kind: np.ndarray, trials: np.ndarray, cue: np.ndarray,
           rng: np.random.Generator) -> tuple[tuple[np.ndarray, np.ndarray], ...]:  # fmt: skip
    """Left/right lick times and water onsets: hits lick the correct side, errors the other."""
    out: dict[str, list[tuple[float, float]]] = {"L": [], "R": [], "W": []}
    for k, trial, c in zip(kind.tolist(), trials.tolist(), cue.tolist()):
        if k >= 4:
            continue
        side = "LR"[k % 2] if k < 2 else "RL"[k % 2]
        times = c + rng.uniform(150, 400) + np.cumsum(rng.uniform(110, 170, rng.integers(2, 7)))
        out[side] += [(x, trial) for x in times]
        if k < 2:
            out["W"].append((times[0] + 10.0, trial))
    return tuple((np.array([x for x, _ in out[s]]), np.array([y for _, y in out[s]], dtype=np.int64))
                 for s in "LRW")


def _pairs(on: np.ndarray, off: np.ndarray, trials: np.ndarray) -> Ssc11EventSeries:
    return Ssc11EventSeries(2, np.column_stack([on, off]).ravel(), np.repeat(np.asarray(trials, np.int64), 2))


def _whisker(trials: dict[str, np.ndarray], beh: dict[str, Any], p: Ssc11Params, rng: np.random.Generator) -> tuple:
    """Angle and curvature change at ``whisker_rate_hz`` in trials with video, plus classified touches."""
    valid = rng.random(len(trials["ids"])) > 0.1
    if len(valid) >= 4:
        valid[rng.integers(len(valid))] = False
    per, dt = int(round(p.whisker_s * p.whisker_rate_hz)), 1000.0 / p.whisker_rate_hz
    nv, t0 = int(valid.sum()), trials["start"][valid] + 100.0
    time = np.repeat(t0, per) + np.tile(np.arange(per) * dt, nv)
    trial = np.repeat(trials["ids"][valid], per)
    rel = time - np.repeat(t0, per)
    shape = (len(p.whiskers), len(time))
    phase = rng.uniform(0, 2 * np.pi, (3, len(p.whiskers), nv)).repeat(per, axis=2)
    angle = (-5 + 8 * np.sin(2 * np.pi * rel / 3000 + phase[0])
             + 6 * (1 + np.sin(2 * np.pi * rel / 1700 + phase[1])) * np.sin(2 * np.pi * 15 * rel / 1000 + phase[2])
             + rng.normal(0, 0.3, shape))
    kappa = rng.normal(0, 5e-4, shape)
    missing = rng.random(len(time)) < 0.005
    angle[:, missing], kappa[:, missing] = np.nan, np.nan
    labels = np.zeros(shape, np.int8)
    touches = {}
    for w, tag in enumerate(p.whiskers):
        touches.update(_touches(tag, time, angle[w], kappa[w], labels[w], beh, trials, valid, rng))
    reach = _pairs(beh["in_reach"][valid], beh["out_of_reach"][valid], trials["ids"][valid])
    whisker = Ssc11Whisker(list(p.whiskers), time, trial, angle, kappa, trials["ids"][valid])
    return whisker, touches, reach, labels


def _touches(tag: str, time: np.ndarray, angle: np.ndarray, kappa: np.ndarray, labels: np.ndarray,
             beh: dict[str, Any], trials: dict[str, np.ndarray], valid: np.ndarray,
             rng: np.random.Generator) -> dict[str, Ssc11EventSeries]:  # fmt: skip
    """Touches while the pole is in reach; Δκ is set during each touch (protraction < 0 < retraction)."""
    rows: dict[bool, list[tuple[float, float, int, float, float, int]]] = {True: [], False: []}
    for i in np.flatnonzero(valid):
        onsets = beh["in_reach"][i] + np.cumsum(rng.uniform(100, 300, rng.integers(0, 4)))
        onsets = onsets[onsets < beh["out_of_reach"][i] - 100]
        for number, on in enumerate(onsets, start=1):
            off, pro = on + rng.uniform(15, 80), bool(rng.random() < 0.5)
            a, b = np.searchsorted(time, [on, off])
            kappa[a:b] += (-1 if pro else 1) * rng.uniform(0.002, 0.02) + rng.normal(0, 5e-4, b - a)
            if np.isnan(kappa[a:b]).all():
                continue
            labels[a:b] = 1 if pro else 2
            peak = kappa[a:b][np.nanargmax(np.abs(kappa[a:b]))]
            rows[pro].append((on, off, int(trials["ids"][i]), peak, angle[a], number))
    return {f"{name} contacts for {tag.upper()}": _touch_series(rows[pro]) for name, pro in
            (("Protraction", True), ("Retraction", False))}


def _touch_series(rows: list[tuple[float, float, int, float, float, int]]) -> Ssc11EventSeries:
    a = np.array(rows, dtype=float).reshape(-1, 6)
    props = {"kappaMaxAbsOverTouch": a[:, 3], "thetaAtTouchOnset": a[:, 4], "touchNumberWithinTrial": a[:, 5]}
    series = _pairs(a[:, 0], a[:, 1], a[:, 2].astype(np.int64))
    series.properties = {k: np.repeat(x, 2) for k, x in props.items()}  # stored once per on and off entry
    return series


def _cells(plan: _Plan, ci: int, v: int) -> dict[str, np.ndarray]:
    lay, cond = plan.layouts[v], plan.params.conditions[ci]
    keep = plan.present[cond][v]
    dead_ids = np.concatenate([a.ids for a in plan.ablations[:ci]] or [np.zeros(0, np.int64)])
    cells = {k: getattr(lay, k)[keep] for k in ("ids", "plane", "center", "tuning", "protraction", "rate_hz",
                                                 "f0", "tau_ms", "noise")}
    cells["dead"] = np.isin(cells["ids"], dead_ids)
    return cells


def _calcium(cells: dict[str, np.ndarray], frames: dict[str, np.ndarray], touches: dict[str, Ssc11EventSeries],
             p: Ssc11Params, rng: np.random.Generator) -> dict[str, Any]:  # fmt: skip
    """ΔF/F = decaying transients at Poisson (and touch-locked) events + noise; raw F = F0 (1 + ΔF/F)."""
    time, nan = frames["time"], frames["nan"]
    n_cells, n_frames = len(cells["ids"]), len(time)
    cell, frame = _event_frames(cells, frames, touches, p, rng)
    blank_cell, blank_frames = _blank(n_cells, frames, rng)
    keep = ~nan[frame] & ~((cell == blank_cell) & blank_frames[frame])
    cell, frame = cell[keep], frame[keep]
    amp = rng.lognormal(np.log(0.5), 0.4, cell.size)
    y = _transients(cell, frame, amp, cells["tau_ms"] * p.volume_rate_hz / 1000.0, n_frames)
    for rows in np.array_split(np.arange(n_frames), max(1, n_frames // 2000)):  # noise in blocks: small temporaries
        y[rows] += rng.standard_normal((len(rows), n_cells)) * cells["noise"]
    y[nan] = np.nan
    if blank_cell >= 0:
        y[blank_frames, blank_cell] = np.nan
    dff = y.T  # cells x frames, Fortran-ordered
    raw = (cells["f0"] * (1.0 + y)).T
    return {"dff": dff, "raw": raw, "events": _event_table(cells, cell, frame, amp, frames, rng)}


def _event_frames(cells: dict[str, np.ndarray], frames: dict[str, np.ndarray], touches: dict[str, Ssc11EventSeries],
                  p: Ssc11Params, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(cell row, frame) of every event, sorted, unique: Poisson events plus touch-locked ones in touch cells."""
    time, n_frames = frames["time"], len(frames["time"])
    rate = np.where(cells["dead"], 0.0, cells["rate_hz"])
    cell = np.repeat(np.arange(len(rate)), rng.poisson(rate * n_frames / p.volume_rate_hz))
    frame = rng.integers(0, n_frames, cell.size)
    onsets = np.concatenate([s.times_ms[0::2] for s in touches.values()] or [np.zeros(0)])
    touch_cells = np.flatnonzero((cells["tuning"] == 1) & ~cells["dead"])
    hit = rng.random((len(touch_cells), len(onsets))) < 0.5
    cell = np.r_[cell, np.repeat(touch_cells, hit.sum(axis=1))]
    frame = np.r_[frame, np.minimum(np.searchsorted(time, onsets)[np.nonzero(hit)[1]], n_frames - 1)]
    key = np.sort(cell.astype(np.int64) * n_frames + frame)
    key = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    return key // max(n_frames, 1), key % max(n_frames, 1)


def _transients(cell: np.ndarray, frame: np.ndarray, amp: np.ndarray, tau_frames: np.ndarray,
                n_frames: int) -> np.ndarray:  # fmt: skip
    """Exponential decays counted in frames, as a (frames, cells) C-ordered array.

    Its transpose (cells x frames, Fortran-ordered) is what MATLAB stores column-major, so both
    writers copy it without transposing 0.5 GB in the full preset.
    """
    y = np.zeros((n_frames, len(tau_frames)))
    y[frame, cell] = amp
    a = np.exp(-1.0 / tau_frames)
    for t in range(1, n_frames):
        y[t] += a * y[t - 1]
    return y


def _blank(n_cells: int, frames: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """One cell blanked (NaN) over one trial, as the lab's ``blankTrials`` leaves it: (row or -1, frame mask)."""
    n_trials = frames["trial_pos"].max(initial=-1) + 1
    if n_cells < 2 or n_trials < 2:
        return -1, np.zeros(len(frames["time"]), bool)
    return int(rng.integers(n_cells)), frames["trial_pos"] == rng.integers(n_trials)


def _event_table(cells: dict[str, np.ndarray], cell: np.ndarray, frame: np.ndarray, amp: np.ndarray,
                 frames: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:  # fmt: skip
    peak = frames["time"][frame]
    rise = rng.uniform(50, 150, cell.size)
    tau = cells["tau_ms"][cell]
    return {"roi_id": cells["ids"][cell], "event_time": peak - rise, "peak_time": peak, "end_time": peak + 3 * tau,
            "peak_value": amp, "decay_time_constant": tau, "rise_time_constant": rise,
            "trial": frames["trial"][frame]}


def _features(cells: dict[str, np.ndarray], ca: dict[str, Any], frames: dict[str, np.ndarray], kind: np.ndarray,
              p: Ssc11Params, rng: np.random.Generator) -> dict[str, np.ndarray]:  # fmt: skip
    """The cellFeatures hash: GLM scores (touch/whisking cells score high, dead cells ~0), rates, trial averages."""
    n, alive = len(cells["ids"]), ~cells["dead"]
    touch = np.where((cells["tuning"] == 1) & alive, rng.uniform(0.3, 0.8, n), rng.uniform(0, 0.15, n) * alive)
    whisk = np.where((cells["tuning"] == 2) & alive, rng.uniform(0.2, 0.6, n), rng.uniform(0, 0.15, n) * alive)
    lag = np.linspace(1.0, 0.2, KERNEL_LAGS)[:, None]
    kernel = np.where(cells["protraction"], lag, lag[::-1]) * touch + rng.normal(0, 0.02, (KERNEL_LAGS, n))
    valid_s = max((~frames["nan"]).sum(), 1) / p.volume_rate_hz
    rate = np.bincount(np.searchsorted(cells["ids"], ca["events"]["roi_id"]), minlength=n) / valid_s
    base, w = "eventBasedDff_k16t14_", p.whiskers[0].lower()
    return {f"{base}MeanWhiskerAmplitudeGLMScore": whisk,
            f"{base}MeanWhiskerAmplitudeGLMShuffleScore": rng.uniform(0, 0.05, n),
            f"{base}{w}AbsMaxKappaZeroNotouchGLMScore": touch,
            f"{base}{w}AbsMaxKappaZeroNotouchGLMShuffleScore": rng.uniform(0, 0.05, n),
            f"{base}{w}AbsMaxKappaZeroNotouchGLMStimKernelWeight": kernel,
            "eventRateHz": rate,
            "dffBased_HitLTrialAvg": _trial_average(ca["dff"], frames, kind == 0),
            "dffBased_HitRTrialAvg": _trial_average(ca["dff"], frames, kind == 1)}


def _trial_average(dff: np.ndarray, frames: dict[str, np.ndarray], chosen: np.ndarray) -> np.ndarray:
    """Mean ΔF/F over the chosen trials' first 70 frames: 70 x cells (NaN where no trial has data)."""
    starts = np.flatnonzero(frames["frame_in_trial"] == 1)[chosen]
    idx = starts[:, None] + np.arange(TRIAL_AVG_FRAMES)[None, :]
    ok = (idx < dff.shape[1]) & (frames["trial_pos"][np.minimum(idx, dff.shape[1] - 1)] ==
                                 frames["trial_pos"][starts][:, None])
    stack = np.where(ok[None], dff[:, np.minimum(idx, dff.shape[1] - 1)], np.nan)  # cells x trials x 70
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=1).T if len(starts) else np.full((TRIAL_AVG_FRAMES, dff.shape[0]), np.nan)


def _derived(frames: dict[str, np.ndarray], whisker: Ssc11Whisker, labels: np.ndarray,
             p: Ssc11Params) -> dict[int, np.ndarray]:  # fmt: skip
    """Whisker variables of the first whisker resampled onto the imaging frames (one frame = one bin)."""
    lo = np.searchsorted(whisker.time_ms, frames["time"])
    hi = np.searchsorted(whisker.time_ms, frames["time"] + 1000.0 / p.volume_rate_hz)
    angle, kappa = whisker.angle[0], np.abs(whisker.curvature_change[0])
    total = _bin_reduce(np.add, np.nan_to_num(angle), lo, hi)
    count = _bin_reduce(np.add, (~np.isnan(angle)).astype(float), lo, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        setpoint = total / count
    amplitude = (_bin_reduce(np.fmax, angle, lo, hi) - _bin_reduce(np.fmin, angle, lo, hi)) / 2
    return {10000: setpoint, 10010: amplitude,
            20112: _bin_reduce(np.fmax, np.where(labels[0] == 1, kappa, 0.0), lo, hi),
            20113: _bin_reduce(np.fmax, np.where(labels[0] == 2, kappa, 0.0), lo, hi)}


def _bin_reduce(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``ufunc`` over ``values[lo:hi]`` per bin in one ``reduceat``; NaN for empty bins."""
    ext = np.append(values.astype(float), np.nan)
    bounds = np.empty(2 * len(lo), np.intp)
    bounds[0::2], bounds[1::2] = lo, hi
    out = ufunc.reduceat(ext, bounds)[0::2] if len(lo) else np.zeros(0)
    out[hi <= lo] = np.nan
    return out


def _assemble(plan: _Plan, ci: int, v: int, cells: dict[str, np.ndarray], trials: dict[str, np.ndarray],
              frames: dict[str, np.ndarray], beh: dict[str, Any], whisk: tuple, ca: dict[str, Any],
              features: dict[str, np.ndarray]) -> Ssc11Subvolume:  # fmt: skip
    p, cond = plan.params, plan.params.conditions[ci]
    whisker, touches, in_reach, labels = whisk
    masks = {int(r): _mask(c, p.image_size, p.roi_radius_px) for r, c in zip(cells["ids"], cells["center"])}
    planes = [j + 2 for j in range(p.n_planes)]
    ttm = np.zeros((6, len(trials["ids"])))
    ttm[beh["type"], np.arange(len(trials["ids"]))] = 1.0
    files, ffi = _file_lists(plan, cond, v, trials, frames)
    return Ssc11Subvolume(
        cond, v + 1, _file_path(plan, cond, v), _mat_version(p, ci, v), cells["ids"], cells["plane"], planes,
        [f"fov_{v + 1:02d}{pp:03d}" for pp in planes], {r: m[0] for r, m in masks.items()},
        {r: m[1] for r, m in masks.items()},
        {int(r): _corners(c, p.roi_radius_px) for r, c in zip(cells["ids"], cells["center"])},
        plan.layouts[v].images, ca["raw"], ca["dff"], frames["time"], frames["trial"],
        (frames["trial"] - 1) // 1000 + 1, frames["offset"], frames["nan"], files, ffi, trials["ids"],
        trials["start"], trials["start"] + trials["length"], ttm, [TRIAL_TYPES[k] for k in beh["type"]], features,
        ca["events"], beh["series"], whisker, touches, in_reach,
        _derived(frames, whisker, labels, p) if p.derived else None, cells["ids"][cells["dead"]])


def _file_lists(plan: _Plan, cond: str, v: int, trials: dict[str, np.ndarray],
                frames: dict[str, np.ndarray]) -> tuple[list[list[str]], list[np.ndarray]]:  # fmt: skip
    """Per plane: one registered TIFF per trial, and [file; frame] (1-based, NaN when missing) per frame."""
    a = plan.animal
    day = (trials["ids"] - 1) // 1000
    files, idx = [], []
    for j in range(plan.params.n_planes):
        fov = f"fov_{v + 1:02d}{j + 2:03d}"
        files.append([f"{a}/{plan.dates[cond][d]}/scanimage/{fov}/fluo_batch_out/Image_Registration_4_{a}_"
                      f"{plan.dates[cond][d]}_main_{t - 1000 * d:03d}.tif" for d, t in zip(day, trials["ids"])])
        ffi = np.vstack([frames["trial_pos"] + 1.0, frames["frame_in_trial"].astype(float)])
        ffi[:, frames["nan"]] = np.nan
        idx.append(ffi)
    return files, idx
