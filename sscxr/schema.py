"""The sscxr vocabulary as data, and ``validate(tree)`` that reports every violation at once.

This module is the single place where store names live (dims, groups, variables, units,
required attrs). Converters write what it says; readers check what it says.
See ``docs/store-layout.md`` for the prose version.

>>> from sscxr.schema import SSC1_GROUPS
>>> SSC1_GROUPS["trials"].required_vars["start_time"].units
's'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import xarray as xr

SCHEMA_VERSION = "1"
ARCHIVES = ("ssc-1", "ssc-11")
DIMS = ("cell", "time", "trial", "plane", "y", "x", "channel", "whisker", "event", "pixel")
STATUS_COMPLETE = "complete"
STATUS_INCOMPLETE = "incomplete"

REQUIRED_ROOT_ATTRS = ("sscxr_schema_version", "archive", "provenance", "animal_id", "sscxr_status")
PROVENANCE_KEYS = ("sources", "converter", "created", "spec")

TRIAL_TYPES = ("HitL", "HitR", "ErrL", "ErrR", "NoLickL", "NoLickR")
OUTCOMES = ("hit", "error", "no_lick", "none")
EVENT_KINDS = {
    "poleInReach": "pole_in_reach",
    "leftLicks": "lick_left",
    "rightLicks": "lick_right",
    "leftReward": "reward_left",
    "rightReward": "reward_right",
    "rewardCue": "response_cue",
}
TOUCH_KINDS = ("touch_protraction", "touch_retraction")
CONDITIONS = {
    "preablate": "pre",
    "postablate": "post",
    "postablate_silent": "post_silent",
    "postablate_whisking": "post_whisking",
    "postablate_touch": "post_touch",
}

SUBVOLUME_GROUP = re.compile(r"^subvolume_(\d+)$")


@dataclass(frozen=True)
class Var:
    """One variable or coordinate: its dims and (if it has one) its unit."""

    dims: tuple[str, ...]
    units: str | None = None


@dataclass(frozen=True)
class GroupSpec:
    """What a group must hold: variables/coords by name, and required attrs."""

    required_vars: Mapping[str, Var] = field(default_factory=dict)
    required_attrs: tuple[str, ...] = ()


SSC1_GROUPS: dict[str, GroupSpec] = {
    "trials": GroupSpec(
        {
            "trial": Var(("trial",)),
            "start_time": Var(("trial",), "s"),
            "trial_type": Var(("trial",)),
            "outcome": Var(("trial",)),
            "correct_side": Var(("trial",)),
            "pole_position": Var(("trial",), "mm"),
            "pole_position_steps": Var(("trial",), "steps"),
            "subvolume": Var(("trial",)),
            "has_whisker": Var(("trial",)),
        }
    ),
    "events": GroupSpec(
        {
            "kind": Var(("event",)),
            "start_time": Var(("event",), "s"),
            "stop_time": Var(("event",), "s"),
            "trial": Var(("event",)),
        }
    ),
    "whisker": GroupSpec(
        {
            "time": Var(("time",), "s"),
            "trial": Var(("time",)),
            "angle": Var(("whisker", "time"), "deg"),
            "curvature_change": Var(("whisker", "time"), "1/mm"),
        }
    ),
}

SUBVOLUME_SPEC = GroupSpec(
    {
        "dff": Var(("cell", "time"), "dF/F"),
        "cell": Var(("cell",)),
        "time": Var(("time",), "s"),
        "trial": Var(("time",)),
        "plane": Var(("plane",)),
        "cell_plane": Var(("cell",)),
        "fov": Var(("cell",)),
        "x_um": Var(("cell",), "um"),
        "y_um": Var(("cell",), "um"),
        "z_um": Var(("cell",), "um"),
        "frame_time": Var(("plane", "time"), "s"),
    },
    required_attrs=("subvolume", "frame_rate_hz"),
)

ROIS_SPEC = GroupSpec(
    {
        "mask_cell": Var(("pixel",)),
        "mask_y": Var(("pixel",)),
        "mask_x": Var(("pixel",)),
    }
)

SSC11_CELLS_SPEC = GroupSpec(
    {
        "cell": Var(("cell",)),
        "subvolume": Var(("cell",)),
        "plane": Var(("cell",)),
        "x_um": Var(("cell",), "um"),
        "y_um": Var(("cell",), "um"),
        "z_um": Var(("cell",), "um"),
        "ablated": Var(("cell",)),
        "near_ablated": Var(("cell",)),
    }
)


def validate(tree: xr.DataTree, *, raise_on_error: bool = True) -> list[str]:
    """Check a session/animal tree against the schema; report every violation at once.

    Returns the list of problems (empty when valid). With ``raise_on_error`` (the default) a
    non-empty list raises :class:`sscxr.errors.SchemaError` carrying all of them.

    >>> import xarray as xr
    >>> validate(xr.DataTree(), raise_on_error=False)[0]
    "root attrs: missing 'sscxr_schema_version'"
    """
    problems = _check_root({str(k): v for k, v in tree.attrs.items()})
    archive = tree.attrs.get("archive")
    if archive == "ssc-1":
        problems += _check_ssc1(tree)
    elif archive == "ssc-11":
        problems += _check_ssc11(tree)
    if problems and raise_on_error:
        from .errors import SchemaError

        raise SchemaError(problems)
    return problems


def _check_root(attrs: Mapping[str, Any]) -> list[str]:
    problems = [f"root attrs: missing {name!r}" for name in REQUIRED_ROOT_ATTRS if name not in attrs]
    if "archive" in attrs and attrs["archive"] not in ARCHIVES:
        problems.append(f"root attrs: archive is {attrs['archive']!r}, expected one of {ARCHIVES}")
    version = attrs.get("sscxr_schema_version")
    if version is not None and str(version) != SCHEMA_VERSION:
        problems.append(f"root attrs: sscxr_schema_version is {version!r}, this sscxr reads {SCHEMA_VERSION!r}")
    prov = attrs.get("provenance")
    if prov is not None:
        if not isinstance(prov, Mapping):
            problems.append("root attrs: provenance is not a mapping")
        else:
            problems += [f"root attrs: provenance lacks {k!r}" for k in PROVENANCE_KEYS if k not in prov]
    return problems


def check_group(ds: xr.Dataset, spec: GroupSpec, path: str) -> list[str]:
    """Problems of one group's dataset against its spec (names, dims, units, attrs)."""
    problems = []
    for name, var in spec.required_vars.items():
        if name not in ds.variables:
            problems.append(f"{path}: missing variable {name!r} {var.dims}")
            continue
        got = ds.variables[name]
        if tuple(got.dims) != var.dims:
            problems.append(f"{path}/{name}: dims are {tuple(got.dims)}, expected {var.dims}")
        if var.units is not None and got.attrs.get("units") != var.units:
            problems.append(f"{path}/{name}: units are {got.attrs.get('units')!r}, expected {var.units!r}")
    problems += [f"{path}: missing attr {a!r}" for a in spec.required_attrs if a not in ds.attrs]
    return problems


def _node_ds(tree: xr.DataTree, path: str) -> xr.Dataset | None:
    node = _child(tree, path)
    return None if node is None else node.to_dataset(inherit=False)


def _child(tree: xr.DataTree, path: str) -> xr.DataTree | None:
    """The sub-tree at ``path``, or None (``tree[path]`` may also return a variable)."""
    try:
        node = tree[path]
    except KeyError:
        return None
    return node if isinstance(node, xr.DataTree) else None


def _check_groups(tree: xr.DataTree, specs: Mapping[str, GroupSpec], prefix: str = "") -> list[str]:
    problems = []
    for name, spec in specs.items():
        path = f"{prefix}{name}"
        ds = _node_ds(tree, path)
        problems += [f"/{path}: group missing"] if ds is None else check_group(ds, spec, "/" + path)
    return problems


def _check_subvolumes(tree: xr.DataTree, path: str) -> list[str]:
    node = _child(tree, path) if path else tree
    if node is None:
        return [f"/{path}: group missing"]
    names = [n for n in node.children if SUBVOLUME_GROUP.match(n)]
    if not names:
        return [f"/{path}: no subvolume_NN group"]
    problems = []
    for name in names:
        sub = f"{path}/{name}" if path else name
        child = node.children[name]
        problems += check_group(child.to_dataset(inherit=False), SUBVOLUME_SPEC, "/" + sub)
        if "rois" in child.children:
            problems += check_group(child.children["rois"].to_dataset(inherit=False), ROIS_SPEC, f"/{sub}/rois")
    return problems


def _check_ssc1(tree: xr.DataTree) -> list[str]:
    problems = _check_groups(tree, SSC1_GROUPS)
    problems += ["root attrs: missing 'session_date'"] if "session_date" not in tree.attrs else []
    if "imaging" not in tree.children:
        return problems + ["/imaging: group missing"]
    return problems + _check_subvolumes(tree, "imaging")


def _check_ssc11(tree: xr.DataTree) -> list[str]:
    problems = _check_groups(tree, {"cells": SSC11_CELLS_SPEC})
    conditions = [c for c in tree.children if c in CONDITIONS.values()]
    if not conditions:
        problems.append(f"/: no condition group (expected some of {sorted(CONDITIONS.values())})")
    for cond in conditions:
        problems += _check_groups(tree, {k: v for k, v in SSC1_GROUPS.items() if k == "trials"}, f"{cond}/")
        problems += _check_subvolumes(tree, cond)
    return problems
