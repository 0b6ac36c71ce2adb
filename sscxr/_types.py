"""Types of sscxr's public parameters, defined once; :mod:`sscxr.align` re-exports them.

Each alias names what a parameter accepts, so a type checker refuses a wrong argument before it
runs (``align_to=3``, ``trials="1, 2"``) and an IDE shows the choices:

>>> from sscxr.align import AlignTo, EventName
>>> import typing
>>> typing.get_args(EventName)[:3]
('pole_in', 'pole_out', 'first_touch')

The names of :data:`EventName` are :data:`sscxr.align.EVENT_ALIASES` plus ``trial_start``
(``tests/test_typing.py`` checks that they agree); any ``kind`` of an event table is accepted too,
hence the ``str`` in :data:`AlignTo`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["DataFrameLike", "EventName", "Window", "Times", "AlignTo", "EventTable", "Events", "TrialIds", "Trials",
           "SubvolumeChoice", "Subvolumes", "Conditions"]

EventName: TypeAlias = Literal["pole_in", "pole_out", "first_touch", "lick_left", "lick_right", "first_lick",
                               "reward", "response_cue", "trial_start"]  # fmt: skip
"""The event names ``align_to`` knows in every session (each trial's first such event)."""

Window: TypeAlias = tuple[float, float]
"""``(start, stop)`` in seconds from the event."""

Times: TypeAlias = np.ndarray | Sequence[float] | xr.DataArray
"""Explicit event times in seconds: one per trial, or a DataArray indexed by ``trial``."""

AlignTo: TypeAlias = EventName | str | Times
"""What to align on: an :data:`EventName`, any ``kind`` of the event table, or explicit :data:`Times`."""


class DataFrameLike(Protocol):
    """What a type checker requires of a DataFrame argument: ``columns`` and ``[name]``. pandas ships no type
    information (without ``pandas-stubs`` every ``pd.DataFrame`` annotation is ``Any``, which
    accepts any argument), so the aliases below name this protocol for type checkers; at run time
    they name ``pd.DataFrame`` itself."""

    @property
    def columns(self) -> Iterable[Hashable]: ...

    def __getitem__(self, key: str, /) -> object: ...


if TYPE_CHECKING:
    DataFrame: TypeAlias = DataFrameLike
else:
    DataFrame = pd.DataFrame

EventTable: TypeAlias = xr.Dataset | DataFrame
"""An event table: the ``/events`` Dataset or a DataFrame with ``start_time`` (and ``kind``, ``trial``)."""

Events: TypeAlias = EventTable | xr.DataArray | np.ndarray | Sequence[float]
"""Events to cut windows around: a table (one window per row) or event times in seconds."""

TrialIds: TypeAlias = np.ndarray | Sequence[int] | xr.DataArray
"""Trial ids (int; a ``pd.Index`` works too)."""

Trials: TypeAlias = xr.Dataset | TrialIds
"""The ``/trials`` Dataset (its metadata become coords) or trial ids."""

SubvolumeChoice: TypeAlias = int | Literal["all"] | None
"""One subvolume number, ``"all"`` (one result per subvolume) or None (the only one there is)."""

Subvolumes: TypeAlias = int | Sequence[int] | Literal["all"] | None
"""Subvolume numbers, or ``"all"``."""

Conditions: TypeAlias = str | Sequence[str] | None
"""One ssc-11 condition (``"pre"``, ``"post_touch"``, ...), several, or None for a session."""
