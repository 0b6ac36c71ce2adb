"""Whole-shard writes (sscxr_conversion.shards) read back through zarr itself, pixel for pixel."""

from __future__ import annotations

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, GzipCodec

from sscxr_conversion.shards import shard_writer


def _array(store, shape, shards, chunks, compressors=None, dtype="uint16", fill_value=0):
    return zarr.create_array(store, shape=shape, dtype=dtype, chunks=chunks, shards=shards, fill_value=fill_value,
                             compressors=compressors or [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")],
                             zarr_format=3)


@pytest.mark.parametrize(("shape", "shards", "chunks"), [
    ((2, 70, 64, 48), (1, 32, 32, 48), (1, 8, 16, 16)),   # time edge shard, uneven inner tiling of x
    ((1, 64, 40, 40), (1, 64, 40, 40), (1, 16, 20, 20)),  # one shard
    ((3, 33, 16, 24), (1, 16, 16, 24), (1, 4, 8, 12)),    # edge shard of one frame
])
@pytest.mark.parametrize("dtype", ["uint16", "float64"])
def test_written_shards_read_back_through_zarr(tmp_path, shape, shards, chunks, dtype):
    rng = np.random.default_rng(0)
    data = (rng.random(shape) * 4000).astype(dtype)
    arr = _array(tmp_path / "a.zarr", shape, shards, chunks, dtype=dtype)
    write = shard_writer(arr)
    assert write is not None
    for p in range(shape[0]):
        for t0 in range(0, shape[1], shards[1]):
            write((p, t0, 0, 0), data[p:p + 1, t0:t0 + shards[1]])
    back = zarr.open_array(tmp_path / "a.zarr", mode="r")[...]
    np.testing.assert_array_equal(back, data)


def test_unwritten_shards_keep_the_fill_value(tmp_path):
    arr = _array(tmp_path / "a.zarr", (2, 32, 16, 16), (1, 16, 16, 16), (1, 8, 8, 8))
    shard_writer(arr)((1, 16, 0, 0), np.full((1, 16, 16, 16), 7, np.uint16))
    back = zarr.open_array(tmp_path / "a.zarr", mode="r")
    assert not back[0].any() and not back[1, :16].any() and (back[1, 16:] == 7).all()


def test_s3_store(moto_server, moto_bucket):
    """Concurrent PUTs to a real S3 server give the same array."""
    from sscxr.io import make_store

    url = moto_server.url(moto_bucket, "shards.zarr")
    options = moto_server.storage_options()
    store = make_store(url, options, read_only=False)
    data = np.arange(2 * 32 * 16 * 16, dtype=np.uint16).reshape(2, 32, 16, 16)
    arr = _array(store, data.shape, (1, 16, 16, 16), (1, 8, 8, 8))
    write = shard_writer(arr)
    for p in range(2):
        write((p, 0, 0, 0), data[p:p + 1])
    np.testing.assert_array_equal(zarr.open_array(make_store(url, options, read_only=True),
                                                  mode="r")[...], data)


@pytest.mark.parametrize("kind", ["unsharded", "gzip"])
def test_other_layouts_are_left_to_zarr(tmp_path, kind):
    if kind == "unsharded":
        arr = _array(tmp_path / "a.zarr", (1, 16, 8, 8), None, (1, 8, 8, 8))
    else:
        arr = _array(tmp_path / "a.zarr", (1, 16, 8, 8), (1, 16, 8, 8), (1, 8, 8, 8), compressors=[GzipCodec()])
    assert shard_writer(arr) is None


def test_misaligned_writes_are_refused(tmp_path):
    write = shard_writer(_array(tmp_path / "a.zarr", (1, 64, 16, 16), (1, 32, 16, 16), (1, 8, 8, 8)))
    assert write is not None
    with pytest.raises(ValueError, match="not aligned"):
        write((0, 8, 0, 0), np.zeros((1, 32, 16, 16), np.uint16))
    with pytest.raises(ValueError, match="shard boundary"):
        write((0, 0, 0, 0), np.zeros((1, 20, 16, 16), np.uint16))
