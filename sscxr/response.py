"""Event responses: per cell and trial, the mean of a signal after an event minus the mean before.

``response[cell, trial] = mean(signal in response window) - mean(signal in baseline window)``,
windows in seconds from the trial's first ``align_to`` event. The frames are those of
:func:`sscxr.align.trial_tensor` (same event lookup, same rule: each cell on its own plane's
``frame_time``; offset 0 is the first frame at or after the event; a frame ``k`` frames later
is at ``k / frame_rate`` s; frames across a recording gap, outside the recording or (with
``within_trial``, the default) in another trial do not exist). Windows are half-open,
``start <= k / rate < stop``, so the default baseline ``(-1, 0)`` and response ``(0, 1)`` do not
share the event frame. NaN samples inside a window are skipped (as ``.mean()`` does);
``n_baseline``/``n_response`` count the window's frames that exist, and ``valid`` is True where
both are > 0. A trial without the event, or not imaged by the cell's subvolume, has no frames:
NaN, counts 0, ``valid`` False.

On a dask-backed tree the result is lazy and building it reads nothing: the event lookup is one
task per tree node, the frame indices one task per subvolume, and each output variable one task
per cell block of the signal (each reads that block once, all frames). The only exception is an
``align_to`` that names an event ``kind`` rather than one of :data:`sscxr.align.EVENT_ALIASES`:
checking that it exists reads the ``kind`` column once.

>>> from sscxr.testing.stores import make_session_tree
>>> tree = make_session_tree(n_subvolumes=2, n_cells=4, n_trials=4)
>>> r = event_response(tree, "dff", align_to="first_touch", baseline=(-1.0, 0.0), response=(0.0, 1.0))
>>> r.response.dims, r.sizes["cell"], r.subvolume.values.tolist()
(('cell', 'trial'), 8, [1, 1, 1, 1, 2, 2, 2, 2])
>>> bool(r.valid.sel(trial=4).any())      # trial 4 has no touch
False
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Hashable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from . import _kernels
from . import align as _align
from ._types import AlignTo, Conditions, Subvolumes, Window

__all__ = ["event_response", "response_offsets"]

_EPS = 1e-9
_COUNTS = ("n_baseline", "n_response")


# --- checks -------------------------------------------------------------------------------------
def _window(name: str, window: object) -> Window:
    try:
        return _align.check_window(window)
    except ValueError as exc:
        raise ValueError(str(exc).replace("window=", f"{name}=", 1).replace("(-3.0, 5.0)", "(-1.0, 0.0)")) from None


def response_offsets(window: Window, rate: float) -> np.ndarray:
    """Frame offsets ``k`` with ``window[0] <= k / rate < window[1]`` (half-open, 1e-9 slack).

    >>> response_offsets((-1.0, 0.0), 7.0).tolist(), response_offsets((0.0, 1.0), 7.0).tolist()
    ([-7, -6, -5, -4, -3, -2, -1], [0, 1, 2, 3, 4, 5, 6])
    """
    k0 = int(np.ceil(window[0] * rate - _EPS))
    k1 = int(np.ceil(window[1] * rate - _EPS)) - 1
    return np.arange(k0, k1 + 1, dtype=np.int64)


def _check_align_to(align_to: AlignTo, events: xr.Dataset | None) -> None:
    if not isinstance(align_to, str):
        return
    if align_to == "trial_start" or (align_to in _align.EVENT_ALIASES and events is not None):
        return
    if events is None:
        raise ValueError(f"align_to={align_to!r} needs the /events group, which this tree lacks")
    kinds = set(_align.to_numpy(events["kind"]).tolist()) if "kind" in events.variables else set()
    if align_to not in kinds:
        raise ValueError(f"align_to={align_to!r} is not a known event; expected one of "
                         f"{sorted(set(_align.EVENT_ALIASES) | {'trial_start'} | kinds)} or explicit times "
                         "(an array with one time per trial, or a DataArray indexed by 'trial')")


def _pick(found: Mapping[int, xr.DataTree], subvolume: Subvolumes, where: str) -> list[int]:
    if subvolume is None or (isinstance(subvolume, str) and subvolume == "all"):
        return list(found)
    wanted = [subvolume] if isinstance(subvolume, (int, np.integer)) else list(subvolume)
    if not wanted or any(not isinstance(n, (int, np.integer)) for n in wanted):
        raise ValueError(f"subvolume={subvolume!r}: expected 'all', a subvolume number or a list of them")
    if len(set(wanted)) != len(wanted):
        raise ValueError(f"subvolume={subvolume!r} names a subvolume twice")
    missing = [int(n) for n in wanted if int(n) not in found]
    if missing:
        raise ValueError(f"subvolume {missing} {'are' if len(missing) > 1 else 'is'} not in {where}; "
                         f"it has {list(found)}")
    return [int(n) for n in wanted]


def _conditions(tree: xr.DataTree, condition: Conditions, paired: bool) -> list[str] | None:
    animal = "cells" in tree.children
    names = [str(c) for c in tree.children if c != "cells"]
    if condition is None:
        if animal:
            raise ValueError(f"this is a ssc-11 animal tree; pass condition= one of {names}, or a list of them")
        if paired:
            raise ValueError("paired=True pairs conditions of a ssc-11 animal tree; pass condition=['pre', ...]")
        return None
    many = not isinstance(condition, str)
    conds = [str(c) for c in condition] if many else [str(condition)]
    if not conds or len(set(conds)) != len(conds):
        raise ValueError(f"condition={condition!r}: expected a condition name or a list of distinct names")
    unknown = [c for c in conds if c not in tree.children or c == "cells"]
    if unknown:
        raise ValueError(f"condition {unknown} not in this tree; it has {names}")
    if paired and (not many or len(conds) < 2 or not animal):
        raise ValueError("paired=True joins two or more conditions of a ssc-11 animal tree on ROI id; pass "
                         f"condition=[...] with at least two of {names}")
    return conds


# --- kernels (numpy in, numpy out; dask maps them) ----------------------------------------------
def _event_task(events: xr.Dataset | None, trials: xr.Dataset, align_to: AlignTo) -> np.ndarray:
    """Time of every trial's first ``align_to`` event (or the explicit times), NaN for none."""
    ids = np.asarray(trials["trial"].values, dtype=np.int64)
    if not isinstance(align_to, str):
        return np.asarray(align_to, dtype=np.float64).ravel()
    if align_to == "trial_start":
        return _align._trial_starts(trials, ids).to_numpy()
    assert events is not None
    return _align.event_times(events, align_to, trials=ids).reindex(trial=ids).to_numpy()


def _index_task(frame_time: np.ndarray, frame_trial: np.ndarray | None, times: np.ndarray, ids: np.ndarray,
                offsets: np.ndarray, period: float, within_trial: bool) -> np.ndarray:
    """(plane, trial, offset) frame indices, -1 for none; trials not in the frames get none."""
    ft = np.asarray(frame_time, dtype=np.float64)
    frame_trial = (np.asarray(frame_trial, dtype=np.int64) if frame_trial is not None
                   else np.full(ft.shape[-1], -1, dtype=np.int64))
    times = np.asarray(times, dtype=np.float64)
    seen = pd.unique(frame_trial[frame_trial >= 0])
    if seen.size:  # trial_tensor keeps only the trials of the signal's frames; here the others are empty
        times = np.where(np.isin(ids, seen), times, np.nan)
    index, _ = _kernels.window_indices(ft, frame_trial, times, ids, offsets, period, within_trial)
    return index


def _rows(cell_plane: np.ndarray | None, planes: np.ndarray, n: int) -> np.ndarray:
    if planes.size == 1:
        return np.zeros(n, dtype=np.int64)
    assert cell_plane is not None
    rows = pd.Index(planes).get_indexer(np.asarray(cell_plane).ravel())
    if (rows < 0).any():
        raise ValueError(f"cell_plane values {sorted(set(np.asarray(cell_plane)[rows < 0].tolist()))} have no "
                         f"frame_time row (frame_time planes: {planes.tolist()})")
    return rows


def _response_block(values: np.ndarray, cell_plane: np.ndarray | None, *, planes: np.ndarray, index: np.ndarray,
                    n_base: int) -> np.ndarray:
    """(cell, trial): NaN-skipping mean over the response offsets minus that over the baseline ones."""
    values = np.asarray(values)
    rows = _rows(cell_plane, planes, values.shape[0])
    windows = _kernels.gather_windows(values.reshape(values.shape[0], -1), rows, index).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN window is NaN, as documented
        base = np.nanmean(windows[..., :n_base], axis=-1)
        resp = np.nanmean(windows[..., n_base:], axis=-1)
    return resp - base


def _count_block(cell_plane: np.ndarray | None, *, n: int = 0, planes: np.ndarray, index: np.ndarray,
                 n_base: int, what: str) -> np.ndarray:
    """(cell, trial) frame counts of the baseline or response window, or ``valid`` (both > 0)."""
    rows = _rows(cell_plane, planes, n if cell_plane is None else np.asarray(cell_plane).size)
    ok = index >= 0
    base, resp = ok[..., :n_base].sum(-1), ok[..., n_base:].sum(-1)
    out = {"n_baseline": base, "n_response": resp, "valid": (base > 0) & (resp > 0)}[what]
    return out[rows]


# --- one node (a session, or one condition) -----------------------------------------------------
def _is_dask(x: Any) -> bool:
    return hasattr(getattr(x, "data", x), "dask")


def _subvolume_signal(ds: xr.Dataset, signal: str, number: int) -> xr.DataArray:
    if signal not in ds.data_vars:
        raise ValueError(f"signal={signal!r} is not a variable of subvolume {number}; it has "
                         f"{sorted(map(str, ds.data_vars))}")
    sig = ds[signal]
    if set(sig.dims) != {"cell", "time"}:
        raise ValueError(f"signal={signal!r} of subvolume {number} has dims {sig.dims}; expected ('cell', 'time')")
    return sig.transpose("cell", "time")


def _node_response(node: xr.DataTree, found: Mapping[int, xr.DataTree], numbers: list[int], signal: str,
                   align_to: AlignTo, baseline: Window, response: Window, within_trial: bool) -> xr.Dataset:
    events, trials = _align._node_ds(node, "events"), _align._node_ds(node, "trials")
    if trials is None or "trial" not in trials.indexes:
        raise ValueError(f"event_response needs the /trials group (indexed by 'trial') at {node.path!r}")
    ids = trials.indexes["trial"].to_numpy().astype(np.int64)
    subs = {n: found[n].to_dataset(inherit=False) for n in numbers}
    sigs = {n: _subvolume_signal(ds, signal, n) for n, ds in subs.items()}
    lazy = any(_is_dask(s) for s in sigs.values())
    _check_align_to(align_to, events)
    if not isinstance(align_to, str):
        align_to = _align._explicit_times(align_to, ids).data
    small_events = None if events is None else xr.Dataset(
        {n: events[n].variable for n in ("kind", "start_time", "stop_time", "trial") if n in events.variables})
    small_trials = xr.Dataset({n: trials[n].variable for n in ("start_time",) if n in trials.variables},
                              coords={"trial": ids})
    call = _delayed if lazy else _now
    times = call(_event_task, small_events, small_trials, align_to)
    parts = [_subvolume_response(sigs[n], subs[n], n, ids, times, baseline, response, within_trial, lazy)
             for n in numbers]
    out = parts[0] if len(parts) == 1 else _concat_cells(parts)
    cells = out.indexes["cell"]
    if cells.has_duplicates:
        raise ValueError(f"cell ids {sorted(set(cells[cells.duplicated()].tolist()))[:10]} occur in several "
                         f"subvolumes {numbers}; pick one subvolume")
    event_time = _as_array(times, (ids.size,), np.float64, lazy)
    meta = {n: ("trial", trials[n].data, dict(trials[n].attrs)) for n in _align.TRIAL_COORDS if n in trials.variables}
    return out.assign_coords({"event_time": ("trial", event_time, {"units": "s"}), **meta})


def _subvolume_response(sig: xr.DataArray, ds: xr.Dataset, number: int, ids: np.ndarray, times: Any,
                        baseline: Window, response: Window, within_trial: bool, lazy: bool) -> xr.Dataset:
    clock = _align._frame_clock(sig, ds["frame_time"] if "frame_time" in ds.variables else None)
    rate = _align.frame_rate(sig, ds.attrs.get("frame_rate_hz"))
    base_k, resp_k = response_offsets(baseline, rate), response_offsets(response, rate)
    for name, window, k in (("baseline", baseline, base_k), ("response", response, resp_k)):
        if k.size == 0:
            raise ValueError(f"{name}={window!r} holds no frame at {rate:.3g} Hz (subvolume {number}); widen it to "
                             f"at least one frame period ({1 / rate:.3g} s)")
    has_trial = "trial" in sig.coords and sig["trial"].dims == ("time",)
    if within_trial and not has_trial:
        raise ValueError(f"subvolume {number} has no per-frame 'trial' coordinate; pass within_trial=False")
    planes = clock.indexes["plane"].to_numpy() if "plane" in clock.indexes else np.arange(clock.sizes["plane"])
    if planes.size > 1 and "cell_plane" not in sig.coords:
        raise ValueError(f"subvolume {number} has {planes.size} frame_time rows but no 'cell_plane' coordinate "
                         "to choose each cell's clock")
    call = _delayed if lazy else _now
    index = call(_index_task, clock.transpose("plane", "time").data, sig["trial"].data if has_trial else None,
                 times, ids, np.concatenate([base_k, resp_k]), 1.0 / rate, within_trial)
    cell_plane = sig["cell_plane"].data if planes.size > 1 else None
    kw = {"planes": planes, "index": index, "n_base": base_k.size}
    data = _blocks(sig.data, cell_plane, ids.size, kw, lazy)
    coords: dict[Hashable, Any] = {k: v.variable for k, v in sig.coords.items() if v.dims == ("cell",)}
    coords.update(trial=("trial", ids), subvolume=("cell", np.full(sig.sizes["cell"], number, dtype=np.int64)),
                  valid=(("cell", "trial"), data["valid"],
                         {"description": "both windows have frames (n_baseline > 0 and n_response > 0)"}))
    units = sig.attrs.get("units")
    return xr.Dataset(
        {"response": (("cell", "trial"), data["response"],
                      {"description": "mean in the response window minus mean in the baseline window",
                       **({"units": units} if units else {})}),
         "n_baseline": (("cell", "trial"), data["n_baseline"], {"description": "frames in the baseline window"}),
         "n_response": (("cell", "trial"), data["n_response"], {"description": "frames in the response window"})},
        coords=coords)


def _now(func: Callable[..., Any], *args: Any) -> Any:
    return func(*args)


def _delayed(func: Callable[..., Any], *args: Any) -> Any:
    import dask

    return dask.delayed(func, pure=True)(*args)


def _as_array(value: Any, shape: tuple[int, ...], dtype: Any, lazy: bool) -> Any:
    if not lazy:
        return np.asarray(value, dtype=dtype)
    import dask.array as da

    return da.from_delayed(value, shape=shape, dtype=dtype)


def _blocks(values: Any, cell_plane: Any, n_trials: int, kw: dict[str, Any], lazy: bool) -> dict[str, Any]:
    """response, n_baseline, n_response, valid: numpy, or dask with one task per cell block each."""
    if not lazy:
        cp = None if cell_plane is None else np.asarray(cell_plane.compute() if _is_dask(cell_plane) else cell_plane)
        vals = np.asarray(values.compute() if _is_dask(values) else values)
        out = {"response": _response_block(vals, cp, **kw)}
        return out | {w: _count_block(cp, n=vals.shape[0], what=w, **kw) for w in (*_COUNTS, "valid")}
    import dask.array as da

    values = values if _is_dask(values) else da.from_array(values, chunks=(-1, -1))
    values = values.rechunk({1: -1})
    cells = values.chunks[0]
    # cell_plane whole, as one task's output that each block task slices (block_info), rather than
    # rechunked to the cell blocks: that rechunk alone was 2 tasks per block
    cp = None
    if cell_plane is None:  # one clock for every cell
        kw = kw | {"planes": kw["planes"][:1]}
    elif _is_dask(cell_plane) and cell_plane.chunks == (cells,):  # chunked like the signal: block by block
        out = {"response": da.blockwise(_response_block, "ce", values, "ct", cell_plane, "c", new_axes={"e": n_trials},
                                        dtype=np.float64, meta=np.empty((0, 0), np.float64), concatenate=True, **kw)}
        for what, dtype in (("n_baseline", np.int64), ("n_response", np.int64), ("valid", bool)):
            out[what] = da.blockwise(_count_block, "ce", cell_plane, "c", new_axes={"e": n_trials}, dtype=dtype,
                                     meta=np.empty((0, 0), dtype), what=what, **kw)
        return out
    elif _is_dask(cell_plane):
        cp = cell_plane.rechunk(-1).to_delayed().ravel()[0]
    else:  # in memory already (a small coordinate, loaded at open): a few kB in each task
        cp = np.asarray(cell_plane)
    out = {"response": da.map_blocks(_response_located, values, cp=cp, chunks=(cells, (n_trials,)), dtype=np.float64,
                                     meta=np.empty((0, 0), np.float64), **kw)}
    for what, dtype in (("n_baseline", np.int64), ("n_response", np.int64), ("valid", bool)):
        out[what] = da.map_blocks(_count_located, cp=cp, chunks=(cells, (n_trials,)), dtype=dtype,
                                  meta=np.empty((0, 0), dtype), what=what, **kw)
    return out


def _cells_of(block_info: Any, cp: np.ndarray | None) -> tuple[np.ndarray | None, int]:
    """(cell_plane of the output block's cells, their number) from dask's ``block_info``."""
    start, stop = block_info[None]["array-location"][0]
    return (None if cp is None else np.asarray(cp)[start:stop]), stop - start


def _response_located(values: np.ndarray, *, cp: np.ndarray | None, block_info: Any = None,
                      **kw: Any) -> np.ndarray:  # fmt: skip
    return _response_block(values, _cells_of(block_info, cp)[0], **kw)


def _count_located(*, cp: np.ndarray | None, block_info: Any = None, **kw: Any) -> np.ndarray:
    cell_plane, n = _cells_of(block_info, cp)
    return _count_block(cell_plane, n=n, **kw)


def _concat_cells(parts: list[xr.Dataset]) -> xr.Dataset:
    names = set.intersection(*({str(k) for k, v in p.coords.items() if v.dims == ("cell",)} for p in parts))
    parts = [p.drop_vars([k for k, v in p.coords.items() if v.dims == ("cell",) and k not in names]) for p in parts]
    return xr.concat(parts, dim="cell", data_vars="all", coords="minimal", compat="override", join="exact",
                     combine_attrs="override")


# --- conditions ---------------------------------------------------------------------------------
def _fill(var: xr.Variable) -> Any:
    kind = var.dtype.kind
    return np.nan if kind in "fc" else False if kind == "b" else -1 if kind in "iu" else ""


def _stack_conditions(parts: dict[str, xr.Dataset], paired: bool) -> xr.Dataset:
    """(condition, cell, trial): cells joined on ROI id (inner if ``paired`` else outer), trials outer;
    cell coords from the first condition holding each cell, trial coords per condition."""
    conds = list(parts)
    index = [parts[c].indexes["cell"] for c in conds]
    cells = index[0]
    for other in index[1:]:
        cells = cells.intersection(other) if paired else cells.union(other)
    cells = cells.sort_values()
    trials = parts[conds[0]].indexes["trial"]
    for c in conds[1:]:
        trials = trials.union(parts[c].indexes["trial"])
    trials = trials.sort_values()
    cell_names = [k for k, v in parts[conds[0]].coords.items() if v.dims == ("cell",) and k != "cell"
                  and all(k in p.coords and p[k].dims == ("cell",) for p in parts.values())]
    trial_names = [k for k, v in parts[conds[0]].coords.items() if v.dims == ("trial",) and k != "trial"
                   and all(k in p.coords and p[k].dims == ("trial",) for p in parts.values())]
    every = pd.Index(np.concatenate([i.to_numpy() for i in index]))
    first = _first_positions(every, cells)
    cell_coords = {k: xr.Variable.concat([parts[c][k].variable for c in conds], "cell")[first] for k in cell_names}
    trial_coords = {}
    for k in trial_names:
        # reset_coords: reindexing the DataArray would fill its other trial coords with NaN, which a string
        # coordinate (numpy StringDType, as converted stores hold) cannot take
        per = [parts[c][k].reset_coords(drop=True).reindex(trial=trials, fill_value=_fill(parts[c][k].variable)).variable
               for c in conds]  # fmt: skip
        trial_coords[k] = xr.Variable.concat([v.expand_dims("condition") for v in per], "condition")
    grids = []
    for c in conds:
        ds = parts[c].reset_coords("valid")[["response", *_COUNTS, "valid"]]
        ds = ds.drop_vars([k for k in ds.coords if k not in ("cell", "trial")])
        grids.append(ds.reindex(cell=cells, trial=trials,
                                fill_value={"response": np.nan, "n_baseline": 0, "n_response": 0, "valid": False}))
    out = xr.concat(grids, dim=pd.Index(conds, name="condition"), data_vars="all", coords="minimal",
                    compat="override", join="exact", combine_attrs="override")
    out = out.set_coords("valid").assign_coords({k: ("cell", v.data, v.attrs) for k, v in cell_coords.items()})
    return out.assign_coords({k: (("condition", "trial"), v.data, v.attrs) for k, v in trial_coords.items()})


def _first_positions(every: pd.Index, cells: pd.Index) -> np.ndarray:
    frame = pd.Series(np.arange(every.size), index=every)
    return frame[~frame.index.duplicated()].reindex(cells).to_numpy()


# --- public -------------------------------------------------------------------------------------
def event_response(tree: xr.DataTree, signal: str = "dff", *, align_to: AlignTo = "first_touch",
                   baseline: Window = (-1.0, 0.0), response: Window = (0.0, 1.0), subvolume: Subvolumes = "all",
                   condition: Conditions = None, paired: bool = False, within_trial: bool = True) -> xr.Dataset:
    """Per cell and trial: mean of ``signal`` in ``response`` minus its mean in ``baseline``.

    ``tree``: a ssc-1 session, a ssc-11 condition node, or a ssc-11 animal with ``condition=``.
    ``align_to``: an event name (see :func:`sscxr.align.event_times`; unknown names raise and
    list the known ones) or explicit times (one per trial of ``/trials``, or a DataArray indexed
    by ``trial``). ``baseline``/``response``: ``(start, stop)`` s from the event, half-open.
    ``subvolume``: ``"all"`` (cells of every subvolume along ``cell``; a cell id is unique
    within a session), a number, or a list of numbers. ``within_trial``: as in ``trial_tensor``.

    Returns a Dataset with ``response`` (float64), ``n_baseline`` and ``n_response`` (int, the
    frames each window has), dims (``cell``, ``trial``); coords ``valid`` (both windows have
    frames), ``subvolume`` and the subvolume's cell coords (``cell_plane``, ``fov``, ``x_um``,
    ...) per cell, ``event_time`` and the ``/trials`` metadata (``trial_type``, ``outcome``, ...)
    per trial. ``trial`` holds every trial of ``/trials``: those a cell's subvolume did not
    image are NaN (ssc-1 images one subvolume at a time). Lazy when the tree is dask-backed.

    ssc-11: ``condition="pre"`` gives one condition; a list of names adds a leading
    ``condition`` dim, with the cells of any of them (joined on ROI id, NaN where a condition
    lacks a cell) and the union of their trial ids (trial coords become (``condition``,
    ``trial``): days, and so trial ids, restart in each condition). ``paired=True`` keeps only
    the cells present in every listed condition, as ``pair_conditions`` does. Animal results
    carry the ``/cells`` flags (``ablated*``, ``near_ablated``, ``present_*``) per cell.

    >>> from sscxr.testing.stores import make_animal_tree
    >>> animal = make_animal_tree(n_cells=6)
    >>> r = event_response(animal, align_to="pole_in", condition=["pre", "post_touch"], paired=True)
    >>> r.response.dims, r.sizes["cell"]
    (('condition', 'cell', 'trial'), 10)
    >>> change = r.response.sel(condition="post_touch").mean("trial") - r.response.sel(condition="pre").mean("trial")
    >>> change.where(~(r.ablated | r.near_ablated), drop=True).sizes["cell"]   # 10 - 4 ablated - 4 near
    2
    """
    if not isinstance(tree, xr.DataTree):
        raise TypeError(f"event_response needs an xarray.DataTree (a session or animal), got {type(tree).__name__}")
    if not isinstance(signal, str):
        raise TypeError(f"signal must be a variable name such as 'dff', got {type(signal).__name__}")
    baseline, response = _window("baseline", baseline), _window("response", response)
    conds = _conditions(tree, condition, paired)
    attrs = {"signal": signal, "align_to": align_to if isinstance(align_to, str) else "explicit times",
             "baseline": list(baseline), "response": list(response), "within_trial": int(within_trial),
             "windows": "half-open [start, stop) s from the event's first frame at or after it"}
    parts = {}
    each: list[str | None] = list(conds) if conds else [None]
    for cond in each:
        node, found = _align.session_parts(tree, condition=cond)
        numbers = _pick(found, subvolume, f"condition {cond!r}" if cond else "this tree")
        parts[cond] = _node_response(node, found, numbers, signal, align_to, baseline, response, within_trial)
    if conds is None or isinstance(condition, str):
        out = next(iter(parts.values()))
    else:
        out = _stack_conditions({str(c): p for c, p in parts.items()}, paired)
        attrs["conditions"], attrs["paired"] = list(conds), int(paired)
    if conds is not None:
        attrs["condition"] = conds[0] if isinstance(condition, str) else list(conds)
    out = out.assign_coords(_align.cell_flags(tree, out.indexes["cell"].to_numpy(), lazy=True))
    return out.assign_attrs(attrs)
