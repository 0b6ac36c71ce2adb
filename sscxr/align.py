"""Event tables, event-aligned windows and trial tensors (pure functions; ``.sscx`` calls these).

Rule (LOADERS' causality rule, FORMATS.md §3.3): for an event at ``t_e`` and a plane ``p``, the
frame at offset 0 is the first frame of ``p`` whose ``frame_time >= t_e``; offset ``k`` is ``k``
frames later, for every ``k`` with ``window[0] <= k / rate <= window[1]``; the result's ``time``
is ``k / rate``. Each cell is read on its own plane's clock (``frame_time`` row ``cell_plane``).
A sample is NaN and ``valid`` is False where it leaves the data, crosses a recording gap
(> 1.5 frame periods between frames), or (``within_trial``) lies in another trial than the
event's; the coord ``lag`` (>= 0) is the exact time from the event to its offset-0 frame.
An event with no frame less than 1.5 periods after it (outside the recording, or in a gap),
and a trial without the event, give all-NaN windows.

>>> from sscxr.testing.stores import make_session_tree
>>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=4)
>>> sub = tree["imaging/subvolume_01"].to_dataset()
>>> tensor = trial_tensor(sub.dff, tree["events"].to_dataset(), frame_time=sub.frame_time,
...                       trials=tree["trials"].to_dataset(), window=(-1.0, 2.0))
>>> tensor.dims, tensor.sizes["time"]
(('cell', 'trial', 'time'), 22)
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, Literal, overload

import numpy as np
import pandas as pd
import xarray as xr

from . import _kernels
from ._types import (AlignTo, Conditions, EventName, Events, EventTable, SubvolumeChoice, Subvolumes, Times,
                     TrialIds, Trials, Window)
from .errors import InvalidChoiceError
from .schema import SUBVOLUME_GROUP, TOUCH_KINDS

__all__ = ["EVENT_ALIASES", "event_table", "event_times", "align", "trial_tensor", "session_trial_tensor",
           "session_parts", "session_id", "pair_conditions",
           # parameter types (sscxr._types)
           "AlignTo", "Conditions", "EventName", "Events", "EventTable", "SubvolumeChoice", "Subvolumes", "Times",
           "TrialIds", "Trials", "Window"]

EVENT_ALIASES: dict[str, tuple[tuple[str, ...], str]] = {
    "pole_in": (("pole_in_reach",), "start_time"),
    "pole_out": (("pole_in_reach",), "stop_time"),
    "first_touch": (TOUCH_KINDS, "start_time"),
    "lick_left": (("lick_left",), "start_time"),
    "lick_right": (("lick_right",), "start_time"),
    "first_lick": (("lick_left", "lick_right"), "start_time"),
    "reward": (("reward_left", "reward_right"), "start_time"),
    "response_cue": (("response_cue",), "start_time"),
}
"""``align_to`` name -> (event kinds, column): the first such event of each trial (by start)."""

TRIAL_COORDS = ("trial_type", "outcome", "correct_side", "pole_position", "has_whisker", "day")


# --- small inputs -------------------------------------------------------------------------------
def to_numpy(x: Any) -> np.ndarray:
    """Values of a small array; dask-backed ones are read in-process (synchronous scheduler).

    Only coordinates and tables (frame times, events, trials, sample times) go through here;
    signals stay lazy. Variable-length strings (numpy ``StringDType``, as zarr 3 stores them)
    come back as fixed-width ``str`` arrays, which the rest of numpy and pandas handle everywhere.
    """
    data = getattr(x, "data", x)
    arr = np.asarray(data.compute(scheduler="sync")) if hasattr(data, "dask") else np.asarray(getattr(x, "values", x))
    return np.array(arr.tolist(), dtype=str).reshape(arr.shape) if arr.dtype.kind == "T" else arr


def check_window(window: object) -> Window:
    """``window`` as two floats, or a ValueError that says what is expected."""
    try:
        start, stop = (float(w) for w in window)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ValueError(f"window={window!r}: expected (start, stop) in seconds, e.g. (-3.0, 5.0)") from None
    if not (np.isfinite(start) and np.isfinite(stop) and start < stop):
        raise ValueError(f"window={window!r}: expected finite (start, stop) in seconds with start < stop, "
                         "e.g. (-3.0, 5.0)")
    return start, stop


def event_table(events: EventTable) -> pd.DataFrame:
    """An event table (``/events`` Dataset or DataFrame) as a DataFrame of its core columns.

    Needs ``start_time``; ``kind``, ``stop_time`` (defaults to start) and ``trial`` (defaults to
    -1) are kept when present.
    """
    names = [n for n in ("kind", "start_time", "stop_time", "trial") if n in _columns(events)]
    if "start_time" not in names:
        raise ValueError(f"event table has columns {sorted(map(str, _columns(events)))}; expected at least "
                         "'start_time' (s), plus 'kind' and 'trial' to pick events by name and trial")
    frame = pd.DataFrame({n: to_numpy(events[n]) for n in names})
    frame["start_time"] = frame["start_time"].astype(np.float64)
    frame["stop_time"] = frame.get("stop_time", frame["start_time"]).astype(np.float64)
    frame["trial"] = frame.get("trial", pd.Series(-1, index=frame.index)).astype(np.int64)
    if "kind" in frame:
        frame["kind"] = frame["kind"].astype(str)
    return frame


def _columns(events: EventTable) -> list[Hashable]:
    return list(events.variables) if isinstance(events, xr.Dataset) else list(events.columns)


def known_events(events: pd.DataFrame | None = None) -> list[str]:
    """Every ``align_to`` name: the aliases, ``trial_start`` and the kinds in ``events``."""
    kinds = sorted(set(events["kind"])) if events is not None and "kind" in events else []
    return sorted(set(EVENT_ALIASES) | {"trial_start"} | set(kinds))


def event_times(events: EventTable, align_to: EventName | str, *, trials: Trials | None = None) -> xr.DataArray:
    """Time of the first ``align_to`` event of each trial, NaN where a trial has none.

    ``align_to`` is a name of :data:`EVENT_ALIASES` or any ``kind`` of the table (its start).
    ``trials``: the trial ids to report (default: every trial with an event of the table);
    ``trial_start`` needs ``trials`` to be the ``/trials`` Dataset.

    >>> from sscxr.testing.stores import make_session_tree
    >>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=4)
    >>> times = event_times(tree["events"].to_dataset(), "first_touch")
    >>> bool(times.isnull()[3])   # every 4th trial has no touch
    True
    """
    table = event_table(events)
    ids = _trial_ids(trials, table)
    if align_to == "trial_start":
        return _trial_starts(trials, ids)
    kinds, column = _resolve(align_to, table)
    rows = table[table["kind"].isin(kinds) & np.isfinite(table["start_time"])] if "kind" in table else table
    first = rows.sort_values("start_time", kind="stable").groupby("trial", sort=False).head(1)
    values = first.set_index("trial")[column].reindex(ids).to_numpy(dtype=np.float64)
    return xr.DataArray(values, dims="trial", coords={"trial": ids}, name=align_to,
                        attrs={"units": "s", "event": align_to, "kinds": list(kinds), "column": column})


def _resolve(align_to: str, table: pd.DataFrame) -> tuple[tuple[str, ...], str]:
    if align_to in EVENT_ALIASES:
        return EVENT_ALIASES[align_to]
    if "kind" in table and align_to in set(table["kind"]):
        return (align_to,), "start_time"
    raise InvalidChoiceError("align_to", align_to, known_events(table), what="a known event",
                             hint="or give explicit times: an array with one time per trial, or a DataArray "
                                  "indexed by 'trial'")  # fmt: skip


def _trial_ids(trials: Trials | None, table: pd.DataFrame | None = None) -> np.ndarray:
    if isinstance(trials, xr.Dataset):
        return to_numpy(trials["trial"]).astype(np.int64)
    if trials is not None:
        return np.asarray(trials, dtype=np.int64).ravel()
    if table is None:
        raise ValueError("no trials given: pass trials= (the /trials Dataset or an array of trial ids)")
    ids = table["trial"].to_numpy()
    return np.unique(ids[ids >= 0])


def _trial_starts(trials: Trials | None, ids: np.ndarray) -> xr.DataArray:
    if not isinstance(trials, xr.Dataset) or "start_time" not in trials:
        raise ValueError("align_to='trial_start' needs trials= the /trials Dataset (with 'start_time'); "
                         f"got {type(trials).__name__}")
    start = to_numpy(trials["start_time"]).astype(np.float64)
    return xr.DataArray(start, dims="trial", coords={"trial": ids}, name="trial_start", attrs={"units": "s"})


# --- clocks: which frame_time row each signal row uses, and the frame rate ----------------------
def _frame_clock(signal: xr.DataArray, frame_time: xr.DataArray | None) -> xr.DataArray:
    if frame_time is None:
        frame_time = signal.coords["frame_time"] if "frame_time" in signal.coords else signal["time"]
    if "time" not in frame_time.dims or not set(frame_time.dims) <= {"plane", "time"}:
        raise ValueError(f"frame_time has dims {frame_time.dims}; expected ('plane', 'time') or ('time',)")
    if frame_time.sizes["time"] != signal.sizes["time"]:
        raise ValueError(f"frame_time has {frame_time.sizes['time']} frames but the signal has "
                         f"{signal.sizes['time']}; pass the frame_time of the signal's own subvolume")
    return frame_time if "plane" in frame_time.dims else frame_time.expand_dims(plane=[0])


def _row_planes(signal: xr.DataArray, clock: xr.DataArray) -> np.ndarray:
    """Row of ``clock`` for every element of the signal's non-time dims (broadcast shape)."""
    lead = [d for d in signal.dims if d != "time"]
    shape = tuple(signal.sizes[d] for d in lead)
    if clock.sizes["plane"] == 1:
        return np.zeros(shape, dtype=np.int64)
    planes = to_numpy(clock["plane"])
    if "plane" in lead:
        per, dim = to_numpy(signal["plane"]), "plane"
    elif "cell_plane" in signal.coords and signal["cell_plane"].ndim == 1:
        per, dim = to_numpy(signal["cell_plane"]), str(signal["cell_plane"].dims[0])
    else:
        raise ValueError(f"the signal (dims {signal.dims}) has no 'cell_plane' coordinate or 'plane' dimension "
                         f"to choose each row's clock among the {planes.size} frame_time rows; pass "
                         "frame_time= one (time,) clock, or keep the 'cell_plane' coordinate")
    lookup = pd.Index(planes).get_indexer(per)
    if (lookup < 0).any():
        raise ValueError(f"planes {sorted(set(per[lookup < 0].tolist()))} of the signal have no frame_time row "
                         f"(frame_time planes: {planes.tolist()})")
    axis = lead.index(dim)
    return np.broadcast_to(np.expand_dims(lookup, [i for i in range(len(lead)) if i != axis]), shape).copy()


def frame_rate(signal: xr.DataArray | xr.Dataset, rate: float | None = None) -> float:
    """Frame rate (Hz): ``rate``, else ``attrs['frame_rate_hz']``, else 1 / median frame step
    (steps within a trial when the signal has a per-frame ``trial`` coord)."""
    rate = rate if rate is not None else signal.attrs.get("frame_rate_hz")
    if rate is not None and np.isfinite(rate) and rate > 0:
        return float(rate)
    time = to_numpy(signal["time"]).astype(np.float64)
    steps = np.diff(time)
    if "trial" in signal.coords and signal["trial"].dims == ("time",):
        trial = to_numpy(signal["trial"])
        steps = steps[trial[1:] == trial[:-1]]
    steps = steps[np.isfinite(steps) & (steps > 0)]
    if steps.size == 0:
        raise ValueError("cannot tell the frame rate: no attrs['frame_rate_hz'] and fewer than two "
                         "increasing frame times; pass frame_rate_hz=")
    return float(1.0 / np.median(steps))


# --- alignment core -----------------------------------------------------------------------------
def _aligned(signal: xr.DataArray, clock: xr.DataArray, times: np.ndarray, event_trial: np.ndarray | None,
             window: Window, rate: float, within_trial: bool, event_dim: str) -> xr.DataArray:
    signal = signal.transpose(..., "time")
    offsets = _kernels.window_offsets(window, rate)
    if offsets.size == 0:
        raise ValueError(f"window={window!r} holds no frame at {rate:.3g} Hz; widen it to at least one "
                         f"frame period ({1 / rate:.3g} s)")
    frame_trial = to_numpy(signal["trial"]) if "trial" in signal.coords and signal["trial"].dims == ("time",) \
        else np.full(signal.sizes["time"], -1, dtype=np.int64)
    if within_trial and "trial" not in signal.coords:
        raise ValueError("within_trial=True needs a per-frame 'trial' coordinate on the signal; pass "
                         "within_trial=False")
    index, lag = _kernels.window_indices(to_numpy(clock.transpose("plane", "time")).astype(np.float64),
                                         frame_trial, times, event_trial, offsets, 1.0 / rate, within_trial)
    rows = _row_planes(signal, clock)
    data, valid = _gather(signal.data, rows, index)
    lead = [d for d in signal.dims if d != "time"]
    coords = {k: v for k, v in signal.coords.items() if set(v.dims) <= set(lead)}
    out = xr.DataArray(data, dims=[*lead, event_dim, "time"], coords=coords, name=signal.name,
                       attrs=dict(signal.attrs))
    return out.assign_coords(
        time=("time", offsets / rate, {"units": "s", "description": "time from the event (frame offset / rate)"}),
        frame_offset=("time", offsets, {"description": "frames after the event's first frame at or after it"}),
        valid=([*lead, event_dim, "time"], valid, {"description": "the sample exists in the data (see sscxr.align)"}),
        lag=([*lead, event_dim], lag[rows], {"units": "s", "description": "frame time of offset 0 minus event time"}),
    )


def _gather(data: Any, rows: np.ndarray, index: np.ndarray) -> tuple[Any, Any]:
    mask = index >= 0
    if not hasattr(data, "dask"):
        flat = np.asarray(data).reshape(-1, data.shape[-1])
        out = _kernels.gather_windows(flat, rows.reshape(-1), index)
        return out.reshape(*rows.shape, *index.shape[1:]), mask[rows]
    import dask.array as da

    data = data.rechunk({data.ndim - 1: -1})
    tail = tuple((n,) for n in index.shape[1:])
    dtype = data.dtype if data.dtype.kind == "f" else np.dtype(np.float64)
    out = da.map_blocks(_gather_block, data, rows=rows, index=index, dtype=dtype,
                        chunks=data.chunks[:-1] + tail, new_axis=[data.ndim],
                        meta=np.empty((0,) * (data.ndim + 1), dtype))
    rows_d = da.from_array(rows, chunks=data.chunks[:-1])
    valid = rows_d.map_blocks(lambda r: mask[r], dtype=bool, chunks=data.chunks[:-1] + tail,
                              new_axis=[data.ndim - 1, data.ndim])
    return out, valid


def _gather_block(block: np.ndarray, rows: np.ndarray, index: np.ndarray, block_info: Any = None) -> np.ndarray:
    where = tuple(slice(a, b) for a, b in block_info[0]["array-location"][:-1])
    r = rows[where]
    out = _kernels.gather_windows(block.reshape(-1, block.shape[-1]), r.reshape(-1), index)
    return out.reshape(*r.shape, *index.shape[1:])


# --- public: align and trial_tensor -------------------------------------------------------------
def _event_inputs(events: Events, trials: Trials | None) -> tuple[np.ndarray, np.ndarray | None, str, dict]:
    """(times, trial per event or None, event dim, event-dim coords) of any accepted ``events``."""
    if isinstance(events, (xr.Dataset, pd.DataFrame)):
        return _table_events(event_table(events))
    if isinstance(events, xr.DataArray) and events.dims == ("trial",):
        ids = to_numpy(events["trial"]) if "trial" in events.coords else _trial_ids(trials)
        return (to_numpy(events).astype(np.float64), ids.astype(np.int64), "trial",
                {"trial": ids, "event_time": ("trial", to_numpy(events), {"units": "s"})})
    return _array_events(to_numpy(events).astype(np.float64).ravel(), trials)


def _table_events(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, str, dict]:
    coords = {"event_time": ("event", table["start_time"].to_numpy(), {"units": "s"}),
              "trial": ("event", table["trial"].to_numpy())}
    if "kind" in table:
        coords["kind"] = ("event", table["kind"].to_numpy())
    return table["start_time"].to_numpy(), table["trial"].to_numpy(), "event", coords


def _array_events(times: np.ndarray, trials: Trials | None) -> tuple[np.ndarray, np.ndarray | None, str, dict]:
    coords: dict[str, Any] = {"event_time": ("event", times, {"units": "s"})}
    if trials is None:
        return times, None, "event", coords
    ids = _trial_ids(trials)
    if ids.size != times.size:
        raise ValueError(f"trials has {ids.size} ids but there are {times.size} event times; give one per event")
    return times, ids, "event", coords | {"trial": ("event", ids)}


def _signal(signal: xr.DataArray) -> xr.DataArray:
    if not isinstance(signal, xr.DataArray):
        raise TypeError(f"signal must be an xarray.DataArray, got {type(signal).__name__}")
    if "time" not in signal.dims:
        raise ValueError(f"signal has dims {signal.dims}; expected a 'time' dimension (one entry per frame)")
    return signal


def align(signal: xr.DataArray, events: Events, window: Window, *, trials: Trials | None = None,
          within_trial: bool = False, frame_time: xr.DataArray | None = None,
          frame_rate_hz: float | None = None) -> xr.DataArray:
    """Cut a window of ``signal`` around each event; see the module docstring for the rule.

    ``events``: an array of times (s); an event table (``/events`` Dataset or DataFrame with
    ``start_time`` and optionally ``trial``, ``kind``): one window per row; or a DataArray of
    times indexed by ``trial``. The result has the signal's other dims, then the event dim
    (``trial`` for a trial-indexed DataArray, else ``event``), then ``time`` (s from the event).
    ``trials`` gives each event's trial id for plain arrays. ``within_trial`` keeps only frames
    of the event's trial (its own ``trial``; the trial of its offset-0 frame when that is unknown
    or negative).
    ``frame_time``: the clock(s); default the signal's ``frame_time`` coord, else ``time``.

    >>> import numpy as np, xarray as xr
    >>> sig = xr.DataArray(np.arange(10.0)[None], dims=("cell", "time"), coords={"time": np.arange(10) / 2})
    >>> align(sig, [1.2, 4.1], (-1.0, 1.0)).sel(cell=0).values
    array([[ 1.,  2.,  3.,  4.,  5.],
           [ 7.,  8.,  9., nan, nan]])
    """
    signal = _signal(signal)
    window = check_window(window)
    clock = _frame_clock(signal, frame_time)
    times, event_trial, dim, coords = _event_inputs(events, trials)
    rate = frame_rate(signal, frame_rate_hz)
    out = _aligned(signal, clock, times, event_trial, window, rate, within_trial, dim)
    return out.assign_coords(coords).assign_attrs(window=list(window), within_trial=int(within_trial),
                                                  frame_rate_hz=rate)


def _explicit_times(align_to: Times, ids: np.ndarray) -> xr.DataArray:
    if isinstance(align_to, xr.DataArray):
        if align_to.dims != ("trial",):
            raise ValueError(f"explicit align_to times have dims {align_to.dims}; expected ('trial',)")
        return align_to.astype(np.float64).reindex(trial=ids)
    values = np.asarray(align_to, dtype=np.float64).ravel()
    if values.size != ids.size:
        raise ValueError(f"align_to has {values.size} times but there are {ids.size} trials; give one per trial "
                         "(NaN for none) or a DataArray indexed by 'trial'")
    return xr.DataArray(values, dims="trial", coords={"trial": ids})


def _trials_of_signal(signal: xr.DataArray, trials: Trials | None) -> np.ndarray:
    frame_ids = to_numpy(signal["trial"]) if "trial" in signal.coords else np.zeros(0, np.int64)
    seen = pd.unique(frame_ids[frame_ids >= 0])
    if trials is None:
        return np.asarray(seen, dtype=np.int64)
    ids = _trial_ids(trials)
    return ids[np.isin(ids, seen)] if isinstance(trials, xr.Dataset) and seen.size else ids


def trial_tensor(signal: xr.DataArray, events: EventTable | None = None, *,
                 align_to: AlignTo = "pole_in", window: Window = (-3.0, 5.0), trials: Trials | None = None,
                 within_trial: bool = True, frame_time: xr.DataArray | None = None,
                 frame_rate_hz: float | None = None) -> xr.DataArray:
    """One window per trial around its first ``align_to`` event: (..., ``trial``, ``time``).

    ``trials``: the ``/trials`` Dataset (its metadata become coords; only trials seen in the
    signal's frames are kept) or trial ids; default the trials of the signal's frames.
    ``align_to``: a name (see :func:`event_times`) or explicit times per trial.

    >>> from sscxr.testing.stores import make_session_tree
    >>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=4)
    >>> sub = tree["imaging/subvolume_01"].to_dataset()
    >>> t = trial_tensor(sub.dff, tree["events"].to_dataset(), align_to="first_touch",
    ...                  trials=tree["trials"].to_dataset(), frame_time=sub.frame_time)
    >>> bool(t.valid.sel(trial=4).any())    # trial 4 has no touch
    False
    """
    signal = _signal(signal)
    window = check_window(window)
    ids = _trials_of_signal(signal, trials)
    if ids.size == 0:
        raise ValueError("no trials to align: the signal has no per-frame 'trial' coordinate with trial ids >= 0 "
                         "and trials= was not given; pass trials= (the /trials Dataset or trial ids)")
    if isinstance(align_to, str):
        if events is None and align_to != "trial_start":
            raise ValueError(f"align_to={align_to!r} needs the event table: pass events= (the /events Dataset)")
        table = events if events is not None else pd.DataFrame({"start_time": [], "trial": []})
        times = event_times(table, align_to, trials=trials if isinstance(trials, xr.Dataset) else ids)
        times = times.reindex(trial=ids)
    else:
        times = _explicit_times(align_to, ids)
    out = align(signal, times, window, within_trial=within_trial, frame_time=frame_time, frame_rate_hz=frame_rate_hz)
    out = out.assign_coords(_trial_metadata(trials, ids))
    return out.assign_attrs(align_to=align_to if isinstance(align_to, str) else "explicit times")


def _trial_metadata(trials: Trials | None, ids: np.ndarray) -> dict[str, Any]:
    if not isinstance(trials, xr.Dataset):
        return {}
    table = trials.reindex(trial=ids) if "trial" in trials.indexes else trials
    return {n: ("trial", to_numpy(table[n]), dict(table[n].attrs)) for n in TRIAL_COORDS if n in table}


# --- trees --------------------------------------------------------------------------------------
def session_id(tree: xr.DataTree) -> str | None:
    """The store's unit name from its root attrs: ``an197522_2013_03_08`` for a ssc-1 session,
    the animal id (``an274424``) for a ssc-11 animal; None when the attrs do not say.

    >>> from sscxr.testing.stores import make_session_tree
    >>> session_id(make_session_tree(n_subvolumes=1, n_cells=3, n_trials=2)["imaging"])
    'an197522_2013_03_08'
    """
    attrs = tree.root.attrs
    animal, date = attrs.get("animal_id"), attrs.get("session_date")
    if not animal:
        return None
    return f"{animal}_{str(date).replace('-', '_')}" if attrs.get("archive") == "ssc-1" and date else str(animal)


def session_parts(tree: xr.DataTree, *, condition: str | None = None) -> tuple[xr.DataTree, dict[int, xr.DataTree]]:
    """The node holding ``trials``/``events`` and its subvolume nodes ``{number: node}``.

    A ssc-1 session tree is its own node (subvolumes under ``imaging/``); a ssc-11 animal needs
    ``condition`` (``pre``, ``post_touch``, ...); a condition node is accepted as is.
    """
    node = tree
    if condition is not None:
        if condition not in tree.children:
            raise ValueError(f"condition={condition!r} is not in this tree; it has {sorted(tree.children)}")
        node = tree.children[condition]
    subs = node.children["imaging"].children if "imaging" in node.children else node.children
    found = {int(m.group(1)): n for name, n in subs.items() if (m := SUBVOLUME_GROUP.match(str(name)))}
    if not found:
        groups = [c for c in tree.children if c not in ("cells", "trials", "events", "whisker")]
        hint = f"; pass condition= one of {groups}" if condition is None and "cells" in tree.children else ""
        raise ValueError(f"no subvolume_NN group under {node.path!r}{hint}")
    return node, dict(sorted(found.items()))


def pick_subvolumes(found: Mapping[int, xr.DataTree], subvolume: SubvolumeChoice) -> list[int]:
    """Subvolume numbers for a ``subvolume=`` argument, or a ValueError naming the choices."""
    if subvolume == "all":
        return list(found)
    if subvolume is None:
        if len(found) == 1:
            return list(found)
        raise ValueError(f"this session has {len(found)} subvolumes {list(found)}, each on its own time axis; "
                         "pass subvolume=<number>, or subvolume='all' for a dict {number: result}")
    if int(subvolume) not in found:
        raise ValueError(f"subvolume={subvolume!r} is not in this tree; it has {list(found)}")
    return [int(subvolume)]


def _node_ds(node: xr.DataTree, name: str) -> xr.Dataset | None:
    return node.children[name].to_dataset(inherit=False) if name in node.children else None


@overload
def session_trial_tensor(tree: xr.DataTree, signal: str = ..., *, subvolume: int | None = ...,
                         condition: str | None = ..., align_to: AlignTo = ..., window: Window = ...,
                         within_trial: bool = ...) -> xr.DataArray: ...
@overload
def session_trial_tensor(tree: xr.DataTree, signal: str = ..., *, subvolume: Literal["all"],
                         condition: str | None = ..., align_to: AlignTo = ..., window: Window = ...,
                         within_trial: bool = ...) -> dict[int, xr.DataArray]: ...
def session_trial_tensor(tree: xr.DataTree, signal: str = "dff", *, subvolume: SubvolumeChoice = None,
                         condition: str | None = None, align_to: AlignTo = "pole_in",
                         window: Window = (-3.0, 5.0),
                         within_trial: bool = True) -> xr.DataArray | dict[int, xr.DataArray]:
    """:func:`trial_tensor` of one subvolume of a session (or ssc-11 condition) tree.

    Reads ``/trials`` and ``/events`` from the tree. ``subvolume=None`` works when there is
    one subvolume; ``subvolume="all"`` returns ``{number: tensor}``. The tensor's attrs name
    where it comes from: ``session_id`` (see :func:`session_id`), ``subvolume``, ``condition``
    (ssc-11) and ``align_to``; the trial coords keep their dtypes (``has_whisker`` is bool).

    >>> from sscxr.testing.stores import make_session_tree
    >>> t = session_trial_tensor(make_session_tree(n_cells=3, n_trials=2), subvolume=2, align_to="first_touch")
    >>> t.attrs["session_id"], t.attrs["subvolume"], t.has_whisker.dtype
    ('an197522_2013_03_08', 2, dtype('bool'))
    """
    node, found = session_parts(tree, condition=condition)
    events, trials = _node_ds(node, "events"), _node_ds(node, "trials")
    out = {}
    for number in pick_subvolumes(found, subvolume):
        ds = found[number].to_dataset(inherit=False)
        if signal not in ds.data_vars:
            raise ValueError(f"signal={signal!r} is not a variable of subvolume {number}; it has "
                             f"{sorted(map(str, ds.data_vars))}")
        tensor = trial_tensor(ds[signal], events, align_to=align_to, window=window, trials=trials,
                              within_trial=within_trial, frame_time=ds["frame_time"],
                              frame_rate_hz=ds.attrs.get("frame_rate_hz"))
        out[number] = tensor.assign_attrs(subvolume=number, **({"condition": condition} if condition else {}),
                                          **({"session_id": ident} if (ident := session_id(tree)) else {}))
    return out if subvolume == "all" else out[next(iter(out))]


def cell_flags(tree: xr.DataTree, cells: np.ndarray, *, lazy: bool = False) -> dict[str, Any]:
    """``/cells`` flags (``ablated*``, ``near_ablated``, ``present_*``) of ``cells`` as coordinate
    specs ``{name: ("cell", values, attrs)}``: numpy, or (``lazy``) the store's lazy arrays."""
    if "cells" not in tree.children:
        return {}
    table = tree.children["cells"].to_dataset(inherit=False)
    names = [str(n) for n in table.data_vars if str(n).startswith(("ablated", "near_ablated", "present_"))]
    if not lazy or not any(hasattr(table[n].data, "dask") for n in names):
        table = table[names].reindex(cell=cells, fill_value=False)
        return {n: ("cell", (table[n].data if lazy else to_numpy(table[n])).astype(bool), dict(table[n].attrs))
                for n in names}
    # dask: one task per flag (a dask reindex with fill is ~60 tasks per flag: where/getitem per output chunk)
    import dask.array as da

    positions = table.indexes["cell"].get_indexer(cells)
    return {n: ("cell", da.map_blocks(_take_flags, table[n].data.rechunk(-1), positions=positions,
                                      chunks=((cells.size,),), dtype=bool, meta=np.empty((0,), bool)),
                dict(table[n].attrs)) for n in names}


def _take_flags(values: np.ndarray, *, positions: np.ndarray) -> np.ndarray:
    """``values[positions]`` as bool, False where a position is -1 (a cell the table lacks)."""
    values = np.asarray(values).astype(bool)
    return np.where(positions >= 0, values[np.clip(positions, 0, None)] if values.size else False, False)


def _paired(tree: xr.DataTree, a: str, b: str, number: int) -> xr.DataTree:
    ds = {c: session_parts(tree, condition=c)[1] for c in (a, b)}
    for c in (a, b):
        if number not in ds[c]:
            raise ValueError(f"subvolume {number} is not in condition {c!r}; it has {list(ds[c])}")
    sets = {c: ds[c][number].to_dataset(inherit=False) for c in (a, b)}
    common = np.intersect1d(to_numpy(sets[a]["cell"]), to_numpy(sets[b]["cell"]))
    flags = cell_flags(tree, common)
    root = xr.Dataset(coords={"cell": ("cell", common, {"description": "ROI id present in both conditions"}),
                              **flags}, attrs={"conditions": [a, b], "subvolume": number})
    children = {f"/{c}": sets[c].sel(cell=common).assign_coords(flags) for c in (a, b)}
    return xr.DataTree.from_dict({"/": root, **children})


def pair_conditions(tree: xr.DataTree, a: str = "pre", b: str = "post_touch", *,
                    subvolume: SubvolumeChoice = None) -> xr.DataTree | dict[int, xr.DataTree]:
    """Cells of one ssc-11 subvolume present in both conditions, joined on ROI id.

    Returns a DataTree whose root holds the common ``cell`` ids (sorted) with the ``/cells``
    flags ``ablated*``, ``near_ablated`` and ``present_*`` as coords, and one child per condition
    (named ``a`` and ``b``): that condition's subvolume restricted to those cells, with the same
    flag coords. ``subvolume="all"`` gives ``{number: tree}``.

    >>> from sscxr.testing.stores import make_animal_tree
    >>> paired = pair_conditions(make_animal_tree(n_cells=6), "pre", "post_touch", subvolume=1)
    >>> paired["pre"].dff.sizes["cell"], bool(paired["post_touch"].ablated.any())
    (5, True)
    """
    if "cells" not in tree.children:
        raise ValueError("pair_conditions needs a ssc-11 animal tree (with /cells); this one has "
                         f"{sorted(tree.children)}")
    _, found = session_parts(tree, condition=a)
    numbers = pick_subvolumes(found, subvolume)
    out = {n: _paired(tree, a, b, n) for n in numbers}
    return out if subvolume == "all" else out[numbers[0]]
