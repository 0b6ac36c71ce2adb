"""``load_mat`` reads MAT v5 files with the fast reader (scipy internals) or ``scipy.io.loadmat``:
the same parsed trees; a scipy whose internals changed gives one FastPathWarning and the public
result, never "truncated or corrupt"; a damaged file is "truncated or corrupt" under both paths."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import scipy.io

from sscxr import _fastpath
from sscxr._fastpath import FastPathWarning
from sscxr.errors import MissingFieldError, SourceFormatError
from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal
from sscxr_conversion import convert, verify
from sscxr_conversion.readers import _scipy_fastpath
from sscxr_conversion.readers._matfile import load_mat, mat_version
from sscxr_conversion.readers._matstream import FAST_READER
from tests.test_matstream import assert_same

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_fastpaths(monkeypatch):
    monkeypatch.delenv(_fastpath.ENV, raising=False)
    _fastpath.reset()
    yield
    _fastpath.reset()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return write_ssc1_session(tmp_path_factory.mktemp("ssc1") / "an197522_2013_03_08", preset="tiny", seed=3)


def _both(path, variable):
    """(fast, public) parsed values of ``variable``, and the fast path's FastPathWarnings."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        fast = load_mat(Path(path), name=Path(path).name, variable=variable)
    with _fastpath.forced_off():
        public = load_mat(Path(path), name=Path(path).name, variable=variable)
    return fast, public, [w for w in seen if issubclass(w.category, FastPathWarning)]


def _count_fast_reads(monkeypatch):
    calls = []
    real = _scipy_fastpath.load_v5
    monkeypatch.setattr(_scipy_fastpath, "load_v5", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    return calls


@pytest.mark.parametrize("kind", ["tiny", "single_plane", "small"])
def test_ssc1_sessions_parse_the_same_on_both_paths(tmp_path, monkeypatch, kind):
    extra = {"single_plane_subvolume": True} if kind == "single_plane" else {}
    truth = write_ssc1_session(tmp_path / "a", preset="small" if kind == "small" else "tiny", seed=7, **extra)
    calls = _count_fast_reads(monkeypatch)
    fast, public, warned = _both(truth.mat_path, "s")
    assert calls == [1] and not warned, "the fast reader ran (once: the public run did not use it)"
    assert_same(fast.value, public.value)


def test_ssc11_files_parse_the_same_on_both_paths(tmp_path, monkeypatch):
    truth = write_ssc11_animal(tmp_path, preset="tiny", seed=2)
    files = sorted(truth.animal_dir.rglob("an*sess_struct.mat"))
    versions = {p: mat_version(p.read_bytes()[:520]) for p in files}
    assert set(versions.values()) == {"5", "7.3"}, versions  # both kinds are covered
    calls = _count_fast_reads(monkeypatch)
    for path in files:
        fast, public, warned = _both(path, "sess")
        assert not warned
        if versions[path] == "5":
            assert_same(fast.value, public.value)
        else:  # v7.3: h5py, lazily, whatever the switch says
            assert fast.fields() == public.fields()
            assert fast["caTSA"].fields() == public["caTSA"].fields()
    assert len(calls) == sum(v == "5" for v in versions.values()), "v7.3 files never reach the fast reader"


def _convert_and_compare(src, tmp_path, monkeypatch, name):
    """Convert ``src`` with whatever the fast reader does now, and with SSCXR_NO_FASTPATH=1."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = convert(src, str(tmp_path / f"{name}.zarr"), progress=False)
    with monkeypatch.context() as m:
        m.setenv(_fastpath.ENV, "1")
        want = convert(src, str(tmp_path / "public.zarr"), progress=False)
    assert verify(src, got.url) == [] and verify(src, want.url) == []
    assert (got.groups, got.content_version) == (want.groups, want.content_version), "identical stores"
    return [w for w in seen if issubclass(w.category, FastPathWarning)]


def test_a_scipy_without_the_private_names_falls_back_once(session, tmp_path, monkeypatch):
    import scipy.io.matlab._mio5_params as params  # what a scipy release may rename

    monkeypatch.delattr(params, "miCOMPRESSED")
    warned = _convert_and_compare(session.mat_path, tmp_path, monkeypatch, "renamed")
    assert len(warned) == 1, [str(w.message) for w in warned]
    message = str(warned[0].message)
    assert "not supported by the fast reader" in message and "miCOMPRESSED" in message
    assert "\n" not in message and "corrupt" not in message
    assert FAST_READER in _fastpath.status()


def test_scipy_internals_failing_mid_read_fall_back_with_the_same_result(session, tmp_path, monkeypatch):
    """A changed signature deep in the parse (a TypeError from scipy's code, as damage also
    gives): the public reader reads the file fine, so it is the fast reader that is reported."""
    def changed(self, *args, **kwargs):
        raise TypeError("read_header() takes exactly 2 positional arguments (1 given)")

    monkeypatch.setattr(_scipy_fastpath._Walker, "child", changed)
    warned = _convert_and_compare(session.mat_path, tmp_path, monkeypatch, "changed")
    assert len(warned) == 1 and "TypeError: read_header()" in str(warned[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # off for the rest of the process: no second warning
        load_mat(session.mat_path, name="x.mat", variable="s")


def test_an_untested_scipy_release_takes_the_public_path(session, monkeypatch):
    monkeypatch.setattr(_scipy_fastpath, "SCIPY_TESTED", ("0.1", "0.2"))
    calls = _count_fast_reads(monkeypatch)
    fast, public, warned = _both(session.mat_path, "s")
    assert calls == [] and len(warned) == 1
    assert f"scipy {scipy.__version__} is outside the versions it is tested with (>=0.1,<0.2)" in str(warned[0].message)
    assert_same(fast.value, public.value)


def _damaged_copies(data: bytes) -> dict[str, bytes]:
    mdtype, count = struct.unpack("<II", data[128:136])
    corrupt = bytearray(data)
    corrupt[400:460] = b"\x00" * 60
    return {
        "half": data[: len(data) // 2],
        "tail": data[: int(len(data) * 0.9)],  # the imaging entries parse, the end is missing
        "checksum": data[:-2],
        "deflate_end": data[:128] + struct.pack("<II", mdtype, count - 1000) + data[136:-1000],
        "corrupt": bytes(corrupt),
        "header_only": data[:140],
    }


@pytest.mark.parametrize("public", [False, True], ids=["fast", "public"])
def test_damaged_files_are_truncated_or_corrupt_on_both_paths(session, tmp_path, monkeypatch, public):
    if public:
        monkeypatch.setenv(_fastpath.ENV, "1")
    for how, data in _damaged_copies(session.mat_path.read_bytes()).items():
        with warnings.catch_warnings():
            warnings.simplefilter("error", FastPathWarning)  # damage is never blamed on scipy
            with pytest.raises(SourceFormatError, match=r"^bad\.mat: .*truncated or corrupt") as caught:
                load_mat(data, name="bad.mat", variable="s")
        assert "download it again" in str(caught.value), how
    assert _fastpath.status() == {}, "a damaged file does not turn the fast reader off"


def test_a_stream_without_its_checksum_reads_as_loadmat_reads_it(session):
    """Sizes that agree, every value there, the zlib checksum cut off: loadmat accepts it, and
    so does the fast reader (one file, one answer, whichever path reads it)."""
    data = session.mat_path.read_bytes()
    mdtype, count = struct.unpack("<II", data[128:136])
    short = data[:128] + struct.pack("<II", mdtype, count - 4) + data[136:-4]
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastPathWarning)
        fast = load_mat(short, name="x.mat", variable="s")
    with _fastpath.forced_off():
        public = load_mat(short, name="x.mat", variable="s")
    assert_same(fast.value, public.value)


@pytest.mark.parametrize("public", [False, True], ids=["fast", "public"])
def test_conversion_of_a_truncated_session_names_the_file(session, tmp_path, monkeypatch, public):
    if public:
        monkeypatch.setenv(_fastpath.ENV, "1")
    bad = tmp_path / session.mat_path.name
    bad.write_bytes(session.mat_path.read_bytes()[:-1000])
    with pytest.raises(SourceFormatError, match=rf"{bad.name}: .*truncated or corrupt"):
        convert(bad, str(tmp_path / "x.zarr"), progress=False)
    assert not (tmp_path / "x.zarr").exists()


@pytest.mark.parametrize("public", [False, True], ids=["fast", "public"])
def test_a_missing_variable_is_named_on_both_paths(session, monkeypatch, public):
    if public:
        monkeypatch.setenv(_fastpath.ENV, "1")
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"other": 1.0, "s2": {"a": 1.0}})
    with pytest.raises(MissingFieldError, match=r"x\.mat, field 's': has no top-level variable 's' \(found \['other', 's2'\]\)"):
        load_mat(buf.getvalue(), name="x.mat", variable="s")


def test_no_fastpath_never_imports_the_fast_reader(session):
    """With SSCXR_NO_FASTPATH=1 the module reaching into scipy's internals is never imported
    (scipy.io itself imports its own ``_mio5*`` modules; what matters is that sscxr never
    touches them)."""
    code = ("import sys\n"
            "from sscxr_conversion.readers._matfile import load_mat\n"
            f"node = load_mat(open({str(session.mat_path)!r}, 'rb'), name='x.mat', variable='s')\n"
            "assert node.has('timeSeriesArrayHash')\n"
            "print('sscxr_conversion.readers._scipy_fastpath' in sys.modules)\n")
    env = {**os.environ, _fastpath.ENV: "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "conversion"), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False"], out.stdout + out.stderr
    env.pop(_fastpath.ENV)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True"], "the check can fail: the fast reader is imported when on"
