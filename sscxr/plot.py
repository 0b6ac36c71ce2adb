"""A few plots people ask for (needs matplotlib: ``pip install 'sscxr[plot]'``).

* :func:`plot_heatmap`: a trial tensor as a trial x time image (one cell, or the cell mean),
  trials grouped in labeled blocks by trial type;
* :func:`plot_mean_trace`: mean +- SEM over trials, one line per trial type;
* :func:`plot_trial_tensor`: both side by side (saved to ``path`` when given);
* :func:`plot_whisker_vs_dff`: a resampled whisker variable above one cell's dF/F, on that
  cell's plane clock, with the line broken wherever the recording is.

Every function returns its matplotlib ``Figure``. Titles name the session, subvolume (and
condition), signal, event and cell, from the tensor's attrs; every axis carries its unit; legends
sit outside the axes; ``n`` counts the trials that have data in the window (a trial without the
event has none). Trials whose ``trial_type`` is empty are labeled "no trial type". Nothing is
computed that the plot does not show (dask inputs are computed for the cell shown only).

>>> import matplotlib
>>> matplotlib.use("Agg")
>>> from sscxr.testing.stores import make_session_tree
>>> tensor = make_session_tree(n_cells=6, n_trials=4).sscx.trial_tensor("dff", subvolume=1, align_to="first_touch")
>>> fig = plot_mean_trace(tensor)
>>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
['HitL (n=2)', 'HitR (n=1)', 'ErrR (n=0, 1 without first_touch)']
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .align import to_numpy

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["NO_TRIAL_TYPE", "plot_heatmap", "plot_mean_trace", "plot_trial_tensor", "plot_whisker_vs_dff",
           "break_gaps"]  # fmt: skip

NO_TRIAL_TYPE = "no trial type"
"""Label of trials whose ``trial_type`` is empty (the source's trialTypeMat column is all zero)."""
GAP_PERIODS = 1.5
"""A step between frames longer than this many frame periods is a gap: lines break there."""


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - plot extra
        from .errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "plotting", "plot") from exc
    return plt


# --- labels -------------------------------------------------------------------------------------
def _units(obj: xr.DataArray | Mapping[str, Any]) -> str:
    attrs = obj.attrs if isinstance(obj, xr.DataArray) else obj
    return str(attrs.get("units") or "a.u.")


def _signal_label(da: xr.DataArray) -> str:
    return f"{da.name or 'signal'} ({_units(da)})"


def _origin(attrs: Mapping[str, Any]) -> list[str]:
    """Session, subvolume and condition of a tensor or resampled Dataset, from its attrs."""
    parts = [str(attrs["session_id"])] if attrs.get("session_id") else []
    if attrs.get("condition"):
        parts.append(str(attrs["condition"]))
    if attrs.get("subvolume") is not None:
        parts.append(f"subvolume {attrs['subvolume']}")
    return parts


def _event(tensor: xr.DataArray) -> str:
    return str(tensor.attrs.get("align_to", "event"))


def _title(tensor: xr.DataArray, label: str) -> str:
    head = ", ".join(_origin(tensor.attrs))
    what = f"{tensor.name or 'signal'} aligned to {_event(tensor)}" + (f", {label}" if label else "")
    return f"{head}\n{what}" if head else what


# --- data ---------------------------------------------------------------------------------------
def _one_cell(tensor: xr.DataArray, cell: int | None) -> tuple[xr.DataArray, str]:
    if "trial" not in tensor.dims or "time" not in tensor.dims:
        raise ValueError(f"expected a trial tensor with dims (cell, trial, time); got {tensor.dims}")
    if "cell" not in tensor.dims:
        return tensor, ""
    if cell is None:
        return tensor.mean("cell"), f"mean of {tensor.sizes['cell']} cells"
    return tensor.sel(cell=cell), f"cell {cell}"


def _groups(tensor: xr.DataArray, by: str | None) -> list[tuple[str, np.ndarray]]:
    """(label, trial mask) per value of ``by`` in order of appearance; empty values: "no trial type"."""
    if by is None or by not in tensor.coords:
        return [("all trials", np.ones(tensor.sizes["trial"], bool))]
    labels = to_numpy(tensor[by]).astype(str)
    empty = NO_TRIAL_TYPE if by == "trial_type" else f"no {by}"
    return [(name or empty, labels == name) for name in dict.fromkeys(labels)]


def _with_data(values: np.ndarray) -> np.ndarray:
    """Trials (rows) with at least one finite sample."""
    return np.isfinite(values).any(axis=-1)


def _count_label(name: str, has_data: np.ndarray, event: str) -> str:
    n, missing = int(has_data.sum()), int((~has_data).sum())
    return f"{name} (n={n})" if not missing else f"{name} (n={n}, {missing} without {event})"


def _figure(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax  # type: ignore[return-value]
    fig, ax = _pyplot().subplots(figsize=size, layout="constrained")
    return fig, ax


# --- tensor plots -------------------------------------------------------------------------------
def _label_blocks(ax: Axes, groups: list[tuple[str, np.ndarray]], has_data: np.ndarray, event: str) -> None:
    """One y tick per block of trials, at its centre, labeled with its name and count."""
    edges = np.cumsum([0, *(int(m.sum()) for _, m in groups)])
    ax.set_yticks((edges[:-1] + edges[1:]) / 2 - 0.5,
                  [_count_label(name, has_data[m], event) for name, m in groups], fontsize="small")  # fmt: skip
    for edge in edges[1:-1]:
        ax.axhline(edge - 0.5, color="w", lw=1.2)
    ax.tick_params(axis="y", length=0)


def plot_heatmap(tensor: xr.DataArray, *, cell: int | None = None, by: str | None = "trial_type",
                 ax: Axes | None = None) -> Figure:
    """Trial x time image of one ``cell`` (default: mean over cells), trials in labeled blocks by ``by``.

    Each block's tick names its ``by`` value and how many of its trials have data; grey rows
    have none (no ``align_to`` event in that trial, or the window left the recording).

    >>> from sscxr.testing.stores import make_session_tree
    >>> tensor = make_session_tree(n_cells=6, n_trials=4).sscx.trial_tensor("dff", subvolume=1, align_to="first_touch")
    >>> fig = plot_heatmap(tensor, cell=int(tensor.cell[0]))
    >>> [t.get_text() for t in fig.axes[0].get_yticklabels()][:2]
    ['HitL (n=2)', 'HitR (n=1)']
    """
    data, label = _one_cell(tensor, cell)
    data = data.transpose("trial", "time").compute()
    groups = _groups(data, by)
    order = np.concatenate([np.flatnonzero(m) for _, m in groups])
    values = data.values[order]
    fig, ax = _figure(ax, (6.5, 4.5))
    t = data.time.values
    step = float(t[1] - t[0]) if t.size > 1 else 1.0
    cmap = _pyplot().get_cmap("viridis").with_extremes(bad="0.85")
    image = ax.imshow(values, aspect="auto", interpolation="nearest", cmap=cmap,
                      extent=(t[0] - step / 2, t[-1] + step / 2, order.size - 0.5, -0.5))  # fmt: skip
    ax.axvline(0.0, color="w", lw=0.8, ls="--")
    _label_blocks(ax, [(name, m[order]) for name, m in groups], _with_data(values), _event(tensor))
    ax.set(xlabel=f"time from {_event(tensor)} (s)", ylabel=f"trials, by {by.replace('_', ' ')}" if by else "trials",
           title=_title(tensor, label))  # fmt: skip
    fig.colorbar(image, ax=ax, label=_signal_label(tensor))
    return fig


def _mean_sem(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = np.sum(np.isfinite(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
        mean = np.nanmean(values, axis=0)
        sem = np.nanstd(values, axis=0, ddof=1) / np.sqrt(n) if values.shape[0] > 1 else np.zeros_like(mean)
    return mean, sem


def plot_mean_trace(tensor: xr.DataArray, *, cell: int | None = None, by: str | None = "trial_type",
                    ax: Axes | None = None) -> Figure:
    """Mean +- SEM over trials of one ``cell`` (default: mean over cells), one line per ``by``.

    The legend (outside the axes, right) gives each line's ``n``: its trials with data in the
    window, and how many have none (no ``align_to`` event).

    >>> from sscxr.testing.stores import make_session_tree
    >>> tensor = make_session_tree(n_cells=6, n_trials=4).sscx.trial_tensor("dff", subvolume=1, align_to="first_touch")
    >>> fig = plot_mean_trace(tensor, by=None)
    >>> fig.axes[0].get_xlabel(), fig.axes[0].get_ylabel()
    ('time from first_touch (s)', 'dff (dF/F)')
    """
    data, label = _one_cell(tensor, cell)
    data = data.transpose("trial", "time").compute()
    fig, ax = _figure(ax, (7.5, 4.0))
    for name, mask in _groups(data, by):
        sub = data.values[mask]
        mean, sem = _mean_sem(sub)
        line = ax.plot(data.time.values, mean, label=_count_label(name, _with_data(sub), _event(tensor)))[0]
        ax.fill_between(data.time.values, mean - sem, mean + sem, color=line.get_color(), alpha=0.25, lw=0)
    ax.axvline(0.0, color="k", lw=0.8, ls="--")
    ax.set(xlabel=f"time from {_event(tensor)} (s)", ylabel=_signal_label(tensor), title=_title(tensor, label))
    ax.legend(fontsize="small", frameon=False, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              title=f"{by.replace('_', ' ')} (mean ± SEM)" if by else "mean ± SEM", title_fontsize="small")  # fmt: skip
    return fig


def plot_trial_tensor(tensor: xr.DataArray, *, cell: int | None = None, by: str | None = "trial_type",
                      path: str | Path | None = None) -> Figure:
    """Heatmap and mean +- SEM side by side, under one title; saved to ``path`` when given.

    >>> from sscxr.testing.stores import make_session_tree
    >>> tensor = make_session_tree(n_cells=6, n_trials=4).sscx.trial_tensor("dff", subvolume=1, align_to="first_touch")
    >>> fig = plot_trial_tensor(tensor)
    >>> fig.get_suptitle()
    'an197522_2013_03_08, subvolume 1\\ndff aligned to first_touch, mean of 6 cells'
    """
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8), layout="constrained", width_ratios=(1, 1.15))
    plot_heatmap(tensor, cell=cell, by=by, ax=left)
    plot_mean_trace(tensor, cell=cell, by=by, ax=right)
    fig.suptitle(left.get_title())
    left.set_title("trials")
    right.set_title(f"mean ± SEM per {by.replace('_', ' ')}" if by else "mean ± SEM")
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# --- whisker vs dF/F ----------------------------------------------------------------------------
def break_gaps(time: np.ndarray, *values: np.ndarray, max_step: float) -> tuple[np.ndarray, ...]:
    """``time`` and ``values`` with a NaN inserted wherever ``time`` jumps by more than
    ``max_step``, so that a line plot does not join samples across a gap.

    >>> break_gaps(np.array([0.0, 0.1, 0.2, 5.0, 5.1]), np.arange(5.0), max_step=0.15)
    (array([0. , 0.1, 0.2, nan, 5. , 5.1]), array([ 0.,  1.,  2., nan,  3.,  4.]))
    """
    time = np.asarray(time, dtype=np.float64)
    where = np.flatnonzero(np.diff(time) > max_step) + 1
    return tuple(np.insert(np.asarray(v, dtype=np.float64), where, np.nan) for v in (time, *values))


def _frame_period(resampled: xr.Dataset, clock: np.ndarray) -> float:
    rate = resampled.attrs.get("frame_rate_hz")
    if rate:
        return 1.0 / float(rate)
    steps = np.diff(clock)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    return float(np.median(steps)) if steps.size else np.inf


def plot_whisker_vs_dff(resampled: xr.Dataset, signal: xr.DataArray, cell: int, *,
                        variable: str = "curvature_change", whisker: str | None = None,
                        time: slice | None = None) -> Figure:
    """A resampled whisker ``variable`` (from ``resample_whisker``) above ``signal`` of ``cell``,
    both on the frames of the cell's plane (``cell_plane``), over ``time`` (a slice in s).

    Lines break (NaN) where consecutive frames are more than 1.5 frame periods apart: between
    trials that were not imaged back to back, and at any recording gap.

    >>> from sscxr.testing.stores import make_session_tree
    >>> session = make_session_tree(n_cells=6, n_trials=4)
    >>> frames = session.sscx.resample_whisker(1, how="absmax")
    >>> fig = plot_whisker_vs_dff(frames, session["imaging/subvolume_01"].dff, cell=2001)
    >>> [ax.get_ylabel() for ax in fig.axes]
    ['curvature_change (1/mm)', 'dff (dF/F)']
    """
    if variable not in resampled:
        raise ValueError(f"variable={variable!r} is not in the resampled Dataset; it has "
                         f"{sorted(map(str, resampled.data_vars))}")
    trace = signal.sel(cell=cell)
    plane = int(trace["cell_plane"]) if "cell_plane" in trace.coords else int(resampled.plane[0])
    wvar = resampled[variable].sel(plane=plane)
    wvar = wvar.isel(whisker=0) if whisker is None else wvar.sel(whisker=whisker)
    clock = to_numpy(resampled["frame_time"].sel(plane=plane)).astype(np.float64)
    keep = np.ones(clock.size, bool) if time is None else (
        (clock >= (time.start if time.start is not None else -np.inf))
        & (clock <= (time.stop if time.stop is not None else np.inf)))  # fmt: skip
    t, w, f = break_gaps(clock[keep], np.asarray(wvar.values)[keep], np.asarray(trace.values)[keep],
                         max_step=GAP_PERIODS * _frame_period(resampled, clock))  # fmt: skip
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 4.5), layout="constrained")
    top.plot(t, w, lw=0.8)
    name = str(wvar["whisker"].values) if "whisker" in wvar.coords else ""
    how = wvar.attrs.get("how")
    detail = [f"whisker {name}" if name else "", f"{how} per frame" if how else ""]
    top.set(ylabel=f"{variable} ({_units(wvar)})",
            title=", ".join([*_origin(resampled.attrs), f"plane {plane}", f"cell {cell}", *filter(None, detail)]))
    bottom.plot(t, f, lw=0.8, color="C1")
    bottom.set(xlabel="session time (s)", ylabel=_signal_label(signal))
    return fig
