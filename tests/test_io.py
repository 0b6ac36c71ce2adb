"""sscxr.io: opening stores lazily from local paths, memory:// and S3 (moto), with clear errors."""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import sscxr.io as sio
from sscxr.errors import (
    IncompleteStoreError,
    MissingDependencyError,
    SchemaError,
    StorageAccessError,
    StoreVersionWarning,
)

HAS_OBSTORE = importlib.util.find_spec("obstore") is not None
DOCS = Path(__file__).resolve().parents[1] / "docs"


def run_doc(name: str) -> dict:
    """Run every ```python block of docs/<name>, in order, in one namespace."""
    import re

    namespace: dict = {"__name__": f"docs.{name}"}
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(), re.S)):
        exec(compile(block, f"docs/{name}[block {i}]", "exec"), namespace)
    return namespace


def _assert_same_values(opened: xr.DataTree, source: xr.DataTree) -> None:
    for node in source.subtree:
        path = node.path
        want = node.to_dataset(inherit=False)
        got = opened[path].to_dataset(inherit=False).compute()
        assert set(got.variables) == set(want.variables), path
        for name, var in want.variables.items():
            np.testing.assert_array_equal(got[name].values, var.values, err_msg=f"{path}/{name}")
            assert got[name].dims == var.dims
            assert got[name].attrs == var.attrs, f"{path}/{name}"


# --------------------------------------------------------------------------------------------
# round trips and laziness
# --------------------------------------------------------------------------------------------


def test_open_session_round_trips_local(session_store):
    url, source = session_store
    tree = sio.open_session(url)
    assert tree.attrs["archive"] == "ssc-1" and tree.attrs["sscxr_status"] == "complete"
    assert tree.attrs["content_version"] == source.attrs["content_version"]
    _assert_same_values(tree, source)


def test_open_animal_round_trips_memory(store_writer, animal_source):
    url = "memory://test-io/an274424.zarr"
    source = store_writer(animal_source(n_subvolumes=1, n_cells=4, conditions=("pre",)), url)
    _assert_same_values(sio.open_animal(url), source)


@pytest.mark.parametrize("chunks", ["auto", None, {}, {"cell": 3}, {"time": "auto", "cell": -1}])
def test_same_as_plain_xarray(session_store, chunks):
    """sscxr's opening (index coordinates read in one batch) gives what xr.open_datatree gives,
    same indexes, array types and chunks."""
    url, _ = session_store
    ours = sio.open_session(url, chunks=chunks)
    plain = xr.open_datatree(url, engine="zarr", chunks={} if chunks == "auto" else chunks)
    xr.testing.assert_identical(ours, plain)
    for node in plain.subtree:
        mine = ours[node.path]
        assert set(mine.xindexes) == set(node.xindexes), node.path
        for name, var in node.variables.items():
            assert type(mine.variables[name].data) is type(var.data), (node.path, name)
            assert mine.variables[name].chunks == var.chunks, (node.path, name)


@pytest.fixture(scope="module")
def two_unequal_subvolumes(tmp_path_factory, store_writer, session_source):
    """(URL, source) of a session whose two subvolumes' ``dff`` differ in values and shape."""
    source = session_source(n_cells=10)
    second = source["imaging/subvolume_02"].to_dataset().isel(cell=slice(0, 7))
    second["dff"] = second.dff + 100.0
    source["imaging/subvolume_02"] = xr.DataTree(second.assign_attrs(source["imaging/subvolume_02"].attrs))
    url = str(tmp_path_factory.mktemp("unequal") / "an197522_2013_03_08.zarr")
    return url, store_writer(source, url)


@pytest.mark.parametrize("chunks", ["auto", "analysis", {}, {"cell": 3}, {"time": 40}, {"cell": -1, "time": "auto"},
                                    None])  # fmt: skip
@pytest.mark.parametrize("how", ["tree", "groups", "open_group"])
def test_same_named_variables_of_two_groups_compute_together(two_unequal_subvolumes, chunks, how):
    """One ``dask.compute`` of two groups' ``dff`` gives each group its own values.

    xarray names the dask arrays it chunks ``open_dataset-<variable>-<token>`` without the
    group; with ``chunks=`` a mapping, subvolume_01 got subvolume_02's values (or "cannot
    reshape" when the shapes differ). Here the shapes and values differ.
    """
    dask = pytest.importorskip("dask")
    url, source = two_unequal_subvolumes
    paths = ["imaging/subvolume_01", "imaging/subvolume_02"]
    if how == "open_group":
        pair = [sio.open_group(url, p, chunks=chunks).dff for p in paths]
    else:
        tree = sio.open_session(url, chunks=chunks, groups=["imaging/*"] if how == "groups" else None)
        pair = [tree[p].dff for p in paths]
    got = dask.compute(*pair)
    for path, value in zip(paths, got, strict=True):
        np.testing.assert_array_equal(np.asarray(value), source[path].dff.values, err_msg=path)


def test_open_is_lazy_no_data_chunk_is_read(session_store):
    """Opening reads metadata and index coordinates only: delete every dF/F chunk, still opens."""
    url, _ = session_store
    for path in Path(url).glob("imaging/subvolume_*/dff/c"):
        shutil.rmtree(path)
    tree = sio.open_session(url)
    dff = tree["imaging/subvolume_01"].dff
    assert dff.chunks is not None  # dask-backed
    lazy = sio.open_session(url, chunks=None)["imaging/subvolume_01"].dff
    assert lazy.chunks is None and not isinstance(lazy.variable._data, np.ndarray)
    assert np.isnan(dff.isel(cell=0, time=0).values)  # the missing chunk reads as the fill value


def test_groups_subset_and_glob(session_store):
    url, source = session_store
    one = sio.open_session(url, groups=["imaging/subvolume_02"])
    assert [n.path for n in one.subtree] == ["/", "/imaging", "/imaging/subvolume_02"]
    assert one.attrs["animal_id"] == source.attrs["animal_id"]
    xr.testing.assert_equal(one["imaging/subvolume_02"].to_dataset().compute(),
                            source["imaging/subvolume_02"].to_dataset())  # fmt: skip
    many = sio.open_session(url, groups=["imaging/*"])
    assert {"subvolume_01", "subvolume_02"} <= set(many["imaging"].children)
    with pytest.raises(sio.GroupNotFoundError, match="subvolume_07.*trials"):
        sio.open_session(url, groups=["imaging/subvolume_07"])


def test_open_group_is_one_dataset(session_store):
    url, source = session_store
    ds = sio.open_group(url, "imaging/subvolume_01")
    assert isinstance(ds, xr.Dataset) and ds.attrs["subvolume"] == 1
    cell = int(ds.cell[3])
    trial = int(np.unique(ds.trial.values)[1])
    got = ds.dff.sel(cell=cell).where((ds.trial == trial).compute(), drop=True).values
    want_ds = source["imaging/subvolume_01"].to_dataset()
    want = want_ds.dff.sel(cell=cell).values[want_ds.trial.values == trial]
    np.testing.assert_array_equal(got, want)
    with pytest.raises(sio.GroupNotFoundError, match="no group matches"):
        sio.open_group(url, "nope")


class _KeyLog(zarr.storage.WrapperStore):
    """Records the keys read through it."""

    def __init__(self, store):
        super().__init__(store)
        self.keys = []

    async def get(self, key, prototype, byte_range=None):
        self.keys.append(key)
        return await self._store.get(key, prototype, byte_range)


def test_describe_lists_every_variable_from_metadata(session_store):
    url, source = session_store
    listing = sio.describe(url)
    for node in source.subtree:
        path = node.path.strip("/")
        assert set(listing[path]) == set(node.to_dataset(inherit=False).variables), path
    dff = listing["imaging/subvolume_01"]["dff"]
    assert dff["dims"] == ("cell", "time") and dff["units"] == "dF/F"
    assert dff["shape"] == source["imaging/subvolume_01"].dff.shape


def test_open_group_reads_only_its_group(session_store):
    """The root metadata describes every group (large); one group needs only its own."""
    url, _ = session_store
    log = _KeyLog(zarr.storage.LocalStore(url, read_only=True))
    ds = sio.open_group(log, "imaging/subvolume_02")
    ds.dff.isel(cell=0).values
    assert "zarr.json" not in log.keys and not any(k.startswith(("imaging/subvolume_01", "whisker")) for k in log.keys)
    assert not any(k.endswith((".zgroup", ".zattrs", ".zmetadata")) for k in log.keys)  # no zarr v2 probing
    log = _KeyLog(zarr.storage.LocalStore(url, read_only=True))
    sio.open_session(log)
    assert log.keys.count("zarr.json") == 1  # read once, shared with xarray


def test_index_coordinates_are_fetched_once_while_xarray_builds_the_datasets(session_store):
    """The index chunks are requested in the background (``prefetch_indexes(wait=False)``) and
    waited for before they are decoded: each is read once, none again by xarray or the decoding."""
    from sscxr._metadata import index_chunk_keys

    url, source = session_store
    log = _KeyLog(zarr.storage.LocalStore(url, read_only=True))
    tree = sio.open_session(log)
    index_keys = index_chunk_keys(zarr.open_group(url, mode="r"), None)
    assert index_keys and all(log.keys.count(k) == 1 for k in index_keys), [k for k in index_keys
                                                                            if log.keys.count(k) != 1]
    assert not [k for k in log.keys if "/c/" in k and k not in index_keys]  # no data read at open
    for path in ("imaging/subvolume_01", "trials"):
        xr.testing.assert_identical(tree[path].to_dataset(inherit=False).compute(),
                                    source[path].to_dataset(inherit=False))


def test_open_group_fetches_its_indexes_without_a_background_thread(session_store, monkeypatch):
    """One group builds in ~10 ms: its few index GETs are awaited, not handed to a thread."""
    import sscxr._metadata as metadata

    def no_thread(*args, **kwargs):
        raise AssertionError("open_group started a background prefetch thread")

    url, source = session_store
    zarr.consolidate_metadata(url, path="imaging/subvolume_02")  # the group's own metadata: it prefetches
    monkeypatch.setattr(metadata, "ThreadPoolExecutor", no_thread)
    log = _KeyLog(zarr.storage.LocalStore(url, read_only=True))
    ds = sio.open_group(log, "imaging/subvolume_02")
    assert any(k.startswith("imaging/subvolume_02/cell/c") for k in log.keys)
    xr.testing.assert_identical(ds.compute(), source["imaging/subvolume_02"].to_dataset(inherit=False))


def test_a_failing_index_request_fails_the_open(session_store):
    class Failing(_KeyLog):
        async def get(self, key, prototype, byte_range=None):
            if key.startswith("imaging/subvolume_01/cell/c"):
                raise OSError(f"connection reset reading {key}")
            return await super().get(key, prototype, byte_range)

    url, _ = session_store
    with pytest.raises(OSError, match="connection reset reading imaging/subvolume_01/cell/c"):
        sio.open_session(Failing(zarr.storage.LocalStore(url, read_only=True)))


def test_open_group_with_its_own_consolidated_metadata_is_one_metadata_read(session_store):
    url, source = session_store
    zarr.consolidate_metadata(url, path="imaging/subvolume_02")
    log = _KeyLog(zarr.storage.LocalStore(url, read_only=True))
    ds = sio.open_group(log, "imaging/subvolume_02")
    assert [k for k in log.keys if k.endswith("zarr.json")] == ["imaging/subvolume_02/zarr.json"]
    xr.testing.assert_identical(ds.compute(), source["imaging/subvolume_02"].to_dataset(inherit=False))
    xr.testing.assert_identical(ds, sio.open_group(url, "imaging/subvolume_02"))


def test_open_group_of_an_unmarked_group_checks_the_root(tmp_path, store_writer, session_source):
    tree = session_source(n_subvolumes=1, n_cells=4, n_trials=2)
    del tree["trials"].attrs["sscxr_written"]
    url = str(tmp_path / "half.zarr")
    store_writer(tree, url, status="incomplete")
    sio.open_group(url, "imaging/subvolume_01")  # marked written: complete on its own
    with pytest.raises(IncompleteStoreError, match="--resume"):
        sio.open_group(url, "trials")


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------


def test_wrong_archive_is_refused(session_store, animal_store):
    with pytest.raises(SchemaError, match="open_session"):
        sio.open_animal(session_store[0])
    with pytest.raises(SchemaError, match="open_animal"):
        sio.open_session(animal_store[0])


def test_incomplete_store_is_refused_naming_resume(tmp_path, store_writer, session_source):
    url = str(tmp_path / "half.zarr")
    store_writer(session_source(n_subvolumes=1, n_cells=4, n_trials=2), url, status="incomplete")
    with pytest.raises(IncompleteStoreError, match="--resume"):
        sio.open_session(url)
    assert sio.open_store(url, require_complete=False).attrs["sscxr_status"] == "incomplete"


def test_schema_invalid_store_is_refused(tmp_path, store_writer, session_source):
    tree = session_source(n_subvolumes=1, n_cells=4, n_trials=2)
    tree["imaging/subvolume_01"].dff.attrs.pop("units")
    url = str(tmp_path / "bad.zarr")
    store_writer(tree, url)
    with pytest.raises(SchemaError, match="subvolume_01/dff: units"):
        sio.open_session(url)
    sio.open_session(url, groups=["trials"])  # problems elsewhere do not block one group


def test_foreign_zarr_is_not_an_sscxr_store(tmp_path):
    url = str(tmp_path / "foreign.zarr")
    xr.Dataset({"a": ("x", [1, 2])}).to_zarr(url)
    with pytest.raises(SchemaError, match="not an sscxr store"):
        sio.open_session(url)


# --------------------------------------------------------------------------------------------
# content version
# --------------------------------------------------------------------------------------------


def test_content_version_ignores_status_and_itself(session_store):
    url, source = session_store
    version = sio.content_version(url)
    assert len(version) == 16 and int(version, 16) >= 0
    assert version == source.attrs["content_version"]  # what the store records
    unconsolidated = zarr.open_group(url, mode="r+", use_consolidated=False)
    assert sio.content_version(unconsolidated) == version
    unconsolidated.attrs.update(sscxr_status="incomplete", content_version="x")
    assert sio.content_version(unconsolidated) == version


def test_content_version_ignores_creation_time_and_keeps_old_pins(session_store):
    """``provenance.created`` is not hashed (scheme 2); a version recorded or pinned under
    scheme 1, which hashed it, is still accepted without a warning."""
    url, _ = session_store
    group = zarr.open_group(url, mode="r+", use_consolidated=False)
    group.attrs["provenance"] = {**group.attrs["provenance"], "created": "2020-01-01T00:00:00+00:00",
                                 "sources": [{"name": "a.mat", "size": 1, "sha256": "0" * 64}]}  # fmt: skip
    version = sio.content_version(group)
    old = sio._version_of_group(group, "sscxr-content-version/1")
    group.attrs["provenance"] = {**group.attrs["provenance"], "created": "2031-01-01T00:00:00+00:00"}
    assert sio.content_version(group) == version
    assert sio._version_of_group(group, "sscxr-content-version/1") != old
    group.attrs["provenance"] = {**group.attrs["provenance"], "sources": [{"name": "a.mat", "size": 1,
                                                                           "sha256": "1" * 64}]}  # fmt: skip
    assert sio.content_version(group) != version
    group.attrs["content_version"] = sio._version_of_group(group, "sscxr-content-version/1")
    zarr.consolidate_metadata(url)
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreVersionWarning)
        sio.open_session(url, check_version=group.attrs["content_version"], chunks=None, groups=["trials"])
        sio.open_session(url, check_version=True, chunks=None, groups=["trials"])


def _tiny_tree(**changes: object) -> xr.DataTree:
    """Enough structure for the content version: root attrs, one group, two arrays."""
    ds = xr.Dataset({"dff": (("cell", "time"), np.zeros((4, 6)), {"units": "dF/F"})},
                    coords={"cell": np.arange(4), "time": ("time", np.arange(6.0), {"units": "s"})})  # fmt: skip
    if "n_cells" in changes:
        ds = ds.isel(cell=slice(0, int(changes["n_cells"])))  # type: ignore[call-overload]
    if "units" in changes:
        ds.time.attrs["units"] = changes["units"]
    if "chunks" in changes:
        ds.dff.encoding["chunks"] = changes["chunks"]
    attrs = {"archive": "ssc-1", "animal_id": changes.get("animal_id", "an197522"), "sscxr_status": "complete"}
    return xr.DataTree.from_dict({"/": xr.Dataset(attrs=attrs), "/imaging/subvolume_01": ds})


@pytest.mark.parametrize(
    "change",
    [{"animal_id": "an000000"}, {"units": "ms"}, {"n_cells": 3}, {"chunks": (2, 3)}],
    ids=["root-attr", "variable-attr", "shape", "chunks"],
)
def test_content_version_changes_with_metadata(tmp_path, store_writer, change):
    base, other = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    store_writer(_tiny_tree(), base)
    store_writer(_tiny_tree(**change), other)
    assert sio.content_version(other) != sio.content_version(base)
    store_writer(_tiny_tree(), other)
    assert sio.content_version(other) == sio.content_version(base)  # deterministic


def test_check_version_warns_on_a_different_pin(session_store):
    url, source = session_store
    with warnings.catch_warnings():
        warnings.simplefilter("error", StoreVersionWarning)
        sio.open_session(url, check_version=source.attrs["content_version"])
        sio.open_session(url, check_version=True)
    with pytest.warns(StoreVersionWarning, match="0123456789abcdef was pinned"):
        sio.open_session(url, check_version="0123456789abcdef")
    root = zarr.open_group(url, mode="r+")
    root.attrs["note"] = "edited after conversion"
    zarr.consolidate_metadata(url)
    with pytest.warns(StoreVersionWarning, match="metadata changed after conversion"):
        sio.open_session(url, check_version=True)


# --------------------------------------------------------------------------------------------
# URLs and storage options
# --------------------------------------------------------------------------------------------


def test_unknown_protocol_says_so():
    with pytest.raises(StorageAccessError, match="unknown URL protocol 'nosuch'"):
        sio.open_session("nosuch://bucket/x.zarr")


def test_missing_protocol_package_says_which_to_install():
    missing = [(p, pkg) for p, pkg in (("gcs", "gcsfs"), ("abfs", "adlfs"), ("hf", "huggingface_hub"))
               if importlib.util.find_spec(pkg) is None]  # fmt: skip
    if not missing:
        pytest.skip("every optional fsspec backend probed here is installed")
    protocol, package = missing[0]
    with pytest.raises((StorageAccessError, MissingDependencyError), match=package.split("_")[0]):
        sio.open_session(f"{protocol}://bucket/x.zarr")


def test_missing_local_store_and_stray_options(tmp_path):
    with pytest.raises(StorageAccessError, match="no zarr store at"):
        sio.open_session(str(tmp_path / "absent.zarr"))
    with pytest.raises(StorageAccessError, match="local path"):
        sio.open_session(str(tmp_path / "absent.zarr"), storage_options={"anon": True})


def test_obstore_option_translation():
    kw = sio._obstore_s3_kwargs("s3://b/p/x.zarr", {"key": "K", "secret": "S", "endpoint_url": "http://h:1"})
    assert kw["bucket"] == "b" and kw["prefix"] == "p/x.zarr"
    assert kw["config"]["access_key_id"] == "K" and kw["config"]["secret_access_key"] == "S"
    assert kw["config"]["endpoint"] == "http://h:1" and kw["client_options"] == {"allow_http": True}
    anon = sio._obstore_s3_kwargs("s3://b/x.zarr", {"anon": True, "client_kwargs": {"region_name": "eu-west-1"}})
    assert anon["config"]["skip_signature"] is True and anon["config"]["region"] == "eu-west-1"
    assert sio._obstore_s3_kwargs("s3://b/x", {"profile": "dev"}) is None  # no equivalent: s3fs


def test_check_writable_memory():
    sio.check_writable("memory://test-io/writable.zarr")


def test_docs_remote_runs(monkeypatch):
    monkeypatch.delenv("SSCXR_S3_CLIENT", raising=False)
    namespace = run_doc("remote.md")
    assert namespace["s3"]._server is None  # the page stops its server


# --------------------------------------------------------------------------------------------
# S3 on moto: both clients, secret-free pickles, caching
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=["obstore", "s3fs"])
def s3_client(request, monkeypatch):
    if request.param == "obstore" and not HAS_OBSTORE:
        pytest.skip("obstore is not installed")
    monkeypatch.setenv("SSCXR_S3_CLIENT", request.param)
    return request.param


def test_s3_open_with_both_clients(moto_server, moto_session_store, s3_client):
    url, source = moto_session_store
    store = sio.make_store(url, moto_server.storage_options(anon=True))
    expected = zarr.storage.ObjectStore if s3_client == "obstore" else zarr.storage.FsspecStore
    assert isinstance(store, expected)
    tree = sio.open_session(url, storage_options=moto_server.storage_options(anon=True))
    assert tree.attrs == source.attrs
    sub = tree["imaging/subvolume_02"].to_dataset(inherit=False).compute()
    xr.testing.assert_identical(sub, source["imaging/subvolume_02"].to_dataset(inherit=False))


def test_s3_dask_graph_pickles_without_secret(moto_server, moto_session_store, s3_client):
    cloudpickle = pytest.importorskip("cloudpickle")
    url, source = moto_session_store
    opts = moto_server.storage_options()
    dff = sio.open_session(url, storage_options=opts)["imaging/subvolume_01"].dff
    secret, key = moto_server.credentials.secret.encode(), moto_server.credentials.key.encode()
    blobs = (pickle.dumps(dff), cloudpickle.dumps(dff), pickle.dumps(dict(dff.data.__dask_graph__())))
    assert [i for i, b in enumerate(blobs) if secret in b or key in b] == []  # (never print a secret)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dff)).values,
                                  source["imaging/subvolume_01"].dff.values)  # fmt: skip


def test_s3_unpickled_in_another_process_uses_its_own_credentials(moto_server, moto_session_store):
    """Another process has no credential registry: it falls back to its environment."""
    url, source = moto_session_store
    dff = sio.open_session(url, storage_options=moto_server.storage_options())["imaging/subvolume_01"].dff
    code = "import pickle,sys; a = pickle.load(sys.stdin.buffer); print(float(a.sum()))"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "AWS_ACCESS_KEY_ID": "other",
           "AWS_SECRET_ACCESS_KEY": "other"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(dff.data), capture_output=True,
                         env=env, timeout=60, check=True)  # fmt: skip
    assert float(out.stdout) == pytest.approx(float(source["imaging/subvolume_01"].dff.sum()))


def test_s3_simplecache_chain(moto_server, moto_session_store, tmp_path):
    url, source = moto_session_store
    cache = tmp_path / "cache"
    options = {"s3": moto_server.storage_options(anon=True), "simplecache": {"cache_storage": str(cache)}}
    ds = sio.open_group(f"simplecache::{url}", "imaging/subvolume_01", storage_options=options)
    np.testing.assert_array_equal(ds.dff.values, source["imaging/subvolume_01"].dff.values)
    assert any(cache.iterdir())


def test_s3_missing_store_on_moto(moto_server, moto_bucket, s3_client):
    with pytest.raises(StorageAccessError, match="no zarr store at"):
        sio.open_session(moto_server.url(moto_bucket, "absent.zarr"), storage_options=moto_server.storage_options())


# --------------------------------------------------------------------------------------------
# chunks="analysis": blocks of many store chunks, no data read while a graph is built
# --------------------------------------------------------------------------------------------


def _counting(store):
    """A read-only wrapper counting the GETs of data chunks (keys under ``/c/``) and all GETs."""

    class Counting(zarr.storage.WrapperStore):
        def __init__(self, inner):
            super().__init__(inner)
            self.data_keys, self.gets = [], 0

        async def get(self, key, prototype, byte_range=None):
            self.gets += 1
            if "/c/" in key or "/c." in key:
                self.data_keys.append(key)
            return await self._store.get(key, prototype, byte_range)

        async def get_partial_values(self, prototype, key_ranges):
            key_ranges = list(key_ranges)
            self.gets += len(key_ranges)
            self.data_keys += [k for k, _ in key_ranges if "/c/" in k]
            return await self._store.get_partial_values(prototype, key_ranges)

    return Counting(store)


def test_analysis_chunks_span_store_chunks_and_build_graphs_without_reads(tmp_path, store_writer, session_source,
                                                                           monkeypatch):  # fmt: skip
    """Blocks: whole along time, whole numbers of store chunks along cell; opening reads index
    coordinates only, building an event_response graph reads nothing, computing it reads each
    dF/F chunk once; dask keys name the group."""
    pytest.importorskip("dask")
    import dask

    source = session_source(n_cells=40, n_trials=6)
    sub = source["imaging/subvolume_01"].to_dataset(inherit=False)
    source["imaging/subvolume_01"] = xr.DataTree(sub.assign(dff=sub.dff.chunk({"cell": 4, "time": 50})))
    url = str(tmp_path / "an197522_2013_03_08.zarr")
    source = store_writer(source, url)
    n_chunks = int(np.prod(zarr.open_array(url, path="imaging/subvolume_01/dff", mode="r").cdata_shape))
    n_frames = source["imaging/subvolume_01"].sizes["time"]
    monkeypatch.setattr(sio, "ANALYSIS_BLOCK_BYTES", 12 * n_frames * 8)  # 3 store chunks of cells x all frames
    counting = _counting(sio.make_store(url))
    tree = sio.open_session(counting, chunks="analysis")
    opened_gets, opened_data = counting.gets, list(counting.data_keys)
    assert not any("/dff/" in k or "/frame_time/" in k for k in opened_data)  # index coordinates only
    dff = tree["imaging/subvolume_01"].dff
    assert dff.data.chunks == ((12, 12, 12, 4), (n_frames,))
    assert "imaging/subvolume_01" in dff.data.name  # dask keys name the group
    resp = tree.sscx.event_response("dff", align_to="first_touch", subvolume=1)
    assert counting.gets == opened_gets  # building the graph read nothing
    assert len(dict(resp.response.data.__dask_graph__())) < n_chunks  # fewer tasks than store chunks
    expected = sio.open_session(url, chunks=None).sscx.event_response("dff", align_to="first_touch", subvolume=1)
    with dask.config.set(scheduler="sync"):
        got = resp.compute()
    xr.testing.assert_identical(got, expected)
    dff_reads = [k for k in counting.data_keys if k.startswith("imaging/subvolume_01/dff/")]
    assert len(dff_reads) == len(set(dff_reads)) == n_chunks  # each store chunk read once


def test_analysis_chunks_block_sizes():
    # a real-size subvolume: 1,500 cells x 45,150 frames float64, store chunks of 32 cells x 512 frames
    blocks = sio.analysis_chunks(("cell", "time"), (1500, 45150), (32, 512), 8)
    assert blocks == (160, 45150) and 16 * 2**20 <= 160 * 45150 * 8 <= 64 * 2**20
    assert sio.analysis_chunks(("whisker", "time"), (2, 10**6), (1, 131072), 8) == (2, 10**6)  # 16 MB: whole
    assert sio.analysis_chunks(("frame", "y", "x"), (5000, 512, 512), (1, 512, 512), 2) == (128, 512, 512)
    assert sio.analysis_chunks(("cell", "time"), (10, 10), (4, 5), 8, target=0) == (4, 5)
