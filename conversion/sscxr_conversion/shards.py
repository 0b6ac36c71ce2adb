"""Whole-shard and whole-array writes, encoded in one pass (no per-chunk event-loop work).

zarr-python writes a shard by scheduling every inner chunk through its asyncio codec pipeline:
~1 ms of Python per inner chunk, which is most of the cost of converting raw TIFF stacks
(``docs/benchmarks-raw.md``). When a task writes *whole* shards, the encoding is fully known:
each inner chunk is Blosc-compressed bytes, the shard is their concatenation followed by the
index (``offset, nbytes`` as little-endian uint64 per inner chunk, C order) and the index's
crc32c, exactly as the zarr v3 ``sharding_indexed`` codec specifies with its default index codecs
(``bytes`` + ``crc32c``, index at the end). :func:`sharded_layout` checks that an array's metadata
is that layout and returns ``None`` otherwise, so callers fall back to zarr's own path; the tests
read what is written back through zarr and compare every pixel.

The raw block tasks build their shards chunk by chunk (``raw._ShardParts``: each inner chunk
compressed by :class:`BloscInto` as its frames are read and appended by :class:`PartSink`, then
:func:`shard_index` / :func:`index_parts` at the end). :func:`shard_writer` writes whole shards
from an array in memory with the same index helpers; the converter no longer calls it (its tests
still hold the encoding to zarr's).

:func:`array_chunks` does the same for a plain (unsharded) ``bytes`` + ``blosc`` array written
whole in one go, such as a subvolume's dF/F matrix: each chunk is the Blosc-compressed C-order
bytes of the chunk, padded with the fill value at the array's edges.

Compression is numcodecs' Blosc (the library zarr's ``BloscCodec`` itself calls), which releases
the GIL, so two tasks encode on two cores. Everything here uses public APIs, except what
:mod:`._zarr_fastpath` does behind its switch (:func:`codec_chunks`, and :class:`BloscInto`'s
direct call into c-blosc), each with a public fallback.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import queue
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import crc32c
import numcodecs
import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.buffer import default_buffer_prototype
from zarr.codecs.sharding import ShardingCodecIndexLocation
from zarr.storage import LocalStore

from sscxr._zarr_compat import sync

from . import _zarr_fastpath
from ._zarr_fastpath import codec_chunks

__all__ = ["BloscInto", "PartSink", "WriteBehind", "WRITE_BEHIND", "array_chunks", "chunk_key", "codec_chunks",
           "encode_shard", "index_parts", "put_many", "region_chunks", "regular_chunks", "shard_index",
           "shard_parts", "shard_writer", "sharded_layout"]

EMPTY = np.iinfo(np.uint64).max  # the index entry of an inner chunk that is not stored

_SHUFFLE = {"noshuffle": numcodecs.Blosc.NOSHUFFLE, "shuffle": numcodecs.Blosc.SHUFFLE,
            "bitshuffle": numcodecs.Blosc.BITSHUFFLE}


def shard_writer(array: zarr.Array) -> Callable[[tuple[int, ...], np.ndarray], None] | None:
    """``write(start, data)`` writing whole shards of ``array``, or None if its layout is not one
    this module encodes (then use ``array[...] = data``).

    ``start`` is the element index where ``data`` begins; it must be shard-aligned and ``data``
    must cover whole shards except where it ends at the array's edge.

    >>> write = shard_writer(group["green"])            # doctest: +SKIP
    >>> write((0, 128, 0, 0), block)                     # doctest: +SKIP
    """
    layout = sharded_layout(array)
    if layout is None:
        return None
    codec, shard_shape, chunk_shape = layout
    dtype = array.dtype.newbyteorder("<")
    store = array.store_path.store

    def write(start: tuple[int, ...], data: np.ndarray) -> None:
        _check_whole(start, data.shape, shard_shape, array.shape, "shards")
        blobs = {}
        for corner in itertools.product(*(range(0, n, s) for n, s in zip(data.shape, shard_shape, strict=True))):
            part = data[tuple(slice(c, c + s) for c, s in zip(corner, shard_shape, strict=True))]
            key = chunk_key(array, tuple((s + c) // n for s, c, n in zip(start, corner, shard_shape, strict=True)))
            blobs[key] = shard_parts(part.astype(dtype, copy=False), shard_shape, chunk_shape, codec, array.fill_value)
        put_many(store, blobs)  # parts: one writev per local shard file, joined only for remote stores

    return write


def sharded_layout(array: zarr.Array) -> tuple[Any, tuple[int, ...], tuple[int, ...]] | None:
    """``(numcodecs Blosc, shard shape, inner chunk shape)`` of an array whose layout this module
    encodes (one ``sharding_indexed`` codec: ``bytes`` little-endian + ``blosc`` inside, the
    default ``bytes`` + ``crc32c`` index at the end), else None."""
    meta = array.metadata
    codecs: list[Any] = list(getattr(meta, "codecs", ()))
    if len(codecs) != 1 or not isinstance(codecs[0], ShardingCodec):
        return None
    sharding = codecs[0]
    inner: list[Any] = list(sharding.codecs)
    index: list[Any] = list(sharding.index_codecs)
    if not (len(inner) == 2 and isinstance(inner[0], BytesCodec) and isinstance(inner[1], BloscCodec)
            and len(index) == 2 and isinstance(index[0], BytesCodec) and isinstance(index[1], Crc32cCodec)
            and sharding.index_location == ShardingCodecIndexLocation.end
            and _little(inner[0]) and _little(index[0]) and array.dtype.itemsize == inner[1].typesize):
        return None
    shard_shape = regular_chunks(array)
    if shard_shape is None:
        return None
    return _numcodecs_blosc(inner[1]), shard_shape, tuple(sharding.chunk_shape)


def shard_index(shard_shape: tuple[int, ...], chunk_shape: tuple[int, ...]) -> np.ndarray:
    """An empty shard index: ``(offset, nbytes)`` per inner chunk, every entry :data:`EMPTY`."""
    grid = tuple(-(-s // c) for s, c in zip(shard_shape, chunk_shape, strict=True))
    return np.full((*grid, 2), EMPTY, dtype="<u8")


def index_parts(index: np.ndarray) -> list[bytes]:
    """The tail of a shard: its index and the index's crc32c (``bytes`` + ``crc32c`` codecs)."""
    raw_index = index.astype("<u8", copy=False).tobytes()
    return [raw_index, np.uint32(crc32c.crc32c(raw_index)).astype("<u4").tobytes()]


def array_chunks(array: zarr.Array, data: np.ndarray, *, skip_empty: bool = False) -> dict[str, bytes] | None:
    """Every chunk object of ``array`` holding ``data`` (``{store key: bytes}``), or None if its
    layout is not ``bytes`` (little-endian) + ``blosc`` on a regular chunk grid.

    With ``skip_empty``, chunks wholly of the fill value are left out unless the array's
    ``write_empty_chunks`` is set, as zarr's ``array[...] = data`` does.

    >>> blobs = array_chunks(group["dff"], dff)        # doctest: +SKIP
    """
    if data.shape != array.shape:
        raise ValueError(f"data of shape {data.shape} for an array of shape {array.shape}")
    return region_chunks(array, (0,) * data.ndim, data, skip_empty=skip_empty)


def region_chunks(array: zarr.Array, start: tuple[int, ...], data: np.ndarray, *,
                  skip_empty: bool = False) -> dict[str, bytes] | None:
    """The chunk objects of ``array`` for ``data`` written at ``start`` (``{store key: bytes}``),
    or None for a layout this module does not encode (then use ``array[...] = data``).

    ``start`` must be chunk-aligned and ``data`` must cover whole chunks except at the array's
    edge (edge chunks are padded with the fill value, as zarr does). ``skip_empty``: as for
    :func:`array_chunks`.

    >>> blobs = region_chunks(group["frame_present"], (2, 128), present[None])  # doctest: +SKIP
    """
    layout = _plain_layout(array)
    if layout is None:
        return None
    codec, chunk_shape = layout
    _check_whole(start, data.shape, chunk_shape, array.shape, "chunks")
    data = data.astype(array.dtype.newbyteorder("<"), copy=False)
    skip_empty = skip_empty and not array.async_array.config.write_empty_chunks
    blobs = {}
    for pos, chunk in _chunks_of(data, chunk_shape):
        if skip_empty and _all_fill(chunk, array.fill_value):
            continue
        key = chunk_key(array, tuple(s // c + p for s, c, p in zip(start, chunk_shape, pos, strict=True)))
        blobs[key] = bytes(codec.encode(_padded(chunk, chunk_shape, array.fill_value)))
    return blobs


def _chunks_of(data: np.ndarray, chunk_shape: tuple[int, ...]) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
    """``(grid position, view)`` of every chunk of ``data`` in C order; edge chunks are short."""
    for pos in itertools.product(*(range(-(-n // c)) for n, c in zip(data.shape, chunk_shape, strict=True))):
        yield pos, data[tuple(slice(p * c, (p + 1) * c) for p, c in zip(pos, chunk_shape, strict=True))]


def _all_fill(chunk: np.ndarray, fill_value: Any) -> bool:
    if chunk.dtype.kind in "fc" and np.isnan(fill_value):
        return bool(np.isnan(chunk).all())
    return bool((chunk == fill_value).all())


def _check_whole(start: tuple[int, ...], shape: tuple[int, ...], grid: tuple[int, ...],
                 array_shape: tuple[int, ...], what: str) -> None:
    """Raise unless the region ``shape`` at ``start`` is whole ``what`` (chunks or shards) of
    ``grid``: aligned at its start, ending on a boundary or at the array's edge."""
    stop = [s + n for s, n in zip(start, shape, strict=True)]
    if (any(s % g for s, g in zip(start, grid, strict=True))
            or any(e % g and e != n for e, g, n in zip(stop, grid, array_shape, strict=True))
            or any(e > n for e, n in zip(stop, array_shape, strict=True))):
        raise ValueError(f"data of shape {tuple(shape)} at {tuple(start)} does not cover whole {what} {tuple(grid)} "
                         f"of an array of shape {tuple(array_shape)}")


def chunk_key(array: zarr.Array, position: tuple[int, ...]) -> str:
    """Store key of ``array``'s chunk (or shard) at grid ``position``."""
    key = array.metadata.encode_chunk_key(position)
    return f"{array.store_path.path}/{key}" if array.store_path.path else key


def _plain_layout(array: zarr.Array) -> tuple[Any, tuple[int, ...]] | None:
    """(numcodecs Blosc, chunk shape) of a ``bytes`` + ``blosc`` regular-grid array, else None."""
    meta = array.metadata
    codecs: list[Any] = list(getattr(meta, "codecs", ()))
    if not (len(codecs) == 2 and isinstance(codecs[0], BytesCodec) and isinstance(codecs[1], BloscCodec)
            and _little(codecs[0]) and array.dtype.itemsize == codecs[1].typesize):
        return None
    chunk_shape = regular_chunks(array)
    return None if chunk_shape is None else (_numcodecs_blosc(codecs[1]), chunk_shape)


def regular_chunks(array: zarr.Array) -> tuple[int, ...] | None:
    """The shape of ``array``'s chunks (its shards, when sharded) on a regular chunk grid, else None
    (read from the grid's metadata document, as the zarr v3 spec names it).

    >>> regular_chunks(zarr.create_array(zarr.storage.MemoryStore(), shape=(10,), chunks=(4,), dtype="u1"))
    (4,)
    """
    grid = getattr(array.metadata, "chunk_grid", None)
    doc = grid.to_dict() if grid is not None and hasattr(grid, "to_dict") else {}
    if doc.get("name") != "regular":
        return None
    return tuple(int(n) for n in doc["configuration"]["chunk_shape"])


def _numcodecs_blosc(blosc: BloscCodec) -> Any:
    return numcodecs.Blosc(cname=blosc.cname.value, clevel=blosc.clevel,
                           shuffle=_SHUFFLE[blosc.shuffle.value if blosc.shuffle else "noshuffle"],
                           blocksize=blosc.blocksize)


def _padded(chunk: np.ndarray, chunk_shape: tuple[int, ...], fill_value: Any) -> np.ndarray:
    """``chunk`` as a contiguous array of ``chunk_shape``, padded with ``fill_value`` (edge chunks)."""
    if chunk.shape != chunk_shape:
        padded = np.full(chunk_shape, fill_value, dtype=chunk.dtype)
        padded[tuple(slice(0, n) for n in chunk.shape)] = chunk
        return padded
    return np.ascontiguousarray(chunk)


def encode_shard(data: np.ndarray, shard_shape: tuple[int, ...], chunk_shape: tuple[int, ...], codec: Any,
                 fill_value: Any) -> bytes:
    """The bytes of one shard holding ``data`` (the shard's in-bounds part, starting at its corner).

    Inner chunks that overlap ``data`` are stored (edge ones padded with ``fill_value``, as zarr
    does); inner chunks wholly outside it are left empty in the index.

    >>> codec = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)
    >>> blob = encode_shard(np.arange(6, dtype="<u2").reshape(1, 6), (1, 12), (1, 4), codec, 0)
    >>> index = np.frombuffer(blob[-52:-4], "<u8").reshape(3, 2)  # (offset, nbytes) of 3 inner chunks
    >>> bool(index[2, 0] == EMPTY), int(index[1, 0]) == int(index[0, 1])  # third empty; second follows first
    (True, True)
    """
    return b"".join(shard_parts(data, shard_shape, chunk_shape, codec, fill_value))


def shard_parts(data: np.ndarray, shard_shape: tuple[int, ...], chunk_shape: tuple[int, ...], codec: Any,
                fill_value: Any) -> list[bytes]:
    """:func:`encode_shard` as its parts (inner chunks, index, index crc32c), not joined: a local
    shard file is written from them with one ``writev`` (joining ~300 MB of shards into fresh
    memory was 19% of a raw block task)."""
    index = shard_index(shard_shape, chunk_shape)
    parts: list[bytes] = []
    offset = 0
    for pos, chunk in _chunks_of(data, chunk_shape):
        blob = bytes(codec.encode(_padded(chunk, chunk_shape, fill_value)))
        index[pos] = (offset, len(blob))
        parts.append(blob)
        offset += len(blob)
    return parts + index_parts(index)


def _write_all(fd: int, blob: Any) -> None:
    """Write ``blob`` (bytes, a view, a Buffer, or a list of bytes parts, gathered by ``writev``) to ``fd``."""
    if not isinstance(blob, list):
        data = memoryview(blob if isinstance(blob, bytes | memoryview) else blob.as_numpy_array())
        while data:
            data = data[os.write(fd, data):]
        return
    parts = [memoryview(p) for p in blob if len(p)]
    while parts:
        done = os.writev(fd, parts[:1024])  # IOV_MAX
        while done and parts:  # drop what was written, keep the rest of a part written in part
            if done >= len(parts[0]):
                done -= len(parts.pop(0))
            else:
                parts[0], done = parts[0][done:], 0


def _create(root: str, key: str, made: set[str]) -> int:
    """A new (truncated) file for object ``key`` of a local store at ``root``; its folder is made
    unless it is in ``made`` (then added)."""
    target = os.path.join(root, key)
    parent = os.path.dirname(target)
    if parent not in made:
        os.makedirs(parent, exist_ok=True)
        made.add(parent)
    return os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)


class WriteBehind:
    """Streamed output leaves the page cache once it is on disk, so a conversion's memory stays flat.

    A conversion writes each shard file once and does not read it again (``sscxr verify`` later
    reads it like any reader would). Left to the kernel, the written pages stay cached, and a
    100 GB conversion grows the page cache by 100 GB, evicting what else the machine has
    cached; every one of those pages is also memory taken fresh from the free list, which on a
    virtual machine whose idle memory the host has reclaimed costs a fault to the host per page:
    here, writing 640 MB of new files took 1.7-2.2 s, against 0.25-0.34 s when each file's
    pages were released soon after being written (``docs/raw.md``).

    :meth:`written` is called with a closed block's files: ``POSIX_FADV_DONTNEED`` on each
    starts its writeback at once (it drops only clean pages, so nothing is dropped yet), and the
    files of the blocks ``lag`` closes earlier, written back by then, are advised again, which
    drops their pages: the next files are written into memory just freed. A page still dirty
    is simply kept. Nothing changes in what is written; where ``os.posix_fadvise`` does not
    exist (macOS, Windows) this does nothing.

    With ``background`` (the default), that advice is given by a thread of its own, so the
    caller goes on at once: starting writeback is where the file system allocates the files'
    blocks (reading its block bitmaps from disk) and where the block layer throttles writers,
    and a block task used to wait there ~0.15 s per 2.2 GB field of view (``docs/raw.md``). The
    caller's file descriptors are duplicated for that thread; at most ``backlog`` blocks wait
    for it, beyond which :meth:`written` waits. :meth:`flush` waits until all advice is given.
    The thread lives as long as the process (one per instance; conversions share
    :data:`WRITE_BEHIND`); a forked child starts its own, with a new lock.

    >>> behind = WriteBehind(lag=2)
    >>> behind.written(["/tmp/store.zarr/raw/c/0/0/0/0"])  # doctest: +SKIP
    >>> behind.flush()
    """

    def __init__(self, lag: int = 4, *, background: bool = True, backlog: int = 64):
        self.lag, self.background, self.backlog = lag, background, backlog
        self.pending: deque[list[str]] = deque()
        self.lock = threading.Lock()
        self._queue: queue.Queue[tuple[list[str], list[int] | None]] | None = None  # served by a thread
        _INSTANCES.add(self)

    def _after_fork(self) -> None:
        """In a forked child: a new lock (the parent's may have been held by its thread, which the
        child does not have) and no queue, so the child's first call starts a thread of its own."""
        self.lock = threading.Lock()
        self._queue = None
        self.pending.clear()  # the parent's files: not the child's to release

    def written(self, paths: list[str], fds: list[int] | None = None) -> None:
        """Start writeback of ``paths`` (through ``fds`` when they are still open) and release the
        pages of the files written ``lag`` calls ago."""
        if not hasattr(os, "posix_fadvise"):
            return
        if not self.background:
            self._advise(paths, fds)
            return
        owned = [os.dup(fd) for fd in fds] if fds is not None else None  # the caller closes its own
        self._served().put((paths, owned))

    def flush(self) -> None:
        """Wait until the advice for every file handed to :meth:`written` so far has been given."""
        if self._queue is not None:
            self._queue.join()

    def _served(self) -> queue.Queue[tuple[list[str], list[int] | None]]:
        with self.lock:
            if self._queue is None:
                self._queue = queue.Queue(self.backlog)
                threading.Thread(target=self._serve, args=(self._queue,), name="sscxr-write-behind",
                                 daemon=True).start()
            return self._queue

    def _serve(self, jobs: queue.Queue[tuple[list[str], list[int] | None]]) -> None:
        while True:
            paths, fds = jobs.get()
            try:
                self._advise(paths, fds)
            except Exception:  # advice only: nothing written depends on it, and the thread must go on
                pass
            finally:
                for fd in fds or ():
                    try:
                        os.close(fd)
                    except OSError:
                        pass
                jobs.task_done()

    def _advise(self, paths: list[str], fds: list[int] | None) -> None:
        for k, path in enumerate(paths):
            _advise(path, None if fds is None else fds[k])
        with self.lock:
            self.pending.append(paths)
            due = [self.pending.popleft() for _ in range(len(self.pending) - self.lag)]
        for old in due:
            for path in old:
                _advise(path, None)


_INSTANCES: weakref.WeakSet[WriteBehind] = weakref.WeakSet()


def _reset_after_fork() -> None:
    for behind in list(_INSTANCES):
        behind._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _advise(path: str, fd: int | None) -> None:
    """``POSIX_FADV_DONTNEED`` on the whole file (opened here when no ``fd`` is given); a file
    gone since (a store overwritten or deleted) is skipped."""
    try:
        if fd is not None:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            return
        own = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(own, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(own)
    except OSError:
        pass


WRITE_BEHIND = WriteBehind()  # one per process: the block tasks of all its threads


class PartSink:
    """Objects written part by part: a local store's files as each part comes (so a part's memory
    is reused at once: holding a block's ~40 MB of compressed parts until the end made every
    block page-fault its buffers in afresh), any other store's objects whole at :meth:`close`.
    A local store's finished files go to :data:`WRITE_BEHIND` (:class:`WriteBehind`).

    >>> sink = PartSink(store)                 # doctest: +SKIP
    >>> sink.add("green/c/0/0/0/0", blob)      # doctest: +SKIP
    >>> sink.close({"green/c/0/0/0/0": tail})  # doctest: +SKIP
    """

    def __init__(self, store: Any):
        self.store = store
        self.root = os.fspath(store.root) if isinstance(store, LocalStore) and not store.read_only else None
        self.fds: dict[str, int] = {}
        self.parts: dict[str, list[bytes]] = {}
        self.made: set[str] = set()  # folders known to exist

    def add(self, key: str, part: bytes | memoryview) -> None:
        """Append ``part`` to object ``key`` (a view is copied or written before this returns)."""
        if self.root is None:
            self.parts.setdefault(key, []).append(bytes(part))
            return
        fd = self.fds.get(key)
        if fd is None:
            fd = self.fds[key] = _create(self.root, key, self.made)
        _write_all(fd, part)

    def close(self, tails: Mapping[str, list[bytes]]) -> None:
        """Write each object's last parts (``{key: parts}``) and finish every object."""
        try:
            if self.root is None:
                put_many(self.store, {key: self.parts.pop(key, []) + list(tail) for key, tail in tails.items()})
                return
            for key, tail in tails.items():
                if key not in self.fds:
                    self.add(key, b"")
                _write_all(self.fds[key], list(tail))
            keys = list(self.fds)  # finished: their pages can leave the page cache once on disk
            WRITE_BEHIND.written([os.path.join(self.root, key) for key in keys], [self.fds[key] for key in keys])
        finally:
            self.abort()

    def abort(self) -> None:
        """Close what is open (an unfinished object stays unfinished: its block is not marked written)."""
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
        self.parts.clear()


class BloscInto:
    """``codec``'s Blosc compression into a reused buffer: ``compress(chunk)`` returns a view of
    the compressed bytes, valid until the next call (copy it to keep it).

    It calls ``blosc_compress_ctx`` of the c-blosc that numcodecs ships, the very function
    ``numcodecs.Blosc.encode`` calls off the main thread, so the bytes are the same; but no new
    ~0.5 MB bytes object per inner chunk. Dask workers trim freed memory at once
    (``MALLOC_TRIM_THRESHOLD_=65536``), so each of those was a fresh mmap, page-faulted in: 16x
    the page faults of a block task on local threads. Falls back to ``codec.encode`` when that
    symbol cannot be found (a numcodecs that no longer ships c-blosc 1), when the numcodecs
    version is not one this is tested with, and with ``SSCXR_NO_FASTPATH=1``
    (:mod:`._zarr_fastpath`, fast path ``blosc into``).
    """

    def __init__(self, codec: Any):
        self.codec = codec
        self.fn = _zarr_fastpath.blosc_compress_ctx()
        self.out = np.empty(0, np.uint8)

    def __call__(self, chunk: np.ndarray) -> bytes | memoryview:
        if self.fn is None or not chunk.flags.c_contiguous:
            return bytes(self.codec.encode(chunk))
        size = chunk.nbytes + numcodecs.blosc.MAX_OVERHEAD
        if self.out.nbytes < size:
            self.out = np.empty(size, np.uint8)
        shuffle = self.codec.shuffle
        if shuffle == numcodecs.blosc.AUTOSHUFFLE:  # as numcodecs resolves it
            shuffle = numcodecs.blosc.BITSHUFFLE if chunk.itemsize == 1 else numcodecs.blosc.SHUFFLE
        n = self.fn(self.codec.clevel, shuffle, chunk.itemsize, chunk.nbytes, chunk.ctypes.data, self.out.ctypes.data,
                    size, self.codec.cname.encode(), self.codec.blocksize, 1)
        if n <= 0:
            raise RuntimeError(f"blosc_compress_ctx failed ({n}) on a chunk of {chunk.nbytes} bytes")
        return memoryview(self.out.data)[:n]


def _little(codec: BytesCodec) -> bool:
    endian = codec.endian
    return endian is None or getattr(endian, "value", endian) == "little"


def put_many(store: Any, blobs: Mapping[str, Any]) -> None:
    """Write every object (``bytes``, a zarr ``Buffer``, or a list of ``bytes`` parts to
    concatenate) of ``blobs`` under its key in ``store``.

    Remote stores get all requests at once (concurrent PUTs on S3). A local directory store is
    written by plain file writes in this thread: zarr's ``LocalStore.set`` hands each object to a
    thread of its own, ~0.3 ms apiece, against ~0.05 ms for the write itself (2,400 chunks of a
    session: 0.9 s vs 0.12 s). Metadata documents (``zarr.json``) go to a temporary file renamed
    into place, as ``LocalStore.set`` does: a conversion killed while writing one leaves it whole
    or absent, never empty (``--resume`` parses every group's document).
    """
    if isinstance(store, LocalStore) and not store.read_only:
        root = os.fspath(store.root)
        made: set[str] = set()
        for key, blob in blobs.items():
            document = key == "zarr.json" or key.endswith("/zarr.json")
            temp = f"{key}.tmp-{os.getpid()}-{threading.get_ident()}" if document else key
            fd = _create(root, temp, made)
            try:
                _write_all(fd, blob)
            finally:
                os.close(fd)
            if document:  # whole or absent, as zarr's LocalStore.set writes it: --resume parses it
                os.replace(os.path.join(root, temp), os.path.join(root, key))
        return
    proto = default_buffer_prototype()

    def buffer(blob: Any) -> Any:
        if isinstance(blob, list):
            blob = b"".join(blob)
        return proto.buffer.from_bytes(blob) if isinstance(blob, bytes) else blob

    async def put_all() -> None:
        await asyncio.gather(*(store.set(key, buffer(blob)) for key, blob in blobs.items()))

    sync(put_all())
