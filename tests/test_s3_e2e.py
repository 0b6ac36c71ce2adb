"""End to end on a real S3 server with real auth (SeaweedFS): write with credentials, read the
public bucket anonymously through the catalog, refuse what must be refused, leak no secret."""

from __future__ import annotations

import importlib.util
import json
import logging
import pickle
import re
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


# --------------------------------------------------------------------------------------------
# every storage failure is one line: convert, lazy reads, workers, a server gone
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_session(tmp_path_factory):
    from sscxr.testing.archives import write_ssc1_session

    return write_ssc1_session(tmp_path_factory.mktemp("src") / NAME, preset="tiny", seed=6)


@pytest.mark.parametrize("case", ["wrong-secret", "missing-bucket", "anonymous-write", "closed-port"])
def test_convert_storage_failure_is_one_line(seaweed_server, seaweed_bucket, tiny_session, s3_client, capsys,
                                             case):  # fmt: skip
    """``sscxr convert`` to S3 that refuses or is not there: one ``error:`` line, status 2, no
    traceback, no secret (these were 60-160-line tracebacks with obstore's debug dumps)."""
    import socket

    from sscxr import cli

    good = seaweed_server.storage_options()
    url, options, expect = seaweed_server.url(seaweed_bucket, "a.zarr"), dict(good), ""
    if case == "wrong-secret":
        options["secret"], expect = "not-the-secret-" + secrets.token_hex(4), "rejected|denied"
    elif case == "missing-bucket":
        if s3_client == "s3fs":
            pytest.skip("s3fs creates a missing bucket when it may (zarr's mkdir): nothing fails")
        url, expect = seaweed_server.url(f"nobucket-{secrets.token_hex(3)}", "a.zarr"), "does not exist"
    elif case == "anonymous-write":
        url = seaweed_server.url(seaweed_server.public_bucket, f"intruder-{secrets.token_hex(3)}.zarr")
        options, expect = seaweed_server.storage_options(anon=True), "anonymous write to .* refused"
    else:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
        options["endpoint_url"], expect = f"http://127.0.0.1:{port}", "cannot reach the storage service"
    code = cli.main(["convert", str(tiny_session.mat_path), url, "--quiet", "--storage-options", json.dumps(options)])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "warning: --storage-options" not in line]
    assert code == 2 and len(errors) == 1, err
    assert errors[0].startswith("sscxr convert: error: ") and re.search(expect, errors[0]), errors[0]
    assert url in errors[0] or _bucket_of(url) in errors[0]
    assert good["secret"] not in err and (options.get("secret") or good["secret"]) not in err


def _bucket_of(url: str) -> str:
    return url.split("://", 1)[1].split("/", 1)[0]


@pytest.fixture
def private_store(seaweed_server, seaweed_bucket, built_session_store):
    seaweed_server.upload_dir(built_session_store[0], seaweed_bucket, f"{NAME}.zarr")
    return seaweed_server.url(seaweed_bucket, f"{NAME}.zarr")


def test_lazy_read_on_a_worker_without_credentials_says_so(seaweed_server, private_store, s3_client, monkeypatch):
    """Credentials stay in the process that was given them: a LocalCluster worker without any
    of its own reading a private bucket raises sscxr's StorageAccessError naming the URL (was a
    raw obstore PermissionDeniedError or botocore NoCredentialsError)."""
    distributed = pytest.importorskip("distributed")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    tree = sio.open_session(private_store, storage_options=seaweed_server.storage_options(),
                            groups=["imaging/*"])  # fmt: skip
    dff = tree[f"imaging/{sorted(tree['imaging'].children)[0]}"].dff
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  worker_dashboard_address=":0") as cluster, distributed.Client(cluster):
        with pytest.raises(StorageAccessError) as info:
            dff.compute()
    message = str(info.value)
    assert private_store in message and "without credentials" in message and "AWS_ACCESS_KEY_ID" in message
    assert seaweed_server.credentials.secret not in message and "\n" not in message


def test_server_lost_during_a_lazy_compute_is_one_error_soon(private_store, built_session_store, s3_client):
    """The S3 server stops between opening and computing: a StorageAccessError ("cannot reach")
    in seconds, not minutes of obstore's default retries (10 within 3 minutes)."""
    import time

    from sscxr.testing.s3 import SeaweedServer

    with SeaweedServer() as server:  # its own server: this one is stopped
        bucket = server.make_bucket()
        server.upload_dir(built_session_store[0], bucket, f"{NAME}.zarr")
        url = server.url(bucket, f"{NAME}.zarr")
        tree = sio.open_session(url, storage_options=server.storage_options(), groups=["imaging/*"])
        server.stop()
        start = time.monotonic()
        with pytest.raises(StorageAccessError, match="cannot reach the storage service") as info:
            tree[f"imaging/{sorted(tree['imaging'].children)[0]}"].dff.compute()
    assert time.monotonic() - start < 30
    assert url in str(info.value) and "\n" not in str(info.value)
    assert server.credentials.secret not in str(info.value)


def test_credentials_from_an_aws_profile(seaweed_server, private_store, s3_client, monkeypatch, tmp_path):
    """The way the CLI's warning names: a profile in ~/.aws/credentials. obstore does not read
    profiles, so sscxr takes s3fs then; either way the private store opens."""
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[lab]\naws_access_key_id = {seaweed_server.credentials.key}\n"
                           f"aws_secret_access_key = {seaweed_server.credentials.secret}\n")  # fmt: skip
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_PROFILE", "lab")
    tree = sio.open_session(private_store, storage_options={"endpoint_url": seaweed_server.endpoint_url},
                            groups=["trials"])  # fmt: skip
    assert tree["trials"].start_time.size > 0
