"""The synthetic ssc-11 archive reproduces FORMATS.md §2-§4: folders, file names, the ``sess``
nesting (cells, not struct arrays), merged days, ROI id blocks, MAT v5 and MATLAB-style v7.3
that decode to the same values, curation files of both flavours, and deterministic bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pymatreader
import pytest
import scipy.io

from sscxr.testing.archives import SSC11_PRESETS, write_ssc11_animal
from sscxr.testing.archives._matv73 import mat73_header, savemat73

ABL_KEYS = ["eventBasedDff_k16t14_MeanWhiskerAmplitudeGLMScore",
            "eventBasedDff_k16t14_MeanWhiskerAmplitudeGLMShuffleScore",
            "eventBasedDff_k16t14_c2AbsMaxKappaZeroNotouchGLMScore",
            "eventBasedDff_k16t14_c2AbsMaxKappaZeroNotouchGLMShuffleScore",
            "eventBasedDff_k16t14_c2AbsMaxKappaZeroNotouchGLMStimKernelWeight",
            "eventRateHz", "dffBased_HitLTrialAvg", "dffBased_HitRTrialAvg"]
SESS_FIELDS = {"mouseId", "dateStr", "behavProtocolName", "whiskerTag", "caTSA", "behavESA", "whiskerAngleTSA",
               "whiskerCurvatureChangeTSA", "whiskerBarContactClassifiedESA", "whiskerBarInReachES",
               "derivedDataTSA", "trialIds", "trialStartTimes", "trialTypeMat", "trialType", "trialTypeStr",
               "trialTypeColor", "validTrialIds", "validCaTrialIds", "validWhiskerTrialIds", "cellFeatures"}
CATSA_FIELDS = {"ids", "idStrs", "time", "timeUnit", "trialIndices", "valueMatrix", "dffTimeSeriesArray",
                "caPeakEventSeriesArray", "roiArray", "roiFOVidx", "numFOVs", "cellFeatures", "fileList",
                "fileFrameIdx", "triggerOffsetForTrialInMS", "roiDepthInMicrons", "dffOpts", "evdetOpts",
                "activeRoiIds"}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@pytest.fixture(scope="module")
def animal(tmp_path_factory):
    return write_ssc11_animal(tmp_path_factory.mktemp("ssc11"), preset="tiny", seed=0, unknown_curation_id=True)


def read(path: Path) -> dict:
    return pymatreader.read_mat(str(path))["sess"]


def raw_v5(path: Path):
    """The unsqueezed scipy view, where a cell is an object array and a struct array has field names."""
    return scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)["sess"][0, 0]


def feature(sess: dict, key: str) -> np.ndarray:
    return np.asarray(sess["caTSA"]["cellFeatures"]["values"][sess["caTSA"]["cellFeatures"]["keys"].index(key)])


# --------------------------------------------------------------------------------------------
# tree and names
# --------------------------------------------------------------------------------------------


def test_tree_file_names_and_sorted_order(animal):
    adir = animal.animal_dir
    assert adir == animal.root / "an274424"
    folders = sorted(p.name for p in adir.iterdir() if p.name.startswith("session_"))
    assert folders == ["session_neuropilone_postablate_touch_merged", "session_neuropilone_preablate_merged"]
    for cond, folder in animal.condition_dirs.items():
        found = sorted(folder.glob("an*sess_struct.mat"))
        assert found == animal.paths[cond], "sorted glob order is the subvolume order"
        assert [p.name for p in found] == ["an274424_vol_01_sess_struct.mat", "an274424_vol_02_sess_struct.mat"]
        assert sorted(folder.iterdir()) == found


def test_default_versions_mix_v5_and_v73(animal):
    for path in animal.paths["pre"]:
        head = path.read_bytes()[:128]
        assert head.startswith(b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: ") and head[126:] == b"IM"
    for path in animal.paths["post_touch"]:
        head = path.read_bytes()[:520]
        assert head.startswith(b"MATLAB 7.3 MAT-file") and head[512:520] == HDF5_SIGNATURE
    assert animal.mat_versions == {"pre": ["5", "5"], "post_touch": ["7.3", "7.3"]}


# --------------------------------------------------------------------------------------------
# sess contents
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cond", ["pre", "post_touch"])
def test_sess_fields_and_feature_alignment(animal, cond):
    sess = read(animal.paths[cond][0])
    assert SESS_FIELDS <= set(sess) and CATSA_FIELDS <= set(sess["caTSA"])
    assert sess["mouseId"] == "an274424" and sess["dateStr"] == "compound" and sess["whiskerTag"] == "c2"
    ids = np.asarray(sess["caTSA"]["ids"])
    keys = sess["caTSA"]["cellFeatures"]["keys"]
    assert set(ABL_KEYS) <= set(keys) and len(keys) == len(sess["caTSA"]["cellFeatures"]["values"])
    for key in keys:
        assert feature(sess, key).shape[-1] == ids.size, f"{key} is not aligned with caTSA.ids"
    assert feature(sess, "dffBased_HitLTrialAvg").shape[0] >= 70
    assert feature(sess, "eventBasedDff_k16t14_c2AbsMaxKappaZeroNotouchGLMStimKernelWeight").ndim == 2
    assert sess["cellFeatures"]["keys"] == keys, "session-level hash mirrors caTSA.cellFeatures"
    names = [s["idStr"] for s in sess["behavESA"]["esa"]]
    assert names == ["Pole Movement", "Left Licks", "Right Licks", "Water Delivery", "Response Cue"]
    assert [s["idStr"] for s in sess["whiskerBarContactClassifiedESA"]["esa"]] == [
        "Protraction contacts for C2", "Retraction contacts for C2"]
    assert np.asarray(sess["behavESA"]["trialTimes"]).shape == (np.asarray(sess["trialIds"]).size, 3)
    assert list(np.asarray(sess["derivedDataTSA"]["ids"])) == [10000, 10010, 20112, 20113]


def test_v5_roi_array_and_rois_are_cells(animal):
    ca = raw_v5(animal.paths["pre"][0])["caTSA"][0, 0]
    roi_array = ca["roiArray"]
    assert roi_array.dtype == object and roi_array.dtype.names is None and roi_array.shape == (1, 3)
    plane = roi_array[0, 1][0, 0]
    assert plane["rois"].dtype == object and plane["rois"].dtype.names is None
    assert plane["rois"].shape == (1, plane["roiIds"].size)
    roi = plane["rois"][0, 0][0, 0]
    assert set(roi.dtype.names) == {"indices", "corners", "id", "borderIndices", "imageBounds", "color", "groups"}
    assert roi["corners"].shape[0] == 2 and roi["id"][0, 0] == plane["roiIds"][0, 0]
    assert plane["masterImage"].shape == (64, 64, 2) and plane["masterImage"].dtype == np.uint16
    esa = ca["caPeakEventSeriesArray"][0, 0]["esa"]
    assert esa.dtype == object and esa.shape == (1, ca["ids"].size)


def test_roi_ids_planes_and_masks(animal):
    size = animal.params.image_size
    for cond in animal.paths:
        for v, path in enumerate(animal.paths[cond], start=1):
            sess, sub = read(path), animal.subvolume(cond, v)
            ids = np.asarray(sess["caTSA"]["ids"]).astype(int)
            np.testing.assert_array_equal(ids, sub.roi_ids)
            assert np.all(np.diff(ids) > 0)
            fov_index = (ids - 1) // 1000 - 3 * (v - 1)
            np.testing.assert_array_equal(fov_index + 1, np.asarray(sess["caTSA"]["roiFOVidx"]))
            planes = sess["caTSA"]["roiArray"]
            np.testing.assert_array_equal(np.concatenate([np.atleast_1d(p["roiIds"]) for p in planes]), ids)
            for j, plane in enumerate(planes):
                assert f"fov_{v:02d}{j + 2:03d}" in plane["idStr"]
                for rid, roi in zip(np.atleast_1d(plane["roiIds"]).astype(int), plane["rois"]):
                    idx = np.asarray(roi["indices"]).astype(int)
                    assert roi["id"] == rid and 1 <= idx.min() and idx.max() <= size * size
                    np.testing.assert_array_equal(idx, sub.mask_indices[rid])
                    row, col = (idx - 1) % size, (idx - 1) // size  # 1-based column-major
                    diameter = 2 * animal.params.roi_radius_px
                    assert np.ptp(row) <= diameter and np.ptp(col) <= diameter


def test_same_ids_pre_and_post_except_lost(animal):
    for v in (1, 2):
        pre, post = animal.subvolume("pre", v).roi_ids, animal.subvolume("post_touch", v).roi_ids
        assert set(post) <= set(pre) and len(pre) - len(post) == animal.params.lost_cells
    assert set(animal.lost_ids) == set(np.concatenate(animal.roi_ids["pre"])) - set(
        np.concatenate(animal.roi_ids["post_touch"]))
    assert animal.lost_ids.size == 2 and animal.new_ids.size == 0


def test_new_cells_only_in_post(tmp_path):
    t = write_ssc11_animal(tmp_path, n_subvolumes=1, new_cells=2, lost_cells=0)
    assert t.new_ids.size == 2 and not set(t.new_ids) & set(t.roi_ids["pre"][0])
    assert set(t.new_ids) <= set(t.roi_ids["post_touch"][0])
    assert np.all((t.new_ids - 1) // 1000 < 3), "new cells stay in their plane's id block"


def test_merged_days_offsets_and_trials(animal):
    for cond in animal.paths:
        sess, sub = read(animal.paths[cond][1]), animal.subvolume(cond, 2)
        trials = np.asarray(sess["trialIds"]).astype(int)
        starts = np.asarray(sess["trialStartTimes"])
        day = (trials - 1) // 1000 + 1
        assert sorted(set(day)) == [1, 2, 3] and np.all((trials - 1) % 1000 + 1 < 1000)
        assert np.all(np.floor(starts / 86_400_000) + 1 == day), "each day's times are offset by one more day"
        assert np.all(np.diff(trials) > 0) and np.any(np.diff(trials)[np.diff(day) == 0] > 1), \
            "only the subvolume's valid trials are kept"
        assert np.all((trials - 1) % 1000 >= animal.params.trials_per_day), "subvolume 2 has the second block"
        time, frame_trial = np.asarray(sess["caTSA"]["time"]), np.asarray(sess["caTSA"]["trialIndices"])
        np.testing.assert_array_equal(np.floor(time / 86_400_000) + 1, (frame_trial - 1) // 1000 + 1)
        np.testing.assert_array_equal(sub.day, (frame_trial - 1) // 1000 + 1)
        assert set(frame_trial) == set(trials) == set(np.asarray(sess["validCaTrialIds"]).astype(int))
        assert set(np.asarray(sess["validWhiskerTrialIds"]).astype(int)) < set(trials)


def test_frames_rate_nan_frames_and_dff(animal):
    sess, sub = read(animal.paths["pre"][0]), animal.subvolume("pre", 1)
    time, trial = np.asarray(sess["caTSA"]["time"]), np.asarray(sess["caTSA"]["trialIndices"])
    within = np.diff(time)[np.diff(trial) == 0]
    np.testing.assert_allclose(within, 1000 / 7, rtol=1e-9)
    dff = np.asarray(sess["caTSA"]["dffTimeSeriesArray"]["valueMatrix"])
    raw = np.asarray(sess["caTSA"]["valueMatrix"])
    nan_frames = np.isnan(dff).all(axis=0)
    assert nan_frames.any() and np.array_equal(nan_frames, sub.nan_frames)
    np.testing.assert_array_equal(np.isnan(raw), np.isnan(dff))
    np.testing.assert_array_equal(dff, sub.dff)
    np.testing.assert_array_equal(raw, sub.raw_f)
    assert (np.isnan(dff).sum(axis=0) == 1).any(), "one cell is blanked over one trial"


def test_truth_events_and_touches_match_file(animal):
    sess, sub = read(animal.paths["post_touch"][0]), animal.subvolume("post_touch", 1)
    esa = sess["caTSA"]["caPeakEventSeriesArray"]["esa"]
    ev = sub.ca_events
    for rid, series in zip(sub.roi_ids, esa):
        mine = ev["roi_id"] == rid
        np.testing.assert_array_equal(np.atleast_1d(series["peakTimes"]), ev["peak_time"][mine])
        np.testing.assert_array_equal(np.atleast_1d(series["eventTrials"]), ev["trial"][mine])
    assert np.all(ev["event_time"] < ev["peak_time"])
    n_dead = 0
    for v, path in enumerate(animal.paths["post_touch"], start=1):
        ids, rate = animal.subvolume("post_touch", v).roi_ids, feature(read(path), "eventRateHz")
        dead = np.isin(ids, animal.ablated_ids["touch"])
        assert np.all(rate[dead] == 0) and rate[~dead].mean() > 0, "ablated cells are silent after the ablation"
        n_dead += dead.sum()
    assert n_dead == 3
    pro = sess["whiskerBarContactClassifiedESA"]["esa"][0]
    truth = sub.touches["Protraction contacts for C2"]
    np.testing.assert_array_equal(np.atleast_1d(pro["eventTimes"]), truth.times_ms)
    kappa = truth.properties["kappaMaxAbsOverTouch"]
    assert np.all(kappa[0::2] == kappa[1::2]) and np.all(kappa < 0), "protraction Δκ, one value per on and off"


# --------------------------------------------------------------------------------------------
# v7.3 encoding
# --------------------------------------------------------------------------------------------


def test_v73_userblock_and_matlab_classes(animal):
    path = animal.paths["post_touch"][0]
    head = path.read_bytes()[:512]
    assert head[:116].rstrip(b" ").endswith(b"HDF5 schema 1.00 .") and b"Platform: GLNXA64" in head
    assert head[116:124] == bytes(8) and head[124:128] == b"\x00\x02IM" and head[128:] == bytes(384)
    sub = animal.subvolume("post_touch", 1)
    with h5py.File(path, "r") as f:
        assert f.userblock_size == 512 and set(f) == {"sess", "#refs#"}
        sess = f["sess"]
        assert sess.attrs["MATLAB_class"] == b"struct"
        fields = ["".join(c.decode() for c in name) for name in sess.attrs["MATLAB_fields"]]
        assert fields[:4] == ["mouseId", "dateStr", "behavProtocolName", "whiskerTag"]
        mouse = sess["mouseId"]
        assert mouse.attrs["MATLAB_class"] == b"char" and mouse.attrs["MATLAB_int_decode"] == 2
        assert mouse.dtype == np.uint16 and mouse.shape == (8, 1) and bytes(mouse[:, 0].astype(np.uint8)) == b"an274424"
        vm = sess["caTSA/valueMatrix"]
        assert vm.attrs["MATLAB_class"] == b"double" and vm.shape == sub.raw_f.shape[::-1], "stored transposed"
        roi_array = sess["caTSA/roiArray"]
        assert roi_array.attrs["MATLAB_class"] == b"cell" and roi_array.dtype == h5py.ref_dtype
        assert roi_array.shape == (3, 1)
        plane = f[roi_array[1, 0]]
        assert plane.name.startswith("/#refs#/") and plane.attrs["MATLAB_class"] == b"struct"
        assert plane["rois"].attrs["MATLAB_class"] == b"cell"
        image = plane["masterImage"]
        assert image.attrs["MATLAB_class"] == b"uint16" and image.shape == (2, 64, 64)
        roi = f[plane["rois"][0, 0]]
        assert roi["groups"].attrs["MATLAB_empty"] == 1 and list(roi["groups"][()]) == [0, 0]
        assert f["#refs#/a"].attrs["MATLAB_class"] == b"canonical empty"
        assert sess["caTSA"].attrs.get("H5PATH") == b"/sess" and plane.attrs["H5PATH"] == plane.name.encode()


def test_v5_and_v73_decode_to_the_same_values(tmp_path):
    a = write_ssc11_animal(tmp_path / "v5", n_subvolumes=1, mat_versions="5")
    b = write_ssc11_animal(tmp_path / "v73", n_subvolumes=1, mat_versions="7.3")
    for cond in a.paths:
        assert b.paths[cond][0].read_bytes()[512:520] == HDF5_SIGNATURE
        assert_same(read(a.paths[cond][0]), read(b.paths[cond][0]), f"{cond}:sess")


def _empty(x) -> bool:  # pymatreader gives [] for an empty v5 cell and an empty array for v7.3
    return (isinstance(x, list) and not x) or (isinstance(x, np.ndarray) and x.size == 0)


def assert_same(a, b, path: str) -> None:
    if _empty(a) and _empty(b):
        return
    if isinstance(a, dict) or isinstance(b, dict):
        assert isinstance(a, dict) and isinstance(b, dict) and set(a) == set(b), path
        for key in a:
            assert_same(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) or isinstance(b, list):
        assert isinstance(a, list) and isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}{{{i + 1}}}")
    elif isinstance(a, str) or isinstance(b, str):
        assert a == b, path
    else:
        x, y = np.asarray(a), np.asarray(b)
        assert x.shape == y.shape, (path, x.shape, y.shape)
        np.testing.assert_array_equal(x.astype(float), y.astype(float), err_msg=path)


def _every_class() -> dict:
    records = np.zeros((1, 3), dtype=[("name", object), ("value", object)])
    for i in range(3):
        records[0, i]["name"], records[0, i]["value"] = f"r{i}", np.arange(i + 1.0)
    cell = np.empty((1, 4), dtype=object)
    cell[0, 0], cell[0, 1], cell[0, 2] = "text", np.eye(2), {"inner": np.array([True, False, True])}
    cell[0, 3] = np.empty((1, 2), dtype=object)
    cell[0, 3][0, 0], cell[0, 3][0, 1] = 1.5, "nested"
    return {"s": {"d": np.arange(6.0).reshape(2, 3), "f": np.float32([1.5, 2.5]), "u": np.arange(24, dtype=np.uint16)
                  .reshape(2, 3, 4), "i": np.int32([-1, 7]), "b": np.array([[True], [False]]), "c": "hello",
                  "cell": cell, "records": records, "nothing": np.zeros((0, 0)), "no_cell": np.empty((0, 0), object),
                  "scalar": 3.0, "sub": {"deeper": {"x": 1.0}}}}


def test_matv73_writer_against_scipy_and_mat73(tmp_path):
    mat73 = pytest.importorskip("mat73")
    value = _every_class()
    scipy.io.savemat(tmp_path / "v5.mat", value, oned_as="row")
    savemat73(tmp_path / "v73.mat", value)
    v5, v73 = (pymatreader.read_mat(str(tmp_path / name))["s"] for name in ("v5.mat", "v73.mat"))
    assert_same(v5, v73, "s")
    other = mat73.loadmat(str(tmp_path / "v73.mat"))["s"]
    np.testing.assert_array_equal(other["u"], value["s"]["u"])
    assert [r["name"] for r in other["records"]] == ["r0", "r1", "r2"]
    with h5py.File(tmp_path / "v73.mat", "r") as f:
        s = f["s"]
        assert s["b"].attrs["MATLAB_class"] == b"logical" and s["b"].attrs["MATLAB_int_decode"] == 1
        assert s["b"].dtype == np.uint8 and s["b"].shape == (1, 2)
        assert s["f"].attrs["MATLAB_class"] == b"single" and s["i"].attrs["MATLAB_class"] == b"int32"
        assert s["records"].attrs["MATLAB_class"] == b"struct" and "MATLAB_class" not in s["records/name"].attrs
        assert s["records/name"].dtype == h5py.ref_dtype and s["records/name"].shape == (3, 1)
        assert s["nothing"].attrs["MATLAB_empty"] == 1 and s["no_cell"].attrs["MATLAB_class"] == b"cell"
        assert s["sub/deeper/x"].attrs["H5PATH"] == b"/ssubdeeper", "MATLAB's H5PATH: parent path + parent name"
    assert (tmp_path / "v73.mat").read_bytes()[:512] == mat73_header()


# --------------------------------------------------------------------------------------------
# curation files
# --------------------------------------------------------------------------------------------


def test_curation_files_both_flavours(animal):
    adir, abl = animal.animal_dir, animal.ablations[0]
    assert abl.kind == "touch" and abl.date == animal.ablation_dates["touch"] == "2019-04-07"
    assert animal.days["pre"][-1] < "2019_04_07" < animal.days["post_touch"][0]
    nyu = scipy.io.loadmat(adir / "2019_04_07_ablation" / "manualCurationData.mat", squeeze_me=True)
    targets, ok = nyu["ablationTargetIds"].astype(int), nyu["ablationSuccessful"].astype(bool)
    assert not ok.all(), "an unsuccessful target is listed"
    np.testing.assert_array_equal(np.unique(targets[ok]), animal.ablated_ids["touch"])
    assert set(targets[~ok]) - set(targets[ok]) == set(abl.failed_ids)
    jrc = scipy.io.loadmat(adir / "an274424_2019_04_07.mat", squeeze_me=True)
    np.testing.assert_array_equal(np.unique(jrc["ablated_ids"].astype(int)), animal.ablated_ids["touch"])
    assert abl.curation_files == [adir / "2019_04_07_ablation" / "manualCurationData.mat",
                                  adir / "an274424_2019_04_07.mat"]
    unknown = animal.unknown_curation_ids
    assert unknown.size == 1 and unknown[0] in targets and unknown[0] in jrc["ablated_ids"]
    assert unknown[0] not in animal.all_roi_ids


def test_several_ablations_one_flavour_and_per_file_versions(tmp_path):
    t = write_ssc11_animal(tmp_path, n_subvolumes=1, conditions=("pre", "post_silent", "post_touch"),
                           curation="nyu", mat_versions=("7.3", ("5",), "7.3"))
    names = sorted(p.name for p in t.animal_dir.iterdir())
    assert names == ["2019_04_07_ablation_silent", "2019_04_15_ablation",
                     "session_neuropilone_postablate_silent_merged", "session_neuropilone_postablate_touch_merged",
                     "session_neuropilone_preablate_merged"]
    assert t.mat_versions == {"pre": ["7.3"], "post_silent": ["5"], "post_touch": ["7.3"]}
    silent = t.ablated_ids["silent"]
    later = t.subvolume("post_touch", 1)
    assert set(silent) <= set(later.dead_ids) and not set(silent) & set(later.ca_events["roi_id"])
    assert not set(silent) & set(t.ablated_ids["touch"])


# --------------------------------------------------------------------------------------------
# determinism, regeneration, parameters
# --------------------------------------------------------------------------------------------


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.mat"))}


def test_same_seed_same_bytes(tmp_path):
    for name, seed in (("a", 4), ("b", 4), ("c", 5)):
        write_ssc11_animal(tmp_path / name, n_subvolumes=1, seed=seed)
    a, b, c = (_digests(tmp_path / n) for n in "abc")
    assert a == b and len(a) == 4
    assert a.keys() == c.keys() and all(a[k] != c[k] for k in a if "sess_struct" in k)


def test_truth_is_regenerated_when_not_kept(tmp_path, animal):
    t = write_ssc11_animal(tmp_path, seed=0, unknown_curation_id=True, keep_truth=False)
    assert t.subvolumes == {"pre": [], "post_touch": []}
    again, kept = t.subvolume("post_touch", 2), animal.subvolume("post_touch", 2)
    np.testing.assert_array_equal(again.dff, kept.dff)
    np.testing.assert_array_equal(again.ca_events["peak_time"], kept.ca_events["peak_time"])
    assert again.path.read_bytes() == kept.path.read_bytes()


def test_presets_and_bad_parameters():
    tiny, small, full = (SSC11_PRESETS[k] for k in ("tiny", "small", "full"))
    assert (tiny.n_subvolumes, tiny.n_planes, tiny.cells_per_plane, tiny.n_days, tiny.trials_per_day,
            tiny.image_size) == (2, 3, 8, 3, 6, 64)
    assert (small.cells_per_plane, small.trials_per_day, small.frames_per_trial) == (20, 15, 70)
    assert full.n_subvolumes == 4 and full.n_planes * full.cells_per_plane == 1500
    assert 40_000 < full.n_days * full.trials_per_day * full.frames_per_trial < 50_000
    assert type(tiny).from_dict(tiny.to_dict()) == tiny
    with pytest.raises(ValueError, match="start with 'pre'.*\n.*curation"):
        write_ssc11_animal("/nonexistent", conditions=("post_touch",), curation="x")
    with pytest.raises(TypeError, match="cells_per_plane"):
        write_ssc11_animal("/nonexistent", cells=3)
    with pytest.raises(ValueError, match="unknown preset"):
        write_ssc11_animal("/nonexistent", preset="huge")


def test_public_names_stay_importable_from_ssc11_and_the_package():
    """The writer is split into private stage modules; ``ssc11`` and the package still export every name."""
    import sscxr.testing.archives as archives
    from sscxr.testing.archives import ssc11

    for name in ssc11.__all__:
        assert getattr(ssc11, name) is not None, name
    for name in ("write_ssc11_animal", "Ssc11Truth", "SSC11_PRESETS"):
        assert getattr(archives, name) is getattr(ssc11, name)
    assert set(ssc11.FOLDERS) >= {"pre", "post_touch"} and "masks" in ssc11.CHOICES
