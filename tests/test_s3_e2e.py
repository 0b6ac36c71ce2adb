"""End to end on a real S3 server with real auth (SeaweedFS): write with credentials, read the
public bucket anonymously through the catalog, refuse what must be refused, leak no secret."""

from __future__ import annotations

import importlib.util
import logging
import pickle
import secrets

import numpy as np
import pytest
import xarray as xr

import sscxr.io as sio
from sscxr import catalog as sc
from sscxr.errors import StorageAccessError

pytestmark = pytest.mark.seaweedfs
CLIENTS = ["obstore", "s3fs"] if importlib.util.find_spec("obstore") else ["s3fs"]
NAME = "an197522_2013_03_08"


@pytest.fixture(params=CLIENTS)
def s3_client(request, monkeypatch):
    monkeypatch.setenv("SSCXR_S3_CLIENT", request.param)
    return request.param


@pytest.fixture(scope="module")
def public_store(seaweed_server, tmp_path_factory):
    """A synthetic archive converted straight into the anonymous-readable bucket with
    credentials (``sscxr convert``), its catalog, and the writer's ground truth."""
    from sscxr.testing.archives import write_ssc1_session
    from sscxr_conversion import convert

    truth = write_ssc1_session(tmp_path_factory.mktemp("archive") / NAME, preset="tiny", seed=5)
    root = seaweed_server.url(seaweed_server.public_bucket, f"e2e-{secrets.token_hex(4)}/stores")
    result = convert(truth.mat_path, f"{root}/{NAME}.zarr", storage_options=seaweed_server.storage_options(),
                     progress=False)
    out = tmp_path_factory.mktemp("catalog") / "sscxr.yaml"
    sc.build_catalog(root, storage_options=seaweed_server.storage_options(anon=True), out=out)
    return root, truth, out, result.content_version


def test_catalog_read_anonymously_one_cell_one_trial(seaweed_server, public_store, s3_client):
    root, truth, catalog_path, version = public_store
    cat = sc.open_catalog(catalog_path)(store_root=root, endpoint_url=seaweed_server.endpoint_url)
    assert cat.get_entity(NAME).metadata["content_version"] == version
    sv = truth.subvolumes[1]
    group = f"imaging/subvolume_{sv.vv:02d}"
    tree = cat[NAME].read(groups=[group])  # anon=True is the catalog default
    sub = tree[group].to_dataset()
    row, trial = 4, int(np.unique(sv.trial)[1])
    got = sub.dff.sel(cell=int(sv.roi_ids[row])).where((sub.trial == trial).compute(), drop=True)
    np.testing.assert_array_equal(got.values, sv.dff[row, sv.trial == trial])
    np.testing.assert_allclose(got.time.values, sv.time_ms[sv.trial == trial] / 1000)


def test_open_group_anonymously_matches_source(seaweed_server, public_store, s3_client):
    root, truth, _, _ = public_store
    sv = truth.subvolumes[0]
    ds = sio.open_group(f"{root}/{NAME}.zarr", f"imaging/subvolume_{sv.vv:02d}",
                        storage_options=seaweed_server.storage_options(anon=True))  # fmt: skip
    np.testing.assert_array_equal(ds.dff.values, sv.dff)
    np.testing.assert_array_equal(ds.cell.values, sv.roi_ids)
    np.testing.assert_array_equal(ds.trial.values, sv.trial)


def test_anonymous_write_is_refused(seaweed_server, public_store, s3_client):
    url = f"{public_store[0]}/intruder.zarr"
    anon = seaweed_server.storage_options(anon=True)
    with pytest.raises(StorageAccessError, match="anonymous write to .* refused"):
        sio.check_writable(url, anon)
    tree = xr.DataTree(xr.Dataset({"a": ("x", np.arange(3))}))
    with pytest.raises(StorageAccessError, match="anonymous write"):
        with sio.storage_errors(url, anon, writing=True):
            tree.to_zarr(sio.make_store(url, anon, read_only=False), mode="w")
    sio.check_writable(url, seaweed_server.storage_options())  # the admin may write


def test_anonymous_read_of_a_private_bucket_is_refused(seaweed_server, seaweed_bucket, built_session_store,
                                                       s3_client):  # fmt: skip
    seaweed_server.upload_dir(built_session_store[0], seaweed_bucket, f"{NAME}.zarr")
    url = seaweed_server.url(seaweed_bucket, f"{NAME}.zarr")
    with pytest.raises(StorageAccessError, match="anonymous read of .* refused: the bucket is private"):
        sio.open_session(url, storage_options=seaweed_server.storage_options(anon=True))
    tree = sio.open_session(url, storage_options=seaweed_server.storage_options(), groups=["trials"])
    assert tree.attrs["archive"] == "ssc-1"


def test_missing_credentials_say_so(seaweed_server, seaweed_bucket, built_session_store, s3_client, monkeypatch):
    seaweed_server.upload_dir(built_session_store[0], seaweed_bucket, f"{NAME}.zarr")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")  # (no instance-metadata lookups on this machine)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "nothing")
    url = seaweed_server.url(seaweed_bucket, f"{NAME}.zarr")
    with pytest.raises(StorageAccessError, match="storage_options hold no credentials"):
        sio.open_session(url, storage_options={"endpoint_url": seaweed_server.endpoint_url})


def test_wrong_secret_and_missing_bucket_say_so_without_echoing(seaweed_server, public_store, s3_client):
    url = f"{public_store[0]}/{NAME}.zarr"
    wrong = {**seaweed_server.storage_options(), "secret": "not-the-secret-" + secrets.token_hex(4)}
    with pytest.raises(StorageAccessError) as info:
        sio.open_session(url, storage_options=wrong)
    assert "rejected" in str(info.value) or "denied" in str(info.value)
    assert wrong["secret"] not in str(info.value) and seaweed_server.credentials.secret not in str(info.value)
    missing = seaweed_server.url(f"nobucket-{secrets.token_hex(3)}", f"{NAME}.zarr")
    with pytest.raises(StorageAccessError, match="does not exist|no zarr store"):
        sio.open_session(missing, storage_options=seaweed_server.storage_options())


def test_no_credential_in_catalog_attrs_logs_reprs_or_graphs(seaweed_server, public_store, s3_client, caplog):
    cloudpickle = pytest.importorskip("cloudpickle")
    root, truth, catalog_path, _ = public_store
    secret, key = seaweed_server.credentials.secret, seaweed_server.credentials.key
    url = f"{root}/{NAME}.zarr"
    with caplog.at_level(logging.DEBUG):
        tree = sio.open_session(url, storage_options=seaweed_server.storage_options())
        dff = tree[f"imaging/subvolume_{truth.subvolumes[0].vv:02d}"].dff
        dff.isel(cell=0).values
        reader = sc.open_catalog(catalog_path)(store_root=root)[NAME]
    # store metadata (every zarr.json in the bucket), the catalog, reprs
    client = seaweed_server.client()
    prefix = url.split("/", 3)[3]
    metadata = b"".join(
        client.get_object(Bucket=seaweed_server.public_bucket, Key=o["Key"])["Body"].read()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=seaweed_server.public_bucket,
                                                                     Prefix=prefix)  # fmt: skip
        for o in page.get("Contents", []) if o["Key"].endswith("zarr.json")
    )
    texts = {"catalog": catalog_path.read_text(), "metadata": metadata.decode(), "tree": repr(tree),
             "store": repr(sio.make_store(url, seaweed_server.storage_options())), "reader": repr(reader),
             "reader kwargs": repr(reader.kwargs), "server": repr(seaweed_server),
             "encoding": repr(tree.encoding)}  # fmt: skip
    leaks = [what for what, text in texts.items() if secret in text or key in text]  # no secret in reports
    assert leaks == []
    # logs: nothing of ours mentions either; no library logs the secret (botocore logs the key id)
    assert (secret in caplog.text) is False
    assert not any(key in r.getMessage() for r in caplog.records if r.name.startswith("sscxr"))
    # pickled dask graphs
    blobs = (pickle.dumps(dff), cloudpickle.dumps(dff), cloudpickle.dumps(dict(dff.data.__dask_graph__())))
    assert [i for i, b in enumerate(blobs) if secret.encode() in b or key.encode() in b] == []
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(dff)).values, dff.values)
