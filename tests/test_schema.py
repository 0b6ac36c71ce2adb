"""sscxr.schema.validate: structured problems, one per violation, for every group of the layout.

Valid trees come from sscxr.testing (session, animal) and from a real ``--raw`` conversion of a
tiny synthetic archive (``/raw`` and ``/video``); each broken tree changes one thing and must
produce exactly the one Problem that names it (path, variable, kind).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest
import xarray as xr

from sscxr.errors import Problem, SchemaError
from sscxr.schema import RAW_SPEC, VIDEO_SPEC, check_group, problems_in, raw_channel_vars, validate
from sscxr.testing.stores import make_animal_tree, make_session_tree

Edit = Callable[[xr.Dataset], xr.Dataset | None]


def edit(tree: xr.DataTree, path: str, change: Edit) -> xr.DataTree:
    """A copy of ``tree`` with the group at ``path`` replaced by ``change(ds)`` (None: removed, with
    its subtree)."""
    nodes = tree.to_dict()
    key = "/" + path.strip("/") if path.strip("/") else "/"
    new = change(nodes[key].copy())
    if new is None:
        nodes = {p: ds for p, ds in nodes.items() if p != key and not p.startswith(key + "/")}
    else:
        nodes[key] = new
    return xr.DataTree.from_dict(nodes)


def fields(problems: list[Problem]) -> list[tuple[str, str | None, str]]:
    return [(p.path, p.variable, p.kind) for p in problems]


@pytest.fixture(scope="module")
def session() -> xr.DataTree:
    return make_session_tree(n_cells=4, n_trials=3)


@pytest.fixture(scope="module")
def animal() -> xr.DataTree:
    return make_animal_tree(n_cells=6)


@pytest.fixture(scope="module")
def raw_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A session converted with ``--raw --red``: imaging, raw stacks (green + red) and videos."""
    pytest.importorskip("av")
    pytest.importorskip("tifffile")
    from sscxr.testing.archives import write_ssc1_session
    from sscxr_conversion import convert
    from sscxr_conversion.spec import ConversionSpec

    root = tmp_path_factory.mktemp("schema") / "an197522_2013_03_08"
    archive = write_ssc1_session(root, preset="tiny", seed=5, raw=True, video=True, image_size=16,
                                 frames_per_tiff=150, n_video_trials=2, whisker_s=0.3)
    url = str(root.parent / "an197522_2013_03_08.zarr")
    convert(archive.directory, url, spec=ConversionSpec(raw=True, red=True), progress=False)
    return url


@pytest.fixture(scope="module")
def raw_tree(raw_url: str) -> xr.DataTree:
    return xr.open_datatree(raw_url, engine="zarr", chunks=None)


# --- valid trees --------------------------------------------------------------------------------
def test_testing_trees_are_valid(session: xr.DataTree, animal: xr.DataTree) -> None:
    assert validate(session, raise_on_error=False) == []
    assert validate(animal, raise_on_error=False) == []


def test_a_raw_conversion_validates_with_its_raw_and_video_groups(raw_url: str, raw_tree: xr.DataTree) -> None:
    import sscxr

    assert {"raw", "video"} <= set(raw_tree.children)
    raws = [n for n in raw_tree["raw"].children]
    assert raws and all(set(raw_channel_vars("red")) <= set(raw_tree["raw"][n].variables) for n in raws)
    assert validate(raw_tree) == []
    assert validate(sscxr.open_session(raw_url), raise_on_error=False) == []


def test_the_raw_and_video_specs_name_what_the_converter_writes(raw_tree: xr.DataTree) -> None:
    """Every variable of the written groups is described (the spec is not a subset by accident)."""
    video = raw_tree["video"].to_dataset(inherit=False)
    assert set(map(str, video.variables)) == set(VIDEO_SPEC.required_vars)
    sub = raw_tree["raw"][next(iter(raw_tree["raw"].children))].to_dataset(inherit=False)
    assert set(map(str, sub.variables)) == set(RAW_SPEC.required_vars) | set(raw_channel_vars("red"))
    assert set(RAW_SPEC.required_attrs) <= set(sub.attrs)


# --- one broken thing, one problem ---------------------------------------------------------------
def _set_attrs(**attrs: object) -> Edit:
    return lambda ds: ds.assign_attrs(attrs)


def _drop_attr(name: str) -> Edit:
    def change(ds: xr.Dataset) -> xr.Dataset:
        ds.attrs = {k: v for k, v in ds.attrs.items() if k != name}
        return ds
    return change


def _var_attrs(var: str, **attrs: object) -> Edit:
    def change(ds: xr.Dataset) -> xr.Dataset:
        ds[var].attrs.update(attrs)
        return ds
    return change


def _cast(var: str, dtype: str) -> Edit:
    def change(ds: xr.Dataset) -> xr.Dataset:
        ds[var] = ds[var].astype(dtype)
        return ds
    return change


SESSION_CASES: dict[str, tuple[str, Edit, tuple[str, str | None, str]]] = {
    "group removed": ("whisker", lambda ds: None, ("whisker", None, "missing-group")),
    "all imaging removed": ("imaging", lambda ds: None, ("imaging", None, "missing-group")),
    "variable removed": ("trials", lambda ds: ds.drop_vars("outcome"), ("trials", "outcome", "missing-variable")),
    "rois variable removed": ("imaging/subvolume_02/rois", lambda ds: ds.drop_vars("mask_x"),
                              ("imaging/subvolume_02/rois", "mask_x", "missing-variable")),
    "dims swapped": ("whisker", lambda ds: ds.assign(angle=ds.angle.T), ("whisker", "angle", "wrong-dims")),
    "units changed": ("imaging/subvolume_01", _var_attrs("dff", units="%"),
                      ("imaging/subvolume_01", "dff", "wrong-units")),
    "dtype changed": ("trials", _cast("has_whisker", "int8"), ("trials", "has_whisker", "wrong-dtype")),
    "group attr removed": ("imaging/subvolume_01", _drop_attr("frame_rate_hz"),
                           ("imaging/subvolume_01", None, "missing-attr")),
    "root attr removed": ("", _drop_attr("session_date"), ("", None, "missing-attr")),
    "root attr wrong": ("", _set_attrs(sscxr_schema_version="99"), ("", None, "bad-value")),
    "provenance not a mapping": ("", _set_attrs(provenance="x"), ("", None, "bad-value")),
}


@pytest.mark.parametrize("case", SESSION_CASES)
def test_each_broken_session_gives_its_problem(session: xr.DataTree, case: str) -> None:
    path, change, expected = SESSION_CASES[case]
    problems = validate(edit(session, path, change), raise_on_error=False)
    assert fields(problems) == [expected]


def test_animal_problems(animal: xr.DataTree) -> None:
    no_conditions = xr.DataTree.from_dict({p: ds for p, ds in animal.to_dict().items()
                                           if p == "/" or p.startswith("/cells")})
    assert fields(validate(no_conditions, raise_on_error=False)) == [("", None, "missing-group")]
    broken = edit(animal, "cells", _cast("ablated", "float64"))
    assert fields(validate(broken, raise_on_error=False)) == [("cells", "ablated", "wrong-dtype")]
    broken = edit(animal, "pre/trials", lambda ds: ds.drop_vars("start_time"))
    assert fields(validate(broken, raise_on_error=False)) == [("pre/trials", "start_time", "missing-variable")]


def _channels(*names: str) -> Edit:
    return _set_attrs(channels=list(names))


RAW_CASES: dict[str, tuple[str, Edit, tuple[str, str | None, str]]] = {
    "summary image removed": ("raw/subvolume_01", lambda ds: ds.drop_vars("green_max"),
                              ("raw/subvolume_01", "green_max", "missing-variable")),
    "red named but absent": ("raw/subvolume_01", lambda ds: ds.drop_vars("red_crc32c"),
                             ("raw/subvolume_01", "red_crc32c", "missing-variable")),
    "frames not uint16": ("raw/subvolume_02", _cast("green", "float32"), ("raw/subvolume_02", "green", "wrong-dtype")),
    "time not in s": ("raw/subvolume_01", _var_attrs("time", units="ms"), ("raw/subvolume_01", "time", "wrong-units")),
    "unknown channel": ("raw/subvolume_01", _channels("green", "blue"), ("raw/subvolume_01", None, "bad-value")),
    "frame_shape wrong": ("raw/subvolume_01", _set_attrs(frame_shape=[3, 3]), ("raw/subvolume_01", None, "bad-value")),
    "attr removed": ("raw/subvolume_01", _drop_attr("source_files"), ("raw/subvolume_01", None, "missing-attr")),
    "fewer frames than imaging": ("raw/subvolume_01", lambda ds: ds.isel(time=slice(0, 10)),
                                  ("raw/subvolume_01", None, "mismatch")),
    "video index removed": ("video", lambda ds: ds.drop_vars("frame_pts"), ("video", "frame_pts", "missing-variable")),
    "video bytes not uint8": ("video", _cast("mp4", "int16"), ("video", "mp4", "wrong-dtype")),
    "video decoded, not mp4": ("video", _set_attrs(storage="frames"), ("video", None, "bad-value")),
    "video storage unsaid": ("video", _drop_attr("storage"), ("video", None, "missing-attr")),
}


@pytest.mark.parametrize("case", RAW_CASES)
def test_each_broken_raw_or_video_group_gives_its_problem(raw_tree: xr.DataTree, case: str) -> None:
    path, change, expected = RAW_CASES[case]
    problems = validate(edit(raw_tree, path, change), raise_on_error=False)
    assert fields(problems) == [expected]


def test_a_raw_stack_without_its_imaging_subvolume_is_a_mismatch(raw_tree: xr.DataTree) -> None:
    nodes = raw_tree.to_dict()
    nodes["/raw/subvolume_09"] = nodes["/raw/subvolume_01"]
    problems = validate(xr.DataTree.from_dict(nodes), raise_on_error=False)
    assert fields(problems) == [("raw/subvolume_09", None, "mismatch")]
    assert "/imaging/subvolume_09" in str(problems[0])


def test_green_only_stacks_need_no_red(raw_tree: xr.DataTree) -> None:
    green = edit(raw_tree, "raw/subvolume_01",
                 lambda ds: ds.drop_vars(list(raw_channel_vars("red"))).assign_attrs(channels=["green"]))
    assert validate(green, raise_on_error=False) == []


# --- Problem, SchemaError, problems_in ----------------------------------------------------------
def test_problem_is_frozen_data_and_prints_its_message(session: xr.DataTree) -> None:
    problem = validate(edit(session, "imaging/subvolume_01", _var_attrs("dff", units="%")), raise_on_error=False)[0]
    assert str(problem) == problem.message == "/imaging/subvolume_01/dff: units are '%', expected 'dF/F'"
    with pytest.raises(dataclasses.FrozenInstanceError):
        problem.kind = "other"  # type: ignore[misc]


def test_schema_error_carries_the_problems(session: xr.DataTree) -> None:
    broken = edit(edit(session, "whisker", lambda ds: None), "trials", lambda ds: ds.drop_vars("outcome"))
    expected = validate(broken, raise_on_error=False)
    with pytest.raises(SchemaError) as info:
        validate(broken)
    assert info.value.problems == expected and len(expected) == 2
    assert all(f"  - {p}" in str(info.value) for p in expected)
    assert SchemaError(["root attrs: no provenance.spec"]).problems == [
        Problem("", None, "other", "root attrs: no provenance.spec")]


def test_problems_in_keeps_root_attrs_and_the_opened_groups(session: xr.DataTree) -> None:
    broken = edit(session, "", _drop_attr("session_date"))
    broken = edit(broken, "whisker", lambda ds: None)
    broken = edit(broken, "imaging/subvolume_01/rois", lambda ds: ds.drop_vars("mask_y"))
    problems = validate(broken, raise_on_error=False)
    assert len(problems) == 3
    assert fields(problems_in(problems, ["trials"])) == [("", None, "missing-attr")]
    assert fields(problems_in(problems, ["imaging/subvolume_01"])) == [
        ("", None, "missing-attr"), ("imaging/subvolume_01/rois", "mask_y", "missing-variable")]
    assert problems_in(problems, ["whisker", "imaging"]) == problems


def test_check_group_accepts_paths_with_or_without_slash() -> None:
    ds = xr.Dataset({"trial": ("trial", np.arange(2))})
    a, b = check_group(ds, VIDEO_SPEC, "video"), check_group(ds, VIDEO_SPEC, "/video")
    assert a == b and {p.path for p in a} == {"video"}
    assert all(p.message.startswith("/video: missing ") for p in a)


def test_docs_store_layout_snippet_runs_and_shows_what_it_says():
    """The ```python block of docs/store-layout.md runs as it is, and its last line gives what
    its ``# ->`` comment shows."""
    import ast
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "store-layout.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, re.S)
    code, shown = block.rsplit("# ->", 1)
    *body, last = code.strip().splitlines()
    namespace: dict = {}
    exec(compile("\n".join(body), "store-layout.md", "exec"), namespace)
    assert eval(last, namespace) == ast.literal_eval(shown.strip())
