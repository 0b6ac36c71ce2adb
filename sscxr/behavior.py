"""Behavioural summaries from ``/trials`` and ``/events`` (FORMATS.md §3): first touch, touch
bursts, trial epochs, touches per trial, fraction correct.

>>> from sscxr.testing.stores import make_session_tree
>>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=4)
>>> float(fraction_correct(tree["trials"].to_dataset()))
0.8
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ._types import EventTable, Trials
from .align import event_table, event_times, to_numpy
from .schema import TOUCH_KINDS

__all__ = ["first_touch", "touch_bursts", "touch_count", "epochs", "fraction_correct", "EPOCHS",
           "DELAY_AFTER_POLE_OUT_S"]

EPOCHS = ("pre_stimulus", "stimulus", "delay", "reward")
DELAY_AFTER_POLE_OUT_S = 0.5


def first_touch(events: EventTable, trials: Trials | None = None) -> xr.DataArray:
    """Earliest onset among ``touch_protraction`` and ``touch_retraction`` per trial (s), NaN if none.

    ``trials``: the ``/trials`` Dataset or trial ids (default: trials with any event).

    >>> from sscxr.testing.stores import make_session_tree
    >>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=4)
    >>> first_touch(tree["events"].to_dataset(), tree["trials"].to_dataset()).sizes["trial"]
    5
    """
    return event_times(events, "first_touch", trials=trials).rename("first_touch")


def _touches(events: EventTable) -> pd.DataFrame:
    table = event_table(events)
    if "kind" not in table:
        raise ValueError("the event table has no 'kind' column; expected the /events group")
    touches = table[table["kind"].isin(TOUCH_KINDS) & np.isfinite(table["start_time"])]
    return touches.sort_values(["trial", "start_time"], kind="stable").reset_index(drop=True)


def touch_bursts(events: EventTable, gap: float = 0.05) -> xr.Dataset:
    """Group each trial's touches into bursts (dim ``burst``).

    A touch starts a new burst when it is in another trial, or when the time from the end of the
    previous touch to its start exceeds ``gap`` (s; 50 ms as in the paper's burst times).
    Variables: ``start_time`` (first onset), ``stop_time`` (last offset), ``trial``,
    ``n_touches``, ``first_kind``.

    >>> from sscxr.testing.stores import make_session_tree
    >>> events = make_session_tree(n_trials=4)["events"].to_dataset()
    >>> bursts = touch_bursts(events)
    >>> int(bursts.n_touches.sum()) == int(touch_count(events).sum())
    True
    """
    if not (np.isfinite(gap) and gap >= 0):
        raise ValueError(f"gap={gap!r}: expected a non-negative time in seconds, e.g. 0.05")
    t = _touches(events)
    new = np.ones(len(t), bool)
    if len(t) > 1:
        same_trial = t["trial"].to_numpy()[1:] == t["trial"].to_numpy()[:-1]
        close = t["start_time"].to_numpy()[1:] - t["stop_time"].to_numpy()[:-1] <= gap
        new[1:] = ~(same_trial & close)
    t["burst"] = np.cumsum(new) - 1
    g = t.groupby("burst", sort=True)
    return xr.Dataset(
        {"start_time": ("burst", g["start_time"].min().to_numpy(), {"units": "s"}),
         "stop_time": ("burst", g["stop_time"].max().to_numpy(), {"units": "s"}),
         "trial": ("burst", g["trial"].first().to_numpy().astype(np.int64)),
         "n_touches": ("burst", g.size().to_numpy().astype(np.int64)),
         "first_kind": ("burst", g["kind"].first().to_numpy().astype(str))},
        coords={"burst": np.arange(int(new.sum()))},
        attrs={"gap_s": float(gap)},
    )


def touch_count(events: EventTable, trials: Trials | None = None) -> xr.DataArray:
    """Number of touches (protraction + retraction) per trial; 0 for trials without any."""
    t = _touches(events)
    ids = to_numpy(trials["trial"]) if isinstance(trials, xr.Dataset) else (
        np.asarray(trials, dtype=np.int64) if trials is not None else np.unique(event_table(events)["trial"]))
    counts = t.groupby("trial").size().reindex(ids, fill_value=0).to_numpy()
    return xr.DataArray(counts.astype(np.int64), dims="trial", coords={"trial": ids}, name="touch_count")


def epochs(trials: xr.Dataset, events: EventTable) -> xr.Dataset:
    """Start and stop (s) of each trial's epochs, dims (``trial``, ``epoch``).

    ``pre_stimulus``: trial start -> pole in; ``stimulus``: pole in -> pole out; ``delay``: pole
    out + 0.5 s -> response cue; ``reward``: response cue -> trial end (the next trial's start;
    NaN for the last trial). NaN where an event is missing.

    >>> from sscxr.testing.stores import make_session_tree
    >>> tree = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=4)
    >>> ep = epochs(tree["trials"].to_dataset(), tree["events"].to_dataset())
    >>> ep.epoch.values.tolist()
    ['pre_stimulus', 'stimulus', 'delay', 'reward']
    """
    if not isinstance(trials, xr.Dataset) or "start_time" not in trials:
        raise ValueError("epochs needs the /trials Dataset (with 'start_time') as its first argument")
    ids = to_numpy(trials["trial"]).astype(np.int64)
    start = to_numpy(trials["start_time"]).astype(np.float64)
    order = np.argsort(start, kind="stable")
    end = np.full(start.size, np.nan)
    end[order[:-1]] = start[order[1:]]
    pole_in, pole_out, cue = (event_times(events, name, trials=ids).values
                              for name in ("pole_in", "pole_out", "response_cue"))
    starts = np.stack([start, pole_in, pole_out + DELAY_AFTER_POLE_OUT_S, cue], axis=1)
    stops = np.stack([pole_in, pole_out, cue, end], axis=1)
    return xr.Dataset(
        {"start_time": (("trial", "epoch"), starts, {"units": "s"}),
         "stop_time": (("trial", "epoch"), stops, {"units": "s"})},
        coords={"trial": ids, "epoch": list(EPOCHS)},
        attrs={"delay_after_pole_out_s": DELAY_AFTER_POLE_OUT_S},
    )


def fraction_correct(trials: xr.Dataset, by: str | None = None) -> xr.DataArray:
    """(HitL + HitR) / (HitL + HitR + ErrL + ErrR); no-lick and untyped trials do not count.

    ``by``: a per-trial coordinate or variable to group by (e.g. ``"day"`` in ssc-11).
    NaN when a group has no hit or error trial.
    """
    if "trial_type" not in trials:
        raise ValueError("fraction_correct needs the /trials Dataset with 'trial_type'")
    types = pd.Series(to_numpy(trials["trial_type"]).astype(str))
    hit, err = types.isin(["HitL", "HitR"]), types.isin(["ErrL", "ErrR"])
    if by is None:
        n = hit.sum() + err.sum()
        return xr.DataArray(hit.sum() / n if n else np.nan, name="fraction_correct")
    if by not in trials.variables:
        raise ValueError(f"by={by!r} is not a variable of the trials table; it has "
                         f"{sorted(map(str, trials.variables))}")
    key = pd.Series(to_numpy(trials[by]))
    frame = pd.DataFrame({"hit": hit, "err": err, by: key}).groupby(by).sum()
    n = frame["hit"] + frame["err"]
    values = np.where(n > 0, frame["hit"] / n.where(n > 0, 1), np.nan)
    return xr.DataArray(values, dims=by, coords={by: frame.index.to_numpy()}, name="fraction_correct")
