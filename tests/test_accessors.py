"""The .sscx accessors: thin (equal to the pure functions), never mutating; the tree factories
follow the store layout; docs/analysis.md runs; plots draw."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import sscxr.accessors  # noqa: F401  (registers .sscx)
from sscxr import align, behavior, resample
from sscxr.schema import validate
from sscxr.testing.stores import make_animal_tree, make_session_tree

DOCS = Path(__file__).resolve().parents[1] / "docs" / "analysis.md"


@pytest.fixture(scope="module")
def session() -> xr.DataTree:
    return make_session_tree(seed=5, n_cells=6, n_trials=5)


@pytest.fixture(scope="module")
def animal() -> xr.DataTree:
    return make_animal_tree(seed=5, n_cells=6)


def test_factories_follow_the_store_layout(session, animal):
    assert validate(session, raise_on_error=False) == []
    assert validate(animal, raise_on_error=False) == []
    sub = session["imaging/subvolume_01"]
    assert sub.attrs["frame_rate_hz"] == 7.0 and sub.dff.attrs["units"] == "dF/F"
    np.testing.assert_allclose(sub.frame_time.sel(plane=3) - sub.time, 2 * (1 / 7) / 4)
    assert set(animal["pre/subvolume_1"].day.values) == {1, 2}
    assert (animal["pre/trials"].trial.values // 1000 + 1 == animal["pre/trials"].day.values).all()


def test_tree_methods_equal_the_pure_functions(session):
    events, trials = session["events"].to_dataset(), session["trials"].to_dataset()
    sub = session["imaging/subvolume_02"].to_dataset()
    via = session.sscx.trial_tensor("dff", subvolume=2, align_to="pole_out", window=(-1.0, 1.0))
    direct = align.trial_tensor(sub.dff, events, align_to="pole_out", window=(-1.0, 1.0), trials=trials,
                                frame_time=sub.frame_time, frame_rate_hz=7.0)
    xr.testing.assert_identical(via.drop_attrs(deep=False), direct.drop_attrs(deep=False))
    xr.testing.assert_identical(session.sscx.epochs(), behavior.epochs(trials, events))
    xr.testing.assert_identical(session.sscx.touch_bursts(0.1), behavior.touch_bursts(events, 0.1))
    xr.testing.assert_identical(session.sscx.touch_count(), behavior.touch_count(events, trials))
    xr.testing.assert_identical(session.sscx.event_times("reward"), align.event_times(events, "reward", trials=trials))
    ds_way = sub.sscx.trial_tensor("dff", events=events, align_to="pole_out", window=(-1.0, 1.0), trials=trials)
    xr.testing.assert_identical(ds_way.drop_attrs(deep=False), direct.drop_attrs(deep=False))
    whisker = session["whisker"].to_dataset()
    xr.testing.assert_identical(whisker.sscx.resample_whisker(sub, "max"),
                                resample.resample_whisker(whisker, sub, "max"))


def test_accessors_never_mutate(session, animal):
    before, before_animal = copy.deepcopy(session), copy.deepcopy(animal)
    session.sscx.trial_tensor("dff", subvolume=1)
    session.sscx.resample_whisker(1, how="absmax", variables=("angle", "setpoint"))
    session.sscx.first_touch(), session.sscx.epochs(), session.sscx.touch_bursts(), session.sscx.fraction_correct()
    sub = session["imaging/subvolume_01"].to_dataset()
    sub.sscx.align(session["events"].to_dataset(), (-1.0, 1.0))
    sub.dff.sscx.align([20.0, 30.0], (-1.0, 1.0))
    animal.sscx.pair_conditions(subvolume=1)
    animal.sscx.trial_tensor(condition="post_touch", subvolume=2)
    xr.testing.assert_identical(session, before)
    xr.testing.assert_identical(animal, before_animal)
    assert session.attrs == before.attrs


def test_ssc11_condition_node_and_errors(animal):
    node_way = animal["pre"].sscx.trial_tensor("raw_f", subvolume=2, align_to="response_cue")
    root_way = animal.sscx.trial_tensor("raw_f", subvolume=2, condition="pre", align_to="response_cue")
    xr.testing.assert_identical(node_way.drop_attrs(deep=False), root_way.drop_attrs(deep=False))
    with pytest.raises(ValueError, match=r"ssc-11 animal tree; pass condition= one of \['pre', 'post_touch'\]"):
        animal.sscx.trial_tensor("dff", subvolume=1)
    with pytest.raises(ValueError, match=r"condition='post' is not in this tree"):
        animal.sscx.trial_tensor("dff", subvolume=1, condition="post")


def test_dataset_align_needs_cell_time_variables(session):
    with pytest.raises(ValueError, match="no \\(cell, time\\) variable to align"):
        session["whisker"].to_dataset().sscx.align([20.0], (-1.0, 1.0))
    with pytest.raises(ValueError, match=r"variables \['nope'\] are not in the Dataset"):
        session["imaging/subvolume_01"].to_dataset().sscx.align([20.0], (-1.0, 1.0), variables=["nope"])


def test_plots_draw(session):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from sscxr.plot import plot_heatmap, plot_mean_trace, plot_trial_tensor

    tensor = session.sscx.trial_tensor("dff", subvolume=1, align_to="first_touch")
    fig = plot_trial_tensor(tensor)
    assert len(fig.axes) == 3  # heatmap, its colorbar, mean trace
    assert len(plot_mean_trace(tensor, cell=int(tensor.cell[0])).axes[0].lines) >= 2
    assert plot_heatmap(tensor, by=None).axes[0].images
    with pytest.raises(ValueError, match="expected a trial tensor"):
        plot_heatmap(tensor.isel(trial=0))


def test_docs_analysis_runs():
    """Every ```python block of docs/analysis.md, in order, in one namespace."""
    pytest.importorskip("matplotlib")
    namespace: dict = {}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)):
        exec(compile(block, f"{DOCS.name}[block {i}]", "exec"), namespace)
