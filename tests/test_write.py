"""The converter's group writer (write.encode_group) stores exactly what xarray's to_zarr would.

encode_group's fast path records what xarray's ZarrStore would create and writes it without
zarr's per-array and per-chunk round trips; these tests hold it to ``Dataset.to_zarr`` on every
group of real conversions (ssc-1 and ssc-11, with strings, ints, NaN floats, coords and large
matrices). tests/test_fastpath_write.py compares whole conversions with it on and off.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.buffer import default_buffer_prototype
from sscxr._zarr_compat import sync

from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal
from sscxr_conversion import _zarr_fastpath, write
from sscxr_conversion.readers._matfile import load_mat
from sscxr_conversion.readers.ssc1 import read_session
from sscxr_conversion.spec import ConversionSpec

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _ssc1_groups(tmp_path):
    src = write_ssc1_session(tmp_path / "an197522_2013_03_08", preset="tiny", seed=3)
    return read_session(load_mat(src.mat_path, name=src.mat_path.name, variable="s")).groups


def _ssc11_groups(tmp_path):
    from sscxr_conversion.pipeline import read_plan

    root = write_ssc11_animal(tmp_path / "ssc11", preset="tiny", seed=1).animal_dir
    plan = read_plan(root, ConversionSpec(archive="ssc-11"))
    groups = dict(plan.groups)
    for task in plan.tasks:
        groups.update(dict(task.build()[0]))
    return groups


def _documents(store, prefix):
    """Every zarr.json under ``prefix`` as parsed JSON."""
    async def collect():
        proto = default_buffer_prototype()
        return {k: json.loads((await store.get(k, proto)).to_bytes())
                async for k in store.list_prefix(prefix) if k.endswith("zarr.json")}
    return sync(collect())


@pytest.mark.parametrize("archive", ["ssc-1", "ssc-11"])
def test_same_metadata_and_values_as_to_zarr(tmp_path, archive):
    groups = _ssc1_groups(tmp_path) if archive == "ssc-1" else _ssc11_groups(tmp_path)
    spec = ConversionSpec(archive=archive)
    assert len(groups) >= 5
    through_zarr: list[str] = []  # arrays neither one-pass encoder took (zarr's ~1.5 ms round trips)
    setitem = zarr.Array.__setitem__

    def recorded(array, key, value):
        through_zarr.append(array.path)
        setitem(array, key, value)

    for path, ds in groups.items():
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(zarr.Array, "__setitem__", recorded)
            ours = zarr.storage.MemoryStore(write.encode_group(ds, path, spec))
        theirs = zarr.storage.MemoryStore()
        ref = write._portable_strings(ds).assign_attrs({write.WRITTEN: True})
        ref.to_zarr(theirs, group=path, mode="w", zarr_format=3, consolidated=False,
                    encoding=write.encoding_for(ref, spec))
        assert _documents(ours, path) == _documents(theirs, path), path
        got = xr.open_zarr(ours, group=path, consolidated=False, zarr_format=3).load()
        want = xr.open_zarr(theirs, group=path, consolidated=False, zarr_format=3).load()
        xr.testing.assert_identical(got, want)
        xr.testing.assert_equal(got, ds)
    if _zarr_fastpath.usable(_zarr_fastpath.GROUP_ENCODER):  # else to_zarr itself (SSCXR_NO_FASTPATH=1)
        assert through_zarr == []  # strings included: every array was encoded in one pass


def test_large_matrix_goes_through_the_one_pass_encoder(tmp_path):
    """A (cell, time) float matrix with NaNs and edge chunks: stored chunk by chunk, read back equal."""
    rng = np.random.default_rng(0)
    dff = rng.standard_normal((70, 1100))
    dff[3, 5:9] = np.nan
    ds = xr.Dataset({"dff": (("cell", "time"), dff, {"units": "dF/F"})},
                    coords={"cell": np.arange(70), "time": np.arange(1100) / 7.0,
                            "fov": ("cell", np.array([f"fov_{i:05d}" for i in range(70)]))})
    spec = ConversionSpec(dff_chunks=(32, 512))
    staged = write.encode_group(ds, "imaging/subvolume_01", spec)
    chunk_keys = sorted(k for k in staged if k.startswith("imaging/subvolume_01/dff/c/"))
    assert len(chunk_keys) == 3 * 3  # ceil(70/32) x ceil(1100/512), edge chunks included
    back = xr.open_zarr(zarr.storage.MemoryStore(staged), group="imaging/subvolume_01", zarr_format=3,
                        consolidated=False).load()
    np.testing.assert_array_equal(back["dff"].values, dff)
    assert back["fov"].values.tolist() == ds["fov"].values.tolist()
    assert back.attrs[write.WRITTEN] is True


def test_group_metadata_is_the_last_object_written(tmp_path, monkeypatch):
    """An interrupted group write leaves no group metadata (so --resume rewrites it)."""
    from sscxr_conversion import shards

    ds = xr.Dataset({"a": ("x", np.arange(5.0)), "b": ("x", np.arange(5))})
    store = write.open_store(str(tmp_path / "s.zarr"), None, mode="w")
    zarr.open_group(store, mode="w", zarr_format=3)
    calls = []
    real = shards.put_many

    def failing_second(store_, blobs):
        calls.append(sorted(blobs))
        if len(calls) == 2:
            raise OSError("disk full")
        real(store_, blobs)

    monkeypatch.setattr(write, "put_many", failing_second)
    with pytest.raises(OSError, match="disk full"):
        write.write_group(store, "trials", ds, ConversionSpec())
    assert calls[1] == ["trials/zarr.json"]
    assert "trials/zarr.json" not in calls[0]
    assert not (tmp_path / "s.zarr" / "trials" / "zarr.json").exists()
    assert (tmp_path / "s.zarr" / "trials" / "a" / "zarr.json").exists()
    monkeypatch.setattr(write, "put_many", real)
    write.write_group(store, "trials", ds, ConversionSpec())
    assert zarr.open_group(store, path="trials", mode="r").attrs[write.WRITTEN] is True


def _reference_finalise(store, attrs):
    """What finalise wrote before it computed everything in memory: zarr's own consolidation."""
    import warnings

    from sscxr.io import content_version

    root = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    root.attrs.update({**attrs, "sscxr_status": "complete"})
    version = content_version(root)
    root.attrs["content_version"] = version
    groups = [p for p, node in root.members(max_depth=None) if isinstance(node, zarr.Group)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(groups, key=lambda p: -p.count("/")):
            zarr.consolidate_metadata(store, path=path)
        zarr.consolidate_metadata(store)
    return version


def test_finalise_writes_what_zarr_consolidation_writes(tmp_path):
    from sscxr.io import content_version, open_group

    groups = _ssc1_groups(tmp_path)
    spec = ConversionSpec(archive="ssc-1")
    stores = []
    for name in ("ours", "zarrs"):
        store = write.open_store(str(tmp_path / f"{name}.zarr"), None, mode="w")
        write.prepare(store, name, overwrite=False, resume=False, attrs={"archive": "ssc-1", "x": [1, 2]})
        for path, ds in groups.items():
            write.write_group(store, path, ds, spec)
        stores.append(store)
    attrs = {"archive": "ssc-1", "provenance": {"warnings": ["w"]}}
    version = write.finalise(stores[0], attrs)
    assert version == _reference_finalise(stores[1], attrs)
    assert _documents(stores[0], "") == _documents(stores[1], "")
    assert content_version(stores[0]) == version
    assert write.store_state(stores[0]) == "complete"
    sub = open_group(str(tmp_path / "ours.zarr"), "imaging/subvolume_01")
    xr.testing.assert_equal(sub, groups["imaging/subvolume_01"])
