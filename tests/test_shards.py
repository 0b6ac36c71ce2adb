"""Whole-shard writes (sscxr_conversion.shards) read back through zarr itself, pixel for pixel."""

from __future__ import annotations

import ctypes
import mmap
import os
import sys

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, GzipCodec

from sscxr_conversion import shards
from sscxr_conversion.shards import (BloscInto, PartSink, WriteBehind, array_chunks, codec_chunks, put_many,
                                        region_chunks, shard_writer)


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
    with pytest.raises(ValueError, match="whole shards"):
        write((0, 8, 0, 0), np.zeros((1, 32, 16, 16), np.uint16))
    with pytest.raises(ValueError, match="whole shards"):
        write((0, 0, 0, 0), np.zeros((1, 20, 16, 16), np.uint16))


# --- whole plain arrays (array_chunks): dF/F matrices, master images ----------------------------
def _plain(store, shape, chunks, dtype, fill_value, compressors=None):
    return zarr.create_array(store, shape=shape, dtype=dtype, chunks=chunks, fill_value=fill_value,
                             compressors=compressors or [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
                             zarr_format=3)


@pytest.mark.parametrize(("shape", "chunks"), [((999, 2720), (32, 512)), ((5, 7), (5, 7)), ((3, 2, 9, 10), (1, 2, 4, 10)),
                                               ((1000,), (64,))])
@pytest.mark.parametrize(("dtype", "fill"), [("float64", np.nan), ("int64", -1), ("uint16", 0), ("float32", 0.0)])
def test_whole_arrays_read_back_through_zarr(tmp_path, shape, chunks, dtype, fill):
    rng = np.random.default_rng(1)
    data = (rng.standard_normal(shape) * 1000).astype(dtype)
    if data.dtype.kind == "f":
        data.flat[::17] = np.nan  # NaNs survive, and edge padding does not leak into the data
    arr = _plain(tmp_path / "a.zarr", shape, chunks, dtype, fill)
    blobs = array_chunks(arr, data)
    assert blobs is not None and len(blobs) == np.prod([-(-n // c) for n, c in zip(shape, chunks)])
    put_many(arr.store_path.store, blobs)
    np.testing.assert_array_equal(zarr.open_array(tmp_path / "a.zarr", mode="r")[...], data)


def test_whole_array_encoder_declines_other_layouts(tmp_path):
    assert array_chunks(_plain(tmp_path / "g.zarr", (4, 4), (2, 2), "float64", 0.0, [GzipCodec()]), np.zeros((4, 4))) is None
    sharded = _array(tmp_path / "s.zarr", (2, 32, 16, 16), (1, 16, 16, 16), (1, 8, 8, 8))
    assert array_chunks(sharded, np.zeros(sharded.shape, np.uint16)) is None
    arr = _plain(tmp_path / "a.zarr", (4, 4), (2, 2), "float64", 0.0)
    with pytest.raises(ValueError, match="shape"):
        array_chunks(arr, np.zeros((4, 5)))


@pytest.mark.parametrize(("dtype", "fill", "empty"), [("float64", np.nan, np.nan), ("bool", False, False),
                                                     ("int64", -1, -1)])
def test_whole_arrays_skip_empty_chunks_as_zarr_does(tmp_path, dtype, fill, empty):
    """With ``skip_empty`` the chunk objects are exactly those zarr's ``array[...] =`` writes (the
    converter's fast group encoder and to_zarr must store the same objects)."""
    data = np.full((5, 7), empty, dtype=dtype)
    data[0, 0] = 1
    data[4, 6] = 1  # a padded edge chunk holding data
    arr = _plain(tmp_path / "a.zarr", (5, 7), (2, 3), dtype, fill)
    blobs = array_chunks(arr, data, skip_empty=True)
    assert blobs is not None and sorted(blobs) == ["c/0/0", "c/2/2"]
    assert blobs == _zarr_written(arr, data)
    assert len(array_chunks(arr, data)) == 3 * 3  # by default every chunk (raw blocks overwrite whole regions)


def _zarr_written(array: zarr.Array, data: np.ndarray) -> dict[str, bytes]:
    """The chunk objects zarr itself writes for ``data`` (into a copy of ``array``'s metadata)."""
    twin = zarr.create_array(zarr.storage.MemoryStore(), name="x", shape=array.shape, dtype=array.dtype,
                             chunks=array.chunks, fill_value=array.fill_value, zarr_format=3,
                             serializer=array.serializer, compressors=array.compressors)
    twin[...] = data
    prefix = f"{array.path}/" if array.path else ""
    return {prefix + k[len("x/"):]: v.to_bytes() for k, v in twin.store._store_dict.items() if "/c/" in k}


@pytest.mark.parametrize(("data", "chunks"), [
    (np.array(["touch", "", "", "", "lick", "\u00e9t\u00e9"], dtype=object), (2,)),  # an all-empty chunk, non-ASCII
    (np.array([["a", "bb", "ccc"], ["", "", "d"]], dtype=object), (2, 2)),  # a padded edge chunk
    (np.array(["only"], dtype=object), (1,)),
])
def test_codec_chunks_are_the_objects_zarr_writes(data, chunks, monkeypatch):
    monkeypatch.delenv("SSCXR_NO_FASTPATH", raising=False)  # a fast path (sscxr_conversion._zarr_fastpath)
    arr = zarr.create_array(zarr.storage.MemoryStore(), name="s", shape=data.shape, dtype=str, chunks=chunks,
                            zarr_format=3)
    blobs = codec_chunks(arr, data)
    expected = _zarr_written(arr, data)
    assert blobs is not None and blobs == expected  # same keys (no all-fill chunk), same bytes
    store = arr.store_path.store
    put_many(store, blobs)
    np.testing.assert_array_equal(zarr.open_array(store, path="s", mode="r")[...], data.astype(str))


def test_codec_chunks_skip_fill_chunks_as_zarr_does_and_decline_sharding(tmp_path, monkeypatch):
    monkeypatch.delenv("SSCXR_NO_FASTPATH", raising=False)
    data = np.array([1.0, np.nan, np.nan, np.nan, 2.0])
    arr = _plain(tmp_path / "f.zarr", (5,), (2,), "float64", np.nan)
    blobs = codec_chunks(arr, data)
    assert blobs is not None and sorted(blobs) == ["c/0", "c/2"] and blobs == _zarr_written(arr, data)
    sharded = _array(tmp_path / "s.zarr", (2, 32, 16, 16), (1, 16, 16, 16), (1, 8, 8, 8))
    assert codec_chunks(sharded, np.zeros(sharded.shape, np.uint16)) is None


def _writable_store(where, tmp_path, request, name):
    """A store at a local path, in memory, or on the moto S3 server."""
    from sscxr.io import make_store

    if where == "s3":
        server, bucket = request.getfixturevalue("moto_server"), request.getfixturevalue("moto_bucket")
        url, options = server.url(bucket, f"{name}.zarr"), server.storage_options()
    else:
        url, options = (str(tmp_path / f"{name}.zarr") if where == "local" else f"memory://{name}/x.zarr"), None
    return make_store(url, options, read_only=False)


@pytest.mark.parametrize("where", ["local", "memory", "s3"])
def test_put_many_local_memory_and_s3(tmp_path, where, request):
    """The plain-file fast path for local stores and the concurrent path give the same objects."""
    store = _writable_store(where, tmp_path, request, "put")
    parts = [b"head", b"", bytes(range(200)), b"tail" * 1000]  # a shard's parts: writev'd or joined
    blobs = {"a/zarr.json": b"{}", "a/c/0/1": b"\x00\x01", "b/deep/er/key": bytes(range(256)), "s/c/0": parts}
    put_many(store, blobs)
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    for key, blob in blobs.items():
        got = sync(store.get(key, default_buffer_prototype()))
        assert got is not None and got.to_bytes() == (b"".join(blob) if isinstance(blob, list) else blob)


def test_partial_writev_is_finished(tmp_path, monkeypatch):
    """A short writev (signals, pipes, full disks) resumes mid-part instead of losing bytes."""
    import os

    from sscxr_conversion import shards

    real = os.writev
    monkeypatch.setattr(shards.os, "writev", lambda fd, bufs: real(fd, [bytes(bufs[0])[:3]]))
    parts = [b"abcdefgh", b"ij", bytes(range(50))]
    path = tmp_path / "f"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        shards._write_all(fd, parts)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"".join(parts)


@pytest.mark.parametrize("dtype", ["uint32", "bool"])
def test_region_chunks_read_back_through_zarr(tmp_path, dtype):
    """One block's chunk of a per-frame array (raw.write_block), including the short edge block."""
    arr = _plain(tmp_path / "r.zarr", (3, 300), (1, 128), dtype, 0)
    rng = np.random.default_rng(1)
    values = rng.integers(0, 2**31, (3, 300)).astype(dtype)
    for plane, t0 in [(0, 0), (2, 128), (1, 256)]:  # (1, 256): 44 frames, padded edge chunk
        part = values[plane:plane + 1, t0:t0 + 128]
        put_many(arr.store_path.store, region_chunks(arr, (plane, t0), part))
    back = zarr.open_array(tmp_path / "r.zarr", mode="r")[...]
    for plane, t0 in [(0, 0), (2, 128), (1, 256)]:
        np.testing.assert_array_equal(back[plane, t0:t0 + 128], values[plane, t0:t0 + 128])
    assert not back[1, :256].any(), "chunks not written keep the fill value"


def test_region_chunks_refuse_partial_chunks_and_other_layouts(tmp_path):
    arr = _plain(tmp_path / "r.zarr", (3, 300), (1, 128), "uint32", 0)
    with pytest.raises(ValueError, match="whole chunks"):
        region_chunks(arr, (0, 64), np.zeros((1, 128), np.uint32))
    with pytest.raises(ValueError, match="whole chunks"):
        region_chunks(arr, (0, 0), np.zeros((1, 100), np.uint32))
    other = zarr.create_array(tmp_path / "z.zarr", shape=(3, 300), chunks=(1, 128), dtype="uint32", zarr_format=3)
    assert region_chunks(other, (0, 0), np.zeros((1, 128), np.uint32)) is None  # zarr's default codecs


def test_block_arrays_of_an_older_layout_are_written_through_zarr(tmp_path):
    """A store begun by an earlier version (per-frame arrays with zarr's default codecs) still resumes."""
    from sscxr_conversion.raw import put_region as _put_region

    store = zarr.storage.LocalStore(tmp_path / "o.zarr")
    zarr.create_array(store, name="g/frame_present", shape=(2, 256), chunks=(1, 128), dtype="bool", zarr_format=3)
    blobs: dict = {}
    _put_region(zarr.open_array(store, path="g/frame_present", mode="r+"), (1, 128), np.ones((1, 128), bool), blobs)
    assert blobs == {}
    back = zarr.open_array(store, path="g/frame_present", mode="r")[...]
    assert back[1, 128:].all() and not back[:, :128].any() and not back[0].any()


@pytest.mark.parametrize("where", ["local", "memory", "s3"])
def test_part_sink_writes_objects_part_by_part(tmp_path, where, request):
    """Parts added one by one, then each object's tail: the object is their concatenation (a
    local file as the parts come, other stores whole at close); abort puts nothing new remotely."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    store = _writable_store(where, tmp_path, request, "sink")
    sink = PartSink(store)
    for i in range(3):
        sink.add("g/c/0/0", bytes([i]) * 1000)
        sink.add("g/c/0/1", b"x" * i)
    sink.close({"g/c/0/0": [b"index", b"crc"], "g/c/0/1": [b"end"], "g/c/1/0": [b"only a tail"]})
    want = {"g/c/0/0": b"\x00" * 1000 + b"\x01" * 1000 + b"\x02" * 1000 + b"indexcrc", "g/c/0/1": b"xxxend",
            "g/c/1/0": b"only a tail"}
    for key, blob in want.items():
        got = sync(store.get(key, default_buffer_prototype()))
        assert got is not None and got.to_bytes() == blob
    aborted = PartSink(store)
    aborted.add("g/c/2/0", b"partial")
    aborted.abort()
    got = sync(store.get("g/c/2/0", default_buffer_prototype()))
    assert (got is None) if where != "local" else (got.to_bytes() == b"partial")  # local: unfinished, unmarked
    assert not aborted.fds and not aborted.parts


@pytest.mark.parametrize("shuffle", [numcodecs.Blosc.SHUFFLE, numcodecs.Blosc.BITSHUFFLE, numcodecs.Blosc.NOSHUFFLE,
                                     numcodecs.Blosc.AUTOSHUFFLE])
@pytest.mark.parametrize("cname", ["lz4", "zstd"])
def test_blosc_into_gives_numcodecs_bytes(cname, shuffle, monkeypatch):
    """Compressing into the reused buffer gives exactly what numcodecs.Blosc.encode gives."""
    monkeypatch.delenv("SSCXR_NO_FASTPATH", raising=False)
    codec = numcodecs.Blosc(cname=cname, clevel=1, shuffle=shuffle)
    compress = BloscInto(codec)
    assert compress.fn is not None  # the c-blosc symbol is found with this numcodecs
    rng = np.random.default_rng(0)
    for dtype in ("<u2", "u1", "<f8"):
        chunk = (rng.poisson(300, (16, 32, 32))).astype(dtype)
        got = bytes(compress(chunk))
        assert got == bytes(codec.encode(chunk))
        np.testing.assert_array_equal(np.frombuffer(codec.decode(got), dtype).reshape(chunk.shape), chunk)
    view = compress(np.zeros(1000, "<u2"))
    assert bytes(view) == bytes(codec.encode(np.zeros(1000, "<u2")))  # a smaller chunk after bigger ones


def _resident(path) -> float:
    """Fraction of the file's pages in the page cache: ``mincore`` of a private map of it (which
    touches none of them)."""
    size = os.path.getsize(path)
    pages = -(-size // mmap.PAGESIZE)
    vec = (ctypes.c_ubyte * pages)()
    libc = ctypes.CDLL(None, use_errno=True)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as m:
        start = ctypes.c_char.from_buffer(m)
        try:
            if libc.mincore(ctypes.c_void_p(ctypes.addressof(start)), ctypes.c_size_t(size), vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            del start
    return sum(v & 1 for v in vec) / pages


def _write(path, size=4 << 20) -> None:
    with open(path, "wb") as f:
        f.write(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mincore / posix_fadvise as on Linux")
@pytest.mark.parametrize("background", [True, False])
def test_write_behind_releases_written_files_lag_calls_later(tmp_path, background):
    """A written file stays cached until ``lag`` further blocks were written, then its pages
    (clean by then) leave the page cache; the bytes are untouched. In the background the caller
    may close its file descriptors as soon as :meth:`WriteBehind.written` returns."""
    control = tmp_path / "control"
    _write(control)
    os.sync()
    if _resident(control) < 0.9:
        pytest.skip(f"{tmp_path} does not keep written files in a page cache")
    a, b, c = (str(tmp_path / name) for name in "abc")
    behind = WriteBehind(lag=2, background=background)

    def written(path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            behind.written([path], [fd])
        finally:
            os.close(fd)
        behind.flush()

    _write(a)
    written(a)  # starts writeback: dirty pages are not dropped
    os.sync()   # written back: clean, still cached
    _write(b)
    written(b)
    assert _resident(a) > 0.9  # one call later: not yet due
    _write(c)
    written(c)
    assert _resident(a) == 0  # two calls later: released
    assert _resident(control) > 0.9  # files not handed to it stay
    with open(a, "rb") as f:
        assert f.read() == np.random.default_rng(0).integers(0, 256, 4 << 20, dtype=np.uint8).tobytes()
    os.remove(b)
    behind.written([])  # a file deleted since (a store overwritten) is skipped
    behind.written([])
    behind.flush()


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="WriteBehind does nothing without posix_fadvise")
def test_write_behind_advises_on_its_own_thread_while_the_caller_goes_on(tmp_path, monkeypatch):
    """The caller of :meth:`WriteBehind.written` does not wait for the advice (starting writeback
    can block on the file system's allocation and the block layer's throttling): it is given on
    the write-behind thread, in order, through duplicates of the caller's descriptors, which that
    thread closes; :meth:`flush` waits for all of it. A forked child serves its own calls."""
    import threading

    release = threading.Event()
    seen: list[tuple[str, str, bool]] = []

    def advise(path: str, fd: int | None) -> None:
        release.wait(10)
        seen.append((threading.current_thread().name, os.path.basename(path), fd is not None and _is_open(fd)))

    monkeypatch.setattr(shards, "_advise", advise)
    behind = WriteBehind(lag=1)
    paths = [str(tmp_path / name) for name in "ab"]
    for path in paths:
        _write(path, 4096)
    fds = [os.open(path, os.O_RDONLY) for path in paths]
    opened = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    behind.written(paths[:1], fds[:1])  # returns while the advice is blocked
    behind.written(paths[1:], fds[1:])
    for fd in fds:
        os.close(fd)
    assert seen == []
    release.set()
    behind.flush()
    # each file advised through its (open) duplicate, then "a" again without one: it is lag=1 calls old
    assert seen == [("sscxr-write-behind", "a", True), ("sscxr-write-behind", "b", True),
                    ("sscxr-write-behind", "a", False)]
    if opened is not None:  # the caller's two are closed, and so are their duplicates
        assert len(os.listdir("/proc/self/fd")) == opened - len(fds)
    if hasattr(os, "fork"):
        with behind.lock:  # held, as by its thread, at the moment the process forks
            pid = os.fork()
            if pid == 0:  # the child: its calls are served by a thread of its own
                code = 1
                try:
                    seen.clear()
                    behind.written(paths[:1])
                    behind.flush()
                    code = 0 if seen == [("sscxr-write-behind", "a", False)] else 2
                finally:
                    os._exit(code)
        import signal
        import time

        deadline = time.monotonic() + 20
        while (status := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if status[0] == 0:  # a child waiting for its parent's thread waits for ever
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child's calls did not return: its parent's lock, or no thread to serve them")
        assert os.waitstatus_to_exitcode(status[1]) == 0


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_part_sink_hands_a_local_store_s_closed_files_to_write_behind(tmp_path, monkeypatch):
    """Every object file a local sink finishes goes to the process's write-behind, aborted ones
    do not (they are rewritten when the conversion resumes)."""
    seen: list[list[str]] = []
    monkeypatch.setattr(shards.WRITE_BEHIND, "written", lambda paths, fds=None: seen.append(sorted(paths)))
    store = zarr.storage.LocalStore(tmp_path / "s.zarr")
    sink = PartSink(store)
    sink.add("g/c/0/0", b"part")
    sink.close({"g/c/0/0": [b"end"], "g/c/0/1": [b"tail"]})
    assert seen == [[str(tmp_path / "s.zarr" / "g/c/0/0"), str(tmp_path / "s.zarr" / "g/c/0/1")]]
    aborted = PartSink(store)
    aborted.add("g/c/1/0", b"partial")
    aborted.abort()
    assert len(seen) == 1
