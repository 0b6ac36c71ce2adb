"""The converter's fast paths (sscxr_conversion._zarr_fastpath) change nothing that is stored.

The same synthetic ssc-1 session and ssc-11 animal are converted with every fast path on, with
``SSCXR_NO_FASTPATH=1`` (zarr's and xarray's public path) and with each fast path's internals
taken away (it must fall back, warning once); every store passes ``verify`` and all of them hold
the same objects: every chunk byte for byte, every metadata document equal once parsed (only
``provenance.created``, the time of the conversion, differs), and the same content version.
"""

from __future__ import annotations

import json
import warnings

import numcodecs
import numpy as np
import pytest
import zarr

from sscxr import _fastpath
from sscxr._zarr_compat import sync
from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal
from sscxr_conversion import _zarr_fastpath, convert, shards, verify, write

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


@pytest.fixture(autouse=True)
def _fresh_fast_paths(monkeypatch):
    """Each test starts with every fast path on, and leaves none turned off behind it."""
    monkeypatch.delenv(_fastpath.ENV, raising=False)
    _fastpath.reset()
    yield
    _fastpath.reset()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("sources")
    session = write_ssc1_session(root / "an197522_2013_03_08", preset="tiny", seed=4).mat_path
    animal = write_ssc11_animal(root / "ssc11", preset="tiny", seed=2).animal_dir
    return {"ssc-1": session, "ssc-11": animal}


def _objects(url):
    """``{key: bytes}`` of every object of the store a conversion published at ``url``."""
    store = write.open_store(url, None, mode="r")
    proto = zarr.buffer.default_buffer_prototype()

    async def collect():
        return {k: (await store.get(k, proto)).to_bytes() async for k in store.list()}

    return sync(collect())


def _comparable(objects):
    """Chunks as bytes; documents parsed, without the conversion's time of day."""
    out = {}
    for key, blob in objects.items():
        if key == "zarr.json" or key.endswith("/zarr.json"):
            doc = json.loads(blob)
            doc.get("attributes", {}).get("provenance", {}).pop("created", None)
            out[key] = doc
        else:
            out[key] = blob
    return out


def _convert(src, dest):
    result = convert(src, str(dest), progress=False)
    assert verify(src, str(dest)) == []
    return result, _comparable(_objects(result.version_url))


def _assert_same(a, b):
    (result_a, objects_a), (result_b, objects_b) = a, b
    assert sorted(objects_a) == sorted(objects_b)
    for key in objects_a:
        assert objects_a[key] == objects_b[key], key
    assert result_a.content_version == result_b.content_version
    assert objects_a["zarr.json"]["attributes"]["content_version"] == result_a.content_version


@pytest.mark.parametrize("archive", ["ssc-1", "ssc-11"])
def test_public_path_writes_the_same_store(sources, tmp_path, monkeypatch, archive):
    fast = _convert(sources[archive], tmp_path / "fast.zarr")
    assert _fastpath.status() == {}  # nothing fell back on the tested versions
    monkeypatch.setenv(_fastpath.ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error", _fastpath.FastPathWarning)  # switched off: no warning
        public = _convert(sources[archive], tmp_path / "public.zarr")
    _assert_same(fast, public)


def test_changed_internals_fall_back_once_to_the_same_store(sources, tmp_path, monkeypatch):
    """Internals that changed (here: the zarr internals each fast path uses raise as if gone; zarr
    itself still needs them): one warning per fast path, and the same store."""
    def gone(what):
        def raising(*args, **kwargs):
            raise AttributeError(f"type object has no attribute {what!r}")
        return raising

    fast = _convert(sources["ssc-1"], tmp_path / "fast.zarr")
    monkeypatch.setattr(_zarr_fastpath, "_metadata_v3", gone("_create_metadata_v3"))
    monkeypatch.setattr(_zarr_fastpath, "consolidated", gone("_flat_to_nested"))
    with pytest.warns(_fastpath.FastPathWarning) as caught:
        fallen = _convert(sources["ssc-1"], tmp_path / "fallen.zarr")
    named = sorted(str(w.message).split("fast ")[1].split(" does")[0] for w in caught
                   if issubclass(w.category, _fastpath.FastPathWarning))
    assert named == [_zarr_fastpath.CONSOLIDATION, _zarr_fastpath.GROUP_ENCODER]  # once each
    assert set(_fastpath.status()) == {_zarr_fastpath.CONSOLIDATION, _zarr_fastpath.GROUP_ENCODER}
    _assert_same(fast, fallen)


def test_an_untested_zarr_version_takes_the_public_path(monkeypatch):
    monkeypatch.setitem(_zarr_fastpath.TESTED, _zarr_fastpath.GROUP_ENCODER, ("zarr", "0.1", "0.2"))
    with pytest.warns(_fastpath.FastPathWarning, match=r"zarr .* is outside the versions it is tested with"):
        assert not _zarr_fastpath.usable(_zarr_fastpath.GROUP_ENCODER)
    assert _zarr_fastpath.usable(_zarr_fastpath.CONSOLIDATION)  # the others stay on


def test_codec_chunks_decline_when_off(monkeypatch):
    arr = zarr.create_array(zarr.storage.MemoryStore(), shape=(3,), chunks=(2,), dtype=str)
    data = np.array(["a", "bb", "c"], dtype=object)
    assert shards.codec_chunks(arr, data) is not None
    monkeypatch.setenv(_fastpath.ENV, "1")
    assert shards.codec_chunks(arr, data) is None  # the caller writes through zarr


@pytest.mark.parametrize("how", ["environment", "missing symbol"])
def test_blosc_into_without_its_fast_path_gives_the_same_bytes(monkeypatch, how):
    codec = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)
    chunk = np.arange(4096, dtype="<u2").reshape(64, 64)
    fast = bytes(shards.BloscInto(codec)(chunk))
    if how == "environment":
        monkeypatch.setenv(_fastpath.ENV, "1")
    else:
        _zarr_fastpath._blosc_ctx.cache_clear()
        monkeypatch.setattr(numcodecs.blosc, "__file__", "/nonexistent/libblosc.so")
    try:
        if how == "missing symbol":
            with pytest.warns(_fastpath.FastPathWarning, match="blosc into"):
                compress = shards.BloscInto(codec)
            assert _zarr_fastpath.BLOSC_INTO in _fastpath.status()
        else:
            compress = shards.BloscInto(codec)
    finally:
        _zarr_fastpath._blosc_ctx.cache_clear()
    assert compress.fn is None
    assert bytes(compress(chunk)) == fast == bytes(codec.encode(chunk))
