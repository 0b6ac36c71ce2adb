"""The synthetic ssc-1 writer pins the on-disk layout of FORMATS.md §1: read back with scipy,
tifffile and PyAV, never through the converter."""

from __future__ import annotations

import hashlib
import tarfile

import numpy as np
import pytest
import scipy.io

from sscxr.testing.archives import write_ssc1_session


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_ssc1_session(tmp_path_factory.mktemp("a") / "an197522_2013_03_08", preset="tiny", tar="tar.gz",
                              raw=True, video=True, n_video_trials=2, whisker_s=0.5, frames_per_tiff=30)


@pytest.fixture(scope="module")
def raw_s(tiny):
    """``s`` as MATLAB nests it: struct arrays are record arrays, cells object arrays."""
    return scipy.io.loadmat(tiny.mat_path, squeeze_me=False, struct_as_record=True)["s"][0, 0]


@pytest.fixture(scope="module")
def s(tiny):
    return scipy.io.loadmat(tiny.mat_path, squeeze_me=True, struct_as_record=False)["s"]


def _is_cell(x):
    return isinstance(x, np.ndarray) and x.dtype == object and x.dtype.names is None


def _is_struct_array(x):
    return isinstance(x, np.ndarray) and x.dtype.names is not None


def test_file_name_version_and_top_variable(tiny):
    assert tiny.mat_path.name == "an197522_2013_03_08_session.mat"
    head = tiny.mat_path.read_bytes()[:128]
    assert head.startswith(b"MATLAB 5.0 MAT-file") and head[126:128] == b"IM"
    assert [v[0] for v in scipy.io.whosmat(tiny.mat_path)] == ["s"]


def test_top_level_fields_in_order(raw_s):
    assert list(raw_s.dtype.names) == [
        "timeUnitIds", "timeUnitNames", "trialTimeUnit", "metaDataHash", "trialIds", "trialStartTimes",
        "trialTypeMat", "trialTypeStr", "trialPropertiesHash", "timeSeriesArrayHash", "eventSeriesArrayHash"]
    assert list(raw_s["timeSeriesArrayHash"][0, 0].dtype.names) == ["keyNames", "descr", "value", "descrHash"]
    assert list(raw_s["metaDataHash"][0, 0].dtype.names)[:2] == ["keyNames", "value"]


def test_trial_table(s, tiny):
    assert s.trialTypeMat.shape == (6, tiny.params.n_trials)
    assert list(s.trialTypeStr) == ["HitL", "HitR", "ErrL", "ErrR", "NoLickL", "NoLickR"]
    assert (s.trialTypeMat.sum(0) == 0).any(), "some trials have no outcome"
    assert s.trialStartTimes.min() > 1e5, "session clock in ms, not starting at 0"
    keys = list(s.trialPropertiesHash.keyNames)
    assert keys[2] == "StimulusPosition" and s.trialPropertiesHash.value[2].min() >= 10000
    assert s.metaDataHash.value[list(s.metaDataHash.keyNames).index("animalID")] == "an197522"


def test_whisker_series(s, tiny):
    w = s.timeSeriesArrayHash.value[0]
    assert s.timeSeriesArrayHash.keyNames[0] == "whiskerVars"
    assert w._fieldnames == ["ids", "idStrs", "idStrDetailed", "timeUnit", "time", "trial", "valueMatrix"]
    same_trial = np.diff(w.trial) == 0
    np.testing.assert_allclose(np.diff(w.time)[same_trial], 2.0)  # 500 Hz in ms
    assert set(np.unique(w.trial)) <= set(s.timeSeriesArrayHash.descrHash[0].value)
    assert np.isnan(w.valueMatrix).any() and any("Angle" in x for x in w.idStrs)
    start = dict(zip(s.trialIds, s.trialStartTimes))
    first = w.time[np.r_[True, ~same_trial]]
    np.testing.assert_allclose(first - [start[t] for t in w.trial[np.r_[True, ~same_trial]]], 100.0)


def test_imaging_nesting_cells_vs_struct_arrays(raw_s, tiny):
    tsa = raw_s["timeSeriesArrayHash"][0, 0]
    entry = tsa["value"][0, 1][0, 0]
    assert list(entry.dtype.names) == ["ids", "idStrs", "idStrDetailed", "timeUnit", "time", "trial",
                                       "valueMatrix", "imagingPlane"]
    assert _is_cell(entry["imagingPlane"]) and entry["imagingPlane"].shape == (1, 3)
    descr = tsa["descrHash"][0, 1][0, 0]
    planes = descr["value"][0, 0]
    assert _is_struct_array(planes) and planes.shape == (1, 3)
    assert list(planes.dtype.names) == ["masterImage", "roiIds", "rois"]
    rois = planes[0, 0]["rois"]
    assert _is_struct_array(rois) and list(rois.dtype.names) == ["id", "cornersXY", "indicesWithinImage"]


def test_sequential_subvolumes_and_frame_index(s, tiny):
    seen = {}
    for entry in s.timeSeriesArrayHash.value[1:]:
        for t in np.unique(entry.trial):
            assert t not in seen, "a trial is in exactly one subvolume"
            seen[t] = entry
        for plane in entry.imagingPlane:
            idx = plane.sourceFileFrameIdx
            assert idx.shape == (2, len(entry.time))
            ok = ~np.isnan(idx[0])
            assert idx[0, ok].min() == 1 and idx[1, ok].min() == 1  # 1-based
            assert "imaging_data/fov_" in plane.sourceFileList[0] and "fluo_batch_out" in plane.sourceFileList[0]
            assert not any("001/" in f for f in np.atleast_1d(plane.sourceFileList))  # no flyback plane
    assert len(seen) < tiny.params.n_trials or tiny.params.n_trials <= tiny.params.n_subvolumes + 1


def test_roi_ids_and_masks(s, tiny):
    fov = 0
    for entry, descr in zip(s.timeSeriesArrayHash.value[1:], s.timeSeriesArrayHash.descrHash[1:]):
        for plane, masks in zip(entry.imagingPlane, descr.value[0]):
            assert ((plane.ids - 1) // 1000 == fov).all(), "ROI ids in blocks of 1000 per FOV"
            np.testing.assert_array_equal(masks.roiIds, plane.ids)
            size = masks.masterImage.shape[0]
            assert masks.masterImage.shape == (size, size, 2)
            for roi in masks.rois:
                idx = roi.indicesWithinImage.astype(int)
                assert idx.min() >= 1 and idx.max() <= size * size
                cx, cy = roi.cornersXY.mean(axis=1)
                # column-major: x = (i-1) // size, y = (i-1) % size lies inside the polygon
                assert abs(((idx - 1) // size).mean() - cx) < 1 and abs(((idx - 1) % size).mean() - cy) < 1
            fov += 1


def test_single_plane_variant(tmp_path):
    truth = write_ssc1_session(tmp_path / "a", preset="tiny", single_plane_subvolume=True)
    raw = scipy.io.loadmat(truth.mat_path, squeeze_me=False, struct_as_record=True)["s"][0, 0]
    entry = raw["timeSeriesArrayHash"][0, 0]["value"][0, -1][0, 0]
    assert _is_struct_array(entry["imagingPlane"]) and entry["imagingPlane"].shape == (1, 1), "a bare struct"
    assert truth.subvolumes[-1].planes == [1]


def test_events(s, tiny):
    esa = s.eventSeriesArrayHash
    assert list(esa.keyNames) == ["poleInReach", "touches", "leftLicks", "rightLicks", "leftReward",
                                  "rightReward", "rewardCue"]
    pole = esa.value[0]
    assert pole._fieldnames == ["id", "idStr", "idStrDetailed", "type", "timeUnit", "eventTimes", "eventTrials",
                                "eventPropertiesHash"]
    assert pole.type == 2 and (pole.eventTimes[1::2] > pole.eventTimes[0::2]).all()
    np.testing.assert_array_equal(pole.eventTrials[0::2], pole.eventTrials[1::2])
    touches = esa.value[1]
    assert touches._fieldnames == ["id", "idStr", "idStrDetailed", "type", "eventTimes", "eventTrials",
                                   "eventPropertiesHash"]
    assert len(touches.eventTimes) == 2 and len(touches.eventPropertiesHash) == 2
    kappa = touches.eventPropertiesHash[0].value[list(touches.eventPropertiesHash[0].keyNames).index("kappaMaxAbsOverTouch")]
    np.testing.assert_array_equal(kappa[0::2], kappa[1::2])  # stored twice per touch
    assert esa.value[2].type == 1


def test_raw_tiffs_and_videos(tiny):
    import av
    import tifffile

    assert tiny.tiffs
    for rel, n in list(tiny.tiffs.items())[:2]:
        assert rel.startswith("imaging_data/fov_") and "/fluo_batch_out/Image_Registration_4_an197522_2013_03_08_main_" in rel
        pages = tifffile.imread(tiny.directory / rel)
        assert pages.dtype == np.uint16 and pages.shape == (2 * n, tiny.params.image_size, tiny.params.image_size)
        np.testing.assert_array_equal(pages, tiny.tiff_pages(rel))
    trial, (rel, times) = next(iter(tiny.videos.items()))
    with av.open(str(tiny.directory / rel)) as c:
        assert sum(1 for _ in c.decode(video=0)) == len(times)


def test_tarball_members(tiny):
    with tarfile.open(tiny.tar_path) as tar:
        names = tar.getnames()
    assert all(n.startswith("an197522_2013_03_08/") for n in names)
    assert "an197522_2013_03_08/an197522_2013_03_08_session.mat" in names
    assert names == sorted(names)


def test_deterministic_bytes(tmp_path):
    def digest(seed, name):
        t = write_ssc1_session(tmp_path / name / "an197522_2013_03_08", preset="tiny", seed=seed, tar="tar.gz")
        return [hashlib.sha256(p.read_bytes()).hexdigest() for p in (t.mat_path, t.tar_path)]

    assert digest(0, "a") == digest(0, "b")
    assert digest(0, "a")[0] != digest(1, "c")[0]
