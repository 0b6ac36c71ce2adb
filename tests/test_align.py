"""Alignment: oracle (naive per-event loop, pynapple), properties, laziness, errors."""

from __future__ import annotations

import math
import warnings

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sscxr.accessors  # noqa: F401  (registers .sscx)
from sscxr.align import align, event_times, session_trial_tensor, trial_tensor
from sscxr.testing.stores import make_session_tree

GAP = 1.5


# --- the oracle: one event, one cell at a time, with .isel ------------------------------------
def naive_window(signal: xr.DataArray, cell: int, ft: np.ndarray, frame_trial: np.ndarray, t_event: float,
                 event_trial: int | None, window: tuple[float, float], rate: float,
                 within_trial: bool) -> tuple[np.ndarray, np.ndarray]:
    """Values and validity for offsets k with window[0] <= k/rate <= window[1] (1e-9 frame of
    slack, as the kernel documents; not 1e-9 s, which differs for a window edge within 1e-9 s of a
    frame, e.g. (1e-9, 1.0) at 4 Hz: offset 0 is outside)."""
    period = 1.0 / rate
    ks = [k for k in range(-10_000, 10_000) if window[0] * rate - 1e-9 <= k <= window[1] * rate + 1e-9]
    values, valid = np.full(len(ks), np.nan), np.zeros(len(ks), bool)
    if not math.isfinite(t_event):
        return values, valid
    i0 = next((j for j in range(ft.size) if ft[j] >= t_event), None)
    if i0 is None or ft[i0] - t_event >= GAP * period:
        return values, valid
    trial = frame_trial[i0] if event_trial is None or event_trial < 0 else event_trial
    for n, k in enumerate(ks):
        j = i0 + k
        if not 0 <= j < ft.size:
            continue
        lo, hi = min(i0, j), max(i0, j)
        if any(ft[m + 1] - ft[m] > GAP * period for m in range(lo, hi)):
            continue
        if within_trial and (frame_trial[j] != trial or frame_trial[j] < 0):
            continue
        values[n], valid[n] = float(signal.isel(cell=cell, time=j)), True
    return values, valid


def assert_matches_oracle(out: xr.DataArray, signal: xr.DataArray, frame_time: xr.DataArray, times: np.ndarray,
                          event_trials: list[int | None], window, rate: float, within_trial: bool) -> None:
    planes = list(frame_time.plane.values) if "plane" in frame_time.dims else [None]
    frame_trial = signal.trial.values if "trial" in signal.coords else np.full(signal.sizes["time"], -1)
    for c in range(signal.sizes["cell"]):
        p = planes.index(int(signal.cell_plane[c])) if planes != [None] else None
        ft = frame_time.values[p] if p is not None else frame_time.values
        for e, (t, tr) in enumerate(zip(times, event_trials, strict=True)):
            want, ok = naive_window(signal, c, ft, frame_trial, t, tr, window, rate, within_trial)
            got = out.isel({out.dims[0]: c, out.dims[1]: e})
            np.testing.assert_array_equal(got.valid.values, ok, err_msg=f"valid, cell {c}, event {e}")
            np.testing.assert_array_equal(got.values, want, err_msg=f"values, cell {c}, event {e}")


@pytest.fixture(scope="module")
def tree() -> xr.DataTree:
    return make_session_tree(seed=1, n_cells=7, n_trials=6, nan_frames=5, shuffle_cells=True)


@pytest.mark.parametrize("align_to", ["pole_in", "pole_out", "first_touch", "first_lick", "reward",
                                      "response_cue", "trial_start", "lick_right"])
def test_trial_tensor_matches_naive_loop(tree, align_to):
    sub = tree["imaging/subvolume_02"].to_dataset()
    out = tree.sscx.trial_tensor("dff", subvolume=2, align_to=align_to, window=(-2.0, 3.0))
    trials = tree["trials"].to_dataset()
    times = event_times(tree["events"].to_dataset(), align_to, trials=trials).sel(trial=out.trial).values
    assert_matches_oracle(out, sub.dff, sub.frame_time, times, list(out.trial.values), (-2.0, 3.0), 7.0, True)


def test_trial_tensor_labels_and_lag(tree):
    sub = tree["imaging/subvolume_01"].to_dataset()
    out = tree.sscx.trial_tensor("dff", subvolume=1, align_to="first_touch", window=(-1.0, 2.0))
    assert out.dims == ("cell", "trial", "time")
    np.testing.assert_array_equal(out.trial, np.unique(sub.trial))
    np.testing.assert_allclose(out.time, np.arange(-7, 15) / 7.0)
    assert out.time.attrs["units"] == "s" and out.attrs["units"] == "dF/F"
    trials = tree["trials"].to_dataset().sel(trial=out.trial)
    for name in ("trial_type", "outcome", "correct_side", "pole_position"):
        np.testing.assert_array_equal(out[name], trials[name])
    np.testing.assert_array_equal(out.x_um, sub.x_um)
    touch = event_times(tree["events"].to_dataset(), "first_touch", trials=out.trial.values)
    for c in (0, 3):  # lag is frame_time of the cell's own plane minus the event time
        ft = sub.frame_time.sel(plane=sub.cell_plane[c]).values
        i0 = np.searchsorted(ft, touch.values, side="left")
        has = np.isfinite(touch.values)
        np.testing.assert_allclose(out.lag[c].values[has], ft[i0[has]] - touch.values[has])
        assert np.isnan(out.lag[c].values[~has]).all()
    lag = out.lag.values[np.isfinite(out.lag.values)]
    assert lag.size and (lag >= 0).all() and (lag < 1.5 / 7).all()
    no_touch = ~np.isfinite(touch.values)
    assert no_touch.any() and not out.valid[:, no_touch].any() and out[:, no_touch].isnull().all()


def test_explicit_times_equal_names(tree):
    named = tree.sscx.trial_tensor("dff", subvolume=1, align_to="pole_in")
    times = tree.sscx.event_times("pole_in")
    explicit = tree.sscx.trial_tensor("dff", subvolume=1, align_to=times)
    xr.testing.assert_identical(named.drop_attrs(), explicit.drop_attrs())
    as_array = tree.sscx.trial_tensor("dff", subvolume=1, align_to=times.sel(trial=named.trial).values)
    xr.testing.assert_equal(named, as_array)


def test_align_event_table_and_plain_times(tree):
    sub = tree["imaging/subvolume_01"].to_dataset()
    events = tree["events"].to_dataset()
    licks = events.where(events.kind == "lick_left", drop=True)
    out = sub.sscx.align(licks, (-0.5, 1.0))["dff"]
    assert out.dims == ("cell", "event", "time") and list(out.kind.values) == ["lick_left"] * licks.sizes["event"]
    assert_matches_oracle(out, sub.dff, sub.frame_time, licks.start_time.values, [None] * licks.sizes["event"],
                          (-0.5, 1.0), 7.0, False)
    plain = sub.dff.sscx.align(licks.start_time.values, (-0.5, 1.0), frame_time=sub.frame_time,
                               frame_rate_hz=7.0)
    np.testing.assert_array_equal(plain.values, out.values)


def test_pynapple_agrees_on_shared_frames():
    """pynapple (nearest frame, window by arange) vs us (next frame at or after): for each event,
    every value pynapple returns at an absolute frame we also return must be equal, and the two
    windows share all but at most one frame at each end."""
    nap = pytest.importorskip("pynapple")
    tree = make_session_tree(seed=3, n_subvolumes=1, n_cells=6, n_trials=5, iti_s=0.0, n_unimaged_trials=0)
    sub = tree["imaging/subvolume_01"].to_dataset()
    events = tree.sscx.event_times("first_touch").dropna("trial")
    window = (-1.0, 2.0)
    ours = sub.sscx.trial_tensor(events=tree["events"].to_dataset(), align_to="first_touch", window=window,
                                 trials=events.trial.values, within_trial=False)
    clock = xr.full_like(sub.dff, 0.0) + sub.frame_time.sel(plane=sub.cell_plane)  # each sample's frame time
    ours_t = clock.sscx.trial_tensor(tree["events"].to_dataset(), align_to="first_touch", window=window,
                                     trials=events.trial.values, within_trial=False, frame_time=sub.frame_time)
    for c in (0, 4):
        ft = sub.frame_time.sel(plane=sub.cell_plane[c]).values
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pv = nap.compute_perievent(nap.Tsd(t=ft, d=sub.dff[c].values), nap.Ts(t=events.values), window=window)
            pt = nap.compute_perievent(nap.Tsd(t=ft, d=ft), nap.Ts(t=events.values), window=window)
        for e in range(events.size):
            theirs = {t: (tau, v) for t, tau, v in zip(np.asarray(pt)[:, e], pt.t, np.asarray(pv)[:, e], strict=True)
                      if np.isfinite(t)}
            mine = {t: (tau, v) for t, tau, v in zip(ours_t[c, e].values, ours.time.values, ours[c, e].values,
                                                     strict=True) if np.isfinite(t)}
            shared = set(theirs) & set(mine)
            assert len(shared) >= len(theirs) - 2 and len(shared) >= len(mine) - 2 and len(shared) > 10
            for t in shared:
                assert theirs[t][1] == mine[t][1] or (np.isnan(theirs[t][1]) and np.isnan(mine[t][1]))
                # offset 0 is their nearest frame or, when that precedes the event, the one after
                assert np.isclose(mine[t][0], theirs[t][0]) or np.isclose(mine[t][0], theirs[t][0] - 1 / 7)


# --- properties ---------------------------------------------------------------------------------
@st.composite
def recordings(draw):
    rate = 4.0
    n_planes = draw(st.integers(1, 3))
    segments = draw(st.lists(st.integers(2, 12), min_size=1, max_size=4))
    t, times, trials = 0.0, [], []
    for s, n in enumerate(segments):
        times += [t + k / rate for k in range(n)]
        trials += [s + 1] * n
        t += n / rate + draw(st.sampled_from([0.0, 0.0, 0.3, 2.0]))  # 0 -> trials back to back
    time = np.array(times)
    offsets = np.arange(n_planes) * (1 / rate) / (n_planes + 1)
    n_cells = draw(st.integers(1, 4))
    cell_plane = np.array(draw(st.lists(st.integers(0, n_planes - 1), min_size=n_cells, max_size=n_cells)))
    values = np.arange(n_cells * time.size, dtype=float).reshape(n_cells, time.size)
    nan_mask = np.array(draw(st.lists(st.booleans(), min_size=values.size, max_size=values.size)))
    values.ravel()[nan_mask & (np.arange(values.size) % 3 == 0)] = np.nan
    signal = xr.DataArray(values, dims=("cell", "time"),
                          coords={"time": time, "trial": ("time", np.array(trials)),
                                  "cell_plane": ("cell", cell_plane)})
    frame_time = xr.DataArray(time[None] + offsets[:, None], dims=("plane", "time"),
                              coords={"plane": np.arange(n_planes)})
    span = (time[0] - 1.0, time[-1] + 1.0)
    ev = draw(st.lists(st.one_of(st.floats(*span), st.just(float("nan")), st.sampled_from(list(time))),
                       min_size=1, max_size=5))
    ev_trials = draw(st.lists(st.integers(-1, len(segments) + 1), min_size=len(ev), max_size=len(ev)))
    w0 = draw(st.floats(-3.0, 2.0))
    w1 = draw(st.floats(w0 + 0.3, w0 + 4.0))
    return signal, frame_time, np.array(ev), ev_trials, (w0, w1), rate


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(recordings(), st.booleans())
def test_align_property_matches_naive(rec, within_trial):
    signal, frame_time, times, ev_trials, window, rate = rec
    out = align(signal, times, window, trials=ev_trials, within_trial=within_trial, frame_time=frame_time,
                frame_rate_hz=rate)
    # the kernel's tolerance is 1e-9 of a frame (float noise), not of a second
    assert out.sizes["time"] == len([k for k in range(-100, 100) if window[0] * rate - 1e-9 <= k <= window[1] * rate + 1e-9])
    assert_matches_oracle(out, signal, frame_time, times, ev_trials, window, rate, within_trial)
    assert out.isnull().values[~out.valid.values].all()


def test_window_edge_tolerance_is_a_billionth_of_a_frame():
    """Found by hypothesis: a window starting 1e-9 s after the event at 4 Hz starts at offset 1
    (4e-9 frame is beyond the 1e-9-frame tolerance); the oracle must agree."""
    ft = np.arange(20.0) / 4.0
    signal = xr.DataArray(np.arange(20.0)[None], dims=("cell", "time"), coords={"time": ft})
    out = align(signal, [1.0], (1e-9, 1.0), frame_time=xr.DataArray(ft, dims="time"), frame_rate_hz=4.0)
    np.testing.assert_array_equal(out.values[0, 0], [5, 6, 7, 8])
    want, ok = naive_window(signal, 0, ft, np.full(20, -1), 1.0, None, (1e-9, 1.0), 4.0, False)
    np.testing.assert_array_equal(out.values[0, 0], want)


def test_frame_with_unknown_time_is_invalid_but_keeps_the_count():
    ft = np.arange(10.0)
    ft[5] = np.nan  # a frame whose acquisition time is unknown: its slot still counts
    signal = xr.DataArray(np.arange(10.0)[None], dims=("cell", "time"), coords={"time": np.arange(10.0)})
    out = align(signal, [2.5, 4.2], (0.0, 4.0), frame_time=xr.DataArray(ft, dims="time"), frame_rate_hz=1.0)
    np.testing.assert_array_equal(out.values[0], [[3, 4, np.nan, 6, 7], [np.nan, 6, 7, 8, 9]])
    np.testing.assert_array_equal(out.valid.values[0], ~np.isnan(out.values[0]))


# --- laziness -----------------------------------------------------------------------------------
def _raise_on_compute(*args, **kwargs):
    raise RuntimeError("a large array was computed; expected a lazy result")


@pytest.fixture(scope="module")
def lazy_tree(tmp_path_factory, tree):
    path = tmp_path_factory.mktemp("store") / "session.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree.to_zarr(path, mode="w", consolidated=True)
        opened = xr.open_datatree(path, engine="zarr", chunks={})
    return opened.chunk({"cell": 3})


def test_trial_tensor_is_lazy_and_per_cell_chunk(lazy_tree, tree):
    with dask.config.set(scheduler=_raise_on_compute):
        out = lazy_tree.sscx.trial_tensor("dff", subvolume=2, align_to="first_touch")
        assert isinstance(out.data, dask.array.Array) and isinstance(out.valid.data, dask.array.Array)
    assert out.data.chunks[0] == lazy_tree["imaging/subvolume_02"].dff.data.chunks[0] == (3, 3, 1)
    assert out.data.chunks[1:] == ((out.sizes["trial"],), (out.sizes["time"],))
    xr.testing.assert_identical(out.compute(), tree.sscx.trial_tensor("dff", subvolume=2, align_to="first_touch"))


def test_dataset_align_and_whisker_are_lazy_on_a_store(lazy_tree, tree):
    events = tree["events"].to_dataset()
    lazy_sub = lazy_tree["imaging/subvolume_01"].to_dataset().assign(twice=lambda d: 2 * d.dff)
    with dask.config.set(scheduler=_raise_on_compute):
        aligned = lazy_sub.sscx.align(events, (-1.0, 2.0), within_trial=True)
        frames = lazy_tree.sscx.resample_whisker(1, how="absmax", variables=("curvature_change", "amplitude"))
        assert isinstance(aligned.twice.data, dask.array.Array) and isinstance(frames.amplitude.data, dask.array.Array)
    xr.testing.assert_equal(aligned.twice.compute(), 2 * aligned.dff.compute())
    eager = tree.sscx.resample_whisker(1, how="absmax", variables=("curvature_change", "amplitude"))
    xr.testing.assert_identical(frames.compute(), eager)


# --- errors -------------------------------------------------------------------------------------
def test_unknown_event_lists_known_ones(tree):
    with pytest.raises(ValueError, match=r"align_to='pole_inn' is not a known event; did you mean 'pole_in'.*"
                                         r"Valid: .*'first_touch'") as info:
        tree.sscx.trial_tensor("dff", subvolume=1, align_to="pole_inn")
    assert info.value.suggestions[0] == "pole_in" and "touch_protraction" in info.value.valid


@pytest.mark.parametrize("window", [(5.0, -3.0), (1.0, 1.0), (0.0, float("nan")), "wide", (1.0,)])
def test_bad_window(tree, window):
    with pytest.raises(ValueError, match="expected .*start, stop"):
        tree.sscx.trial_tensor("dff", subvolume=1, window=window)


def test_window_without_a_frame(tree):
    with pytest.raises(ValueError, match="holds no frame"):
        tree.sscx.trial_tensor("dff", subvolume=1, window=(0.01, 0.02))


def test_signal_without_time():
    with pytest.raises(ValueError, match=r"signal has dims \('cell',\); expected a 'time' dimension"):
        align(xr.DataArray(np.zeros(3), dims="cell"), [1.0], (-1.0, 1.0))


def test_subvolume_choice(tree):
    with pytest.raises(ValueError, match=r"2 subvolumes \[1, 2\].*subvolume=<number>"):
        tree.sscx.trial_tensor("dff")
    with pytest.raises(ValueError, match=r"subvolume=7 is not in this tree; it has \[1, 2\]"):
        tree.sscx.trial_tensor("dff", subvolume=7)
    both = session_trial_tensor(tree, subvolume="all")
    assert sorted(both) == [1, 2] and both[2].attrs["subvolume"] == 2


def test_explicit_times_wrong_length(tree):
    with pytest.raises(ValueError, match="align_to has 2 times but there are 6 trials"):
        tree.sscx.trial_tensor("dff", subvolume=1, align_to=[1.0, 2.0])


def test_missing_signal_and_events(tree):
    with pytest.raises(ValueError, match="signal='raw' is not a variable of subvolume 1"):
        tree.sscx.trial_tensor("raw", subvolume=1)
    sub = tree["imaging/subvolume_01"].to_dataset()
    with pytest.raises(ValueError, match="needs the event table"):
        trial_tensor(sub.dff, align_to="pole_in", frame_time=sub.frame_time)
    with pytest.raises(ValueError, match="no trials to align"):
        trial_tensor(sub.dff.drop_vars("trial"), tree["events"].to_dataset(), frame_time=sub.frame_time)
