"""Bad input gets one clear error naming file and field; interrupted conversions never look
complete and resume; existing stores are never replaced silently."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import zarr

from sscxr.errors import (
    IncompleteStoreError,
    InconsistentSourceError,
    MissingFieldError,
    SourceFormatError,
    StoreExistsError,
)
from sscxr.testing.archives import write_ssc1_session
from sscxr_conversion.testing import CRASH_MID_GROUP, unfinished_version
from sscxr_conversion import convert, verify

NAME = "an197522_2013_03_08_session.mat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_ssc1_session(tmp_path_factory.mktemp("ssc1") / "an197522_2013_03_08", preset="tiny",
                              seed=1, tar="tar.gz")


def _rewrite(src, dest, edit):
    """Load ``s`` keeping MATLAB's nesting (record arrays, object cells), edit it, save it again."""
    s = scipy.io.loadmat(src, squeeze_me=False, struct_as_record=True)["s"][0, 0]
    fields = {name: s[name] for name in s.dtype.names}
    edit(fields)
    scipy.io.savemat(dest, {"s": fields}, do_compression=True)
    return dest


def test_not_a_mat_file(tmp_path):
    bad = tmp_path / NAME
    bad.write_bytes(b"<html>404 not found</html>" * 10)
    with pytest.raises(SourceFormatError, match=rf"{NAME}: is not a MATLAB MAT file"):
        convert(bad, str(tmp_path / "x.zarr"), progress=False)
    assert not (tmp_path / "x.zarr").exists(), "nothing is written for a bad source"


def test_truncated_mat(tiny, tmp_path):
    data = tiny.mat_path.read_bytes()
    bad = tmp_path / NAME
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceFormatError, match=rf"{NAME}: .*truncated or corrupt"):
        convert(bad, str(tmp_path / "x.zarr"), progress=False)


def test_truncated_tarball(tiny, tmp_path):
    data = tiny.tar_path.read_bytes()
    bad = tmp_path / tiny.tar_path.name
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(SourceFormatError, match=rf"{bad.name}.*(truncated|corrupt|tar)"):
        convert(bad, str(tmp_path / "x.zarr"), progress=False)


def test_wrong_archive(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello")
    with pytest.raises(SourceFormatError, match="neither an ssc-1 session"):
        convert(tmp_path / "notes", str(tmp_path / "x.zarr"), progress=False)


def test_wrong_top_variable(tmp_path):
    bad = tmp_path / NAME
    scipy.io.savemat(bad, {"sess": {"a": 1.0}})
    with pytest.raises(MissingFieldError, match=r"no top-level variable 's'"):
        convert(bad, str(tmp_path / "x.zarr"), progress=False)


def test_missing_required_field(tiny, tmp_path):
    bad = _rewrite(tiny.mat_path, tmp_path / NAME, lambda f: f.pop("trialIds"))
    with pytest.raises(MissingFieldError) as info:
        convert(bad, str(tmp_path / "x.zarr"), progress=False)
    assert NAME in str(info.value) and "s.trialIds" in str(info.value)


def test_inconsistent_frame_index_length(tiny, tmp_path):
    def shorten(fields):
        entry = fields["timeSeriesArrayHash"][0, 0]["value"][0, 1][0, 0]
        plane = entry["imagingPlane"][0, 0][0, 0]
        plane["sourceFileFrameIdx"] = plane["sourceFileFrameIdx"][:, :-1]
        entry["imagingPlane"][0, 0][0, 0] = plane

    bad = _rewrite(tiny.mat_path, tmp_path / NAME, shorten)
    with pytest.raises(InconsistentSourceError, match=r"sourceFileFrameIdx.*entries but time has"):
        convert(bad, str(tmp_path / "x.zarr"), progress=False)


def test_existing_store_needs_overwrite(tiny, tmp_path):
    store = str(tmp_path / "x.zarr")
    convert(tiny.mat_path, store, progress=False)
    with pytest.raises(StoreExistsError, match="--overwrite"):
        convert(tiny.mat_path, store, progress=False)
    convert(tiny.mat_path, store, progress=False, overwrite=True)
    assert verify(tiny.mat_path, store) == []


CRASH = CRASH_MID_GROUP  # the shared crash script (sscxr_conversion.testing)



@pytest.mark.parametrize("crash_at", [2, 5])
def test_killed_conversion_is_incomplete_then_resumes(tiny, tmp_path, crash_at):
    store = str(tmp_path / "x.zarr")
    proc = subprocess.run([sys.executable, "-c", CRASH, str(tiny.mat_path), store, str(crash_at)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert not os.path.lexists(store), "nothing is published before the conversion completes"
    root = zarr.open_group(unfinished_version(store), mode="r", use_consolidated=False)
    assert root.attrs["sscxr_status"] == "incomplete"
    import sscxr

    with pytest.raises(IncompleteStoreError, match="--resume"):
        sscxr.open_session(store)
    with pytest.raises(StoreExistsError, match="--resume"):
        convert(tiny.mat_path, store, progress=False)
    result = convert(tiny.mat_path, store, progress=False, resume=True)
    assert result.skipped, "groups finished before the crash are not rewritten"
    assert verify(tiny.mat_path, store) == []
    assert sscxr.open_session(store).attrs["sscxr_status"] == "complete"


def test_resume_refuses_other_source(tiny, tmp_path):
    store = str(tmp_path / "x.zarr")
    proc = subprocess.run([sys.executable, "-c", CRASH, str(tiny.mat_path), store, "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9
    other = write_ssc1_session(tmp_path / "other", preset="tiny", seed=7)
    with pytest.raises(StoreExistsError, match="other sources"):
        convert(other.mat_path, store, progress=False, resume=True)


def test_cli_reports_bad_input_clearly(tmp_path):
    bad = tmp_path / NAME
    bad.write_bytes(os.urandom(300))
    proc = subprocess.run([sys.executable, "-m", "sscxr.cli", "convert", str(bad), str(tmp_path / "x.zarr")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("sscxr convert: error:") and NAME in proc.stderr
    assert "Traceback" not in proc.stderr


def test_touch_type_two_odd_count_is_an_error(tiny, tmp_path):
    def odd(fields):
        esa = fields["eventSeriesArrayHash"][0, 0]
        keys = [str(np.asarray(k).ravel()[0]) for k in esa["keyNames"][0, 0].ravel()]
        pole = esa["value"][0, keys.index("poleInReach")][0, 0]
        pole["eventTimes"] = pole["eventTimes"][:, :-1]
        pole["eventTrials"] = pole["eventTrials"][:, :-1]

    bad = _rewrite(tiny.mat_path, tmp_path / NAME, odd)
    with pytest.raises(InconsistentSourceError, match=r"odd number of times"):
        convert(bad, str(tmp_path / "x.zarr"), progress=False)


# --- a source damaged, or a conversion killed, while the session file is being read ----------------
def test_a_session_damaged_near_its_end_leaves_no_store(tiny, tmp_path):
    """The imaging entries parse, the end is missing: "truncated or corrupt" naming the file,
    and no store."""
    data = tiny.mat_path.read_bytes()
    bad = tmp_path / NAME
    bad.write_bytes(data[: int(len(data) * 0.9)])
    with pytest.raises(SourceFormatError, match=rf"{NAME}: cannot be read as MAT v5 .*truncated or corrupt"):
        convert(bad, str(tmp_path / "x.zarr"), progress=False)
    assert not (tmp_path / "x.zarr").exists(), "a store this conversion created is removed again"


def test_existing_store_is_refused_before_reading(tiny, tmp_path, monkeypatch):
    from sscxr_conversion import pipeline

    store = str(tmp_path / "x.zarr")
    convert(tiny.mat_path, store, progress=False)
    monkeypatch.setattr(pipeline, "read_session", lambda *a: pytest.fail("the source was read"))
    with pytest.raises(StoreExistsError, match="--overwrite"):
        convert(tiny.mat_path, store, progress=False)


def test_resume_after_dying_while_reading_starts_anew(tiny, tmp_path):
    """Killed before the source was read whole: an unfinished version without provenance;
    --resume converts all."""
    from sscxr_conversion import write
    from sscxr_conversion.publish import Publication

    url = str(tmp_path / "x.zarr")
    with Publication(url, overwrite=False, resume=False) as pub:  # dies before publishing
        zarr.open_group(write.open_store(pub.version_url, None, mode="w"), mode="w")
    assert write.store_state(write.open_store(unfinished_version(url), None)) == "incomplete"
    with pytest.raises(StoreExistsError, match="--resume"):
        convert(tiny.mat_path, url, progress=False)
    result = convert(tiny.mat_path, url, progress=False, resume=True)
    assert result.skipped == []
    assert verify(tiny.mat_path, url) == []


@pytest.mark.parametrize("how", ["killed", "marked"])
def test_verify_of_an_unfinished_store_says_so(tiny, tmp_path, capsys, how):
    """``sscxr verify`` of a store whose conversion did not finish: one line saying so and
    naming --resume, status 2; it used to say "every value matches" (groups written early match)
    or fail with a KeyError."""
    from sscxr import cli
    from sscxr_conversion.testing import run_killed_conversion

    store = str(tmp_path / "x.zarr")
    if how == "killed":
        assert run_killed_conversion(tiny.mat_path, store, 2).returncode == -9
    else:  # every group written, only the final step missing
        convert(tiny.mat_path, store, progress=False)
        zarr.open_group(store, mode="r+", use_consolidated=False).attrs["sscxr_status"] = "incomplete"
    with pytest.raises(IncompleteStoreError, match="--resume"):
        verify(tiny.mat_path, store)
    assert cli.main(["verify", str(tiny.mat_path), store]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "every value matches" not in captured.err
    (line,) = captured.err.splitlines()
    assert line.startswith(f"sscxr verify: error: {store}: ") and line.endswith(f"{store} --resume`")
    assert "did not finish" in line


@pytest.mark.parametrize("workers", [0, -2, 1.5])
def test_convert_refuses_a_worker_count_below_one(tiny, tmp_path, workers):
    with pytest.raises(ValueError, match="at least 1"):
        convert(tiny.mat_path, str(tmp_path / "x.zarr"), workers=workers, progress=False)
    assert not os.path.lexists(tmp_path / "x.zarr") and not os.path.lexists(tmp_path / "x.zarr-versions")


def test_a_failed_read_clears_its_progress_bar_before_the_error_line(tmp_path):
    """With bars on (``--progress``), a source that fails to read leaves its error line last and
    alone: the reading bar is cleared first, not drawn again after it at exit."""
    bad = tmp_path / NAME
    bad.write_bytes(os.urandom(300))
    proc = subprocess.run([sys.executable, "-m", "sscxr", "convert", str(bad), str(tmp_path / "x.zarr"), "--progress"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    visible = [line for line in proc.stderr.splitlines() if line.strip()]  # \r-separated bar redraws count as lines
    assert visible[-1].startswith("sscxr convert: error:") and NAME in visible[-1], proc.stderr
    assert "reading" in proc.stderr, "the bar was shown while reading"
