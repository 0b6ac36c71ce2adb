"""The ``.sscx`` accessors on DataTree, Dataset and DataArray.

Thin by design (STYLE rule 4): each method checks its input, picks the groups it needs, and
calls a pure function of :mod:`sscxr.align`, :mod:`sscxr.resample` or :mod:`sscxr.behavior`
with the xarray object first. No state; the object is never modified.

The DataTree accessor exists because events and trials live in sibling groups of the imaging
data (see ``docs/design-deviations.md``); it works on a ssc-1 session tree, on a ssc-11 animal
tree with ``condition=``, and on a ssc-11 condition node.

>>> import sscxr.accessors
>>> from sscxr.testing.stores import make_session_tree
>>> session = make_session_tree(n_cells=6, n_trials=4)
>>> session.sscx.trial_tensor("dff", subvolume=1, align_to="first_touch").dims
('cell', 'trial', 'time')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Literal, overload

import numpy as np
import xarray as xr

from . import align as _align
from . import behavior as _behavior
from . import resample as _resample
from . import response as _response
from ._types import AlignTo, Conditions, Events, EventTable, SubvolumeChoice, Subvolumes, Trials, Window

if TYPE_CHECKING:
    from .summary import StoreSummary

__all__ = ["SscxTreeAccessor", "SscxDatasetAccessor", "SscxDataArrayAccessor"]


def _group(node: xr.DataTree, name: str) -> xr.Dataset:
    if name not in node.children:
        raise ValueError(f"this tree has no /{name} group at {node.path!r} (children: {sorted(node.children)}); "
                         "for a ssc-11 animal pass condition=")
    return node.children[name].to_dataset(inherit=False)


@xr.register_datatree_accessor("sscx")
class SscxTreeAccessor:
    """``tree.sscx``: analyses that need ``/trials``, ``/events``, ``/whisker`` and the imaging."""

    def __init__(self, tree: xr.DataTree) -> None:
        self._tree = tree

    def _node(self, condition: str | None) -> xr.DataTree:
        if condition is None and "cells" in self._tree.children:
            conditions = [c for c in self._tree.children if c != "cells"]
            raise ValueError(f"this is a ssc-11 animal tree; pass condition= one of {conditions}")
        if condition is not None and condition not in self._tree.children:
            raise ValueError(f"condition={condition!r} is not in this tree; it has {sorted(self._tree.children)}")
        return self._tree.children[condition] if condition is not None else self._tree

    def summary(self, *, url: str | None = None) -> StoreSummary:
        """What this store holds, as text and (in Jupyter) HTML tables; reads no signal data.

        See :func:`sscxr.summary.summarize`.

        >>> from sscxr.testing.stores import make_session_tree
        >>> make_session_tree(n_cells=6, n_trials=4).sscx.summary().imaging.cells.tolist()
        [6, 6]
        """
        from .summary import summarize

        return summarize(self._tree, url=url)

    @overload
    def trial_tensor(self, signal: str = ..., *, subvolume: int | None = ..., condition: str | None = ...,
                     align_to: AlignTo = ..., window: Window = ..., within_trial: bool = ...) -> xr.DataArray: ...
    @overload
    def trial_tensor(self, signal: str = ..., *, subvolume: Literal["all"], condition: str | None = ...,
                     align_to: AlignTo = ..., window: Window = ...,
                     within_trial: bool = ...) -> dict[int, xr.DataArray]: ...
    def trial_tensor(self, signal: str = "dff", *, subvolume: SubvolumeChoice = None,
                     condition: str | None = None, align_to: AlignTo = "pole_in", window: Window = (-3.0, 5.0),
                     within_trial: bool = True) -> xr.DataArray | dict[int, xr.DataArray]:
        """(``cell``, ``trial``, ``time``) windows of ``signal`` around each trial's ``align_to``
        event; see :func:`sscxr.align.session_trial_tensor`. Lazy on dask-backed trees."""
        self._node(condition)
        return _align.session_trial_tensor(self._tree, signal, subvolume=subvolume, condition=condition,
                                           align_to=align_to, window=window, within_trial=within_trial)

    def event_times(self, align_to: str, *, condition: str | None = None) -> xr.DataArray:
        """First ``align_to`` event time of every trial of ``/trials`` (NaN where none)."""
        node = self._node(condition)
        return _align.event_times(_group(node, "events"), align_to, trials=_group(node, "trials"))

    def first_touch(self, *, condition: str | None = None) -> xr.DataArray:
        """Earliest touch onset (protraction or retraction) per trial, NaN where none."""
        node = self._node(condition)
        return _behavior.first_touch(_group(node, "events"), _group(node, "trials"))

    def touch_bursts(self, gap: float = 0.05, *, condition: str | None = None) -> xr.Dataset:
        """Touches grouped into bursts separated by more than ``gap`` s (dim ``burst``)."""
        return _behavior.touch_bursts(_group(self._node(condition), "events"), gap)

    def touch_count(self, *, condition: str | None = None) -> xr.DataArray:
        """Touches per trial of ``/trials``."""
        node = self._node(condition)
        return _behavior.touch_count(_group(node, "events"), _group(node, "trials"))

    def epochs(self, *, condition: str | None = None) -> xr.Dataset:
        """Pre-stimulus, stimulus, delay and reward epochs per trial (start/stop, s)."""
        node = self._node(condition)
        return _behavior.epochs(_group(node, "trials"), _group(node, "events"))

    def fraction_correct(self, by: str | None = None, *, condition: str | None = None) -> xr.DataArray:
        """(HitL + HitR) / (HitL + HitR + ErrL + ErrR), optionally per ``by`` (e.g. ``"day"``)."""
        return _behavior.fraction_correct(_group(self._node(condition), "trials"), by)

    def resample_whisker(self, subvolume: int | None = None, how: str | Mapping[str, str] = "mean",
                         variables: Sequence[str] = ("angle", "curvature_change"), *,
                         condition: str | None = None) -> xr.Dataset:
        """``/whisker`` variables on each plane's frames of ``subvolume``: (whisker, plane, time)."""
        node, found = _align.session_parts(self._node(condition))
        number = _align.pick_subvolumes(found, subvolume)[0]
        frames = found[number].to_dataset(inherit=False)
        out = _resample.resample_whisker(_group(node, "whisker"), frames, how, variables)
        ident = {"session_id": i} if (i := _align.session_id(self._tree)) else {}
        return out.assign_attrs(subvolume=number, **({"condition": condition} if condition else {}), **ident)

    def video_frames(self, trial: int, time: float | Sequence[float] | np.ndarray | None = None, *,
                     format: str | None = None) -> xr.DataArray:
        """One trial's whisker video frames, lazily, on the whisker time base (see :mod:`sscxr.video`).

        >>> session.sscx.video_frames(12, time=[3.1, 3.2])   # doctest: +SKIP
        """
        from .video import video_frames

        return video_frames(self._tree, trial, time, format=format)

    def pair_conditions(self, a: str = "pre", b: str = "post_touch", *,
                        subvolume: SubvolumeChoice = None) -> xr.DataTree | dict[int, xr.DataTree]:
        """ssc-11: cells of a subvolume present in conditions ``a`` and ``b``, joined on ROI id."""
        return _align.pair_conditions(self._tree, a, b, subvolume=subvolume)

    def event_response(self, signal: str = "dff", *, align_to: AlignTo = "first_touch", baseline: Window = (-1.0, 0.0),
                       response: Window = (0.0, 1.0), subvolume: Subvolumes = "all",
                       condition: Conditions = None, paired: bool = False,
                       within_trial: bool = True) -> xr.Dataset:
        """Per cell and trial: mean of ``signal`` in ``response`` minus its mean in ``baseline`` (s
        from the ``align_to`` event, each cell on its plane's clock); a lazy Dataset (``cell``,
        ``trial``), with a leading ``condition`` dim for a list of ssc-11 conditions (``paired=True``:
        only cells in all of them). See :func:`sscxr.response.event_response`.

        >>> from sscxr.testing.stores import make_session_tree
        >>> make_session_tree(n_cells=6, n_trials=4).sscx.event_response("dff").response.dims
        ('cell', 'trial')
        """
        return _response.event_response(self._tree, signal, align_to=align_to, baseline=baseline, response=response,
                                        subvolume=subvolume, condition=condition, paired=paired,
                                        within_trial=within_trial)


def _time_vars(ds: xr.Dataset, variables: Sequence[str] | None) -> list[str]:
    if variables is not None:
        missing = [v for v in variables if v not in ds.data_vars]
        if missing:
            raise ValueError(f"variables {missing} are not in the Dataset; it has {sorted(map(str, ds.data_vars))}")
        return list(variables)
    names = [str(n) for n, v in ds.data_vars.items() if set(v.dims) == {"cell", "time"}]
    if not names:
        raise ValueError(f"no (cell, time) variable to align; the Dataset has {sorted(map(str, ds.data_vars))}; "
                         "pass variables=")
    return names


@xr.register_dataset_accessor("sscx")
class SscxDatasetAccessor:
    """``ds.sscx`` on a subvolume Dataset (align, trial_tensor) or the ``/whisker`` Dataset
    (resample_whisker). Events and trials are passed explicitly."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def _clock(self) -> xr.DataArray | None:
        return self._ds["frame_time"] if "frame_time" in self._ds.variables else None

    def align(self, events: Events, window: Window, *, trials: Trials | None = None, within_trial: bool = False,
              variables: Sequence[str] | None = None) -> xr.Dataset:
        """Windows of every (cell, time) variable (or ``variables``, which must share their dims)
        around ``events``; see :func:`sscxr.align.align`."""
        rate = self._ds.attrs.get("frame_rate_hz")
        out = [_align.align(self._ds[v], events, window, trials=trials, within_trial=within_trial,
                            frame_time=self._clock(), frame_rate_hz=rate).to_dataset(name=v)
               for v in _time_vars(self._ds, variables)]
        # the coords (valid, lag, ...) are the same for every variable: keep the first's, compare nothing
        return xr.merge(out, compat="override", join="exact", combine_attrs="drop_conflicts")

    def trial_tensor(self, signal: str = "dff", *, events: EventTable | None = None,
                     align_to: AlignTo = "pole_in", window: Window = (-3.0, 5.0), trials: Trials | None = None,
                     within_trial: bool = True) -> xr.DataArray:
        """:func:`sscxr.align.trial_tensor` of ``ds[signal]`` on this Dataset's ``frame_time``."""
        if signal not in self._ds.data_vars:
            raise ValueError(f"signal={signal!r} is not a variable; the Dataset has "
                             f"{sorted(map(str, self._ds.data_vars))}")
        return _align.trial_tensor(self._ds[signal], events, align_to=align_to, window=window, trials=trials,
                                   within_trial=within_trial, frame_time=self._clock(),
                                   frame_rate_hz=self._ds.attrs.get("frame_rate_hz"))

    def resample_whisker(self, frames: xr.Dataset | xr.DataArray, how: str | Mapping[str, str] = "mean",
                         variables: Sequence[str] = ("angle", "curvature_change")) -> xr.Dataset:
        """This ``/whisker`` Dataset on the frames of ``frames`` (a subvolume Dataset)."""
        return _resample.resample_whisker(self._ds, frames, how, variables)


@xr.register_dataarray_accessor("sscx")
class SscxDataArrayAccessor:
    """``da.sscx`` on a (…, time) signal. A DataArray taken from a subvolume loses the
    ``frame_time`` (plane, time) coord; pass ``frame_time=ds.frame_time`` to keep per-plane clocks
    (else ``time`` is used for every cell)."""

    def __init__(self, da: xr.DataArray) -> None:
        self._da = da

    def align(self, events: Events, window: Window, *, trials: Trials | None = None, within_trial: bool = False,
              frame_time: xr.DataArray | None = None, frame_rate_hz: float | None = None) -> xr.DataArray:
        """See :func:`sscxr.align.align`."""
        return _align.align(self._da, events, window, trials=trials, within_trial=within_trial,
                            frame_time=frame_time, frame_rate_hz=frame_rate_hz)

    def trial_tensor(self, events: EventTable | None = None, *, align_to: AlignTo = "pole_in",
                     window: Window = (-3.0, 5.0), trials: Trials | None = None, within_trial: bool = True,
                     frame_time: xr.DataArray | None = None, frame_rate_hz: float | None = None) -> xr.DataArray:
        """See :func:`sscxr.align.trial_tensor`."""
        return _align.trial_tensor(self._da, events, align_to=align_to, window=window, trials=trials,
                                   within_trial=within_trial, frame_time=frame_time, frame_rate_hz=frame_rate_hz)
