"""The task that writes one :class:`~.blocks.Block`: its whole shards, per-frame crc32c and
presence, then its resume marker.

Runs on a thread or dask worker (:class:`~sscxr_conversion.tasks.Runner`); its inputs are the
store URL (options are looked up by URL, never sent), the group path, the channel names and the
block. Shards are encoded here chunk by chunk (:class:`_ShardParts`, with the encoders of
:mod:`~sscxr_conversion.shards`) when the layout is one that module encodes, else through zarr.
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import zarr

from .. import write
from ..shards import (BloscInto, PartSink, chunk_key, index_parts, put_many, region_chunks, shard_index,
                      sharded_layout)
from ..tasks import options_for
from .blocks import Block, BlockSummary


def write_block(url: str, path: str, names: tuple[str, ...], block: Block, token: str | None = None) -> BlockSummary:
    """Task: write one block (whole shards of one plane), its crc32c and presence, then mark it.

    The frames are read once (:meth:`Block.scan`): each slab of inner-chunk-deep frames is
    compressed chunk by chunk into the shards' parts while it is in cache. ``token`` names the
    conversion: its tasks in one process open the store and arrays once (:func:`_target`).
    """
    store, arrays = _target(url, path, names, token) if token else _target.__wrapped__(url, path, names, token)
    stacks = [arrays[name] for name in names]
    shards = _ShardParts.of(stacks, block, PartSink(store))
    if shards is not None:
        try:
            summary = block.scan(shards.tile, shards.frames, shards.add)
        except BaseException:
            shards.sink.abort()
            raise
        shards.close()
    else:  # a layout shards.py does not encode (an older store being resumed): through zarr
        summary = block.summarize()
        pixels = block.pixels()
        for c, stack in enumerate(stacks):
            stack.with_config({"write_empty_chunks": True})[block.plane, block.t0: block.t0 + pixels.shape[1]] = pixels[c]
    small: dict[str, Any] = {}  # the block's one chunk of each per-frame array, put at once
    for c, name in enumerate(names):
        put_region(arrays[f"{name}_crc32c"], (block.plane, block.t0), summary.crc[c][None], small)
    put_region(arrays["frame_present"], (block.plane, block.t0), block.present[None], small)
    put_many(store, small)
    marker: dict[str, Any] = {}
    put_region(arrays["block_written"], (block.plane, block.index), np.ones((1, 1), bool), marker)
    put_many(store, marker)  # last: the block counts as written only once all of it is stored
    return summary


@functools.lru_cache(maxsize=8)
def _target(url: str, path: str, names: tuple[str, ...], token: str | None) -> tuple[Any, dict[str, zarr.Array]]:
    """The store and the arrays a block task writes, opened once per process and conversion
    (``token``): opening them (reading each ``zarr.json``) was ~5 ms of every task."""
    store = write.open_store(url, options_for(url), mode="w")
    keys = [*names, *(f"{name}_crc32c" for name in names), "frame_present", "block_written"]
    return store, {key: zarr.open_array(store, path=f"{path}/{key}", mode="r+", zarr_format=3) for key in keys}


class _ShardParts:
    """The shards of one block (one plane, ``shard_frames`` frames) of every channel, built from
    the slabs of :meth:`Block.scan`: each inner chunk is compressed as it comes and goes to its
    shard object in ``sink``; :meth:`close` ends each object with its index."""

    def __init__(self, codec: Any, shard: tuple[int, ...], chunk: tuple[int, ...], block: Block,
                 arrays: list[zarr.Array], sink: PartSink):
        self.compress, self.sink = BloscInto(codec), sink
        self.frames, self.tile = chunk[1], (chunk[2], chunk[3])
        self.per_shard = (shard[2] // chunk[2], shard[3] // chunk[3])  # inner chunk tiles per shard, y and x
        grid = list(itertools.product(range(block.frame_shape[0] // shard[2]), range(block.frame_shape[1] // shard[3])))
        t = block.t0 // shard[1]
        self.keys = [{pos: chunk_key(array, (block.plane, t, *pos)) for pos in grid} for array in arrays]
        self.index = [{pos: shard_index(shard, chunk) for pos in grid} for _ in arrays]
        self.offset = [dict.fromkeys(grid, 0) for _ in arrays]

    @classmethod
    def of(cls, arrays: list[zarr.Array], block: Block, sink: PartSink) -> _ShardParts | None:
        """For ``arrays`` (one per channel) when their layout is one ``shards.py`` encodes and one
        block is whole shards of one plane with inner chunks tiling its frames, else None."""
        layout = sharded_layout(arrays[0])  # numcodecs codecs compare by their configuration
        if layout is None or any((sharded_layout(a), a.shape, a.dtype) != (layout, arrays[0].shape, arrays[0].dtype)
                                 for a in arrays[1:]):
            return None
        codec, shard, chunk = layout
        array, (ny, nx) = arrays[0], block.frame_shape
        whole = (len(shard) == 4 and shard[0] == chunk[0] == 1 and block.t0 % shard[1] == 0
                 and (len(block.present) == shard[1] or block.t0 + len(block.present) == array.shape[1])
                 and shard[1] % chunk[1] == 0 and shard[2] % chunk[2] == 0 and shard[3] % chunk[3] == 0
                 and ny % shard[2] == 0 and nx % shard[3] == 0 and array.shape[2:] == (ny, nx)
                 and np.dtype(array.dtype) == np.uint16 and array.fill_value == 0)
        return cls(codec, shard, chunk, block, arrays, sink) if whole else None

    def add(self, c: int, k: int, slab: np.ndarray) -> None:
        """Compress the inner chunks of slab ``k`` (frames ``k * chunk_frames``...) of channel ``c``."""
        py, px = self.per_shard
        for yy in range(slab.shape[0]):
            for xx in range(slab.shape[1]):
                blob = self.compress(slab[yy, xx])
                pos, inner = (yy // py, xx // px), (0, k, yy % py, xx % px)
                self.index[c][pos][inner] = (self.offset[c][pos], len(blob))
                self.sink.add(self.keys[c][pos], blob)
                self.offset[c][pos] += len(blob)

    def close(self) -> None:
        """End every shard object with its index (inner chunks never added stay empty)."""
        self.sink.close({key: index_parts(self.index[c][pos]) for c, keys in enumerate(self.keys)
                         for pos, key in keys.items()})


def put_region(array: zarr.Array, start: tuple[int, ...], values: np.ndarray, blobs: dict[str, Any]) -> None:
    """Add the chunk objects of ``values`` at ``start`` of ``array`` to ``blobs``, or write them
    through zarr when its layout is not one :func:`~.shards.region_chunks` encodes (a store from
    an older version being resumed)."""
    chunks = region_chunks(array, start, values)
    if chunks is None:
        array[tuple(slice(s, s + n) for s, n in zip(start, values.shape, strict=True))] = values
    else:
        blobs.update(chunks)
