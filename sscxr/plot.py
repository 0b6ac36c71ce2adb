"""A few plots people ask for (needs matplotlib: ``pip install 'sscxr[plot]'``).

* :func:`plot_heatmap`: a trial tensor as a trial x time image (one cell, or the cell mean),
  trials grouped by trial type;
* :func:`plot_mean_trace`: mean +- SEM over trials, one line per trial type;
* :func:`plot_trial_tensor`: both side by side (saved to ``path`` when given);
* :func:`plot_whisker_vs_dff`: a resampled whisker variable above one cell's dF/F, on that
  cell's plane clock.

All take labeled xarray objects and return matplotlib objects; nothing is computed that the
plot does not show (dask inputs are computed for the cell shown only).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .align import to_numpy

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_heatmap", "plot_mean_trace", "plot_trial_tensor", "plot_whisker_vs_dff"]


def _pyplot() -> Any:
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - plot extra
        from .errors import MissingDependencyError

        raise MissingDependencyError("matplotlib", "plotting", "plot") from exc
    return plt


def _one_cell(tensor: xr.DataArray, cell: int | None) -> tuple[xr.DataArray, str]:
    if "trial" not in tensor.dims or "time" not in tensor.dims:
        raise ValueError(f"expected a trial tensor with dims (cell, trial, time); got {tensor.dims}")
    if "cell" not in tensor.dims:
        return tensor, ""
    if cell is None:
        return tensor.mean("cell"), f"mean of {tensor.sizes['cell']} cells"
    return tensor.sel(cell=cell), f"cell {cell}"


def _groups(tensor: xr.DataArray, by: str | None) -> list[tuple[str, np.ndarray]]:
    if by is None or by not in tensor.coords:
        return [("all trials", np.ones(tensor.sizes["trial"], bool))]
    labels = to_numpy(tensor[by]).astype(str)
    return [(name or "(none)", labels == name) for name in dict.fromkeys(labels)]


def plot_heatmap(tensor: xr.DataArray, *, cell: int | None = None, by: str | None = "trial_type",
                 ax: Axes | None = None) -> Axes:
    """Trial x time image of one ``cell`` (default: mean over cells); rows grouped by ``by``."""
    data, label = _one_cell(tensor, cell)
    data = data.transpose("trial", "time").compute()
    order = np.concatenate([np.flatnonzero(m) for _, m in _groups(data, by)])
    ax = ax or _pyplot().subplots()[1]
    t = data.time.values
    image = ax.imshow(data.values[order], aspect="auto", interpolation="nearest", cmap="viridis",
                      extent=(t[0], t[-1], order.size - 0.5, -0.5))
    ax.axvline(0.0, color="w", lw=0.8, ls="--")
    ax.set(xlabel="time from event (s)", ylabel=f"trial (grouped by {by})" if by else "trial",
           title=f"{tensor.attrs.get('align_to', 'event')}-aligned {tensor.name or ''} {label}".strip())
    ax.figure.colorbar(image, ax=ax, label=tensor.attrs.get("units", ""))
    return ax


def plot_mean_trace(tensor: xr.DataArray, *, cell: int | None = None, by: str | None = "trial_type",
                    ax: Axes | None = None) -> Axes:
    """Mean +- SEM over trials of one ``cell`` (default: mean over cells), one line per ``by``."""
    data, label = _one_cell(tensor, cell)
    data = data.transpose("trial", "time").compute()
    ax = ax or _pyplot().subplots()[1]
    for name, mask in _groups(data, by):
        sub = data.values[mask]
        n = np.sum(np.isfinite(sub), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: NaN is the answer
            mean = np.nanmean(sub, axis=0)
            sem = np.nanstd(sub, axis=0, ddof=1) / np.sqrt(n) if sub.shape[0] > 1 else np.zeros_like(mean)
        line = ax.plot(data.time.values, mean, label=f"{name} (n={int(mask.sum())})")[0]
        ax.fill_between(data.time.values, mean - sem, mean + sem, color=line.get_color(), alpha=0.25, lw=0)
    ax.axvline(0.0, color="k", lw=0.8, ls="--")
    ax.set(xlabel="time from event (s)", ylabel=f"{tensor.name or ''} ({tensor.attrs.get('units', '')})",
           title=label)
    ax.legend(fontsize="small", frameon=False)
    return ax


def plot_trial_tensor(tensor: xr.DataArray, *, cell: int | None = None, by: str | None = "trial_type",
                      path: str | Path | None = None) -> Figure:
    """Heatmap and mean +- SEM side by side; saved to ``path`` when given."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    plot_heatmap(tensor, cell=cell, by=by, ax=left)
    plot_mean_trace(tensor, cell=cell, by=by, ax=right)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


def plot_whisker_vs_dff(resampled: xr.Dataset, signal: xr.DataArray, cell: int, *,
                        variable: str = "curvature_change", whisker: Any = None,
                        time: slice | None = None) -> Figure:
    """A resampled whisker ``variable`` (from ``resample_whisker``) above ``signal`` of ``cell``,
    both on the frames of the cell's plane (``cell_plane``), over ``time`` (a slice in s)."""
    if variable not in resampled:
        raise ValueError(f"variable={variable!r} is not in the resampled Dataset; it has "
                         f"{sorted(map(str, resampled.data_vars))}")
    trace = signal.sel(cell=cell)
    plane = int(trace["cell_plane"]) if "cell_plane" in trace.coords else int(resampled.plane[0])
    wvar = resampled[variable].sel(plane=plane)
    wvar = wvar.isel(whisker=0) if whisker is None else wvar.sel(whisker=whisker)
    clock = resampled["frame_time"].sel(plane=plane)
    keep = np.ones(clock.size, bool) if time is None else (
        (clock.values >= (time.start if time.start is not None else -np.inf))
        & (clock.values <= (time.stop if time.stop is not None else np.inf)))
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(10, 4), constrained_layout=True)
    top.plot(clock.values[keep], np.asarray(wvar.values)[keep], lw=0.8)
    top.set(ylabel=f"{variable} ({wvar.attrs.get('units', '')})", title=f"cell {cell}, plane {plane}")
    bottom.plot(clock.values[keep], np.asarray(trace.values)[keep], lw=0.8, color="C1")
    bottom.set(xlabel="session time (s)", ylabel=f"{signal.name or ''} ({signal.attrs.get('units', '')})")
    return fig
