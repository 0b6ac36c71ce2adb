"""Read, then write: the readers return finished, labeled groups and touch no store.

The conversion used to write each subvolume's dF/F from inside the MAT parse (writer objects in
the parse tree); now reading is over before the store is created.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sscxr.testing.archives import write_ssc1_session
from sscxr_conversion import convert, pipeline, write
from sscxr_conversion.spec import ConversionSpec

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_ssc1_session(tmp_path_factory.mktemp("ssc1") / "an197522_2013_03_08", preset="tiny", seed=5)


def test_reading_a_session_opens_no_store_and_gives_plain_groups(tiny, monkeypatch):
    def no_store(*args, **kwargs):
        raise AssertionError("a store was opened while reading")

    monkeypatch.setattr(write, "open_store", no_store)
    loads = []
    real_load = pipeline.load_mat
    monkeypatch.setattr(pipeline, "load_mat", lambda *a, **k: (loads.append(k), real_load(*a, **k))[1])
    plan = pipeline.read_plan(tiny.mat_path, ConversionSpec(archive="ssc-1"))
    assert loads and all(set(k) <= {"name", "variable"} for k in loads)  # no parse hooks
    groups = dict(plan.groups)
    for task in plan.tasks:
        groups.update(dict(task.build()[0]))
    subvolumes = [p for p in groups if p.startswith("imaging/subvolume_") and p.count("/") == 1]
    assert subvolumes
    for path in subvolumes:
        dff = groups[path]["dff"]
        assert isinstance(groups[path], xr.Dataset) and type(dff.variable._data) is np.ndarray, path
        assert dff.dims == ("cell", "time") and dff.shape[0] > 0


def test_a_failed_read_leaves_no_store(tiny, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("corrupt element")

    monkeypatch.setattr(pipeline, "read_session", broken)
    dest = tmp_path / "x.zarr"
    with pytest.raises(ValueError, match="corrupt element"):
        convert(tiny.mat_path, str(dest), progress=False)
    assert not dest.exists() or not list(dest.rglob("zarr.json"))
    monkeypatch.undo()
    assert convert(tiny.mat_path, str(dest), progress=False).groups  # nothing to --resume or --overwrite


def test_no_writer_types_are_left():
    for name in ("EarlyArrays", "StoredArray"):
        assert not hasattr(write, name)
    assert not hasattr(pipeline, "_early_dff")
