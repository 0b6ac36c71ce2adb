"""Private numpy-only kernels behind :mod:`sscxr.align` and :mod:`sscxr.resample`.

Nothing here knows xarray, dask or the store: plain arrays in, plain arrays out. The public
functions check their inputs, call these, and re-label the result; dask maps the ``gather_*``
and ``reduce_*`` kernels over chunks.

Conventions: a frame index of ``-1`` means "no frame"; frame times are sorted per plane
(NaN allowed for frames whose time is unknown).
"""

from __future__ import annotations

import numpy as np

GAP_FACTOR = 1.5
"""A step between frames longer than this many frame periods is a recording gap."""

_EPS = 1e-9


def window_offsets(window: tuple[float, float], rate: float) -> np.ndarray:
    """Frame offsets ``k`` with ``window[0] <= k / rate <= window[1]`` (a tolerance of 1e-9 frame)."""
    k0 = int(np.ceil(window[0] * rate - _EPS))
    k1 = int(np.floor(window[1] * rate + _EPS))
    return np.arange(k0, k1 + 1, dtype=np.int64)


def fill_frame_times(frame_time: np.ndarray, period: float) -> np.ndarray:
    """Frame times with NaN replaced by linear interpolation over the frame index.

    Leading / trailing NaN are extrapolated one ``period`` per frame. Used only to search and
    to find gaps; the frames themselves stay invalid.
    """
    ft = np.asarray(frame_time, dtype=np.float64)
    finite = np.isfinite(ft)
    if finite.all() or not finite.any():
        return ft.copy() if finite.all() else np.full_like(ft, np.inf)
    pos = np.arange(ft.size, dtype=np.float64)
    fpos, fval = pos[finite], ft[finite]
    out = np.interp(pos, fpos, fval)
    out[pos < fpos[0]] = fval[0] - (fpos[0] - pos[pos < fpos[0]]) * period
    out[pos > fpos[-1]] = fval[-1] + (pos[pos > fpos[-1]] - fpos[-1]) * period
    return out


def segment_ids(filled_time: np.ndarray, period: float) -> np.ndarray:
    """Recording segment number of each frame: a new one starts after every gap."""
    steps = np.diff(filled_time)
    breaks = steps > GAP_FACTOR * period
    return np.concatenate([[0], np.cumsum(breaks)]).astype(np.int64)


def window_indices(
    frame_time: np.ndarray,
    frame_trial: np.ndarray,
    event_time: np.ndarray,
    event_trial: np.ndarray | None,
    offsets: np.ndarray,
    period: float,
    within_trial: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Frame index of every (plane, event, offset) and the lag of each event frame.

    ``frame_time`` is (P, N), ``frame_trial`` (N,), ``event_time`` (E,), ``event_trial`` (E,)
    or None (where None or negative, the trial of the event's offset-0 frame is used).
    Returns ``index`` (P, E, K), int64,
    ``-1`` where the sample leaves the data, its recording segment or (``within_trial``) the
    event's trial, and ``lag`` (P, E): time of the event frame minus the event time (NaN when
    the event is not covered by a frame less than 1.5 periods later).
    """
    n_planes, n_frames = frame_time.shape
    index = np.full((n_planes, event_time.size, offsets.size), -1, dtype=np.int64)
    lag = np.full((n_planes, event_time.size), np.nan)
    for p in range(n_planes):
        index[p], lag[p] = _plane_window(frame_time[p], frame_trial, event_time, event_trial,
                                         offsets, period, within_trial)
    return index, lag


def _plane_window(ft, frame_trial, event_time, event_trial, offsets, period, within_trial):
    filled = fill_frame_times(ft, period)
    seg = segment_ids(filled, period)
    n = ft.size
    safe_events = np.where(np.isfinite(event_time), event_time, np.inf)
    i0 = np.searchsorted(filled, safe_events, side="left")
    i0c = np.minimum(i0, n - 1)
    lag = filled[i0c] - event_time
    covered = (i0 < n) & np.isfinite(event_time) & (lag < GAP_FACTOR * period)
    j = i0[:, None] + offsets[None, :]
    jc = np.clip(j, 0, n - 1)
    ok = covered[:, None] & (j >= 0) & (j < n) & np.isfinite(ft[jc]) & (seg[jc] == seg[i0c][:, None])
    if within_trial:
        trial = frame_trial[i0c] if event_trial is None else np.where(event_trial >= 0, event_trial, frame_trial[i0c])
        ok &= (frame_trial[jc] == trial[:, None]) & (frame_trial[jc] >= 0)
    return np.where(ok, j, -1), np.where(covered, lag, np.nan)


def gather_windows(values: np.ndarray, row_plane: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``out[r, e, k] = values[r, index[row_plane[r], e, k]]``, NaN where the index is -1.

    ``values`` is (R, N), ``row_plane`` (R,) the plane row of each value row, ``index``
    (P, E, K). Rows are processed in runs of equal plane so each run is one ``np.take`` into
    a slab of the preallocated output: peak memory is the output plus a few index arrays.
    """
    n_rows = values.shape[0]
    _, n_events, n_off = index.shape
    dtype = values.dtype if values.dtype.kind == "f" else np.dtype(np.float64)
    out = np.empty((n_rows, n_events * n_off), dtype=dtype)
    flat = index.reshape(index.shape[0], -1)
    safe = np.maximum(flat, 0)
    for start, stop, plane in _runs(row_plane):
        src = values[start:stop]
        if src.dtype != dtype:
            src = src.astype(dtype)
        np.take(src, safe[plane], axis=1, out=out[start:stop], mode="clip")
        missing = np.flatnonzero(flat[plane] < 0)
        if missing.size:
            out[start:stop, missing] = np.nan
    return out.reshape(n_rows, n_events, n_off)


def _runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(start, stop, label) of each run of equal consecutive labels."""
    if labels.size == 0:
        return []
    edges = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [labels.size]])
    return [(int(a), int(b), int(labels[a])) for a, b in zip(starts, stops, strict=True)]


# --- resampling onto frames ---------------------------------------------------------------------
def frame_bounds(frame_time: np.ndarray, frame_trial: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and stop of the interval each frame covers.

    Frame ``j`` covers ``[t[j], t[j+1])`` when frame ``j+1`` is in the same trial and recording
    segment, else ``[t[j], t[j] + period)``, never past the next frame's start (intervals do not
    overlap). Frames with NaN time cover nothing (NaN bounds).
    """
    ft = np.asarray(frame_time, dtype=np.float64)
    nxt = np.concatenate([ft[1:], [np.nan]])
    trial_next = np.concatenate([frame_trial[1:], [-2]])
    step = nxt - ft
    same = (trial_next == frame_trial) & np.isfinite(step) & (step > 0) & (step <= GAP_FACTOR * period)
    stop = np.where(same, nxt, ft + period)
    following = np.minimum.accumulate(np.where(np.isfinite(nxt), nxt, np.inf)[::-1])[::-1]
    return ft, np.minimum(stop, following)


def sample_ranges(sorted_time: np.ndarray, start: np.ndarray, stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[a, b)``: the samples (of time-sorted ``sorted_time``) inside each frame's ``[start, stop)``.

    Frames with NaN bounds get empty ranges. Searching 3000 frame bounds in 1M sorted samples is
    far cheaper than searching every sample among the frames.
    """
    ok = np.isfinite(start) & np.isfinite(stop)
    a = np.searchsorted(sorted_time, np.where(ok, start, 0.0), side="left")
    b = np.searchsorted(sorted_time, np.where(ok, stop, 0.0), side="left")
    return np.where(ok, a, 0), np.where(ok, np.maximum(a, b), 0)


def reduce_ranges(values: np.ndarray, a: np.ndarray, b: np.ndarray, how: str) -> np.ndarray:
    """Reduce samples (W, S) over ranges ``[a[j], b[j])`` (sorted, non-overlapping): (W, F).

    NaN where a range holds no finite sample. ``how`` is ``"mean"``, ``"max"``, ``"min"`` or
    ``"absmax"`` (the value of largest magnitude, sign kept). One ``ufunc.reduceat`` pass over
    the interleaved bounds ``a0, b0, a1, b1, ...`` (even results are the frames).
    """
    out = np.full((values.shape[0], a.size), np.nan)
    full = np.flatnonzero(b > a)
    if full.size == 0:
        return out
    bounds = np.empty(2 * full.size, dtype=np.int64)
    bounds[0::2], bounds[1::2] = a[full], b[full]
    if bounds[-1] >= values.shape[1]:  # the last range runs to the end of the array
        bounds = bounds[:-1]
    out[:, full] = _reduceat(np.asarray(values, dtype=np.float64), bounds, how)[:, 0::2]
    return out


def _reduceat(v: np.ndarray, starts: np.ndarray, how: str) -> np.ndarray:
    if how == "mean":
        finite = np.isfinite(v)
        total = np.add.reduceat(np.where(finite, v, 0.0), starts, axis=1)
        count = np.add.reduceat(finite.astype(np.int64), starts, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)
    if how == "max":
        return np.fmax.reduceat(v, starts, axis=1)
    if how == "min":
        return np.fmin.reduceat(v, starts, axis=1)
    if how == "absmax":
        hi = np.fmax.reduceat(v, starts, axis=1)
        lo = np.fmin.reduceat(v, starts, axis=1)
        return np.where(-lo > hi, lo, hi)
    raise ValueError(f"how={how!r}: expected 'mean', 'max', 'min' or 'absmax'")
