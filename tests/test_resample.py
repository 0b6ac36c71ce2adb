"""Whisker resampling onto frames: pandas groupby oracle, derived whisking variables, laziness, errors."""

from __future__ import annotations

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import sscxr.accessors  # noqa: F401  (registers .sscx)
from sscxr.resample import resample_whisker
from sscxr.testing.stores import make_session_tree


def frames_oracle(frame_time: np.ndarray, frame_trial: np.ndarray, period: float) -> pd.DataFrame:
    """Each frame's [start, stop), written out frame by frame."""
    rows = []
    for j, t in enumerate(frame_time):
        nxt = frame_time[j + 1] if j + 1 < frame_time.size else np.nan
        same = j + 1 < frame_time.size and frame_trial[j + 1] == frame_trial[j] and 0 < nxt - t <= 1.5 * period
        rows.append((j, t, nxt if same else t + period))
    return pd.DataFrame(rows, columns=["frame", "start", "stop"])


def groupby_oracle(sample_time, values, frame_time, frame_trial, period, how) -> np.ndarray:
    frames = frames_oracle(frame_time, frame_trial, period)
    samples = pd.DataFrame({"time": sample_time, "value": values}).sort_values("time")
    joined = pd.merge_asof(samples, frames, left_on="time", right_on="start", direction="backward")
    joined = joined[(joined.time >= joined.start) & (joined.time < joined.stop)].dropna(subset=["value"])
    grouped = joined.groupby("frame")["value"]
    if how == "absmax":
        reduced = grouped.apply(lambda s: s.loc[s.abs().idxmax()])
    else:
        reduced = getattr(grouped, how)()
    return reduced.reindex(np.arange(frame_time.size)).to_numpy()


@pytest.fixture(scope="module")
def tree() -> xr.DataTree:
    return make_session_tree(seed=2, n_cells=3, n_trials=4, whiskers=("C1", "C2"))


@pytest.mark.parametrize("how", ["mean", "max", "min", "absmax"])
def test_matches_pandas_groupby(tree, how):
    sub = tree["imaging/subvolume_02"].to_dataset()
    whisker = tree["whisker"].to_dataset()
    out = resample_whisker(whisker, sub, how=how)
    assert out.angle.dims == ("whisker", "plane", "time") and out.sizes["time"] == sub.sizes["time"]
    for p, plane in enumerate(sub.plane.values):
        for w in range(2):
            for var in ("angle", "curvature_change"):
                want = groupby_oracle(whisker.time.values, whisker[var][w].values, sub.frame_time[p].values,
                                      sub.trial.values, 1 / 7.0, how)
                np.testing.assert_allclose(out[var].sel(plane=plane)[w].values, want, rtol=1e-12, equal_nan=True)
    assert out.angle.attrs["units"] == "deg" and out.attrs["frame_rate_hz"] == 7.0
    np.testing.assert_array_equal(out.frame_time, sub.frame_time)


def test_frames_without_samples_are_nan_and_absmax_keeps_sign():
    frame_time = xr.DataArray([[0.0, 1.0, 2.0, 10.0]], dims=("plane", "time"),
                              coords={"plane": [2], "trial": ("time", [1, 1, 1, 2])})
    whisker = xr.Dataset({"curvature_change": (("whisker", "time"), [[0.5, -2.0, np.nan, 3.0, np.nan, 7.0]])},
                         coords={"time": [0.1, 0.2, 1.5, 2.5, 3.5, 5.0], "whisker": ["C2"],
                                 "trial": ("time", [1, 1, 1, 1, 1, 2])})
    out = resample_whisker(whisker, frame_time, how="absmax", variables="curvature_change", frame_rate_hz=1.0)
    # frame 2 covers [2, 3) (last of its trial: one period); 3.5 and 5.0 fall in no frame
    np.testing.assert_array_equal(out.curvature_change.values.ravel(), [-2.0, np.nan, 3.0, np.nan])


def test_whisking_setpoint_and_amplitude():
    rate, t = 500.0, np.arange(0, 4, 1 / 500.0)
    angle = 10.0 + 8.0 * np.sin(2 * np.pi * 15.0 * t)
    angle[100] = np.nan
    whisker = xr.Dataset({"angle": (("whisker", "time"), angle[None])},
                         coords={"time": t, "whisker": ["C2"], "trial": ("time", np.ones(t.size, int))})
    frames = xr.DataArray(np.arange(0, 4, 1 / 7.0)[None], dims=("plane", "time"),
                          coords={"plane": [2], "trial": ("time", np.ones(28, int))})
    out = resample_whisker(whisker, frames, variables=("setpoint", "amplitude", "phase"), frame_rate_hz=7.0)
    middle = slice(5, 23)  # away from the filter edges
    np.testing.assert_allclose(out.setpoint[0, 0, middle], 10.0, atol=0.05)
    np.testing.assert_allclose(out.amplitude[0, 0, middle], 8.0, rtol=0.02)
    assert out.phase.attrs["units"] == "rad"


def test_lazy_whisker(tree):
    whisker = tree["whisker"].to_dataset().chunk({"whisker": 1})
    sub = tree["imaging/subvolume_01"].to_dataset()

    def boom(*args, **kwargs):
        raise RuntimeError("computed")

    with dask.config.set(scheduler=boom):
        out = resample_whisker(whisker, sub, how="absmax", variables=("angle", "curvature_change", "amplitude"))
        assert isinstance(out.angle.data, dask.array.Array)
    assert out.angle.data.chunks[0] == (1, 1)
    xr.testing.assert_identical(out.compute(), resample_whisker(tree["whisker"].to_dataset(), sub, how="absmax",
                                                                variables=("angle", "curvature_change", "amplitude")))


def test_tree_accessor_equals_function(tree):
    via = tree.sscx.resample_whisker(1, how="max")
    direct = resample_whisker(tree["whisker"].to_dataset(), tree["imaging/subvolume_01"].to_dataset(), how="max")
    xr.testing.assert_identical(via.drop_attrs(), direct.drop_attrs())
    assert via.attrs["subvolume"] == 1


def test_errors(tree):
    whisker, sub = tree["whisker"].to_dataset(), tree["imaging/subvolume_01"].to_dataset()
    with pytest.raises(ValueError, match=r"how='median' is not valid; did you mean 'mean'.*Valid: 'mean', 'max', "):
        resample_whisker(whisker, sub, how="median")
    with pytest.raises(ValueError, match=r"how\['curvature_change'\]='absmx' .* did you mean 'absmax'"):
        resample_whisker(whisker, sub, how={"angle": "mean", "curvature_change": "absmx"})
    with pytest.raises(ValueError, match=r"variables \['velocity'\] are not in the whisker group"):
        resample_whisker(whisker, sub, variables=("velocity",))
    with pytest.raises(ValueError, match="variables is empty"):
        resample_whisker(whisker, sub, variables=())
    with pytest.raises(ValueError, match="expected a subvolume Dataset with 'frame_time'"):
        resample_whisker(whisker, sub.dff.isel(time=0))


def test_sample_order_does_not_matter(tree):
    whisker, sub = tree["whisker"].to_dataset(), tree["imaging/subvolume_01"].to_dataset()
    shuffled = whisker.isel(time=np.random.default_rng(0).permutation(whisker.sizes["time"]))
    for how in ("mean", "absmax"):
        xr.testing.assert_allclose(resample_whisker(shuffled, sub, how), resample_whisker(whisker, sub, how))
    assert resample_whisker(shuffled, sub).attrs["whisker_rate_hz"] == pytest.approx(500.0)


def test_resampled_frames_align_on_each_planes_clock(tree):
    frames = tree.sscx.resample_whisker(1, how="absmax")
    events, trials = tree["events"].to_dataset(), tree["trials"].to_dataset()
    tensor = frames.curvature_change.sscx.trial_tensor(events, align_to="first_touch", trials=trials, window=(-1, 1))
    assert tensor.dims == ("whisker", "plane", "trial", "time")
    for plane in frames.plane.values:
        one = frames.curvature_change.sel(plane=plane, drop=True).drop_vars("frame_time")
        want = one.sscx.trial_tensor(events, align_to="first_touch", trials=trials, window=(-1, 1),
                                     frame_time=frames.frame_time.sel(plane=plane))
        np.testing.assert_array_equal(tensor.sel(plane=plane).values, want.values)
