"""tree.sscx.summary(): what a store holds, as text and HTML tables, without reading signals;
trial tensors that say which session they come from and keep boolean coords bool."""

from __future__ import annotations

import re
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr

import sscxr
from sscxr.summary import StoreSummary
from sscxr.testing.stores import make_animal_tree, make_session_tree


def _boom(block: np.ndarray) -> np.ndarray:
    raise AssertionError("summary() read signal data")


def _lazy_dff(tree: xr.DataTree) -> xr.DataTree:
    """The tree with every dff a dask array that fails if computed."""
    for node in tree.subtree:
        if "dff" in node.data_vars:
            dff = node["dff"]
            node["dff"] = (dff.dims, da.from_array(dff.values, chunks=-1).map_blocks(_boom, dtype=float), dff.attrs)
    return tree


def test_session_summary_text():
    s = _lazy_dff(make_session_tree(n_cells=6, n_trials=4)).sscx.summary(url="s3://bucket/an197522_2013_03_08.zarr")
    assert isinstance(s, StoreSummary) and s.kind == "session"
    text = repr(s)
    assert text.splitlines()[0] == "sscxr session an197522_2013_03_08 (ssc-1)"
    for line in ["animal           an197522", "session date     2013-03-08", "trials           9",
                 "imaged (s)       80.0", "store            s3://bucket/an197522_2013_03_08.zarr",
                 "content version  synthetic0000000", "schema version   1"]:  # fmt: skip
        assert line in text, line
    assert s.imaging.to_dict("list") == {"subvolume": [1, 2], "planes": [3, 3], "cells": [6, 6],
                                         "frames": [280, 280], "trials": [4, 4], "imaged_s": [40.0, 40.0]}
    assert re.search(r"subvolume\s+planes\s+cells\s+frames\s+trials\s+imaged \(s\)", text)
    # dict attrs as key/value lines, never a Python repr
    assert "{" not in text and "converter  sscxr.testing.stores" in text
    assert "dateOfExperiment  20130308" in text and re.search(r"spec\n\s+factory\s+ssc-1\n\s+seed\s+0", text)


def test_session_summary_html_is_tables():
    page = make_session_tree(n_cells=6, n_trials=4).sscx.summary()._repr_html_()
    assert page.count("<table") >= 4  # identity, imaging, provenance, metadata (+ nested spec)
    assert "{" not in page and "<th style='text-align:left'>dateOfExperiment</th>" in page
    assert "<th>imaged (s)</th>" in page and "<b>an197522_2013_03_08</b>" in page


def test_html_escapes_text():
    summary = make_session_tree(n_subvolumes=1, n_cells=3, n_trials=2).sscx.summary(url="s3://b/x.zarr?a=1&b=<2>")
    assert "s3://b/x.zarr?a=1&amp;b=&lt;2&gt;" in summary._repr_html_()


def test_animal_summary_conditions_ablations_cells():
    s = make_animal_tree(n_cells=6).sscx.summary()
    assert (s.kind, s.session_id, s.conditions, s.cells_total) == ("animal", "an274424", ["pre", "post_touch"], 12)
    assert s.imaging[["condition", "subvolume", "cells"]].values.tolist() == [
        ["pre", 1, 6], ["pre", 2, 6], ["post_touch", 1, 5], ["post_touch", 2, 5]]
    assert s.ablations.to_dict("records") == [{"kind": "touch", "date": "2019_01_10",
                                               "source": "manualCurationData.mat", "cells": 4}]
    text = repr(s)
    assert "conditions       pre, post_touch" in text and "ablations" in text
    assert "<th>kind</th>" in s._repr_html_()


def test_a_catalog_read_store_knows_its_url(session_store):
    url, _ = session_store
    cat = sscxr.open_catalog()(store_root=str(Path(url).parent))
    tree = cat["an197522_2013_03_08"].read()
    assert tree.sscx.summary().url == url
    assert f"store            {url}" in repr(tree.sscx.summary())


@pytest.mark.parametrize("subvolume", [1, "all"])
def test_trial_tensor_names_its_session_and_keeps_bools(session_store, subvolume):
    tree = sscxr.open_session(session_store[0])  # dask-backed, as users get it
    out = tree.sscx.trial_tensor("dff", subvolume=subvolume, align_to="first_touch", window=(-1.0, 2.0))
    for tensor in out.values() if isinstance(out, dict) else [out]:
        assert tensor.attrs["session_id"] == "an197522_2013_03_08"
        assert tensor.has_whisker.dtype == bool and tensor.valid.dtype == bool
        expected = tree["trials"].has_whisker.sel(trial=tensor.trial).values
        np.testing.assert_array_equal(tensor.has_whisker.values, expected)


def test_animal_trial_tensor_session_id_is_the_animal():
    tensor = make_animal_tree(n_cells=6).sscx.trial_tensor("dff", subvolume=1, condition="pre")
    assert (tensor.attrs["session_id"], tensor.attrs["condition"]) == ("an274424", "pre")
    assert tensor.has_whisker.dtype == bool


def test_docstring_examples():
    import doctest

    import sscxr.summary

    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    assert doctest.testmod(sscxr.summary, optionflags=flags, raise_on_error=True).attempted >= 5
