"""The fast MAT v5 reader (``_scipy_fastpath``) gives exactly what scipy.io.loadmat gives, and
its inflating stream reads any sizes and reports a file that ends early."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import scipy.io
from scipy.io.matlab import mat_struct

from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal
from sscxr_conversion.readers._matfile import mat_version
from sscxr_conversion.readers._matstream import InflatingStream, TruncatedError
from sscxr_conversion.readers._scipy_fastpath import VariableMissing, load_v5


def assert_same(a, b, path="s"):
    """Recursive equality of loadmat values: mat_struct, object arrays, numeric arrays, str."""
    assert type(a) is type(b), f"{path}: {type(a)} vs {type(b)}"
    if isinstance(a, mat_struct):
        assert list(a._fieldnames) == list(b._fieldnames), path
        for f in a._fieldnames:
            assert_same(getattr(a, f), getattr(b, f), f"{path}.{f}")
    elif isinstance(a, np.ndarray):
        assert a.shape == b.shape and a.dtype == b.dtype, f"{path}: {a.shape} {a.dtype} vs {b.shape} {b.dtype}"
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.ravel(), b.ravel(), strict=True)):
                assert_same(x, y, f"{path}[{i}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b or (a != a and b != b), path


def _loadmat(path, variable):
    return scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False, chars_as_strings=True)[variable]


@pytest.mark.parametrize("kind", ["tiny", "single_plane", "small"])
def test_ssc1_sessions_same_as_loadmat(tmp_path, kind):
    extra = {"single_plane_subvolume": True} if kind == "single_plane" else {}
    truth = write_ssc1_session(tmp_path / "a", preset="small" if kind == "small" else "tiny", seed=5, **extra)
    with open(truth.mat_path, "rb") as f:
        value = load_v5(f, variable="s")
    assert_same(value, _loadmat(truth.mat_path, "s"))


def test_ssc11_v5_files_same_as_loadmat(tmp_path):
    truth = write_ssc11_animal(tmp_path, preset="tiny", seed=2)
    files = [p for p in sorted(truth.animal_dir.rglob("an*sess_struct.mat")) if mat_version(p.read_bytes()[:520]) == "5"]
    assert files
    for path in files:
        with open(path, "rb") as f:
            assert_same(load_v5(f, variable="sess"), _loadmat(path, "sess"))


def test_uncompressed_and_multi_variable_files(tmp_path):
    path = tmp_path / "plain.mat"
    s = {"a": np.arange(6.0).reshape(2, 3), "b": "text", "c": np.array([{"x": 1.0}, {"x": 2.0}], dtype=object)}
    scipy.io.savemat(path, {"before": np.ones(3), "s": s, "after": "z"}, do_compression=False)
    with open(path, "rb") as f:
        assert_same(load_v5(f, variable="s"), _loadmat(path, "s"))
    with open(path, "rb") as f:
        assert_same(load_v5(f, variable="after"), _loadmat(path, "after"))
    with open(path, "rb") as f, pytest.raises(VariableMissing):
        load_v5(f, variable="nope")


def test_truncated_and_corrupt_files_raise(tmp_path):
    truth = write_ssc1_session(tmp_path / "a", preset="tiny", seed=1)
    data = truth.mat_path.read_bytes()
    with pytest.raises(TruncatedError, match="bytes short of a"):
        load_v5(io.BytesIO(data[: len(data) // 2]), variable="s")
    with pytest.raises(TruncatedError, match="2 bytes short"):
        load_v5(io.BytesIO(data[:-2]), variable="s")  # all values there, the checksum cut off
    mdtype, count = struct.unpack("<II", data[128:136])  # the one compressed element (a little-endian file)
    short = data[:128] + struct.pack("<II", mdtype, count - 1000) + data[136:-1000]  # sizes agree, data ends
    with pytest.raises((OSError, TruncatedError)):  # scipy's "could not read bytes", or ours (buffered)
        load_v5(io.BytesIO(short), variable="s")
    corrupt = bytearray(data)
    corrupt[400:460] = b"\x00" * 60  # inside the compressed element
    with pytest.raises(zlib.error):
        load_v5(io.BytesIO(bytes(corrupt)), variable="s")


def test_inflating_stream_reads_any_sizes_and_seeks_forward():
    raw = np.random.default_rng(0).integers(0, 255, 5_000_000, dtype=np.uint8).tobytes()
    packed = zlib.compress(raw, 1)
    stream = InflatingStream(io.BytesIO(packed), len(packed))
    got = [stream.read(8), stream.read(3_000_000)]
    assert stream.tell() == 3_000_008
    stream.seek(5, 1)
    got.append(stream.read())
    stream.close()
    assert b"".join(got) == raw[:3_000_008] + raw[3_000_013:]
    early = InflatingStream(io.BytesIO(packed), len(packed))
    assert early.read(10) == raw[:10]
    early.close()  # stopping early does not hang on the producer


@pytest.mark.parametrize("buffered", [0, 200, 5000])
def test_large_containers_rebuilt_child_by_child_same_as_loadmat(tmp_path, monkeypatch, buffered):
    """Containers above BUFFERED bytes are rebuilt by the walker (not scipy): same value."""
    from sscxr_conversion.readers import _scipy_fastpath

    monkeypatch.setattr(_scipy_fastpath, "BUFFERED", buffered)
    truth = write_ssc1_session(tmp_path / "a", preset="tiny", seed=4, single_plane_subvolume=True)
    with open(truth.mat_path, "rb") as f:
        value = load_v5(f, variable="s")
    assert_same(value, _loadmat(truth.mat_path, "s"))
