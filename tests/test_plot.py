"""sscxr.plot reads on its own: labeled trial-type blocks, legend counts of trials with data,
"no trial type" for empty trial types, titles naming session/subvolume/event, units on the
axes, legends outside the data, lines broken at recording gaps, a Figure from every function.
Checked on the figure objects, with the synthetic stores of sscxr.testing.stores."""

from __future__ import annotations

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sscxr.plot import (  # noqa: E402
    NO_TRIAL_TYPE,
    break_gaps,
    plot_heatmap,
    plot_mean_trace,
    plot_trial_tensor,
    plot_whisker_vs_dff,
)
from sscxr.testing.stores import make_session_tree  # noqa: E402


@pytest.fixture(scope="module")
def session():
    return make_session_tree(n_subvolumes=1, n_cells=6, n_trials=10)  # trial 9 has no trial type


@pytest.fixture(scope="module")
def tensor(session):
    return session.sscx.trial_tensor("dff", subvolume=1, align_to="first_touch", window=(-1.0, 3.0))


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _expected_labels(tensor) -> list[str]:
    """Oracle: per trial type in order of appearance, trials with any valid sample."""
    types = tensor.trial_type.values.astype(str)
    has_data = tensor.valid.any(("cell", "time")).values
    out = []
    for name in dict.fromkeys(types):
        mask = types == name
        n, missing = int(has_data[mask].sum()), int((~has_data[mask]).sum())
        label = name or NO_TRIAL_TYPE
        out.append(f"{label} (n={n})" if not missing else f"{label} (n={n}, {missing} without first_touch)")
    return out


def test_every_plot_function_returns_its_figure(session, tensor):
    frames = session.sscx.resample_whisker(1)
    figures = [plot_heatmap(tensor), plot_mean_trace(tensor), plot_trial_tensor(tensor),
               plot_whisker_vs_dff(frames, session["imaging/subvolume_01"].dff, cell=2001)]  # fmt: skip
    assert all(isinstance(f, Figure) for f in figures)
    _, ax = plt.subplots()
    assert plot_mean_trace(tensor, ax=ax) is ax.figure


def test_heatmap_labels_trial_type_blocks_with_counts(tensor):
    fig = plot_heatmap(tensor)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == _expected_labels(tensor)
    assert any(label.startswith(f"{NO_TRIAL_TYPE} (n=") for label in labels)
    assert any("without first_touch" in label for label in labels)  # every 4th trial has no touch
    # ticks sit at the centre of each block of rows
    sizes = [int((tensor.trial_type.values.astype(str) == t).sum()) for t in dict.fromkeys(tensor.trial_type.values)]
    edges = np.cumsum([0, *sizes])
    np.testing.assert_allclose(ax.get_yticks(), (edges[:-1] + edges[1:]) / 2 - 0.5)
    assert ax.get_xlabel() == "time from first_touch (s)"
    assert ax.get_ylabel() == "trials, by trial type"
    assert fig.axes[1].get_ylabel() == "dff (dF/F)"  # the colorbar
    assert ax.get_title() == "an197522_2013_03_08, subvolume 1\ndff aligned to first_touch, mean of 6 cells"


def test_mean_trace_legend_counts_trials_with_data_and_sits_outside(tensor):
    fig = plot_mean_trace(tensor, cell=2001)
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == _expected_labels(tensor)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("time from first_touch (s)", "dff (dF/F)")
    assert "cell 2001" in ax.get_title() and "an197522_2013_03_08, subvolume 1" in ax.get_title()
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert legend.get_window_extent(renderer).x0 >= ax.get_window_extent(renderer).x1  # right of the data


def test_legend_n_is_not_the_group_size():
    # 4 trials: HitL, HitR, HitL, ErrR; the 4th has no touch, so ErrR has no trial with data
    tensor = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=4).sscx.trial_tensor(
        "dff", align_to="first_touch")
    texts = [t.get_text() for t in plot_mean_trace(tensor).axes[0].get_legend().get_texts()]
    assert texts == ["HitL (n=2)", "HitR (n=1)", "ErrR (n=0, 1 without first_touch)"]


def test_trial_tensor_figure_has_one_title_naming_the_origin(tensor):
    fig = plot_trial_tensor(tensor, cell=2001)
    assert fig.get_suptitle() == "an197522_2013_03_08, subvolume 1\ndff aligned to first_touch, cell 2001"
    heat, trace, colorbar = fig.axes
    assert heat.get_xlabel().endswith("(s)") and trace.get_xlabel().endswith("(s)")
    assert trace.get_ylabel() == colorbar.get_ylabel() == "dff (dF/F)"


def test_break_gaps_inserts_nan_only_at_jumps():
    t, y = break_gaps(np.array([0.0, 0.1, 0.2, 1.0, 1.1]), np.array([1.0, 2, 3, 4, 5]), max_step=0.15)
    np.testing.assert_array_equal(np.isnan(t), [False, False, False, True, False, False])
    np.testing.assert_array_equal(y[~np.isnan(y)], [1, 2, 3, 4, 5])


def test_whisker_vs_dff_lines_break_between_trials(session):
    frames = session.sscx.resample_whisker(1, how="absmax")
    fig = plot_whisker_vs_dff(frames, session["imaging/subvolume_01"].dff, cell=2001)
    top, bottom = fig.axes
    clock = frames.frame_time.sel(plane=int(session["imaging/subvolume_01"].cell_plane.sel(cell=2001))).values
    period = 1 / frames.attrs["frame_rate_hz"]
    gaps = int((np.diff(clock) > 1.5 * period).sum())
    assert gaps == 9  # 10 trials with a 1 s inter-trial interval that was not imaged
    for ax in (top, bottom):
        x = ax.lines[0].get_xdata()
        assert int(np.isnan(x).sum()) == gaps
        runs = np.split(x, np.flatnonzero(np.isnan(x)))
        assert all(np.all(np.diff(r[~np.isnan(r)]) <= 1.5 * period) for r in runs)
    assert (top.get_ylabel(), bottom.get_ylabel(), bottom.get_xlabel()) == (
        "curvature_change (1/mm)", "dff (dF/F)", "session time (s)")
    assert top.get_title().startswith("an197522_2013_03_08, subvolume 1, plane ")
    assert "cell 2001" in top.get_title() and "absmax per frame" in top.get_title()


def test_docstring_examples():
    import doctest

    import sscxr.plot

    assert doctest.testmod(sscxr.plot, raise_on_error=True).attempted >= 10
