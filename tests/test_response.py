"""event_response: a plain-numpy oracle on the synthetic ground truth (ssc-1, ssc-11 paired), the
trial_tensor route, laziness (no reads, few tasks), independent subvolumes, NaN rules, dask.distributed,
errors."""

from __future__ import annotations

import math
import warnings
from collections import Counter
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
import zarr.storage
from dask.utils import key_split

import sscxr.accessors  # noqa: F401  (registers .sscx)
from sscxr.testing.stores import make_animal_tree, make_session_tree

RATE, GAP = 7.0, 1.5
TOUCH = ("touch_protraction", "touch_retraction")


# --- the oracle: loops over trials and cells, numpy only, from the tree's own arrays -----------
def oracle_event_time(events: xr.Dataset, trial: int, align_to: str) -> float:
    kind, start, tr = events.kind.values, events.start_time.values, events.trial.values
    kinds = TOUCH if align_to == "first_touch" else ("pole_in_reach",)
    rows = np.isin(kind, kinds) & (tr == trial)
    return float(start[rows].min()) if rows.any() else math.nan


def oracle_mean(ft: np.ndarray, ftr: np.ndarray, values: np.ndarray, t: float, trial: int,
                window: tuple[float, float]) -> tuple[float, int]:
    """NaN-skipping mean of the frames at offsets k, window[0] <= k/RATE < window[1], and their count."""
    if not math.isfinite(t) or not (ft >= t).any():
        return math.nan, 0
    i0 = int(np.argmax(ft >= t))
    if ft[i0] - t >= GAP / RATE:
        return math.nan, 0
    picked = []
    for k in range(-200, 200):
        if not window[0] - 1e-9 <= k / RATE < window[1] - 1e-9:
            continue
        j = i0 + k
        if 0 <= j < ft.size and ftr[j] == trial and not (np.diff(ft[min(i0, j):max(i0, j) + 1]) > GAP / RATE).any():
            picked.append(values[j])
    finite = [v for v in picked if np.isfinite(v)]
    return (sum(finite) / len(finite) if finite else math.nan), len(picked)


def oracle(node: xr.DataTree, number: int, align_to: str, baseline, response, trials: np.ndarray,
           name: str = "subvolume_{:02d}") -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """{cell: (response, n_baseline, n_response) over ``trials``} for one subvolume."""
    subs = node["imaging"] if "imaging" in node.children else node
    sub = subs[name.format(number)].to_dataset()
    events = node["events"].to_dataset()
    ftr = sub.trial.values
    out = {}
    for c, cell in enumerate(sub.cell.values):
        ft = sub.frame_time.values[list(sub.plane.values).index(int(sub.cell_plane.values[c]))]
        res, nb, nr = [], [], []
        for trial in trials:
            t = oracle_event_time(events, trial, align_to) if trial in ftr else math.nan
            b, n_b = oracle_mean(ft, ftr, sub.dff.values[c], t, trial, baseline)
            r, n_r = oracle_mean(ft, ftr, sub.dff.values[c], t, trial, response)
            res.append(r - b)
            nb.append(n_b)
            nr.append(n_r)
        out[int(cell)] = (np.array(res), np.array(nb), np.array(nr))
    return out


def assert_matches(got: xr.Dataset, want: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    for cell, (res, nb, nr) in want.items():
        row = got.sel(cell=cell)
        np.testing.assert_array_equal(row.n_baseline.values, nb, err_msg=f"n_baseline, cell {cell}")
        np.testing.assert_array_equal(row.n_response.values, nr, err_msg=f"n_response, cell {cell}")
        np.testing.assert_allclose(row.response.values, res, rtol=1e-12, atol=1e-12, err_msg=f"cell {cell}")
        np.testing.assert_array_equal(row.valid.values, (nb > 0) & (nr > 0))


@pytest.fixture(scope="module")
def tree() -> xr.DataTree:
    return make_session_tree(seed=1, n_cells=7, n_trials=6, nan_frames=5, shuffle_cells=True)


@pytest.mark.parametrize(("align_to", "baseline", "response"),
                         [("first_touch", (-1.0, 0.0), (0.0, 1.0)), ("pole_in", (-2.0, -0.5), (0.3, 2.5))])
def test_ssc1_matches_numpy_oracle(tree, align_to, baseline, response):
    out = tree.sscx.event_response("dff", align_to=align_to, baseline=baseline, response=response)
    trials = tree["trials"].trial.values
    assert out.response.dims == ("cell", "trial") and list(out.trial.values) == list(trials)
    for number in (1, 2):
        cells = tree[f"imaging/subvolume_{number:02d}"].cell.values
        np.testing.assert_array_equal(out.subvolume.sel(cell=cells), number)
        assert_matches(out, oracle(tree, number, align_to, baseline, response, trials))
    np.testing.assert_array_equal(out.trial_type, tree["trials"].trial_type)
    np.testing.assert_array_equal(out.x_um.sel(cell=cells), tree["imaging/subvolume_02"].x_um)
    assert out.valid.sum() >= out.sizes["cell"] * 4 and out.response.notnull().sum() >= out.sizes["cell"] * 4


def test_agrees_with_trial_tensor(tree):
    """Same frames as trial_tensor: response = mean over [0, 1) s minus mean over [-1, 0) s of the tensor."""
    out = tree.sscx.event_response("dff", subvolume=2, align_to="first_touch")
    tensor = tree.sscx.trial_tensor("dff", subvolume=2, align_to="first_touch", window=(-1.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        after = (tensor.time >= 0) & (tensor.time < 1 - 1e-9)  # the tensor's window is closed, ours half-open
        want = tensor.where(after).mean("time") - tensor.where(tensor.time < 0).mean("time")
    np.testing.assert_allclose(out.response.sel(trial=tensor.trial).transpose("cell", "trial"), want, atol=1e-12)
    np.testing.assert_array_equal(out.n_response.sel(trial=tensor.trial), (tensor.valid & after).sum("time"))
    assert np.isfinite(want).sum() > 20
    np.testing.assert_array_equal(out.event_time.sel(trial=tensor.trial), tensor.event_time)


def test_nan_without_event_or_frames(tree):
    out = tree.sscx.event_response("dff", align_to="first_touch")
    touch = tree.sscx.first_touch()
    no_touch = touch.trial.values[touch.isnull().values]
    assert no_touch.size >= 3
    none = out.sel(trial=no_touch)
    assert none.response.isnull().all() and not none.valid.any()
    assert (none.n_baseline == 0).all() and (none.n_response == 0).all() and none.event_time.isnull().all()
    unimaged = tree["trials"].trial.values[tree["trials"].subvolume.values == -1]
    assert unimaged.size == 1 and out.response.sel(trial=unimaged).isnull().all()
    other = out.sel(cell=out.subvolume == 1, trial=tree["trials"].trial[tree["trials"].subvolume == 2])
    assert other.response.isnull().all() and (other.n_baseline == 0).all()  # subvolume 1 did not image them
    one = tree.sscx.event_response("dff", subvolume=[1])
    assert set(one.subvolume.values.tolist()) == {1}
    xr.testing.assert_identical(one.drop_attrs(), out.sel(cell=out.subvolume == 1).drop_attrs())


def test_ssc11_paired_matches_oracle():
    animal = make_animal_tree(seed=2, n_cells=6)
    conds = ["pre", "post_touch"]
    out = animal.sscx.event_response("dff", align_to="pole_in", condition=conds, paired=True)
    assert out.response.dims == ("condition", "cell", "trial") and list(out.condition.values) == conds
    shared = np.concatenate([animal.sscx.pair_conditions("pre", "post_touch", subvolume=n).cell.values for n in (1, 2)])
    np.testing.assert_array_equal(out.cell, np.sort(shared))
    flags = xr.concat([animal.sscx.pair_conditions(*conds, subvolume=n).coords.to_dataset() for n in (1, 2)], "cell")
    for name in ("ablated", "near_ablated", "present_post_touch"):
        np.testing.assert_array_equal(out[name], flags[name].sortby("cell"))
    for c in conds:
        node, trials = animal[c], animal[c]["trials"].trial.values
        got = out.sel(condition=c, trial=trials)
        for n in (1, 2):
            want = oracle(node, n, "pole_in", (-1.0, 0.0), (0.0, 1.0), trials, name="subvolume_{}")
            assert_matches(got, {k: v for k, v in want.items() if k in shared})
        others = np.setdiff1d(out.trial, trials)
        assert others.size and out.response.sel(condition=c, trial=others).isnull().all()
        np.testing.assert_array_equal(out.day.sel(condition=c, trial=trials), animal[c]["trials"].day)
    single = animal.sscx.event_response("dff", align_to="pole_in", condition="pre")
    np.testing.assert_array_equal(single.response.sel(cell=out.cell),
                                  out.response.sel(condition="pre", trial=single.trial))
    union = animal.sscx.event_response("dff", align_to="pole_in", condition=conds)
    lost = np.setdiff1d(union.cell, out.cell)  # the last cell of each subvolume is missing after "pre"
    assert lost.size == 2 and not union.valid.sel(condition="post_touch", cell=lost).any()
    assert union.valid.sel(condition="pre", cell=lost).any()
    np.testing.assert_array_equal(union.subvolume.sel(cell=lost), [1, 2])



def test_ssc11_conditions_with_variable_width_strings():
    """Converted stores give trial coords as numpy's StringDType: stacking conditions fills each
    coordinate on its own (a float coord's NaN once reached the string coords and failed)."""
    animal = make_animal_tree(seed=2, n_cells=6)
    for c in ("pre", "post_touch"):
        trials = animal[c]["trials"].to_dataset()
        animal[c]["trials"] = trials.assign({k: v.astype(np.dtypes.StringDType()) for k, v in trials.items()
                                             if v.dtype.kind == "U"})  # fmt: skip
    assert animal["pre/trials"]["trial_type"].dtype.kind == "T"
    out = animal.sscx.event_response("dff", align_to="first_touch", condition=["pre", "post_touch"], paired=True)
    assert out.trial_type.dims == ("condition", "trial") and out.trial_type.dtype.kind == "T"
    assert out.event_time.dtype.kind == "f" and out.response.notnull().any()

# --- laziness -----------------------------------------------------------------------------------
class CountingStore(zarr.storage.WrapperStore):
    reads = 0

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        type(self).reads += 1
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        type(self).reads += 1
        return await super().get_partial_values(prototype, key_ranges)


def _raise_on_compute(*args, **kwargs):
    raise RuntimeError("computed while building the graph")


def open_lazy(tree: xr.DataTree, path, chunk: int = 3) -> xr.DataTree:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree.to_zarr(path, mode="w", consolidated=True)
        store = CountingStore(zarr.storage.LocalStore(path, read_only=True))
        return xr.open_datatree(store, engine="zarr", chunks={}).chunk({"cell": chunk})


@pytest.fixture(scope="module")
def lazy_tree(tmp_path_factory, tree):
    return open_lazy(tree, tmp_path_factory.mktemp("store") / "session.zarr")


def own_tasks(result: xr.Dataset, tree: xr.DataTree) -> int:
    """Tasks of the result's graph that the tree's own (store-reading) graphs do not hold."""
    inputs: set = set()
    for node in tree.subtree:
        for var in node.to_dataset(inherit=False).variables.values():
            if isinstance(var.data, da.Array):
                inputs |= set(dict(var.data.__dask_graph__()))
    return len(set(dict(result.__dask_graph__())) - inputs)


def test_lazy_reads_nothing_and_few_tasks(lazy_tree, tree, tmp_path):
    CountingStore.reads = 0
    with dask.config.set(scheduler=_raise_on_compute):
        out = lazy_tree.sscx.event_response("dff", align_to="first_touch")
    assert CountingStore.reads == 0
    for name in ("response", "n_baseline", "n_response", "valid", "event_time", "trial_type"):
        assert isinstance(out[name].data, da.Array), name
    assert out.response.data.chunks[0] == (3, 3, 1, 3, 3, 1)
    # the kernels: 4 tasks per cell block (response, 2 counts, valid), 1 per subvolume, 1 for the events
    blocks = len(out.response.data.chunks[0])
    graph = dict(out.__dask_graph__())
    kernels = Counter(key_split(k) for k in graph if key_split(k).endswith(("_block", "_task")))
    assert kernels == {"response_block": blocks, "count_block": 3 * blocks, "index_task": 2, "event_task": 1}
    # plus xarray's concatenation along cell (an alias per block and variable) and delayed's finalize tasks
    assert own_tasks(out, lazy_tree) <= 16 * blocks + 30
    more = open_lazy(make_session_tree(seed=1, n_cells=7, n_trials=18, nan_frames=5, shuffle_cells=True),
                     tmp_path / "more.zarr")
    assert own_tasks(more.sscx.event_response("dff"), more) == own_tasks(out, lazy_tree)  # not per trial
    xr.testing.assert_identical(out.compute(), tree.sscx.event_response("dff", align_to="first_touch"))
    assert CountingStore.reads > 0


def test_two_subvolumes_in_one_compute(lazy_tree, tree):
    lazy = [lazy_tree.sscx.event_response("dff", subvolume=n, align_to="pole_in") for n in (1, 2)]
    first, second = dask.compute(*lazy)
    for n, got in zip((1, 2), (first, second), strict=True):
        xr.testing.assert_identical(got, tree.sscx.event_response("dff", subvolume=n, align_to="pole_in"))
    assert not np.intersect1d(first.cell, second.cell).size
    both = dask.compute(*(open_conditions(c) for c in ("pre", "post_touch")))
    for c, got in zip(("pre", "post_touch"), both, strict=True):
        xr.testing.assert_identical(got, _ANIMAL.sscx.event_response("dff", align_to="pole_in", condition=c))


_ANIMAL = make_animal_tree(seed=2, n_cells=6)


def open_conditions(condition: str) -> xr.Dataset:
    return _ANIMAL.chunk({"cell": 4}).sscx.event_response("dff", align_to="pole_in", condition=condition)


def test_distributed_equals_local(tmp_path, tree):
    distributed = pytest.importorskip("distributed")
    lazy = open_lazy(tree, tmp_path / "session.zarr", chunk=2)
    local = lazy.sscx.event_response("dff", baseline=(-0.5, 0.0), response=(0.0, 1.5)).compute(scheduler="sync")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            result = lazy.sscx.event_response("dff", baseline=(-0.5, 0.0), response=(0.0, 1.5))
            remote = client.compute(result).result()
    xr.testing.assert_identical(remote, local)
    paired = _ANIMAL.chunk({"cell": 4}).sscx.event_response(condition=["pre", "post_touch"], paired=True)
    with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        xr.testing.assert_identical(paired.compute(), _ANIMAL.sscx.event_response(condition=["pre", "post_touch"],
                                                                                  paired=True))


# --- errors -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "match"), [
    ({"baseline": (0.0, -1.0)}, r"baseline=\(0.0, -1.0\): expected finite \(start, stop\) .* start < stop"),
    ({"response": (1.0, 1.0)}, r"response=\(1.0, 1.0\): expected"),
    ({"baseline": "wide"}, r"baseline='wide': expected \(start, stop\)"),
    ({"response": (0.01, 0.02)}, r"response=\(0.01, 0.02\) holds no frame at 7 Hz"),
    ({"align_to": "pole_inn"}, r"align_to='pole_inn' is not a known event; expected one of \[.*'first_touch'.*"
                               r"'lick_left'.*'touch_protraction'"),
    ({"subvolume": 7}, r"subvolume \[7\] is not in this tree; it has \[1, 2\]"),
    ({"condition": "pre"}, r"condition \['pre'\] not in this tree"),
    ({"paired": True}, r"paired=True pairs conditions of a ssc-11 animal tree"),
])
def test_errors(tree, kwargs, match):
    with pytest.raises(ValueError, match=match):
        tree.sscx.event_response("dff", **kwargs)


def test_signal_and_condition_errors(tree):
    with pytest.raises(ValueError, match=r"signal='raw' is not a variable of subvolume 1; it has \['dff'"):
        tree.sscx.event_response("raw")
    with pytest.raises(ValueError, match=r"ssc-11 animal tree; pass condition= one of \['p"):
        _ANIMAL.sscx.event_response()
    with pytest.raises(ValueError, match=r"paired=True joins two or more conditions.*condition=\[\.\.\.\]"):
        _ANIMAL.sscx.event_response(condition="pre", paired=True)
    with pytest.raises(ValueError, match=r"align_to has 2 times but there are 13 trials"):
        tree.sscx.event_response(align_to=[1.0, 2.0])


def test_conditions_with_string_dtype_trial_coords():
    """Converted stores hold strings as numpy StringDType: stacking conditions reindexes trial coords
    without filling the other string coords with NaN (it raised DTypePromotionError)."""
    plain, animal = make_animal_tree(seed=3, n_cells=4), make_animal_tree(seed=3, n_cells=4)
    for cond in ("pre", "post_touch"):
        trials = animal[f"{cond}/trials"].to_dataset(inherit=False)
        strings = {k: v.astype(np.dtypes.StringDType()) for k, v in trials.variables.items() if v.dtype.kind == "U"}
        animal[f"{cond}/trials"] = xr.DataTree(trials.assign(strings).chunk())
    got = animal.sscx.event_response("dff", align_to="pole_in", condition=["pre", "post_touch"]).compute()
    want = plain.sscx.event_response("dff", align_to="pole_in", condition=["pre", "post_touch"])
    np.testing.assert_array_equal(got.response.values, want.response.values)
    assert got.trial_type.dims == ("condition", "trial")
    assert got.trial_type.values.tolist() == want.trial_type.values.tolist()
