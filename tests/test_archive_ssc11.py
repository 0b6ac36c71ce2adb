"""The synthetic ssc-11 writer pins the layout of FORMATS.md §2: folders, file names, nesting,
merged days, v5 and v7.3 (as MATLAB writes it), curation files in both flavours."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pymatreader
import pytest
import scipy.io

from sscxr.testing.archives import write_ssc11_animal


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    return write_ssc11_animal(tmp_path_factory.mktemp("ssc11"), preset="tiny", seed=0, orphan_ablation_id=True)


def test_tree_and_names(truth):
    adir = truth.animal_dir
    assert (adir / "session_neuropilone_preablate_merged").is_dir()
    assert (adir / "session_neuropilone_postablate_touch_merged").is_dir()
    for cond, subs in truth.subvolumes.items():
        files = sorted(p.name for p in subs[0].path.parent.glob("an*sess_struct.mat"))
        assert files == [s.path.name for s in subs]  # sorted order = subvolume order
        assert files[0] == "an274424_vol_01_sess_struct.mat"
    assert (adir / "2019_01_14_ablation" / "manualCurationData.mat").is_file()
    assert (adir / "an274424_2019_01_14.mat").is_file()


def test_v5_nesting(truth):
    sub = truth.subvolumes["pre"][0]
    assert sub.mat_version == "5" and sub.path.read_bytes()[:10] == b"MATLAB 5.0"
    sess = scipy.io.loadmat(sub.path, squeeze_me=False, struct_as_record=True)["sess"][0, 0]
    ca = sess["caTSA"][0, 0]
    roi_array = ca["roiArray"]
    assert roi_array.dtype == object and roi_array.dtype.names is None, "roiArray is a cell"
    rois = roi_array[0, 0][0, 0]["rois"]
    assert rois.dtype == object and rois.dtype.names is None, "rois is a cell"
    keys = [str(np.asarray(k).ravel()[0]) for k in ca["cellFeatures"][0, 0]["keys"].ravel()]
    values = ca["cellFeatures"][0, 0]["values"].ravel()
    n = ca["ids"].size
    assert all(v.shape[-1] == n for v in values), "features are aligned with caTSA.ids"
    assert "eventBasedDff_k16t14_MeanWhiskerAmplitudeGLMScore" in keys and "eventRateHz" in keys


def test_v73_is_hdf5_as_matlab_writes_it(truth):
    sub = truth.subvolumes["post_touch"][0]
    data = sub.path.read_bytes()
    assert data[:19] == b"MATLAB 7.3 MAT-file" and data[512:520] == b"\x89HDF\r\n\x1a\n"
    with h5py.File(sub.path, "r") as f:
        assert f["sess"].attrs["MATLAB_class"] == b"struct"
        assert f["sess/caTSA/roiArray"].attrs["MATLAB_class"] == b"cell"
        assert f["sess/caTSA/roiArray"].dtype == h5py.ref_dtype
        assert f["sess/mouseId"].attrs["MATLAB_class"] == b"char"
        ids = f["sess/caTSA/ids"]
        assert ids.shape == (len(sub.roi_ids), 1), "row vectors are stored transposed"


def test_v5_and_v73_decode_alike(tmp_path):
    a = write_ssc11_animal(tmp_path / "a", preset="tiny", seed=3, mat_versions=(("pre", "5"), ("post_touch", "5")))
    b = write_ssc11_animal(tmp_path / "b", preset="tiny", seed=3, mat_versions=(("pre", "7.3"), ("post_touch", "7.3")))
    va = pymatreader.read_mat(str(a.subvolumes["pre"][0].path))["sess"]
    vb = pymatreader.read_mat(str(b.subvolumes["pre"][0].path))["sess"]
    np.testing.assert_array_equal(va["caTSA"]["ids"], vb["caTSA"]["ids"])
    np.testing.assert_array_equal(va["caTSA"]["dffTimeSeriesArray"]["valueMatrix"],
                                  vb["caTSA"]["dffTimeSeriesArray"]["valueMatrix"])
    assert va["caTSA"]["roiArray"][1]["idStr"] == vb["caTSA"]["roiArray"][1]["idStr"]
    np.testing.assert_array_equal(va["caTSA"]["roiArray"][0]["rois"][2]["indices"],
                                  vb["caTSA"]["roiArray"][0]["rois"][2]["indices"])


def test_merged_days(truth):
    sub = truth.subvolumes["pre"][0]
    days = (sub.trial_ids - 1) // 1000 + 1
    assert sorted(set(days)) == [1, 2, 3]
    first_of_day = [sub.trial_start_ms[days == d].min() for d in (1, 2, 3)]
    assert np.all(np.diff(first_of_day) > 0.9 * 86_400_000) and np.all(np.diff(first_of_day) < 1.1 * 86_400_000)


def test_ids_masks_and_presence(truth):
    pre, post = truth.subvolumes["pre"][0], truth.subvolumes["post_touch"][0]
    assert set(post.roi_ids) < set(pre.roi_ids), "some cells exist pre but not post"
    fov = (pre.roi_ids - 1) // 1000
    for plane in range(1, 4):
        assert len(set(fov[pre.roi_plane == plane])) == 1, "one 1000-id block per FOV"
    size = truth.params.image_size
    assert all(m.min() >= 1 and m.max() <= size * size for m in pre.masks.values())


def test_curation_files(truth):
    nyu = scipy.io.loadmat(truth.animal_dir / "2019_01_14_ablation" / "manualCurationData.mat", squeeze_me=True)
    assert not nyu["ablationSuccessful"].all(), "an unsuccessful target is present"
    assert set(truth.unsuccessful) == set(nyu["ablationTargetIds"][~nyu["ablationSuccessful"].astype(bool)])
    jrc = scipy.io.loadmat(truth.animal_dir / "an274424_2019_01_14.mat", squeeze_me=True)
    assert set(jrc["ablated_ids"].astype(int)) <= set(truth.ablated["touch"])
    assert 9_999_999 in truth.ablated["touch"] and list(truth.orphan_ids) == [9_999_999]


def test_deterministic(tmp_path):
    def digest(name, seed):
        t = write_ssc11_animal(tmp_path / name, preset="tiny", seed=seed)
        return [hashlib.sha256(s.path.read_bytes()).hexdigest() for subs in t.subvolumes.values() for s in subs]

    assert digest("a", 0) == digest("b", 0)
    assert digest("a", 0) != digest("c", 1)
