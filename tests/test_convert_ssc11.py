"""ssc-11 conversion: synthetic animal (ground truth) -> store -> every value checked.

Expected values come from the writer's ground truth (what it wrote, in ms and 1-based ids),
never from the converter's own reading. The tiny animal has MAT v5 (pre) and v7.3 (post_touch)
files, three merged days per condition, NYU and JRC curation files and one curation id that no
subvolume has.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile

import numpy as np
import pytest
import scipy.io
import xarray as xr
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

import sscxr
from sscxr.errors import InconsistentSourceError, MissingFieldError, SourceFormatError, StoreExistsError
from sscxr.testing.archives import write_ssc11_animal
from sscxr_conversion.testing import CRASH_MID_GROUP, unfinished_version
from sscxr_conversion import convert, verify
from sscxr_conversion.cells import near_ablated
from sscxr_conversion.readers.ssc11 import trial_days
from sscxr_conversion.ssc11_pipeline import union_by_trial

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")
CONDITIONS = ("pre", "post_touch")


@pytest.fixture(scope="module")
def truth(tmp_path_factory):
    return write_ssc11_animal(tmp_path_factory.mktemp("ssc11"), preset="tiny", seed=0, unknown_curation_id=True)


@pytest.fixture(scope="module")
def converted(truth, tmp_path_factory):
    store = str(tmp_path_factory.mktemp("store") / "an274424.zarr")
    result = convert(truth.animal_dir, store, progress=False)
    return result, store, xr.open_datatree(store, engine="zarr", chunks=None)


def subvolumes(truth):
    return [(c, i, truth.subvolume(c, i)) for c in CONDITIONS for i in range(1, truth.params.n_subvolumes + 1)]


def group(tree, path):
    return tree[path].to_dataset(inherit=False)


def positions(truth, sub):
    """Truth x/y/z (um) per ROI id of one file, from its masks (FORMATS.md §2.4)."""
    size = truth.params.image_size
    um = 600.0 / size
    out = {}
    for rid, plane in zip(sub.roi_ids.tolist(), sub.roi_plane.tolist()):
        idx = np.asarray(sub.mask_indices[rid]) - 1
        out[rid] = ((idx // size).mean() * um, (idx % size).mean() * um, (sub.index - 1) * 45.0 + (plane - 1) * 15.0)
    return out


# --- root, provenance, validity ---------------------------------------------------------------
def test_both_mat_versions_and_three_days(truth):
    versions = {v for vs in truth.mat_versions.values() for v in vs}
    assert versions == {"5", "7.3"}
    assert all(len(days) == 3 for days in truth.days.values())


def test_root_attrs_and_provenance(truth, converted):
    result, _, tree = converted
    attrs = tree.attrs
    assert attrs["archive"] == "ssc-11" and attrs["sscxr_status"] == "complete"
    assert attrs["animal_id"] == "an274424"
    assert list(attrs["conditions"]) == list(CONDITIONS)
    assert attrs["content_version"] == result.content_version
    files = [p for paths in truth.paths.values() for p in paths] + list(truth.ablations[0].curation_files)
    sources = {s["name"]: s for s in attrs["provenance"]["sources"]}
    for path in files:
        name = path.relative_to(truth.animal_dir).as_posix()
        assert sources[name]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert sources[name]["size"] == path.stat().st_size
    sscxr.schema.validate(tree)
    assert sscxr.open_animal(result.url).attrs["sscxr_status"] == "complete"


def test_ablations_attr_per_curation_file(truth, converted):
    ablations = converted[2].attrs["ablations"]
    assert {a["lab"] for a in ablations} == {"NYU", "JRC"}
    for a in ablations:
        assert a["kind"] == "touch" and a["date"] == truth.ablation_dates["touch"]
    combined = sorted({i for a in ablations for i in a["ids"]})
    assert combined == sorted(truth.ablated_ids["touch"].tolist())
    nyu = next(a for a in ablations if a["lab"] == "NYU")
    assert not set(truth.ablations[0].failed_ids.tolist()) & set(nyu["ids"]), "only successful targets"


def test_verify_passes_then_catches_a_changed_value(truth, converted, tmp_path):
    _, store, _ = converted
    assert verify(truth.animal_dir, store) == []
    copy = str(tmp_path / "copy.zarr")
    shutil.copytree(store, copy)
    arr = zarr.open_array(copy, path="post_touch/subvolume_2/dff", mode="r+")
    arr[1, 2] = 123.0
    flags = zarr.open_array(copy, path="cells/present_pre", mode="r+")
    flags[0] = not flags[0]
    problems = verify(truth.animal_dir, copy, raise_on_mismatch=False)
    assert len(problems) == 2
    assert any("post_touch/subvolume_2/dff" in p and "(1, 2)" in p for p in problems)
    assert any("cells/present_pre" in p for p in problems)


# --- subvolume groups ----------------------------------------------------------------------------
def test_imaging_matches_truth(truth, converted):
    tree = converted[2]
    for cond, i, sub in subvolumes(truth):
        ds = group(tree, f"{cond}/subvolume_{i}")
        np.testing.assert_array_equal(ds["cell"], sub.roi_ids)
        np.testing.assert_array_equal(ds["dff"].values, sub.dff)
        np.testing.assert_array_equal(ds["raw_f"].values, sub.raw_f)
        np.testing.assert_allclose(ds["time"], sub.time_ms / 1000)
        np.testing.assert_array_equal(ds["trial"], sub.trial)
        np.testing.assert_array_equal(ds["day"], sub.day)
        assert list(ds["plane"].values) == list(sub.plane_numbers)
        np.testing.assert_array_equal(ds["cell_plane"], np.asarray(sub.plane_numbers)[sub.roi_plane - 1])
        assert ds.attrs["subvolume"] == i and ds.attrs["condition"] == cond
        assert set(ds["fov"].values.tolist()) == set(sub.fov_names)
        period = np.median(np.diff(sub.time_ms[sub.trial == sub.trial[0]])) / 1000
        for p in sub.plane_numbers:
            np.testing.assert_allclose(ds["frame_time"].sel(plane=p) - ds["time"], (p - 1) * period / 4, atol=1e-9)
        where = positions(truth, sub)
        np.testing.assert_allclose(ds["x_um"], [where[r][0] for r in sub.roi_ids.tolist()])
        np.testing.assert_allclose(ds["y_um"], [where[r][1] for r in sub.roi_ids.tolist()])
        np.testing.assert_allclose(ds["z_um"], [where[r][2] for r in sub.roi_ids.tolist()])


def test_features_keep_kernel_dims(truth, converted):
    tree = converted[2]
    for cond, i, sub in subvolumes(truth):
        ds = group(tree, f"{cond}/subvolume_{i}")
        for key, values in sub.cell_features.items():
            var = ds[f"feature_{key}"]
            np.testing.assert_array_equal(var.values, values)
            assert var.dims == (("cell",) if np.ndim(values) == 1 else (f"{key}_lag", "cell"))


def test_ca_events_match_truth(truth, converted):
    tree = converted[2]
    for cond, i, sub in subvolumes(truth):
        ev = group(tree, f"{cond}/subvolume_{i}/ca_events")
        t = sub.ca_events
        order = np.lexsort((t["event_time"], t["roi_id"]))
        np.testing.assert_array_equal(ev["event_cell"], t["roi_id"][order])
        for name, column in (("start_time", "event_time"), ("peak_time", "peak_time"), ("end_time", "end_time"),
                             ("rise_time_constant", "rise_time_constant"),
                             ("decay_time_constant", "decay_time_constant")):
            np.testing.assert_allclose(ev[name], t[column][order] / 1000)
        np.testing.assert_array_equal(ev["peak_value"], t["peak_value"][order])
        np.testing.assert_array_equal(ev["trial"], t["trial"][order])


def test_rois_sources_and_derived(truth, converted):
    tree = converted[2]
    size = truth.params.image_size
    for cond, i, sub in subvolumes(truth):
        rois = group(tree, f"{cond}/subvolume_{i}/rois")
        for rid, idx in list(sub.mask_indices.items())[:6]:
            sel = rois["mask_cell"].values == rid
            np.testing.assert_array_equal(rois["mask_y"].values[sel], (np.asarray(idx) - 1) % size)
            np.testing.assert_array_equal(rois["mask_x"].values[sel], (np.asarray(idx) - 1) // size)
        np.testing.assert_array_equal(rois["master_image"].values, np.stack([np.moveaxis(m, 2, 0) for m in sub.master_image]))
        ds = group(tree, f"{cond}/subvolume_{i}")
        for p, (files, idx) in enumerate(zip(sub.file_list, sub.file_frame_idx)):
            assert ds["source_file"].values[p].tolist()[: len(files)] == files
            want = np.where(np.isnan(idx), -1, idx - 1).astype(int)
            np.testing.assert_array_equal(ds["source_file_index"].isel(plane=p), want[0])
            np.testing.assert_array_equal(ds["source_frame_index"].isel(plane=p), want[1])
        for key, values in sub.derived.items():
            np.testing.assert_array_equal(ds["derived"].sel(derived_id=key).values, values)


# --- condition tables: the union of the subvolume files ---------------------------------------
def test_trials_are_the_union_with_days(truth, converted):
    tree = converted[2]
    for cond in CONDITIONS:
        subs = [truth.subvolume(cond, i) for i in range(1, truth.params.n_subvolumes + 1)]
        ids = np.concatenate([s.trial_ids for s in subs])
        order = np.argsort(ids)
        trials = group(tree, f"{cond}/trials")
        np.testing.assert_array_equal(trials["trial"], ids[order])
        np.testing.assert_allclose(trials["start_time"], np.concatenate([s.trial_start_ms for s in subs])[order] / 1000)
        assert list(trials["trial_type"].values) == list(np.concatenate([s.trial_type for s in subs])[order])
        np.testing.assert_array_equal(trials["day"], (ids[order] - 1) // 1000 + 1)
        assert set(trials["day"].values.tolist()) == {1, 2, 3}
        np.testing.assert_array_equal(trials["subvolume"], np.concatenate([[s.index] * len(s.trial_ids) for s in subs])[order])
        valid = np.concatenate([s.whisker.valid_trials for s in subs])
        np.testing.assert_array_equal(trials["has_whisker"], np.isin(ids[order], valid))


def test_events_match_truth(truth, converted):
    tree = converted[2]
    kinds = {"Pole Movement": "pole_movement", "Left Licks": "lick_left", "Right Licks": "lick_right",
             "Water Delivery": "water_delivery", "Response Cue": "response_cue"}
    for cond in CONDITIONS:
        subs = [truth.subvolume(cond, i) for i in range(1, truth.params.n_subvolumes + 1)]
        ev = group(tree, f"{cond}/events")
        expected = {kind: [s.behaviour[name] for s in subs] for name, kind in kinds.items()}
        expected["pole_in_reach"] = [s.pole_in_reach for s in subs]
        expected["touch_protraction"] = [s.touches["Protraction contacts for C2"] for s in subs]
        expected["touch_retraction"] = [s.touches["Retraction contacts for C2"] for s in subs]
        for kind, series in expected.items():
            rows = ev["kind"].values == kind
            times = np.concatenate([s.times_ms for s in series]) / 1000
            start = times if series[0].type == 1 else np.concatenate([s.times_ms[0::2] for s in series]) / 1000
            stop = times if series[0].type == 1 else np.concatenate([s.times_ms[1::2] for s in series]) / 1000
            order = np.argsort(start, kind="stable")
            np.testing.assert_allclose(ev["start_time"].values[rows], start[order])
            np.testing.assert_allclose(ev["stop_time"].values[rows], stop[order])
            trials = np.concatenate([s.trials[:: series[0].type] for s in series])[order]
            np.testing.assert_array_equal(ev["trial"].values[rows], trials)
            np.testing.assert_array_equal(ev["day"].values[rows], (trials - 1) // 1000 + 1)
            if kind.startswith("touch"):
                assert set(ev["whisker"].values[rows].tolist()) == {"c2"}
                kappa = np.concatenate([s.properties["kappaMaxAbsOverTouch"][0::2] for s in series])[order]
                np.testing.assert_array_equal(ev["kappaMaxAbsOverTouch"].values[rows], kappa)
        assert np.all(np.diff(ev["start_time"].values) >= 0)


def test_whisker_matches_truth(truth, converted):
    tree = converted[2]
    for cond in CONDITIONS:
        subs = [truth.subvolume(cond, i) for i in range(1, truth.params.n_subvolumes + 1)]
        w = group(tree, f"{cond}/whisker")
        time = np.concatenate([s.whisker.time_ms for s in subs])
        order = np.argsort(time, kind="stable")
        np.testing.assert_allclose(w["time"], time[order] / 1000)
        assert list(w["whisker"].values) == ["c2"]
        np.testing.assert_array_equal(w["angle"].values, np.concatenate([s.whisker.angle for s in subs], axis=1)[:, order])
        np.testing.assert_array_equal(w["curvature_change"].values,
                                      np.concatenate([s.whisker.curvature_change for s in subs], axis=1)[:, order])
        np.testing.assert_array_equal(w["day"], (w["trial"].values - 1) // 1000 + 1)
        assert w["angle"].attrs["units"] == "deg"


# --- cells -------------------------------------------------------------------------------------
def test_cells_join_pre_and_post_on_roi_id(truth, converted):
    cells = group(converted[2], "cells")
    np.testing.assert_array_equal(cells["cell"], np.sort(truth.all_roi_ids))
    for cond in CONDITIONS:
        present = np.concatenate(truth.roi_ids[cond])
        np.testing.assert_array_equal(cells[f"present_{cond}"], np.isin(cells["cell"], present))
    assert truth.lost_ids.size and cells.sel(cell=truth.lost_ids)["present_pre"].all()
    assert not cells.sel(cell=truth.lost_ids)["present_post_touch"].any(), "lost cells stay, absent post"
    where = {}
    for _, _, sub in subvolumes(truth):
        where.update(positions(truth, sub))
    for name, k in (("x_um", 0), ("y_um", 1), ("z_um", 2)):
        np.testing.assert_allclose(cells[name], [where[r][k] for r in cells["cell"].values.tolist()])
    paired = sscxr.align.pair_conditions(converted[2], "pre", "post_touch", subvolume=1)
    both = np.intersect1d(truth.subvolume("pre", 1).roi_ids, truth.subvolume("post_touch", 1).roi_ids)
    np.testing.assert_array_equal(paired["pre"]["cell"], both)
    np.testing.assert_array_equal(paired["post_touch"]["dff"].values,
                                  group(converted[2], "post_touch/subvolume_1")["dff"].sel(cell=both).values)


def test_ablated_and_near_ablated_vs_brute_force(truth, converted):
    cells = group(converted[2], "cells")
    ids = cells["cell"].values
    ablated = np.isin(ids, truth.ablated_ids["touch"])
    np.testing.assert_array_equal(cells["ablated_touch"], ablated)
    np.testing.assert_array_equal(cells["ablated"], ablated)
    assert ablated.sum() == len(set(truth.ablated_ids["touch"]) - set(truth.unknown_curation_ids))
    x, y, z = (cells[v].values for v in ("x_um", "y_um", "z_um"))
    near = [not ablated[i] and any(np.hypot(x[i] - x[j], y[i] - y[j]) < 10 and abs(z[i] - z[j]) < 30
                                   for j in range(len(ids)) if ablated[j]) for i in range(len(ids))]
    np.testing.assert_array_equal(cells["near_ablated"], near)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 40), st.floats(0, 40), st.sampled_from([0.0, 15.0, 30.0, 45.0, 90.0]),
                          st.booleans()), min_size=1, max_size=25))
def test_near_ablated_rule_property(cells):
    x, y, z, abl = (np.array(c) for c in zip(*cells))
    got = near_ablated(x, y, z, abl.astype(bool))
    for i in range(len(x)):
        want = not abl[i] and any(abl[j] and np.hypot(x[i] - x[j], y[i] - y[j]) < 10 and abs(z[i] - z[j]) < 30
                                  for j in range(len(x)))
        assert got[i] == want


def test_unknown_curation_id_is_a_warning_not_a_silent_drop(truth, converted):
    result, _, tree = converted
    unknown = int(truth.unknown_curation_ids[0])
    assert unknown not in group(tree, "cells")["cell"].values
    stored = tree.attrs["provenance"]["warnings"]
    assert any(str(unknown) in w and "no subvolume" in w for w in stored)
    assert any(str(unknown) in w for w in result.warnings)
    assert sum(str(unknown) in w for w in stored) == 2, "one warning per curation file naming it"


# --- days --------------------------------------------------------------------------------------
def test_days_from_id_blocks_checked_against_time_offsets():
    warnings: list[str] = []
    ids = np.array([1, 2, 1001, 1003, 2001])
    start = np.array([3.6e4, 3.7e4, 86400 + 3.6e4, 86400 + 3.9e4, 2 * 86400 + 3.6e4]) + 7 * 86400
    np.testing.assert_array_equal(trial_days(ids, start, "f.mat", warnings), [1, 1, 2, 2, 3])
    assert warnings == []


def test_days_fall_back_to_gaps_with_a_warning():
    warnings: list[str] = []
    ids = np.arange(1, 7)  # not offset per day, but the times are
    start = np.array([0, 20, 40, 86400, 86420, 2 * 86400 + 5.0]) + 3.6e4
    np.testing.assert_array_equal(trial_days(ids, start, "f.mat", warnings), [1, 1, 1, 2, 2, 3])
    assert len(warnings) == 1 and "f.mat" in warnings[0] and "gaps" in warnings[0]


def test_days_keep_id_blocks_when_times_are_not_offset():
    warnings: list[str] = []
    ids = np.array([1, 2, 1001, 1002])
    start = np.array([10.0, 20.0, 11.0, 21.0])  # each day's clock restarts
    np.testing.assert_array_equal(trial_days(ids, start, "f.mat", warnings), [1, 1, 2, 2])
    assert len(warnings) == 1 and "1-day offsets" in warnings[0]


# --- union of per-file tables ------------------------------------------------------------------
def _events(trials, times, kind="lick_left"):
    return xr.Dataset({"trial": ("event", np.array(trials)), "start_time": ("event", np.array(times, float)),
                       "kind": ("event", np.array([kind] * len(trials)))},
                      coords={"event": np.arange(len(trials))})


def test_union_dedupes_a_trial_held_by_two_files():
    a = _events([1, 1, 2], [0.1, 0.2, 5.0])
    b = _events([2, 3], [5.0, 9.0])
    out = union_by_trial([("a.mat", a), ("b.mat", b)], "event", "start_time")
    np.testing.assert_array_equal(out["trial"], [1, 1, 2, 3])
    np.testing.assert_array_equal(out["start_time"], [0.1, 0.2, 5.0, 9.0])


def test_union_conflict_names_both_files():
    a = _events([1, 2], [0.1, 5.0])
    b = _events([2, 3], [5.5, 9.0])
    with pytest.raises(InconsistentSourceError, match=r"b\.mat.*trial 2.*'start_time' differs from a\.mat"):
        union_by_trial([("a.mat", a), ("b.mat", b)], "event", "start_time")
    c = _events([2, 2], [5.0, 6.0])
    with pytest.raises(InconsistentSourceError, match=r"c\.mat.*trial 2: 2 event rows vs 1 from a\.mat"):
        union_by_trial([("a.mat", a), ("c.mat", c)], "event", "start_time")


# --- sources, errors, resume, S3 ---------------------------------------------------------------
@pytest.fixture
def animal_copy(truth, tmp_path):
    dest = tmp_path / truth.animal
    shutil.copytree(truth.animal_dir, dest)
    return dest


def test_tarball_through_the_cli_gives_the_same_store_and_prints_warnings(truth, converted, tmp_path):
    tar = tmp_path / "an274424.tar.gz"
    files = sorted((p for p in truth.animal_dir.rglob("*") if p.is_file()), reverse=True)  # not sorted order
    with tarfile.open(tar, "w:gz") as t:
        for p in files:
            t.add(p, arcname=f"an274424/{p.relative_to(truth.animal_dir).as_posix()}")
    store = tmp_path / "t.zarr"
    proc = subprocess.run([sys.executable, "-m", "sscxr.cli", "convert", str(tar), str(store), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"warning: an274424/2019_04_07_ablation/manualCurationData.mat: ablated ROI id(s) [{truth.unknown_curation_ids[0]}]" in proc.stderr
    tree = xr.open_datatree(store, engine="zarr", chunks=None)
    for path in ("cells", "pre/trials", "pre/events", "post_touch/whisker", "pre/subvolume_2",
                 "post_touch/subvolume_1", "post_touch/subvolume_1/ca_events", "pre/subvolume_1/rois"):
        xr.testing.assert_identical(group(tree, path).drop_attrs(), group(converted[2], path).drop_attrs())
    assert tree.attrs["provenance"]["sources"][-1]["name"] == tar.name
    assert verify(tar, str(store)) == []


def test_non_mat_file_fails_before_anything_is_written(animal_copy, tmp_path):
    bad = animal_copy / "session_neuropilone_postablate_touch_merged" / "an274424_vol_02_sess_struct.mat"
    bad.write_bytes(b"<html>404 not found</html>" * 40)
    with pytest.raises(SourceFormatError, match=r"an274424_vol_02_sess_struct\.mat: is not a MATLAB MAT file"):
        convert(animal_copy, str(tmp_path / "x.zarr"), progress=False)
    assert not (tmp_path / "x.zarr").exists()


def test_truncated_v73_file_names_the_file(truth, animal_copy, tmp_path):
    name = "session_neuropilone_postablate_touch_merged/an274424_vol_01_sess_struct.mat"
    assert truth.mat_versions["post_touch"][0] == "7.3"
    path = animal_copy / name
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceFormatError, match=rf"{name}.*(truncated or corrupt)"):
        convert(animal_copy, str(tmp_path / "x.zarr"), progress=False)


def test_missing_required_field_names_file_and_field(animal_copy, tmp_path):
    name = "session_neuropilone_preablate_merged/an274424_vol_02_sess_struct.mat"
    path = animal_copy / name
    sess = scipy.io.loadmat(path, squeeze_me=False, struct_as_record=True)["sess"][0, 0]
    fields = {n: sess[n] for n in sess.dtype.names}
    ca = fields["caTSA"][0, 0]
    fields["caTSA"] = {n: ca[n] for n in ca.dtype.names if n != "dffTimeSeriesArray"}
    scipy.io.savemat(path, {"sess": fields}, do_compression=True, long_field_names=True)
    with pytest.raises(MissingFieldError, match=rf"{name}, field 'sess\.caTSA\.dffTimeSeriesArray'"):
        convert(animal_copy, str(tmp_path / "x.zarr"), progress=False)


CRASH = CRASH_MID_GROUP  # the shared crash script (sscxr_conversion.testing)



def test_killed_conversion_resumes(truth, converted, tmp_path):
    store = str(tmp_path / "r.zarr")
    proc = subprocess.run([sys.executable, "-c", CRASH, str(truth.animal_dir), store, "5"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    with pytest.raises(sscxr.errors.IncompleteStoreError, match="--resume"):
        sscxr.open_animal(store)
    with pytest.raises(StoreExistsError, match="--resume"):
        convert(truth.animal_dir, store, progress=False)
    root = zarr.open_group(unfinished_version(store), mode="r", zarr_format=3, use_consolidated=False)
    finished = {p for p, node in root.members(max_depth=None)
                if isinstance(node, zarr.Group) and node.attrs.get("sscxr_written")}
    assert len(finished) >= 4  # two tasks run at once (v5 files), so one more may have finished
    result = convert(truth.animal_dir, store, progress=False, resume=True)
    assert set(result.skipped) == finished, "the groups finished before the crash are not rewritten"
    assert "cells" in result.groups and "pre/trials" in result.groups, "the finish step still runs"
    assert verify(truth.animal_dir, store) == []
    assert sscxr.open_animal(store).attrs["animal_id"] == "an274424"


def test_s3_destination_on_dask_workers(truth, moto_server, moto_bucket):
    url = moto_server.url(moto_bucket, "stores/an274424.zarr")
    options = moto_server.storage_options()
    result = convert(truth.animal_dir, url, storage_options=options, workers=2, progress=False)
    assert len(result.groups) == 19
    assert verify(truth.animal_dir, url, storage_options=options) == []
    tree = sscxr.open_animal(url, storage_options=options)
    np.testing.assert_array_equal(tree["post_touch/subvolume_2/dff"].values, truth.subvolume("post_touch", 2).dff)
    assert options["secret"] not in repr(dict(tree.attrs))


def test_mixed_curation_only_jrc_and_post_only(tmp_path):
    truth = write_ssc11_animal(tmp_path, preset="tiny", seed=4, curation="jrc", conditions=("pre", "post"),
                               mat_versions="5", n_days=1, n_subvolumes=1)
    store = str(tmp_path / "j.zarr")
    result = convert(truth.animal_dir, store, progress=False)
    tree = xr.open_datatree(store, engine="zarr", chunks=None)
    assert [a["lab"] for a in tree.attrs["ablations"]] == ["JRC"]
    cells = group(tree, "cells")
    np.testing.assert_array_equal(cells["ablated_touch"], np.isin(cells["cell"], truth.ablated_ids["touch"]))
    assert set(group(tree, "post/trials")["day"].values.tolist()) == {1}
    assert not [w for w in result.warnings if "kind" in w]
    assert os.path.exists(store)


def test_docs_ssc11_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "ssc11.md").read_text()
    namespace: dict = {"__name__": "docs.ssc11"}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", text, re.S)):
        exec(compile(block, f"docs/ssc11.md[block {i}]", "exec"), namespace)


def test_two_tasks_at_once_only_when_two_files_fit_in_memory(truth, monkeypatch):
    from sscxr_conversion import ssc11_pipeline

    inv = ssc11_pipeline.take_inventory(truth.animal_dir)
    biggest = sorted((r.size for r in inv.records if ssc11_pipeline.SUBVOLUME_FILE.search(r.name)), reverse=True)
    need = ssc11_pipeline.TASK_MEMORY_FACTOR * sum(biggest[:2]) * 2  # half the memory must hold them
    page = 4096
    monkeypatch.setattr(ssc11_pipeline.os, "sysconf", lambda name: page if name == "SC_PAGE_SIZE" else (need + page) // page)
    assert ssc11_pipeline._task_threads(inv) == 2
    monkeypatch.setattr(ssc11_pipeline.os, "sysconf", lambda name: page if name == "SC_PAGE_SIZE" else (need - page) // page)
    assert ssc11_pipeline._task_threads(inv) == 1
