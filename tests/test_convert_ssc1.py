"""ssc-1 conversion: synthetic archive (ground truth) -> store -> every value checked.

The expected values come from the writer's ground truth (what it wrote, in source units), never
from the converter's own reading of the file.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sscxr.testing.archives import write_ssc1_session
from sscxr_conversion import convert, verify

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("ssc1")
    return write_ssc1_session(root / "an197522_2013_03_08", preset="tiny", seed=0, tar="tar.gz")


@pytest.fixture(scope="module")
def converted(tiny, tmp_path_factory):
    store = str(tmp_path_factory.mktemp("store") / "an197522_2013_03_08.zarr")
    result = convert(tiny.mat_path, store, progress=False)
    return result, xr.open_datatree(store, engine="zarr", chunks=None)


def test_root_attrs_and_provenance(tiny, converted):
    result, tree = converted
    assert tree.attrs["archive"] == "ssc-1"
    assert tree.attrs["sscxr_status"] == "complete"
    assert tree.attrs["animal_id"] == "an197522"
    assert tree.attrs["session_date"] == "2013-03-08"
    assert tree.attrs["metadata"] == tiny.metadata
    source = tree.attrs["provenance"]["sources"][0]
    assert source["name"] == tiny.mat_path.name and source["size"] == tiny.mat_path.stat().st_size
    assert tree.attrs["content_version"] == result.content_version


def test_trials_match_truth(tiny, converted):
    trials = converted[1]["trials"]
    np.testing.assert_array_equal(trials["trial"], tiny.trial_ids)
    np.testing.assert_allclose(trials["start_time"], np.asarray(tiny.trial_start_ms) / 1000)
    assert trials["start_time"].attrs["units"] == "s"
    names = ["HitL", "HitR", "ErrL", "ErrR", "NoLickL", "NoLickR"]
    mat = np.asarray(tiny.trial_type_mat) != 0
    expected = ["+".join(n for n, on in zip(names, col) if on) for col in mat.T]
    assert list(trials["trial_type"].values) == expected
    assert "" in expected, "the tiny preset must include trials without outcome"
    outcome = {"": "none", "Hit": "hit", "Err": "error", "NoLick": "no_lick"}
    assert list(trials["outcome"].values) == [outcome[t[:-1]] if t else "none" for t in expected]
    steps = np.asarray(tiny.trial_properties["StimulusPosition"], float)
    np.testing.assert_array_equal(trials["pole_position_steps"], steps)
    np.testing.assert_allclose(trials["pole_position"], steps / 10000)
    np.testing.assert_array_equal(trials["has_whisker"], np.isin(tiny.trial_ids, tiny.whisker.valid_trials))


def test_whisker_matches_truth(tiny, converted):
    w = converted[1]["whisker"]
    np.testing.assert_allclose(w["time"], np.asarray(tiny.whisker.time_ms) / 1000)
    np.testing.assert_array_equal(w["trial"], tiny.whisker.trial)
    rows = np.asarray(tiny.whisker.value_matrix)
    labels = list(tiny.whisker.id_strs)
    angle_rows = [i for i, s in enumerate(labels) if "Angle" in s]
    curv_rows = [i for i, s in enumerate(labels) if "Curvature" in s]
    np.testing.assert_array_equal(w["angle"].values, rows[angle_rows])
    np.testing.assert_array_equal(w["curvature_change"].values, rows[curv_rows])
    assert np.isnan(w["angle"].values).any(), "NaNs must be kept, not dropped"


def test_subvolumes_match_truth(tiny, converted):
    tree = converted[1]
    for sv in tiny.subvolumes:
        ds = tree[f"imaging/subvolume_{sv.vv:02d}"].to_dataset()
        np.testing.assert_array_equal(ds["cell"], sv.roi_ids)
        np.testing.assert_array_equal(ds["dff"].values, sv.dff)
        np.testing.assert_allclose(ds["time"], np.asarray(sv.time_ms) / 1000)
        np.testing.assert_array_equal(ds["trial"], sv.trial)
        np.testing.assert_array_equal(ds["cell_plane"], sv.roi_plane)
        assert list(ds["plane"].values) == list(sv.planes)
        # each plane's frame time: volume start + (PPP-1)/4 of the volume period
        period = np.median(np.diff(np.asarray(sv.time_ms) / 1000))
        for p in sv.planes:
            np.testing.assert_allclose(ds["frame_time"].sel(plane=p) - ds["time"], (p - 1) * period / 4, rtol=1e-6)
        # sourceFileFrameIdx: 1-based with NaN -> 0-based with -1
        for i, idx in enumerate(sv.source_file_frame_idx):
            idx = np.asarray(idx, float)
            want = np.where(np.isnan(idx), -1, idx - 1).astype(int)
            np.testing.assert_array_equal(ds["source_file_index"].isel(plane=i), want[0])
            np.testing.assert_array_equal(ds["source_frame_index"].isel(plane=i), want[1])


def test_masks_are_zero_based_row_major_pixels(tiny, converted):
    tree = converted[1]
    for sv in tiny.subvolumes:
        rois = tree[f"imaging/subvolume_{sv.vv:02d}/rois"].to_dataset(inherit=False)
        height = rois["master_image"].sizes["y"]
        for rid, idx in list(sv.mask_indices.items())[:5]:
            sel = rois["mask_cell"].values == rid
            idx = np.asarray(idx, int)
            np.testing.assert_array_equal(rois["mask_y"].values[sel], (idx - 1) % height)
            np.testing.assert_array_equal(rois["mask_x"].values[sel], (idx - 1) // height)
            np.testing.assert_array_equal(rois["mask_index"].values[sel], idx)


def test_events_match_truth(tiny, converted):
    ev = converted[1]["events"].to_dataset()
    kinds = {"poleInReach": ["pole_in_reach"], "touches": ["touch_protraction", "touch_retraction"],
             "leftLicks": ["lick_left"], "rightLicks": ["lick_right"]}
    for key, names in kinds.items():
        for series, kind in zip(tiny.events[key], names):
            rows = ev.isel(event=(ev["kind"] == kind).values)
            t = np.asarray(series.times_ms, float) / 1000
            starts = t[0::2] if series.type == 2 else t
            np.testing.assert_allclose(np.sort(rows["start_time"].values), np.sort(starts))
            if series.type == 2:
                np.testing.assert_allclose(np.sort(rows["stop_time"].values), np.sort(t[1::2]))
    touch = ev.isel(event=(ev["kind"] == "touch_protraction").values)
    kappa = np.asarray(tiny.events["touches"][0].properties["kappaMaxAbsOverTouch"], float)[0::2]
    np.testing.assert_allclose(touch["kappaMaxAbsOverTouch"].values, kappa)


def test_verify_passes_then_catches_tampering(tiny, converted, tmp_path):
    store = str(tmp_path / "s.zarr")
    convert(tiny.mat_path, store, progress=False)
    assert verify(tiny.mat_path, store) == []
    import zarr

    arr = zarr.open_array(store, path=f"imaging/subvolume_{tiny.subvolumes[0].vv:02d}/dff", mode="r+")
    arr[0, 3] = arr[0, 3] + 1.0
    problems = verify(tiny.mat_path, store, raise_on_mismatch=False)
    assert len(problems) == 1 and "dff" in problems[0] and "(0, 3)" in problems[0]


def test_same_source_gives_the_same_content_version(tiny, converted, tmp_path, monkeypatch):
    """A second conversion, at another time and to another place, has the same content version;
    a different source file has another."""
    import datetime

    from sscxr_conversion import provenance

    class Later(datetime.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[override]
            return datetime.datetime(2031, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(provenance, "datetime", Later)
    again = convert(tiny.mat_path, str(tmp_path / "elsewhere" / "an197522_2013_03_08.zarr"), progress=False)
    stored = xr.open_datatree(again.url, engine="zarr", chunks=None).attrs
    assert stored["provenance"]["created"].startswith("2031-01-02")
    assert stored["provenance"]["created"] != converted[1].attrs["provenance"]["created"]
    assert again.content_version == converted[0].content_version == stored["content_version"]
    other = write_ssc1_session(tmp_path / "other" / "an197522_2013_03_08", preset="tiny", seed=1)
    assert convert(other.mat_path, str(tmp_path / "o.zarr"), progress=False).content_version != again.content_version


@pytest.mark.parametrize("kind", ["folder", "tar.gz"])
def test_folder_and_tarball_sources_give_the_same_values(tiny, converted, tmp_path, kind):
    src = tiny.directory if kind == "folder" else tiny.tar_path
    store = str(tmp_path / "s.zarr")
    convert(src, store, progress=False)
    assert verify(src, store) == []
    other = xr.open_datatree(store, engine="zarr", chunks=None)
    for path in ("trials", "events", "whisker", f"imaging/subvolume_{tiny.subvolumes[0].vv:02d}"):
        xr.testing.assert_identical(other[path].to_dataset(inherit=False).drop_attrs(),
                                    converted[1][path].to_dataset(inherit=False).drop_attrs())
    if kind == "tar.gz":
        names = [s["name"] for s in other.attrs["provenance"]["sources"]]
        assert tiny.tar_path.name in names


def test_single_plane_subvolume_and_extra_traces(tmp_path):
    truth = write_ssc1_session(tmp_path / "a", preset="tiny", seed=3, single_plane_subvolume=True,
                               extra_traces=True)
    store = str(tmp_path / "s.zarr")
    convert(truth.mat_path, store, progress=False)
    assert verify(truth.mat_path, store) == []
    tree = xr.open_datatree(store, engine="zarr", chunks=None)
    sizes = [tree[f"imaging/subvolume_{sv.vv:02d}"].sizes["plane"] for sv in truth.subvolumes]
    assert 1 in sizes
    sv = truth.subvolumes[0]
    extras = {k: v for k, v in sv.extra_traces.items()}
    assert extras, "extra_traces=True must write an unknown (cell, time) field"
    for name, values in extras.items():
        ds = tree[f"imaging/subvolume_{sv.vv:02d}"].to_dataset()
        carried = [v for v in ds.data_vars if ds[v].attrs.get("source_field") == name]
        assert carried, f"unknown field {name} was dropped"
        np.testing.assert_array_equal(ds[carried[0]].values, values)
