"""The one credential registry (``sscxr.credentials``): prefix resolution, what library and
converter see of it, nothing secret in a pickled store or a dask graph, workers fed by the plugin;
and the public fallbacks of the fast paths that replaced private-API uses."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr

import sscxr.io as sio
from sscxr import _fastpath, _xarray_compat, _zarr_compat, credentials
from sscxr._fastpath import FastPathWarning

REPO = Path(__file__).resolve().parents[1]
KEY, SECRET = "AKIA-TEST-KEY-1234", "test-secret-5678-never-shown"


@pytest.fixture
def prefixes() -> Iterator[list[str]]:
    """Prefixes a test registers, forgotten afterwards (the registry is process-wide)."""
    used: list[str] = []
    yield used
    for prefix in used:
        credentials.register_credentials(prefix, None)


def _register(used: list[str], prefix: str, options: dict | None) -> None:
    used.append(prefix)
    credentials.register_credentials(prefix, options)


# --------------------------------------------------------------------------------------------
# prefix resolution, one registry for library and converter
# --------------------------------------------------------------------------------------------


def test_longest_registered_prefix_wins(prefixes):
    _register(prefixes, "s3://reg-bucket", {"anon": True})
    _register(prefixes, "s3://reg-bucket/private/", {"key": KEY, "secret": SECRET})
    assert credentials.registered_options("s3://reg-bucket/public/x.zarr") == {"anon": True}
    assert credentials.registered_options("s3://reg-bucket/private/x.zarr") == {"key": KEY, "secret": SECRET}
    assert credentials.registered_options("s3://reg-bucket/private") == {"key": KEY, "secret": SECRET}
    # a sibling whose name only starts like the prefix is not under it
    assert credentials.registered_options("s3://reg-bucket/private2/x.zarr") == {"anon": True}
    assert credentials.registered_options("s3://other-bucket/x.zarr") is None
    credentials.register_credentials("s3://reg-bucket/private", {})  # {} forgets, as None does
    assert credentials.registered_options("s3://reg-bucket/private/x.zarr") == {"anon": True}


def test_registered_options_complete_but_never_replace_given_secrets(prefixes):
    _register(prefixes, "memory://reg-merge", {"key": KEY, "secret": SECRET, "endpoint_url": "http://h:1"})
    merged = credentials.with_registered("memory://reg-merge/x.zarr", {"anon": True, "region": "eu"})
    assert merged == {"key": KEY, "secret": SECRET, "endpoint_url": "http://h:1", "region": "eu"}  # anon dropped
    own = {"key": "mine", "secret": "own"}
    assert credentials.with_registered("memory://reg-merge/x.zarr", dict(own)) == own


def test_library_and_converter_share_one_registry(prefixes):
    from sscxr_conversion import tasks

    _register(prefixes, "memory://reg-shared/stores", None)
    tasks.register_options("memory://reg-shared/stores", {"key": KEY, "secret": SECRET})
    assert sio.make_store("memory://reg-shared/stores/a.zarr", resolve=False)._sscxr_recipe.options == {
        "key": KEY, "secret": SECRET}  # fmt: skip
    sio.register_credentials("memory://reg-shared/stores/b.zarr", {"anon": True})
    prefixes.append("memory://reg-shared/stores/b.zarr")
    assert tasks.options_for("memory://reg-shared/stores/b.zarr") == {"anon": True}
    assert tasks.options_for("memory://reg-shared/stores/c.zarr") == {"key": KEY, "secret": SECRET}
    assert tasks.options_registered("memory://reg-shared/stores/c.zarr")
    assert not tasks.options_registered("memory://reg-shared/elsewhere.zarr")
    assert tasks.options_for("memory://reg-shared/elsewhere.zarr") == {}


def test_a_registry_change_rebuilds_cached_stores(prefixes):
    url = "memory://reg-cache/x.zarr"
    first = sio.make_store(url, resolve=False)
    assert sio.make_store(url, resolve=False) is first  # cached
    _register(prefixes, "memory://reg-cache", {"key": KEY, "secret": SECRET})
    again = sio.make_store(url, resolve=False)
    assert again is not first and again._sscxr_recipe.has_credentials


# --------------------------------------------------------------------------------------------
# nothing secret in a pickled store or a dask graph
# --------------------------------------------------------------------------------------------


def test_pickled_store_has_no_secret_and_finds_it_again_here():
    store = sio.make_store("memory://reg-pickle/x.zarr", {"key": KEY, "secret": SECRET, "anon": False},
                           resolve=False)  # fmt: skip
    blob = pickle.dumps(store)
    assert KEY.encode() not in blob and SECRET.encode() not in blob
    again = pickle.loads(blob)
    assert again._sscxr_recipe.options == {"key": KEY, "secret": SECRET, "anon": False}
    # another process has neither the store's own options nor a registered prefix: public ones only
    code = "import pickle,sys; s = pickle.load(sys.stdin.buffer); print(sorted(s._sscxr_recipe.options))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "conversion")])}
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, env=env, timeout=120,
                         check=True)  # fmt: skip
    assert out.stdout.decode().strip() == "['anon']"


def test_a_dask_graph_over_a_store_carries_no_secret():
    dask = pytest.importorskip("dask")
    import dask.array as da

    url = "memory://reg-graph/x.zarr"
    options = {"key": KEY, "secret": SECRET}
    zarr.create_array(sio.make_store(url, options, read_only=False, resolve=False), name="a",
                      data=np.arange(12.0).reshape(3, 4), chunks=(1, 4))  # fmt: skip
    array = da.from_zarr(zarr.open_array(sio.make_store(url, options, resolve=False), path="a", mode="r"))
    graph = dict(array.__dask_graph__())
    blob = pickle.dumps(graph)
    assert KEY.encode() not in blob and SECRET.encode() not in blob
    assert dask.compute(array.sum())[0] == 66.0


def test_a_worker_gets_options_through_the_plugin_not_the_graph(prefixes):
    distributed = pytest.importorskip("distributed")

    prefix = "memory://reg-worker/stores"
    prefixes.append(prefix)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as client:
        from sscxr_conversion import tasks

        assert client.run(credentials.registered_options, f"{prefix}/x.zarr") == {
            w: None for w in client.scheduler_info()["workers"]}  # fmt: skip
        tasks.share_options(client, prefix, {"key": KEY, "secret": SECRET})
        seen = client.run(credentials.registered_options, f"{prefix}/x.zarr")
        assert list(seen.values()) == [{"key": KEY, "secret": SECRET}]
        assert list(client.run(tasks.options_for, f"{prefix}/y.zarr").values()) == [{"key": KEY, "secret": SECRET}]
        assert credentials.registered_options(f"{prefix}/x.zarr") == {"key": KEY, "secret": SECRET}  # here too


def test_the_plugin_hides_its_options():
    from sscxr._distributed import StorageOptionsPlugin
    from sscxr_conversion._plugin import StorageOptionsPlugin as ConverterPlugin

    assert ConverterPlugin is StorageOptionsPlugin  # one plugin for library and converter
    shown = repr(StorageOptionsPlugin("s3://b/stores", {"key": KEY, "secret": SECRET}))
    assert KEY not in shown and SECRET not in shown and "2 options hidden" in shown


# --------------------------------------------------------------------------------------------
# fast paths: the public path gives the same result
# --------------------------------------------------------------------------------------------


def test_zarr_sync_public_path_gives_the_same_result(monkeypatch, session_store):
    url, _ = session_store
    monkeypatch.delenv(_fastpath.ENV, raising=False)  # (the CI run with every fast path off)
    store = sio.make_store(url)
    fast = _zarr_compat.sync(store.get("zarr.json", zarr.buffer.default_buffer_prototype())).to_bytes()
    monkeypatch.setenv(_fastpath.ENV, "1")
    assert _zarr_compat.sync(store.get("zarr.json", zarr.buffer.default_buffer_prototype())).to_bytes() == fast
    a = sio.open_session(url)["imaging/subvolume_01"].dff.values
    monkeypatch.delenv(_fastpath.ENV)
    np.testing.assert_array_equal(a, sio.open_session(url)["imaging/subvolume_01"].dff.values)


def test_zarr_sync_on_an_untested_zarr_warns_once_and_falls_back(monkeypatch):
    monkeypatch.delenv(_fastpath.ENV, raising=False)
    monkeypatch.setattr(_zarr_compat, "_checked", [])
    monkeypatch.setattr(_zarr_compat, "ZARR_VERSIONS", {"at_least": "99.0"})
    _fastpath.reset(_zarr_compat.FAST_SYNC)
    store = zarr.storage.MemoryStore()
    try:
        with pytest.warns(FastPathWarning, match="zarr event loop"):
            assert _zarr_compat.sync(store.exists("zarr.json")) is False
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert _zarr_compat.sync(store.exists("zarr.json")) is False  # once only
    finally:
        _fastpath.reset(_zarr_compat.FAST_SYNC)


def test_lazy_array_public_path_is_dask_with_the_same_values(monkeypatch):
    pytest.importorskip("dask")
    import xarray as xr

    data = np.arange(60).reshape(5, 12)
    monkeypatch.delenv(_fastpath.ENV, raising=False)
    fast = xr.DataArray(_xarray_compat.lazy_array(data, ((2, 3), (12,))), dims=("a", "b"))
    monkeypatch.setenv(_fastpath.ENV, "1")
    public = xr.DataArray(_xarray_compat.lazy_array(data, ((2, 3), (12,))), dims=("a", "b"))
    assert public.chunks == ((2, 3), (12,)) and fast.chunks is None
    for key in ({"a": 1}, {"a": slice(1, 4), "b": [0, 5, 11]}, {"b": slice(None, None, 3)}):
        np.testing.assert_array_equal(public[key].values, fast[key].values)
    np.testing.assert_array_equal(public[{"a": slice(1, 4), "b": [0, 5, 11]}].values, data[1:4][:, [0, 5, 11]])


@pytest.mark.parametrize("no_fastpath", [False, True])
def test_exit_now_runs_the_exit_handlers_either_way(no_fastpath):
    code = ("import atexit, sys; atexit.register(print, 'handlers ran'); "
            "from sscxr._exit_compat import exit_now; print('out', end=''); exit_now(3)")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", _fastpath.ENV)}
    env["PYTHONPATH"] = str(REPO)
    if no_fastpath:
        env[_fastpath.ENV] = "1"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 3, out.stderr
    assert out.stdout == "outhandlers ran\n"


def test_s3fs_store_on_the_public_path_reads_the_same(moto_server, moto_session_store, monkeypatch):
    """Off zarr's event loop, sscxr's own store calls run on fresh loops, where an asynchronous
    s3fs client fails ("Event loop is closed"): the store is then a synchronous s3fs behind
    fsspec's public async wrapper, with the same values."""
    pytest.importorskip("s3fs")
    url, source = moto_session_store
    monkeypatch.setenv("SSCXR_S3_CLIENT", "s3fs")
    monkeypatch.setenv(_fastpath.ENV, "1")
    options = moto_server.storage_options()
    store = sio.make_store(url, options)
    assert type(store.fs).__name__ == "AsyncFileSystemWrapper"
    group = sio.open_group(url, "imaging/subvolume_01", storage_options=options)
    np.testing.assert_array_equal(group.dff.values, source["imaging/subvolume_01"].dff.values)
    assert sio.content_version(url, options) == source.attrs["content_version"]
    sio.check_writable(url.rsplit("/", 1)[0] + "/probe.zarr", options)
