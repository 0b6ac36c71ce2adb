"""sscxr.map_catalog: one analysis over a whole catalog, on a dask.distributed cluster.

The stores are written from in-memory synthetic trees (``sscxr.testing.stores``) whose numpy
arrays are the ground truth: the per-cell touch response is recomputed here with plain numpy
loops and compared with what ``map_catalog`` + ``event_response`` return from the workers.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import xarray as xr

pytest.importorskip("distributed")
pytest.importorskip("intake")

import sscxr  # noqa: E402
from sscxr.catalog import build_catalog  # noqa: E402
from sscxr.dataset import CatalogResults, map_catalog  # noqa: E402
from sscxr.errors import StorageAccessError  # noqa: E402

SESSIONS = {"an197522_2013_03_08": dict(seed=1, animal="an197522", date="2013_03_08"),
            "an229717_2013_12_01": dict(seed=2, animal="an229717", date="2013_12_01")}  # fmt: skip
ANIMALS = {"an274424": dict(seed=3, animal="an274424"), "an257220": dict(seed=4, animal="an257220")}
MISSING = "an229719_2013_12_02"  # an entry of the shipped catalog whose store is not written
RATE = 7.0


def touch_response(tree: xr.DataTree, meta: dict[str, Any]) -> xr.DataArray:
    """Per cell (and condition) the trial mean of the first-touch response (the analysis under test)."""
    cond = {"condition": ["pre", "post_touch"]} if meta["archive"] == "ssc-11" else {}
    r = tree.sscx.event_response("dff", align_to="first_touch", **cond)
    return r.response.mean("trial").rename("touch_response")


# --------------------------------------------------------------------------------------------
# ground truth, plain numpy
# --------------------------------------------------------------------------------------------


def _first_touch(events: xr.Dataset, trial: int) -> float:
    kind, start, tr = events.kind.values.astype(str), events.start_time.values, events.trial.values
    hit = (tr == trial) & np.isin(kind, ["touch_protraction", "touch_retraction"])
    return float(start[hit].min()) if hit.any() else np.nan


def _window_mean(x: np.ndarray, ft: np.ndarray, frame_trial: np.ndarray, j0: int, trial: int,
                 offsets: range) -> float:  # fmt: skip
    values = []
    for k in offsets:
        j = j0 + k
        if not 0 <= j < x.size or frame_trial[j] != trial:
            continue
        lo, hi = min(j, j0), max(j, j0)
        if hi > lo and np.diff(ft[lo: hi + 1]).max() > 1.5 / RATE:
            continue
        values.append(x[j])
    return float(np.nanmean(values)) if values and not np.all(np.isnan(values)) else np.nan


def truth_per_cell(node: xr.DataTree) -> dict[int, float]:
    """{cell: trial mean of response} of one session or condition node, by hand."""
    events, trials = node["events"].to_dataset(), node["trials"].to_dataset()
    touch = {int(t): _first_touch(events, int(t)) for t in trials.trial.values}
    subs = node["imaging"].children if "imaging" in node.children else node.children
    out: dict[int, float] = {}
    for name, sub in subs.items():
        if not str(name).startswith("subvolume_"):
            continue
        ds = sub.to_dataset()
        planes = list(ds.plane.values)
        frame_trial = ds.trial.values
        for i, cell in enumerate(ds.cell.values):
            ft = ds.frame_time.values[planes.index(int(ds.cell_plane.values[i]))]
            x = ds.dff.values[i]
            per_trial = []
            for trial, te in touch.items():
                if np.isnan(te) or trial not in frame_trial:
                    continue
                j0 = int(np.searchsorted(ft, te, side="left"))
                if j0 >= ft.size or ft[j0] - te >= 1.5 / RATE:
                    continue
                base = _window_mean(x, ft, frame_trial, j0, trial, range(-7, 0))
                resp = _window_mean(x, ft, frame_trial, j0, trial, range(0, 7))
                per_trial.append(resp - base)
            out[int(cell)] = float(np.nanmean(per_trial)) if per_trial and not np.all(np.isnan(per_trial)) else np.nan
    return out


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory, store_writer: Any) -> tuple[str, dict[str, xr.DataTree]]:
    """(root, {entry: source tree}) of 2 ssc-1 sessions and 2 ssc-11 animals under one folder."""
    from sscxr.testing.stores import make_animal_tree, make_session_tree

    root = tmp_path_factory.mktemp("dataset")
    sources = {}
    for name, kw in SESSIONS.items():
        sources[name] = store_writer(make_session_tree(n_subvolumes=2, n_cells=6, n_trials=5, **kw),
                                     str(root / f"{name}.zarr"))
    for name, kw in ANIMALS.items():
        sources[name] = store_writer(make_animal_tree(n_cells=5, n_days=2, trials_per_day=3, **kw),
                                     str(root / f"{name}.zarr"))
    return str(root), sources


@pytest.fixture(scope="module")
def client() -> Any:
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


def _catalog(root: str, storage_options: Any = None, **params: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_catalog(root, storage_options=storage_options)(store_root=root, **params)


def _check_against_truth(table: pd.DataFrame, sources: dict[str, xr.DataTree]) -> int:
    checked = 0
    for name, source in sources.items():
        rows = table[table.entry == name]
        if name in ANIMALS:
            for cond in ("pre", "post_touch"):
                want = truth_per_cell(source[cond])
                got = rows[rows.condition == cond].set_index("cell").touch_response
                got = got.reindex(list(want))  # a cell absent from a condition is NaN in both
                np.testing.assert_allclose(got.to_numpy(), list(want.values()), rtol=1e-9, atol=1e-12,
                                           err_msg=f"{name} {cond}")  # fmt: skip
                checked += int(np.isfinite(got).sum())
        else:
            want = truth_per_cell(source)
            got = rows.set_index("cell").touch_response.reindex(list(want))
            np.testing.assert_allclose(got.to_numpy(), list(want.values()), rtol=1e-9, atol=1e-12, err_msg=name)
            checked += int(np.isfinite(got).sum())
    return checked


# --------------------------------------------------------------------------------------------
# the done test
# --------------------------------------------------------------------------------------------


def test_touch_response_over_the_catalog_on_two_workers(dataset, client):
    """One call: 2 sessions + 2 animals on a 2-worker LocalCluster, equal to the numpy truth;
    a missing store is skipped with a note; a second call reuses the trees the workers opened."""
    root, sources = dataset
    cat = _catalog(root)
    names = [*SESSIONS, *ANIMALS, MISSING]
    with pytest.warns(UserWarning, match=f"skipped 1 of 5 entries.*{MISSING}"):
        table = sscxr.map_catalog(touch_response, cat, names=names, client=client, progress=False)
    assert isinstance(table, pd.DataFrame)
    assert list(table.attrs["skipped"]) == [MISSING] and "no zarr store" in table.attrs["skipped"][MISSING]
    assert set(table.entry) == set(sources)
    assert {"entry", "archive", "animal", "lab", "content_version", "touch_response", "cell"} <= set(table.columns)
    assert set(table[table.archive == "ssc-11"].condition) == {"pre", "post_touch"}
    assert _check_against_truth(table, sources) > 20  # most cells have touch trials

    before = client.run(lambda: dict(sscxr.dataset.STATS))
    with pytest.warns(UserWarning, match="skipped"):
        again = map_catalog(touch_response, cat, names=names, progress=False)  # the current client
    after = client.run(lambda: dict(sscxr.dataset.STATS))
    pd.testing.assert_frame_equal(again.sort_values(["entry", "condition", "cell"], ignore_index=True),
                                  table.sort_values(["entry", "condition", "cell"], ignore_index=True))
    opened = {w: a["opened"] - before[w]["opened"] for w, a in after.items()}
    reused = {w: a["reused"] - before[w]["reused"] for w, a in after.items()}
    assert sum(opened.values()) + sum(reused.values()) == 4  # 4 stores, each opened or reused on a worker
    assert all(a["opened"] <= 4 for a in after.values()) and sum(reused.values()) >= 1  # at most once per worker


def test_find_criteria_local_run_and_non_table_results(dataset):
    """client=False runs here; find() criteria select entries; non-table results come as a dict."""
    root, sources = dataset
    cat = _catalog(root)
    table = map_catalog(touch_response, cat, client=False, archive="ssc-11", ablation="touch",
                        names=list(ANIMALS), progress=False)  # fmt: skip
    assert set(table.entry) == set(ANIMALS) and table.attrs["skipped"] == {}
    _check_against_truth(table, {n: sources[n] for n in ANIMALS})
    shapes = map_catalog(lambda tree, meta: (meta["archive"], sorted(tree.children)), cat, names=list(SESSIONS),
                         client=False, progress=False)  # fmt: skip
    assert isinstance(shapes, CatalogResults) and shapes.skipped == {}
    assert shapes["an197522_2013_03_08"] == ("ssc-1", ["events", "imaging", "trials", "whisker"])


def test_progress_bar_counts_entries(dataset, capsys):
    pytest.importorskip("tqdm")
    root, _ = dataset
    names = list(SESSIONS)[:2]
    map_catalog(lambda tree, meta: meta["archive"], _catalog(root), names=names, client=False, progress=True)
    err = capsys.readouterr().err
    assert "entries" in err and f"{len(names)}/{len(names)}" in err, err


def test_analysis_chunks_are_used_by_default(dataset):
    root, _ = dataset
    cat = _catalog(root)
    out = map_catalog(lambda tree, meta: tree["imaging/subvolume_01"].dff.data.chunks, cat,
                      names=["an197522_2013_03_08"], client=False, progress=False)  # fmt: skip
    assert out["an197522_2013_03_08"] == ((6,), (out["an197522_2013_03_08"][1][0],))  # one block: small


# --------------------------------------------------------------------------------------------
# credentials (SeaweedFS: real auth)
# --------------------------------------------------------------------------------------------


class _GraphSecrets:
    """A scheduler plugin that pickles the run spec of every task entering the scheduler and
    remembers whether a secret was in it."""

    name = "sscxr-test-graph-secrets"

    def __init__(self, needles: list[bytes]):
        self.needles, self.tasks, self.leaks = needles, 0, 0

    def update_graph(self, scheduler: Any, *, keys: Any, **kwargs: Any) -> None:
        from distributed.protocol.pickle import dumps

        for key in keys:
            ts = scheduler.tasks.get(key)
            if ts is None:
                continue
            blob = dumps(ts.run_spec) + pickle.dumps(key)
            self.tasks += 1
            self.leaks += any(n in blob for n in self.needles)


@pytest.fixture
def private_dataset(seaweed_server, seaweed_bucket, dataset) -> tuple[str, dict[str, xr.DataTree]]:
    root, sources = dataset
    url = seaweed_server.url(seaweed_bucket, "stores")
    for name in ("an197522_2013_03_08", "an274424"):
        seaweed_server.upload_dir(str(Path(root) / f"{name}.zarr"), seaweed_bucket, f"stores/{name}.zarr")
    return url, {n: sources[n] for n in ("an197522_2013_03_08", "an274424")}


@pytest.mark.seaweedfs
def test_private_bucket_secrets_stay_out_of_graphs(seaweed_server, private_dataset, client):
    from distributed.diagnostics.plugin import SchedulerPlugin

    url, sources = private_dataset
    creds = seaweed_server.storage_options()
    needles = [seaweed_server.credentials.secret.encode(), seaweed_server.credentials.key.encode()]
    plugin = type("GraphSecrets", (_GraphSecrets, SchedulerPlugin), {})(needles)
    client.register_plugin(plugin)
    cat = _catalog(url, creds, endpoint_url=creds["endpoint_url"])
    table = map_catalog(touch_response, cat, names=list(sources), client=client, storage_options=creds,
                        progress=False)  # fmt: skip
    _check_against_truth(table, sources)
    tasks, leaks = client.run_on_scheduler(lambda dask_scheduler: (dask_scheduler.plugins[plugin.name].tasks,
                                                                   dask_scheduler.plugins[plugin.name].leaks))
    assert tasks >= 2 and leaks == 0
    # the task arguments map_catalog submits, pickled as distributed pickles them: no secret either
    from distributed.protocol.pickle import dumps

    readers = [cat[n] for n in sources]
    assert not any(n in dumps((touch_response, readers, sscxr.io._redact(creds))) for n in needles)


@pytest.mark.seaweedfs
def test_worker_without_credentials_raises_storage_access_error(seaweed_server, private_dataset, client):
    url, sources = private_dataset
    cat = _catalog(url, seaweed_server.storage_options(), endpoint_url=seaweed_server.endpoint_url, anon=False)
    with pytest.raises(StorageAccessError, match=f"read of {url}/an197522_2013_03_08.zarr.* refused"):
        map_catalog(touch_response, cat, names=["an197522_2013_03_08"], client=client, progress=False)
