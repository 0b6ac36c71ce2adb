"""``session.sscx.video_frames``: a trial's whisker video from a converted store, lazily, equal to
decoding the archive's mp4 directly."""

from __future__ import annotations

import av
import numpy as np
import pytest

import sscxr
from sscxr.testing.archives import write_ssc1_session
from sscxr_conversion import ConversionSpec, convert


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("v")
    truth = write_ssc1_session(root / "an197522_2013_03_08", preset="tiny", video=True, n_video_trials=2,
                               whisker_s=0.2, raw=True, raw_subvolumes=(1,))
    store = str(root / "s.zarr")
    convert(truth.directory, store, spec=ConversionSpec(raw=True, allow_missing=True), progress=False)
    return truth, sscxr.open_session(store)


def test_video_frames_match_the_mp4(converted):
    truth, session = converted
    trial, (rel, times_ms) = next(iter(truth.videos.items()))
    frames = session.sscx.video_frames(trial)
    with av.open(str(truth.directory / rel)) as c:
        # the luma (Y) plane as stored, no range conversion: the first `height` rows of yuv420p
        decoded = np.stack([f.to_ndarray()[: f.height] for f in c.decode(video=0)])
    assert frames.sizes["time"] == len(times_ms) == len(decoded)
    np.testing.assert_allclose(frames["time"].values, times_ms / 1000)
    np.testing.assert_array_equal(frames.values, decoded)
    one = session.sscx.video_frames(trial, time=[times_ms[5] / 1000])
    np.testing.assert_array_equal(one.values[0], decoded[5])


def test_trial_without_video_is_a_clear_error(converted):
    truth, session = converted
    missing = next(int(t) for t in truth.trial_ids if int(t) not in truth.videos)
    with pytest.raises(KeyError, match=f"trial {missing} has no video"):
        session.sscx.video_frames(missing)


def test_video_frames_without_the_xarray_fast_path_are_dask_and_equal(converted, monkeypatch):
    """``SSCXR_NO_FASTPATH=1``: the frames are a dask array chunked by group of pictures (xarray's
    lazy indexing is private API), with the same values."""
    dask_array = pytest.importorskip("dask.array")
    truth, session = converted
    trial = next(iter(truth.videos))
    monkeypatch.delenv("SSCXR_NO_FASTPATH", raising=False)  # (the CI run with every fast path off)
    fast = session.sscx.video_frames(trial)
    monkeypatch.setenv("SSCXR_NO_FASTPATH", "1")
    public = session.sscx.video_frames(trial)
    assert isinstance(public.data, dask_array.Array) and not isinstance(fast.data, dask_array.Array)
    assert sum(public.chunks[0]) == fast.sizes["time"]
    np.testing.assert_array_equal(public.values, fast.values)
    np.testing.assert_array_equal(public.isel(time=[0, 3, 7]).values, fast.values[[0, 3, 7]])
