"""What a store holds, for a person: :func:`summarize` (``tree.sscx.summary()``).

The summary reads only sizes, attrs and (small) ``/trials/subvolume``: nothing of the signals,
so it is instant on a lazily opened remote store. It shows as text (``print``, ``repr``) and,
in Jupyter, as HTML tables: identity (session or animal, archive, store URL, content and schema
versions), one row per imaging subvolume (and condition for ssc-11) with planes, cells,
frames, trials and imaged time, the ssc-11 ablations, and every dict-valued root attr
(``provenance``, ``metadata``) as a table.

>>> from sscxr.testing.stores import make_session_tree
>>> s = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=2).sscx.summary()
>>> print(s)                                                # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
sscxr session an197522_2013_03_08 (ssc-1)
  animal           an197522
  session date     2013-03-08
  ...
imaging
  subvolume  planes  cells  frames  trials  imaged (s)
          1       3      3     140       2        20.0
...
>>> s.imaging.cells.sum(), s.trials
(np.int64(3), 3)
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .align import session_id, to_numpy
from .schema import SUBVOLUME_GROUP

__all__ = ["StoreSummary", "summarize"]

_IDENTITY = ("archive", "animal_id", "session_date", "sscxr_schema_version", "content_version", "sscxr_status",
             "conditions", "ablations")  # fmt: skip
"""Root attrs shown in the header or the ablations table rather than among the other attrs."""


@dataclass(frozen=True)
class StoreSummary:
    """A store at a glance; ``print`` it, or let Jupyter show its HTML tables.

    ``imaging`` has one row per subvolume (per condition and subvolume for ssc-11): ``planes``,
    ``cells``, ``frames``, ``trials`` (of ``/trials`` imaged by it; -1 when unknown) and
    ``imaged_s`` (frames / frame rate). ``trials`` and ``imaged_s`` are the totals.
    """

    archive: str | None
    session_id: str | None
    animal_id: str | None
    session_date: str | None
    url: str | None
    content_version: str | None
    schema_version: str | None
    status: str | None
    conditions: list[str]
    ablations: pd.DataFrame
    imaging: pd.DataFrame
    trials: int
    imaged_s: float
    cells_total: int | None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"session"`` (ssc-1) or ``"animal"`` (ssc-11)."""
        return "animal" if self.archive == "ssc-11" else "session"

    def header(self) -> list[tuple[str, str]]:
        """(label, value) rows of the identity table."""
        rows = [("animal", self.animal_id), ("session date", self.session_date),
                ("conditions", ", ".join(self.conditions) if self.conditions else None),
                ("cells (/cells)", self.cells_total), ("trials", self.trials),
                ("imaged (s)", f"{self.imaged_s:.1f}"), ("store", self.url),
                ("content version", self.content_version), ("schema version", self.schema_version),
                ("status", self.status)]  # fmt: skip
        return [(k, str(v)) for k, v in rows if v not in (None, "")]

    def __repr__(self) -> str:
        lines = [f"sscxr {self.kind} {self.session_id or '?'} ({self.archive or 'unknown archive'})"]
        width = max(len(k) for k, _ in self.header())
        lines += [f"  {k:<{width}}  {v}" for k, v in self.header()]
        lines += ["imaging", _indent(_table_text(self.imaging.rename(columns=_LABELS)))]
        if len(self.ablations):
            lines += ["ablations", _indent(_table_text(self.ablations))]
        for name, value in self.attrs.items():
            lines += [name, _indent(_value_text(value))]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        title = f"sscxr {self.kind} <b>{_esc(self.session_id or '?')}</b> ({_esc(self.archive or '?')})"
        parts = [f"<div class='sscxr-summary'><p>{title}</p>", _rows_html([(k, _esc(v)) for k, v in self.header()]),
                 "<p><b>imaging</b></p>", self.imaging.rename(columns=_LABELS).to_html(index=False, border=0)]
        if len(self.ablations):
            parts += ["<p><b>ablations</b></p>", self.ablations.to_html(index=False, border=0)]
        for name, value in self.attrs.items():
            parts += [f"<p><b>{_esc(name)}</b></p>", _value_html(value)]
        return "".join(parts) + "</div>"


_LABELS = {"imaged_s": "imaged (s)"}


# --- building -----------------------------------------------------------------------------------
def _subvolume_nodes(node: xr.DataTree) -> dict[int, xr.DataTree]:
    subs = node.children["imaging"].children if "imaging" in node.children else node.children
    found = {int(m.group(1)): n for name, n in subs.items() if (m := SUBVOLUME_GROUP.match(str(name)))}
    return dict(sorted(found.items()))


def _trials_per_subvolume(node: xr.DataTree) -> tuple[int, dict[int, int]]:
    if "trials" not in node.children:
        return 0, {}
    trials = node.children["trials"]
    n = int(trials.sizes.get("trial", 0))
    if "subvolume" not in trials.variables:
        return n, {}
    numbers, counts = np.unique(to_numpy(trials["subvolume"]).astype(np.int64), return_counts=True)
    return n, dict(zip(numbers.tolist(), counts.tolist(), strict=True))


def _imaging_rows(node: xr.DataTree, condition: str | None) -> tuple[list[dict[str, Any]], int]:
    n_trials, per_sub = _trials_per_subvolume(node)
    rows = []
    for number, sub in _subvolume_nodes(node).items():
        frames = int(sub.sizes.get("time", 0))
        rate = sub.attrs.get("frame_rate_hz")
        row: dict[str, Any] = {"condition": condition} if condition is not None else {}
        row |= {"subvolume": number, "planes": int(sub.sizes.get("plane", 0)), "cells": int(sub.sizes.get("cell", 0)),
                "frames": frames, "trials": per_sub.get(number, -1),
                "imaged_s": round(frames / float(rate), 1) if rate else float("nan")}  # fmt: skip
        rows.append(row)
    return rows, n_trials


def _ablations(attrs: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for item in attrs.get("ablations") or []:
        if isinstance(item, Mapping):
            ids = item.get("ids")
            rows.append({k: v for k, v in item.items() if k != "ids"} | {"cells": len(ids) if ids is not None else None})
        else:
            rows.append({"kind": str(item)})
    return pd.DataFrame(rows)


def summarize(tree: xr.DataTree, *, url: str | None = None) -> StoreSummary:
    """The :class:`StoreSummary` of a session or animal tree (``tree.sscx.summary()``).

    ``url``: the store's URL, when the caller knows it better than the tree (default: the tree's
    ``encoding["source"]``, which the catalog's reader sets).

    >>> from sscxr.testing.stores import make_animal_tree
    >>> s = summarize(make_animal_tree(n_cells=6), url="s3://bucket/an274424.zarr")
    >>> s.session_id, s.conditions, list(s.imaging.columns[:3]), len(s.imaging)
    ('an274424', ['pre', 'post_touch'], ['condition', 'subvolume', 'planes'], 4)
    """
    root = tree.root
    attrs = {str(k): v for k, v in root.attrs.items()}
    rows: list[dict[str, Any]] = []
    n_trials = 0
    conditions = [str(c) for c in attrs.get("conditions") or []]
    nodes = [(c, root.children[c]) for c in conditions if c in root.children] if "cells" in root.children \
        else [(None, root)]  # fmt: skip
    for condition, node in nodes:
        more, n = _imaging_rows(node, condition)
        rows += more
        n_trials += n
    imaging = pd.DataFrame(rows)
    cells = int(root.children["cells"].sizes.get("cell", 0)) if "cells" in root.children else None
    extra = {k: v for k, v in attrs.items() if k not in _IDENTITY}
    return StoreSummary(
        archive=attrs.get("archive"), session_id=session_id(root), animal_id=attrs.get("animal_id"),
        session_date=attrs.get("session_date"), url=url or root.encoding.get("source"),
        content_version=attrs.get("content_version"), schema_version=attrs.get("sscxr_schema_version"),
        status=attrs.get("sscxr_status"), conditions=conditions, ablations=_ablations(attrs), imaging=imaging,
        trials=n_trials, imaged_s=float(np.nansum(imaging["imaged_s"])) if len(imaging) else 0.0,
        cells_total=cells, attrs=extra)  # fmt: skip


# --- rendering ----------------------------------------------------------------------------------
def _esc(value: Any) -> str:
    return html.escape(str(value))


def _indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


def _table_text(frame: pd.DataFrame) -> str:
    return frame.to_string(index=False) if len(frame) else "(none)"


def _is_records(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0 \
        and all(isinstance(v, Mapping) for v in value)  # fmt: skip


def _scalar_text(value: Any) -> str:
    if isinstance(value, Sequence) and not isinstance(value, str):
        return ", ".join(map(str, value)) if value else "(none)"
    return str(value)


def _value_text(value: Any) -> str:
    """A dict as ``key  value`` lines (nested dicts indented), a list of dicts as a table."""
    if isinstance(value, Mapping):
        if not value:
            return "(empty)"
        width = max(len(str(k)) for k in value)
        lines = []
        for k, v in value.items():
            if isinstance(v, Mapping) or _is_records(v):
                lines += [str(k), _indent(_value_text(v))]
            else:
                lines.append(f"{str(k):<{width}}  {_scalar_text(v)}")
        return "\n".join(lines)
    if _is_records(value):
        return pd.DataFrame(list(value)).to_string(index=False)
    return _scalar_text(value)


def _rows_html(rows: Sequence[tuple[str, Any]]) -> str:
    """A two-column table; the values are HTML already (escaped text or nested tables)."""
    body = "".join(f"<tr><th style='text-align:left'>{_esc(k)}</th><td style='text-align:left'>{v}</td></tr>"
                   for k, v in rows)  # fmt: skip
    return f"<table>{body}</table>"


def _value_html(value: Any) -> str:
    """A dict as a two-column table (nested dicts as nested tables), a list of dicts as a table."""
    if isinstance(value, Mapping):
        return _rows_html([(str(k), _value_html(v)) for k, v in value.items()])
    if _is_records(value):
        return pd.DataFrame(list(value)).to_html(index=False, border=0)
    return _esc(_scalar_text(value))
