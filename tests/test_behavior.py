"""Behaviour summaries against naive loops over the event table, and ssc-11 condition pairing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import sscxr.accessors  # noqa: F401  (registers .sscx)
from sscxr.behavior import epochs, first_touch, fraction_correct, touch_bursts, touch_count
from sscxr.testing.stores import make_animal_tree, make_session_tree

TOUCHES = ("touch_protraction", "touch_retraction")


@pytest.fixture(scope="module")
def tree() -> xr.DataTree:
    return make_session_tree(seed=4, n_cells=3, n_trials=6)


def rows(tree: xr.DataTree) -> list[dict]:
    return tree["events"].to_dataset().to_dataframe().to_dict("records")


def test_first_touch_is_earliest_touch_onset(tree):
    got = tree.sscx.first_touch()
    for trial in tree["trials"].trial.values:
        onsets = [r["start_time"] for r in rows(tree) if r["trial"] == trial and r["kind"] in TOUCHES]
        want = min(onsets) if onsets else np.nan
        np.testing.assert_equal(got.sel(trial=trial).item(), want)
    assert got.isnull().sum() >= 2 and got.attrs["units"] == "s"


def test_touch_bursts_match_a_loop(tree):
    gap = 0.05
    bursts: list[list[dict]] = []
    for r in sorted((r for r in rows(tree) if r["kind"] in TOUCHES), key=lambda r: (r["trial"], r["start_time"])):
        prev = bursts[-1][-1] if bursts else None
        if prev is not None and prev["trial"] == r["trial"] and r["start_time"] - prev["stop_time"] <= gap:
            bursts[-1].append(r)
        else:
            bursts.append([r])
    got = tree.sscx.touch_bursts(gap)
    assert got.sizes["burst"] == len(bursts)
    np.testing.assert_array_equal(got.n_touches, [len(b) for b in bursts])
    np.testing.assert_array_equal(got.start_time, [b[0]["start_time"] for b in bursts])
    np.testing.assert_array_equal(got.stop_time, [max(x["stop_time"] for x in b) for b in bursts])
    np.testing.assert_array_equal(got.first_kind, [b[0]["kind"] for b in bursts])
    assert (got.n_touches > 1).any()
    assert touch_bursts(tree["events"].to_dataset(), gap=0.0).sizes["burst"] == int(touch_count(
        tree["events"].to_dataset()).sum())


def test_epochs_follow_the_definition(tree):
    ep = tree.sscx.epochs()
    starts = tree["trials"].start_time.values
    for i, trial in enumerate(tree["trials"].trial.values):
        ev = [r for r in rows(tree) if r["trial"] == trial]
        pole = next(r for r in ev if r["kind"] == "pole_in_reach")
        cue = next(r for r in ev if r["kind"] == "response_cue")
        nxt = starts[i + 1] if i + 1 < starts.size else np.nan
        want = [[starts[i], pole["start_time"]], [pole["start_time"], pole["stop_time"]],
                [pole["stop_time"] + 0.5, cue["start_time"]], [cue["start_time"], nxt]]
        got = ep.sel(trial=trial)
        np.testing.assert_array_equal(np.stack([got.start_time, got.stop_time], axis=1), want)


def test_fraction_correct_counts(tree):
    types = pd.Series(tree["trials"].trial_type.values)
    hits, errors = types.isin(["HitL", "HitR"]).sum(), types.isin(["ErrL", "ErrR"]).sum()
    assert tree.sscx.fraction_correct().item() == hits / (hits + errors)
    by = tree.sscx.fraction_correct("subvolume")
    assert by.dims == ("subvolume",)
    for sub, group in types.groupby(tree["trials"].subvolume.values):
        h, e = group.isin(["HitL", "HitR"]).sum(), group.isin(["ErrL", "ErrR"]).sum()
        np.testing.assert_equal(by.sel(subvolume=sub).item(), h / (h + e) if h + e else np.nan)
    untyped = tree["trials"].to_dataset().assign(trial_type=lambda d: xr.full_like(d.trial_type, "NoLickL"))
    assert np.isnan(fraction_correct(untyped))


def test_fraction_correct_by_day_in_ssc11():
    animal = make_animal_tree(n_cells=4)
    by_day = animal.sscx.fraction_correct("day", condition="post_touch")
    assert list(by_day.day.values) == [3, 4]
    with pytest.raises(ValueError, match=r"pass condition= one of \['pre', 'post_touch'\]"):
        animal.sscx.fraction_correct()


def test_pair_conditions_joins_on_roi_id():
    animal = make_animal_tree(n_cells=8)
    paired = animal.sscx.pair_conditions("pre", "post_touch", subvolume=2)
    pre_ids, post_ids = animal["pre/subvolume_2"].cell.values, animal["post_touch/subvolume_2"].cell.values
    np.testing.assert_array_equal(paired.cell, np.intersect1d(pre_ids, post_ids))
    cells = animal["cells"].to_dataset().sel(cell=paired.cell)
    for flag in ("ablated", "ablated_touch", "near_ablated"):
        np.testing.assert_array_equal(paired["post_touch"][flag], cells[flag])
    assert paired["pre"].dff.sizes["cell"] == pre_ids.size - 1  # the last cell is missing after "pre"
    xr.testing.assert_equal(paired["pre"].dff, animal["pre/subvolume_2"].dff.sel(cell=paired.cell))
    assert sorted(animal.sscx.pair_conditions(subvolume="all")) == [1, 2]
    with pytest.raises(ValueError, match="needs a ssc-11 animal tree"):
        make_session_tree(n_trials=2).sscx.pair_conditions()


def test_first_touch_on_a_dataframe(tree):
    frame = tree["events"].to_dataset().to_dataframe()
    xr.testing.assert_equal(first_touch(frame, tree["trials"].trial.values), tree.sscx.first_touch())
    with pytest.raises(ValueError, match="expected at least 'start_time'"):
        first_touch(frame.drop(columns="start_time"))
    with pytest.raises(ValueError, match="gap=-1"):
        touch_bursts(frame, gap=-1)
    with pytest.raises(ValueError, match="epochs needs the /trials Dataset"):
        epochs(frame, frame)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="by='week' is not a variable"):
        fraction_correct(tree["trials"].to_dataset(), by="week")
