"""The sscxr vocabulary as data, and ``validate(tree)`` that reports every violation at once.

This module is the single place where store names live (dims, groups, variables, units, dtypes,
required attrs). Converters write what it says; readers check what it says.
See ``docs/store-layout.md`` (and ``docs/raw.md`` for ``/raw`` and ``/video``) for the prose version.

>>> from sscxr.schema import SSC1_GROUPS, VIDEO_SPEC
>>> SSC1_GROUPS["trials"].required_vars["start_time"].units
's'
>>> VIDEO_SPEC.required_vars["mp4"]
Var(dims=('byte',), units=None, dtype='uint8')

:func:`validate` returns :class:`~sscxr.errors.Problem` records (``path``, ``variable``,
``kind``, ``message``): select them by their fields, e.g. with :func:`problems_in`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import numpy as np
import xarray as xr

from .errors import Problem, ProblemKind

SCHEMA_VERSION = "1"
ARCHIVES = ("ssc-1", "ssc-11")
DIMS = ("cell", "time", "trial", "plane", "y", "x", "channel", "whisker", "event", "pixel", "frame", "byte")
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
RAW_CHANNELS = ("green", "red")
"""Channels of a ``/raw/subvolume_NN`` stack, in TIFF page order (green always, red with ``--red``)."""
VIDEO_STORAGE = "mp4 bytes"
"""``/video`` attr ``storage``: the original mp4 files, byte-exact (docs/raw.md)."""

DtypeName: TypeAlias = Literal["int", "float", "bool", "str", "uint8", "uint16", "uint32", "int64", "float64"]
"""A :class:`Var` dtype: a family (``int`` = any integer, ``float``, ``bool``, ``str`` = any string
storage: numpy ``U``, ``StringDType`` or object) or one exact numpy dtype."""
_FAMILIES = {"int": "iu", "float": "f", "bool": "b", "str": "OUST"}


@dataclass(frozen=True)
class Var:
    """One variable or coordinate: its dims, its unit (if it has one) and its dtype (if fixed)."""

    dims: tuple[str, ...]
    units: str | None = None
    dtype: DtypeName | None = None


@dataclass(frozen=True)
class GroupSpec:
    """What a group must hold: variables/coords by name, and required attrs."""

    required_vars: Mapping[str, Var] = field(default_factory=dict)
    required_attrs: tuple[str, ...] = ()


SSC1_GROUPS: dict[str, GroupSpec] = {
    "trials": GroupSpec(
        {
            "trial": Var(("trial",), dtype="int"),
            "start_time": Var(("trial",), "s", "float"),
            "trial_type": Var(("trial",), dtype="str"),
            "outcome": Var(("trial",), dtype="str"),
            "correct_side": Var(("trial",), dtype="str"),
            "pole_position": Var(("trial",), "mm", "float"),
            "pole_position_steps": Var(("trial",), "steps", "float"),
            "subvolume": Var(("trial",), dtype="int"),
            "has_whisker": Var(("trial",), dtype="bool"),
        }
    ),
    "events": GroupSpec(
        {
            "kind": Var(("event",), dtype="str"),
            "start_time": Var(("event",), "s", "float"),
            "stop_time": Var(("event",), "s", "float"),
            "trial": Var(("event",), dtype="int"),
        }
    ),
    "whisker": GroupSpec(
        {
            "time": Var(("time",), "s", "float"),
            "trial": Var(("time",), dtype="int"),
            "angle": Var(("whisker", "time"), "deg", "float"),
            "curvature_change": Var(("whisker", "time"), "1/mm", "float"),
        }
    ),
}

SUBVOLUME_SPEC = GroupSpec(
    {
        "dff": Var(("cell", "time"), "dF/F", "float"),
        "cell": Var(("cell",), dtype="int"),
        "time": Var(("time",), "s", "float"),
        "trial": Var(("time",), dtype="int"),
        "plane": Var(("plane",), dtype="int"),
        "cell_plane": Var(("cell",), dtype="int"),
        "fov": Var(("cell",), dtype="str"),
        "x_um": Var(("cell",), "um", "float"),
        "y_um": Var(("cell",), "um", "float"),
        "z_um": Var(("cell",), "um", "float"),
        "frame_time": Var(("plane", "time"), "s", "float"),
    },
    required_attrs=("subvolume", "frame_rate_hz"),
)

ROIS_SPEC = GroupSpec(
    {
        "mask_cell": Var(("pixel",), dtype="int"),
        "mask_y": Var(("pixel",), dtype="int"),
        "mask_x": Var(("pixel",), dtype="int"),
    }
)

SSC11_CELLS_SPEC = GroupSpec(
    {
        "cell": Var(("cell",), dtype="int"),
        "subvolume": Var(("cell",), dtype="int"),
        "plane": Var(("cell",), dtype="int"),
        "x_um": Var(("cell",), "um", "float"),
        "y_um": Var(("cell",), "um", "float"),
        "z_um": Var(("cell",), "um", "float"),
        "ablated": Var(("cell",), dtype="bool"),
        "near_ablated": Var(("cell",), dtype="bool"),
    }
)


def raw_channel_vars(channel: str) -> dict[str, Var]:
    """The variables one channel (``green`` or ``red``) adds to a ``/raw/subvolume_NN`` group.

    >>> sorted(raw_channel_vars("red"))
    ['red', 'red_crc32c', 'red_max', 'red_mean']
    """
    return {
        channel: Var(("plane", "time", "y", "x"), "counts", "uint16"),
        f"{channel}_crc32c": Var(("plane", "time"), dtype="uint32"),
        f"{channel}_mean": Var(("plane", "y", "x"), "counts", "float64"),
        f"{channel}_max": Var(("plane", "y", "x"), "counts", "uint16"),
    }


RAW_SPEC = GroupSpec(
    {
        "plane": Var(("plane",), dtype="int"),
        "time": Var(("time",), "s", "float"),
        "trial": Var(("time",), dtype="int"),
        "frame_time": Var(("plane", "time"), "s", "float"),
        "frame_present": Var(("plane", "time"), dtype="bool"),
        **raw_channel_vars("green"),
    },
    required_attrs=("layout", "channels", "frame_shape", "source_files", "frames_present", "warnings"),
)
"""``/raw/subvolume_NN`` (``sscxr convert --raw``): registered frames of the imaging subvolume of
the same number, frame ``t`` at the same instant as its ``dff`` frame ``t``. Each channel named in
the ``channels`` attr adds :func:`raw_channel_vars`."""

VIDEO_SPEC = GroupSpec(
    {
        "trial": Var(("trial",), dtype="int"),
        "byte_offset": Var(("trial",), "bytes", "int"),
        "byte_count": Var(("trial",), "bytes", "int"),
        "file_crc32c": Var(("trial",), dtype="uint32"),
        "source_file": Var(("trial",), dtype="str"),
        "first_frame": Var(("trial",), dtype="int"),
        "n_frames": Var(("trial",), dtype="int"),
        "codec": Var(("trial",), dtype="str"),
        "pix_fmt": Var(("trial",), dtype="str"),
        "decode_format": Var(("trial",), dtype="str"),
        "time_base": Var(("trial",), dtype="str"),
        "width": Var(("trial",), "px", "int"),
        "height": Var(("trial",), "px", "int"),
        "average_rate": Var(("trial",), "Hz", "float"),
        "frame_time_rule": Var(("trial",), dtype="str"),
        "frame_pts": Var(("frame",), dtype="int"),
        "frame_keyframe": Var(("frame",), dtype="bool"),
        "frame_crc32c": Var(("frame",), dtype="uint32"),
        "frame_time": Var(("frame",), "s", "float"),
        "frame_trial": Var(("frame",), dtype="int"),
        "mp4": Var(("byte",), dtype="uint8"),
    },
    required_attrs=("storage",),
)
"""``/video`` (``sscxr convert --raw``): every trial's mp4, byte-exact in ``mp4``, with a per-trial
and per-frame index; read with :func:`sscxr.video.video_frames`."""


# --- validation ---------------------------------------------------------------------------------
def validate(tree: xr.DataTree, *, raise_on_error: bool = True) -> list[Problem]:
    """Check a session/animal tree against the schema; report every violation at once.

    Returns the list of :class:`~sscxr.errors.Problem` (empty when valid); ``str(problem)`` is
    its message. With ``raise_on_error`` (the default) a non-empty list raises
    :class:`sscxr.errors.SchemaError` carrying all of them. Only metadata is read (names, dims,
    dtypes, attrs), never array values.

    >>> import xarray as xr
    >>> problem = validate(xr.DataTree(), raise_on_error=False)[0]
    >>> problem.path, problem.kind, str(problem)
    ('', 'missing-attr', "root attrs: missing 'sscxr_schema_version'")
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


def problems_in(problems: Iterable[Problem], groups: Sequence[str]) -> list[Problem]:
    """The ``problems`` that concern ``groups`` (or groups below them) or the root attrs: those
    that matter to a reader that opened only ``groups``.

    >>> ps = [Problem("", None, "missing-attr", "root attrs: missing 'archive'"),
    ...       Problem("imaging", None, "missing-group", "/imaging: group missing"),
    ...       Problem("trials", "start_time", "wrong-units", "/trials/start_time: ...")]
    >>> [p.path for p in problems_in(ps, ["trials"])]
    ['', 'trials']
    """
    return [p for p in problems
            if (p.path == "" and p.kind != "missing-group") or any(p.in_group(g) for g in groups)]


def _root_problem(kind: ProblemKind, message: str) -> Problem:
    return Problem("", None, kind, f"root attrs: {message}")


def _check_root(attrs: Mapping[str, Any]) -> list[Problem]:
    problems = [_root_problem("missing-attr", f"missing {name!r}") for name in REQUIRED_ROOT_ATTRS if name not in attrs]
    if "archive" in attrs and attrs["archive"] not in ARCHIVES:
        problems.append(_root_problem("bad-value", f"archive is {attrs['archive']!r}, expected one of {ARCHIVES}"))
    version = attrs.get("sscxr_schema_version")
    if version is not None and str(version) != SCHEMA_VERSION:
        problems.append(_root_problem("bad-value",
                                      f"sscxr_schema_version is {version!r}, this sscxr reads {SCHEMA_VERSION!r}"))
    prov = attrs.get("provenance")
    if prov is not None:
        if not isinstance(prov, Mapping):
            problems.append(_root_problem("bad-value", "provenance is not a mapping"))
        else:
            problems += [_root_problem("missing-attr", f"provenance lacks {k!r}") for k in PROVENANCE_KEYS
                         if k not in prov]
    return problems


def dtype_matches(dtype: np.dtype, expected: DtypeName) -> bool:
    """Whether ``dtype`` is ``expected`` (a family such as ``"int"`` or one exact dtype).

    >>> dtype_matches(np.dtype("int32"), "int"), dtype_matches(np.dtype("int32"), "int64")
    (True, False)
    """
    family = _FAMILIES.get(expected)
    return dtype.kind in family if family is not None else dtype == np.dtype(expected)


def check_group(ds: xr.Dataset, spec: GroupSpec, path: str) -> list[Problem]:
    """Problems of one group's dataset against its spec (names, dims, units, dtypes, attrs).

    ``path`` is the group's path, with or without its leading slash.

    >>> ds = xr.Dataset({"mp4": ("byte", np.zeros(3, np.int16))}, attrs={"storage": VIDEO_STORAGE})
    >>> [(p.variable, p.kind) for p in check_group(ds, VIDEO_SPEC, "video") if p.variable == "mp4"]
    [('mp4', 'wrong-dtype')]
    """
    group = path.strip("/")
    where = "/" + group
    problems = []
    for name, var in spec.required_vars.items():
        if name not in ds.variables:
            problems.append(Problem(group, name, "missing-variable", f"{where}: missing variable {name!r} {var.dims}"))
            continue
        got = ds.variables[name]
        if tuple(got.dims) != var.dims:
            problems.append(Problem(group, name, "wrong-dims",
                                    f"{where}/{name}: dims are {tuple(got.dims)}, expected {var.dims}"))
        if var.units is not None and got.attrs.get("units") != var.units:
            problems.append(Problem(group, name, "wrong-units",
                                    f"{where}/{name}: units are {got.attrs.get('units')!r}, expected {var.units!r}"))
        if var.dtype is not None and not dtype_matches(got.dtype, var.dtype):
            problems.append(Problem(group, name, "wrong-dtype",
                                    f"{where}/{name}: dtype is {got.dtype}, expected {var.dtype}"))
    problems += [Problem(group, None, "missing-attr", f"{where}: missing attr {a!r}")
                 for a in spec.required_attrs if a not in ds.attrs]
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


def _missing_group(path: str) -> Problem:
    return Problem(path, None, "missing-group", f"/{path}: group missing")


def _check_groups(tree: xr.DataTree, specs: Mapping[str, GroupSpec], prefix: str = "") -> list[Problem]:
    problems = []
    for name, spec in specs.items():
        path = f"{prefix}{name}"
        ds = _node_ds(tree, path)
        problems += [_missing_group(path)] if ds is None else check_group(ds, spec, path)
    return problems


def _check_subvolumes(tree: xr.DataTree, path: str) -> list[Problem]:
    node = _child(tree, path) if path else tree
    if node is None:
        return [_missing_group(path)]
    names = [n for n in node.children if SUBVOLUME_GROUP.match(n)]
    if not names:
        return [Problem(path, None, "missing-group", f"/{path}: no subvolume_NN group")]
    problems = []
    for name in names:
        sub = f"{path}/{name}" if path else name
        child = node.children[name]
        problems += check_group(child.to_dataset(inherit=False), SUBVOLUME_SPEC, sub)
        if "rois" in child.children:
            problems += check_group(child.children["rois"].to_dataset(inherit=False), ROIS_SPEC, f"{sub}/rois")
    return problems


def _check_raw(tree: xr.DataTree) -> list[Problem]:
    """``/raw/subvolume_NN``: the spec, the channels it names, and agreement with the imaging group."""
    node = tree.children["raw"]
    names = [n for n in node.children if SUBVOLUME_GROUP.match(n)]
    if not names:
        return [Problem("raw", None, "missing-group", "/raw: no subvolume_NN group")]
    problems = []
    for name in names:
        path = f"raw/{name}"
        ds = node.children[name].to_dataset(inherit=False)
        problems += check_group(ds, RAW_SPEC, path)
        problems += _check_raw_channels(ds, path)
        problems += _check_raw_against_imaging(ds, _node_ds(tree, f"imaging/{name}"), path)
    return problems


def _check_raw_channels(ds: xr.Dataset, path: str) -> list[Problem]:
    channels = ds.attrs.get("channels")
    if channels is None:
        return []  # reported as a missing attr
    if (isinstance(channels, str) or not isinstance(channels, Sequence) or "green" not in channels
            or not set(channels) <= set(RAW_CHANNELS)):
        return [Problem(path, None, "bad-value",
                        f"/{path}: channels is {channels!r}, expected 'green' and optionally 'red'")]
    extra = {k: v for c in channels if c != "green" for k, v in raw_channel_vars(c).items()}
    problems = check_group(ds, GroupSpec(extra), path)
    shape = ds.attrs.get("frame_shape")
    sizes = [ds.sizes.get("y"), ds.sizes.get("x")]
    if shape is not None and list(shape) != sizes:
        problems.append(Problem(path, None, "bad-value",
                                f"/{path}: frame_shape is {list(shape)}, but y, x are {sizes}"))
    return problems


def _check_raw_against_imaging(ds: xr.Dataset, imaging: xr.Dataset | None, path: str) -> list[Problem]:
    name = path.rsplit("/", 1)[-1]
    if imaging is None:
        return [Problem(path, None, "mismatch", f"/{path}: no /imaging/{name} group to match its frames")]
    problems = []
    for dim in ("plane", "time"):
        raw_n, imaging_n = ds.sizes.get(dim), imaging.sizes.get(dim)
        if raw_n is not None and imaging_n is not None and raw_n != imaging_n:
            problems.append(Problem(path, None, "mismatch",
                                    f"/{path}: {raw_n} {dim} entries, but /imaging/{name} has {imaging_n}"))
    return problems


def _check_video(tree: xr.DataTree) -> list[Problem]:
    ds = tree.children["video"].to_dataset(inherit=False)
    problems = check_group(ds, VIDEO_SPEC, "video")
    storage = ds.attrs.get("storage")
    if storage is not None and storage != VIDEO_STORAGE:
        problems.append(Problem("video", None, "bad-value",
                                f"/video: storage is {storage!r}, expected {VIDEO_STORAGE!r}"))
    return problems


def _check_ssc1(tree: xr.DataTree) -> list[Problem]:
    problems = _check_groups(tree, SSC1_GROUPS)
    if "session_date" not in tree.attrs:
        problems.append(_root_problem("missing-attr", "missing 'session_date'"))
    problems += _check_subvolumes(tree, "imaging")
    if "raw" in tree.children:
        problems += _check_raw(tree)
    if "video" in tree.children:
        problems += _check_video(tree)
    return problems


def _check_ssc11(tree: xr.DataTree) -> list[Problem]:
    problems = _check_groups(tree, {"cells": SSC11_CELLS_SPEC})
    conditions = [c for c in tree.children if c in CONDITIONS.values()]
    if not conditions:
        problems.append(Problem("", None, "missing-group",
                                f"/: no condition group (expected some of {sorted(CONDITIONS.values())})"))
    for cond in conditions:
        problems += _check_groups(tree, {"trials": SSC1_GROUPS["trials"]}, f"{cond}/")
        problems += _check_subvolumes(tree, cond)
    return problems
