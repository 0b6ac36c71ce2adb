"""``load_mat``: MAT v5 through ``scipy.io.loadmat`` (public API only), v7.3 through h5py; a
damaged file is "truncated or corrupt" naming the file, and only a damaged file is."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from scipy.io.matlab import mat_struct

from sscxr.errors import MissingFieldError, SourceFormatError
from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal
from sscxr_conversion.readers._matfile import load_mat, mat_version

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return write_ssc1_session(tmp_path_factory.mktemp("ssc1") / "an197522_2013_03_08", preset="tiny", seed=3)


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


def test_a_session_reads_the_same_from_a_path_bytes_or_a_file(session):
    data = session.mat_path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # a v5 file opened from a path is closed again
        from_path = load_mat(session.mat_path, name="x.mat", variable="s")
    from_bytes = load_mat(data, name="x.mat", variable="s")
    from_file = load_mat(io.BytesIO(data), name="x.mat", variable="s")
    assert from_path.has("timeSeriesArrayHash") and from_path.file == "x.mat" and from_path.path == "s"
    assert_same(from_path.value, from_bytes.value)
    assert_same(from_path.value, from_file.value)


def test_ssc11_v5_and_v73_files_both_read(tmp_path):
    truth = write_ssc11_animal(tmp_path, preset="tiny", seed=2)
    files = sorted(truth.animal_dir.rglob("an*sess_struct.mat"))
    versions = {mat_version(p.read_bytes()[:520]) for p in files}
    assert versions == {"5", "7.3"}, versions  # both kinds are covered
    first = {}
    for path in files:
        node = load_mat(path, name=path.name, variable="sess")
        assert node.has("caTSA"), path
        first.setdefault(mat_version(path.read_bytes()[:520]), node["caTSA"].fields())
    assert first["5"] == first["7.3"], "the two formats give the same fields"


def test_uncompressed_and_multi_variable_files(tmp_path):
    path = tmp_path / "plain.mat"
    s = {"a": np.arange(6.0).reshape(2, 3), "b": "text", "c": np.array([{"x": 1.0}, {"x": 2.0}], dtype=object)}
    scipy.io.savemat(path, {"before": np.ones(3), "s": s, "after": "z"}, do_compression=False)
    node = load_mat(path, name="plain.mat", variable="s")
    assert node["a"].matrix(2, 3).tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert node["b"].text() == "text"
    assert [c["x"].scalar() for c in node["c"]] == [1.0, 2.0]
    assert load_mat(path, name="plain.mat", variable="after").text() == "z"


def _damaged_copies(data: bytes) -> dict[str, bytes]:
    mdtype, count = struct.unpack("<II", data[128:136])  # the one compressed element (little-endian file)
    corrupt = bytearray(data)
    corrupt[400:460] = b"\x00" * 60
    return {
        "half": data[: len(data) // 2],
        "tail": data[: int(len(data) * 0.9)],  # the imaging entries parse, the end is missing
        "checksum": data[:-2],
        "sizes_agree_data_ends": data[:128] + struct.pack("<II", mdtype, count - 1000) + data[136:-1000],
        "corrupt": bytes(corrupt),
        "header_only": data[:140],
    }


@pytest.mark.parametrize("how", ["half", "tail", "checksum", "sizes_agree_data_ends", "corrupt", "header_only"])
def test_damaged_files_are_truncated_or_corrupt_naming_the_file(session, how):
    data = _damaged_copies(session.mat_path.read_bytes())[how]
    with pytest.raises(SourceFormatError, match=r"^bad\.mat: cannot be read as MAT v5 .*truncated or corrupt") as caught:
        load_mat(data, name="bad.mat", variable="s")
    assert "download it again" in str(caught.value)


def test_not_a_mat_file():
    with pytest.raises(SourceFormatError, match=r"^x\.mat: is not a MATLAB MAT file"):
        load_mat(b"<html>404 not found</html>" * 30, name="x.mat", variable="s")


def test_a_missing_variable_is_named():
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"other": 1.0, "s2": {"a": 1.0}})
    with pytest.raises(MissingFieldError, match=r"x\.mat, field 's': has no top-level variable 's' \(found \['other', 's2'\]\)"):
        load_mat(buf.getvalue(), name="x.mat", variable="s")


def test_a_scipy_failure_is_not_blamed_on_the_file(session, monkeypatch):
    """Only a damaged file is "truncated or corrupt": scipy failing for another reason (here a
    missing internal name) is raised as it is, so it is reported as the bug it is."""
    def broken(*args, **kwargs):
        raise AttributeError("module 'scipy.io.matlab._mio5_utils' has no attribute 'VarReader5'")

    monkeypatch.setattr(scipy.io, "loadmat", broken)
    with pytest.raises(AttributeError, match="VarReader5"):
        load_mat(session.mat_path, name="x.mat", variable="s")


def test_the_readers_use_no_scipy_internals():
    """MAT files go through scipy.io's public API only (scipy.io imports its own ``_mio5*``):
    a scipy release that moves its internals cannot break the converter."""
    for module in sorted((ROOT / "conversion/sscxr_conversion/readers").glob("*.py")):
        text = module.read_text()
        assert "scipy.io.matlab._" not in text and "_mio5" not in text, module.name
