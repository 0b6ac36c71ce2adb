"""Whisker variables resampled onto each imaging plane's frames (the paper's derivedDataTSA).

Frame ``j`` of a plane covers ``[frame_time[j], frame_time[j+1])`` while frame ``j+1`` is in the
same trial and recording segment, else ``[frame_time[j], frame_time[j] + 1/rate)``. Every
whisker sample (500 Hz) in that interval is reduced with ``how``: ``"mean"``, ``"max"``,
``"min"`` or ``"absmax"`` (the value of largest magnitude, sign kept, as the lab's max |dkappa|),
NaN-aware; NaN where a frame has no finite sample.

Besides the stored ``angle`` and ``curvature_change``, ``variables`` may name whisking variables
derived from ``angle`` at the whisker rate, within each trial's contiguous run of samples
(FORMATS.md §3.4; needs scipy): ``setpoint`` (angle low-passed below 6 Hz, 2nd-order
Butterworth, zero phase), ``amplitude`` and ``phase`` (modulus and argument of the Hilbert
transform of the 6-30 Hz band-passed angle). NaN samples are linearly bridged for filtering and
NaN again in the result; runs too short to filter are NaN.

>>> from sscxr.testing.stores import make_session_tree
>>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=2)
>>> out = resample_whisker(tree["whisker"].to_dataset(), tree["imaging/subvolume_01"].to_dataset(), how="absmax")
>>> out.curvature_change.dims
('whisker', 'plane', 'time')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from . import _kernels
from .errors import InvalidChoiceError
from .align import frame_rate, to_numpy

__all__ = ["HOWS", "DERIVED", "resample_whisker"]

HOWS = ("mean", "max", "min", "absmax")
DERIVED = ("setpoint", "amplitude", "phase")
BAND_HZ = (6.0, 30.0)


def _frames(frames: xr.Dataset | xr.DataArray) -> xr.DataArray:
    clock = frames["frame_time"] if isinstance(frames, xr.Dataset) else frames
    if "time" not in clock.dims:
        raise ValueError(f"frames has dims {clock.dims}; expected a subvolume Dataset with 'frame_time' "
                         "(plane, time) or a frame-time DataArray with a 'time' dim")
    return clock if "plane" in clock.dims else clock.expand_dims(plane=[0])


def _hows(how: str | Mapping[str, str], variables: Sequence[str]) -> dict[str, str]:
    hows = {v: how for v in variables} if isinstance(how, str) else {v: how.get(v, "mean") for v in variables}
    for v, h in hows.items():
        if h not in HOWS:
            name = "how" if isinstance(how, str) else f"how[{v!r}]"
            raise InvalidChoiceError(name, h, HOWS, hint="or a mapping variable -> one of them, e.g. "
                                                         "{'curvature_change': 'absmax'}")
    return hows


def _check_variables(whisker: xr.Dataset, variables: Sequence[str]) -> None:
    if not variables:
        raise ValueError("variables is empty; expected some of 'angle', 'curvature_change', "
                         f"{', '.join(map(repr, DERIVED))}")
    stored = [str(v) for v, da in whisker.data_vars.items() if "time" in da.dims]
    missing = [v for v in variables if v not in stored and v not in DERIVED]
    if missing:
        raise ValueError(f"variables {missing} are not in the whisker group; expected some of {stored} "
                         f"or the derived {list(DERIVED)}")
    if any(v in DERIVED for v in variables) and "angle" not in whisker:
        raise ValueError(f"derived variables {list(DERIVED)} need 'angle' in the whisker group")
    for v in stored:
        if v in variables and whisker[v].dims[-1] != "time":
            raise ValueError(f"whisker variable {v!r} has dims {whisker[v].dims}; expected (..., 'time')")


def _sample_segments(time: np.ndarray, trial: np.ndarray | None, rate: float) -> np.ndarray:
    filled = _kernels.fill_frame_times(time, 1.0 / rate)
    seg = _kernels.segment_ids(filled, 1.0 / rate)
    if trial is not None:
        seg = np.concatenate([[0], np.cumsum((np.diff(seg) != 0) | (trial[1:] != trial[:-1]))])
    return seg


def _frame_ranges(sorted_time: np.ndarray, clock: np.ndarray, frame_trial: np.ndarray,
                  rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(P, F) bounds ``[a, b)`` of each frame's samples in the time-sorted samples."""
    a = np.empty(clock.shape, dtype=np.int64)
    b = np.empty(clock.shape, dtype=np.int64)
    for p in range(clock.shape[0]):
        start, stop = _kernels.frame_bounds(clock[p], frame_trial, 1.0 / rate)
        a[p], b[p] = _kernels.sample_ranges(sorted_time, start, stop)
    return a, b


def _sample_rate(sorted_time: np.ndarray) -> float:
    steps = np.diff(sorted_time)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if steps.size == 0:
        raise ValueError("cannot tell the whisker sample rate: fewer than two distinct finite sample times")
    return float(1.0 / np.median(steps))


def _time_order(sample_time: np.ndarray) -> np.ndarray | None:
    """None when samples are already in time order, else the sorting permutation."""
    steps = np.diff(sample_time)
    if sample_time.size < 2 or bool(np.all(steps >= 0)) and np.isfinite(sample_time).all():
        return None
    return np.argsort(sample_time, kind="stable")


def _resample_block(values: np.ndarray, *, a: np.ndarray, b: np.ndarray, order: np.ndarray | None, how: str,
                    derived: str | None, segments: np.ndarray | None, rate: float) -> np.ndarray:
    """(W, S) samples -> (W, P, F) frames. Maps over whisker chunks."""
    values = np.asarray(values, dtype=np.float64)
    if derived is not None and segments is not None:
        values = whisking_variable(values, segments, rate, derived)
    if order is not None:
        values = values[:, order]
    out = np.empty((values.shape[0], a.shape[0], a.shape[1]))
    for p in range(a.shape[0]):
        out[:, p] = _kernels.reduce_ranges(values, a[p], b[p], how)
    return out


def whisking_variable(angle: np.ndarray, segments: np.ndarray, rate: float, what: str) -> np.ndarray:
    """``setpoint``, ``amplitude`` or ``phase`` of (W, S) angle, per run of equal ``segments``."""
    try:
        from scipy import signal
    except ImportError as exc:  # pragma: no cover - scipy is in the testing extra
        from .errors import MissingDependencyError

        raise MissingDependencyError("scipy", f"whisker {what}", "testing") from exc
    if rate <= 2 * BAND_HZ[1]:
        raise ValueError(f"whisker {what} needs a sample rate above {2 * BAND_HZ[1]:g} Hz; got {rate:.3g} Hz")
    band = signal.butter(2, BAND_HZ, btype="bandpass", fs=rate, output="sos")
    low = signal.butter(2, BAND_HZ[0], btype="lowpass", fs=rate, output="sos")
    out = np.full(angle.shape, np.nan)
    for a, b, _ in _kernels._runs(segments):
        out[:, a:b] = _whisking_run(angle[:, a:b], band, low, what, signal)
    return out


def _whisking_run(x: np.ndarray, band: np.ndarray, low: np.ndarray, what: str, signal: Any) -> np.ndarray:
    finite = np.isfinite(x)
    out = np.full(x.shape, np.nan)
    pad = 3 * (2 * max(len(band), len(low)) + 1)
    for w in range(x.shape[0]):
        if finite[w].sum() < 2 or x.shape[1] <= pad:
            continue
        pos = np.arange(x.shape[1])
        filled = np.interp(pos, pos[finite[w]], x[w, finite[w]])
        if what == "setpoint":
            out[w] = signal.sosfiltfilt(low, filled)
        else:
            analytic = signal.hilbert(signal.sosfiltfilt(band, filled))
            out[w] = np.abs(analytic) if what == "amplitude" else np.angle(analytic)
    return np.where(finite, out, np.nan)


def _lazy_or_eager(data: Any, **kw: Any) -> Any:
    if not hasattr(data, "dask"):
        return _resample_block(np.asarray(data), **kw)
    import dask.array as da

    sizes = {"p": kw["a"].shape[0], "f": kw["a"].shape[1]}
    return da.blockwise(_resample_block, "wpf", data, "ws", new_axes=sizes, concatenate=True, dtype=np.float64,
                        meta=np.empty((0, 0, 0)), **kw)


def resample_whisker(whisker: xr.Dataset, frames: xr.Dataset | xr.DataArray,
                     how: str | Mapping[str, str] = "mean",
                     variables: Sequence[str] = ("angle", "curvature_change"), *,
                     frame_rate_hz: float | None = None) -> xr.Dataset:
    """Whisker ``variables`` reduced onto every plane's frames: (``whisker``, ``plane``, ``time``).

    ``whisker``: the ``/whisker`` Dataset (``time`` and per-sample ``trial`` coords).
    ``frames``: a subvolume Dataset (its ``frame_time``, ``trial`` and ``frame_rate_hz``) or a
    frame-time DataArray. ``how``: one of :data:`HOWS`, or ``{variable: how}`` (default mean).
    Lazy when the whisker data are dask arrays (one task per whisker chunk).

    >>> from sscxr.testing.stores import make_session_tree
    >>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=2)
    >>> out = resample_whisker(tree["whisker"].to_dataset(), tree["imaging/subvolume_01"].to_dataset(),
    ...                        variables=("angle", "amplitude"))
    >>> sorted(out.data_vars)
    ['amplitude', 'angle']
    """
    clock = _frames(frames).transpose("plane", "time")
    variables = [variables] if isinstance(variables, str) else list(variables)
    _check_variables(whisker, variables)
    hows = _hows(how, variables)
    rate = frame_rate(frames, frame_rate_hz)
    frame_trial = to_numpy(clock["trial"]) if "trial" in clock.coords else np.full(clock.sizes["time"], -1)
    sample_time = to_numpy(whisker["time"]).astype(np.float64)
    sample_trial = to_numpy(whisker["trial"]) if "trial" in whisker.coords else None
    order = _time_order(sample_time)
    sorted_time = sample_time if order is None else sample_time[order]
    whisker_rate = _sample_rate(sorted_time)
    a, b = _frame_ranges(sorted_time, to_numpy(clock).astype(np.float64), frame_trial, rate)
    derived = any(v in DERIVED for v in variables)
    segments = _sample_segments(sample_time, sample_trial, whisker_rate) if derived else None
    out = {}
    for v in variables:
        source = whisker["angle" if v in DERIVED else v].transpose(..., "time")
        data = _lazy_or_eager(source.data, a=a, b=b, order=order, how=hows[v], derived=v if v in DERIVED else None,
                              segments=segments, rate=whisker_rate)
        attrs = {"units": "rad" if v == "phase" else source.attrs.get("units", ""), "how": hows[v]}
        out[v] = xr.DataArray(data, dims=(source.dims[0], "plane", "time"), attrs=attrs)
    coords = {k: c for k, c in clock.coords.items() if set(c.dims) <= {"plane", "time"}}
    coords[str(clock.name or "frame_time")] = clock
    coords.update({k: c for k, c in whisker.coords.items() if c.dims == (source.dims[0],)})
    return xr.Dataset(out, coords=coords).assign_attrs(whisker_rate_hz=whisker_rate, frame_rate_hz=rate)
