"""The ``sscxr`` command as a user runs it: convert, verify, info, catalog, demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sscxr.testing.archives import write_ssc1_session


def sscxr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "sscxr.cli", *args], capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"sscxr {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    return write_ssc1_session(tmp_path_factory.mktemp("a") / "an197522_2013_03_08", preset="tiny", seed=2)


def test_convert_verify_info(session, tmp_path):
    store = tmp_path / "an197522_2013_03_08.zarr"
    out = sscxr("convert", str(session.mat_path), str(store))
    assert out.stderr == "", "no progress bars when stderr is not a terminal (a log file, a pipe)"
    assert "<ConversionResult ssc-1" in out.stdout
    forced = sscxr("convert", str(session.mat_path), str(store), "--overwrite", "--progress")
    assert "reading" in forced.stderr and "writing" in forced.stderr and "100%" in forced.stderr
    quiet = sscxr("convert", str(session.mat_path), str(store), "--overwrite", "--quiet")
    assert quiet.stdout == "" and "writing" not in quiet.stderr
    assert "every value matches" in sscxr("verify", str(session.mat_path), str(store)).stdout
    info = sscxr("info", str(store)).stdout
    assert "[ssc-1, complete, version" in info and session.mat_path.name in info
    assert "imaging/" in info or "imaging" in info and "dff" in info


def test_convert_with_dask_workers(session, tmp_path):
    store = tmp_path / "w.zarr"
    sscxr("convert", str(session.mat_path), str(store), "--workers", "2", "--quiet")
    sscxr("verify", str(session.mat_path), str(store))


def test_existing_store_and_bad_options(session, tmp_path):
    store = tmp_path / "x.zarr"
    sscxr("convert", str(session.mat_path), str(store), "--quiet")
    again = sscxr("convert", str(session.mat_path), str(store), check=False)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    bad = sscxr("convert", str(session.mat_path), str(tmp_path / "y.zarr"), "--storage-options", "{nope", check=False)
    assert bad.returncode == 2 and "not valid JSON" in bad.stderr
    mismatch = sscxr("verify", str(write_ssc1_session(tmp_path / "o", preset="tiny", seed=9).mat_path), str(store),
                     check=False)
    assert mismatch.returncode == 1 and "mismatch" in mismatch.stderr


def test_catalog_build_and_list(session, tmp_path):
    root = tmp_path / "stores"
    sscxr("convert", str(session.mat_path), str(root / "an197522_2013_03_08.zarr"), "--quiet")
    out = tmp_path / "cat.yaml"
    sscxr("catalog", "build", str(root), "--out", str(out))
    text = out.read_text()
    assert "an197522_2013_03_08" in text and "content_version" in text
    listed = sscxr("catalog", "list", "--archive", "ssc-11", "--ablation", "touch").stdout.split()
    assert "an274424" in listed and not any(n.startswith("an197522_") for n in listed)


def test_demo_write_archive(tmp_path):
    out = sscxr("demo", "--write-archive", str(tmp_path), "--preset", "tiny").stdout
    assert "an197522_2013_03_08_session.mat" in out
    assert (tmp_path / "an197522_2013_03_08" / "an197522_2013_03_08_session.mat").is_file()


def test_convert_to_s3_leaks_no_secret(session, moto_server, moto_bucket):
    opts = moto_server.storage_options()
    url = moto_server.url(moto_bucket, "x.zarr")
    out = sscxr("convert", str(session.mat_path), url, "--storage-options", json.dumps(opts))
    secret = opts["secret"]
    assert secret not in out.stdout + out.stderr
    info = sscxr("info", url, "--storage-options", json.dumps(opts)).stdout
    assert secret not in info and "complete" in info
    assert "every value matches" in sscxr("verify", str(session.mat_path), url, "--storage-options",
                                          json.dumps(opts)).stdout


def test_info_and_verify_of_a_missing_or_foreign_store_say_so(session, tmp_path):
    import zarr

    missing = str(tmp_path / "nowhere.zarr")
    for args in (("info", missing), ("verify", str(session.mat_path), missing)):
        proc = sscxr(*args, check=False)
        assert proc.returncode == 2, proc.stderr
        assert f"sscxr {args[0]}: error: no zarr store at {missing}" in proc.stderr
        assert "Traceback" not in proc.stderr
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(foreign, mode="w")
    proc = sscxr("verify", str(session.mat_path), str(foreign), check=False)
    assert proc.returncode == 2, proc.stderr
    assert "root attrs: no provenance.spec: this is not a store sscxr convert wrote" in proc.stderr


@pytest.mark.parametrize(("argv", "status", "stream", "expect"), [
    (["catalog", "list"], 0, "stdout", "an197522_2013_03_08"),
    (["info", "/nonexistent/x.zarr"], 2, "stderr", "sscxr info: error: no zarr store at /nonexistent/x.zarr"),
])
def test_a_command_that_used_obstore_exits_through_its_exit_handlers(argv, status, stream, expect):
    """Once obstore is loaded, ``run`` ends the process without the interpreter's finalization,
    where a callback from obstore's runtime threads can abort it (``sscxr.cli.run``). The exit
    handlers still run, all output arrives, and the status is the command's."""
    pytest.importorskip("obstore")
    code = ("import atexit; atexit.register(print, 'exit handlers ran'); "  # the first registered runs last:
            "import sys, obstore; from sscxr import cli; "  # nothing flushes its line but run() itself
            f"sys.argv = ['sscxr', *{argv!r}]; cli.run()")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # a pipe buffers, as a user's does
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == status, proc.stderr
    assert expect in getattr(proc, stream)
    assert proc.stdout.rstrip().endswith("exit handlers ran")


# --------------------------------------------------------------------------------------------
# refused before any reading; secrets on the command line; SIGTERM
# --------------------------------------------------------------------------------------------


def _unwritable_dir(tmp_path):
    """A folder this process cannot create files in (root ignores modes: /sys refuses root)."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir(mode=0o555)
        return folder
    if not os.path.isdir("/sys") or os.access("/sys", os.W_OK) and _can_create("/sys"):
        pytest.skip("no folder this root process cannot write to")
    return "/sys"


def _can_create(folder):
    import tempfile

    try:
        fd, path = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(path)
    return True


@pytest.mark.parametrize("case", ["workers=0", "workers=-2", "no-src", "dest-is-file", "dest-under-a-file",
                                  "dest-unwritable"])
def test_convert_refuses_bad_arguments_in_one_line_before_reading(session, tmp_path, capsys, monkeypatch, case):
    """Each is one ``error:`` line naming the problem, status 2, and nothing is read or written
    (``--workers -2`` used to hang, ``0`` was taken, a file as DEST was a traceback)."""
    from sscxr import cli
    from sscxr_conversion import pipeline

    monkeypatch.setattr(pipeline, "read_plan", lambda *a, **k: pytest.fail("the source was read"))
    src, dest = str(session.mat_path), str(tmp_path / "x.zarr")
    extra: list[str] = []
    if case.startswith("workers"):
        extra, expect = ["--workers", case.split("=")[1]], f"--workers must be 1 or more (got {case.split('=')[1]})"
    elif case == "no-src":
        src = str(tmp_path / "absent" / session.mat_path.name)
        expect = f"{src}: does not exist"
    elif case == "dest-is-file":
        (tmp_path / "x.zarr").write_text("not a store")
        expect = f"DEST {dest} is a file, not a store"
    elif case == "dest-under-a-file":
        (tmp_path / "plain").write_text("")
        dest = str(tmp_path / "plain" / "x.zarr")
        expect = f"{tmp_path / 'plain'} is a file, not a folder"
    else:
        folder = _unwritable_dir(tmp_path)
        dest = f"{folder}/x.zarr"
        expect = f"DEST {dest} cannot be written: {folder} is not writable"
    assert cli.main(["convert", src, dest, "--quiet", *extra]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"sscxr convert: error: {err.split('error: ', 1)[1].strip()}"], err
    assert expect in err
    assert case == "dest-is-file" or not os.path.exists(dest)


def test_secret_in_storage_options_warns_naming_the_environment_way(capsys):
    from sscxr import cli

    options = json.dumps({"key": "AKIDEXAMPLE", "secret": "wJalrXUtnFEMI-example", "endpoint_url": "http://x"})
    cli.main(["info", "memory://nowhere/x.zarr", "--storage-options", options])
    warning = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warning) == 1 and "wJalrXUtnFEMI" not in warning[0] and "AKIDEXAMPLE" not in warning[0]
    for needed in ("credentials (key, secret)", "ps", "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", "AWS_PROFILE",
                   "~/.aws/credentials"):
        assert needed in warning[0]
    cli.main(["info", "memory://nowhere/x.zarr", "--storage-options", '{"anon": true, "endpoint_url": "http://x"}'])
    assert "warning" not in capsys.readouterr().err


def test_sigterm_stops_a_conversion_like_ctrl_c_then_resume_finishes(tmp_path):
    """SIGTERM (``kill``, batch schedulers) during the writing of a larger session on a
    LocalCluster: the one "interrupted" line, status 143, no traceback; ``--resume`` finishes it
    and the store verifies."""
    import signal
    import time

    from sscxr import cli

    small = write_ssc1_session(tmp_path / "an197522_2013_03_08", preset="small", seed=4)
    store = str(tmp_path / "an197522_2013_03_08.zarr")
    argv = ["convert", str(small.mat_path), store, "--raw", "--workers", "2", "--progress"]
    proc = subprocess.Popen([sys.executable, "-c", "from sscxr.cli import run; run()", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen, deadline = b"", time.monotonic() + 120
    while b"writing" not in seen and time.monotonic() < deadline and proc.poll() is None:
        seen += os.read(proc.stderr.fileno(), 256)  # tqdm's bar appears once the groups are being written
    assert b"writing" in seen, seen.decode(errors="replace")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    text = (seen + err).decode(errors="replace")
    assert proc.returncode == 143, text
    assert "sscxr convert: interrupted; rerun with --resume to finish" in text and "Traceback" not in text
    assert b"ConversionResult" not in out
    assert cli.main([*argv[:3], "--raw", "--resume", "--quiet"]) == 0
    assert cli.main(["verify", str(small.mat_path), store]) == 0


@pytest.mark.parametrize("no_fastpath", ["", "1"])
def test_info_versions_names_each_fast_path_and_its_state(no_fastpath):
    """``sscxr info --versions`` (what a bug report needs): package versions, and every fast path
    with the state this environment gives it."""
    env = {**os.environ, "SSCXR_NO_FASTPATH": no_fastpath}
    out = subprocess.run([sys.executable, "-m", "sscxr", "info", "--versions"], env=env, capture_output=True,
                         text=True, check=True).stdout
    import zarr

    assert f"zarr               {zarr.__version__}" in out
    states = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith("fast path"))
    assert {"fast path 'group encoder'", "fast path 'zarr event loop'", "fast path 'xarray lazy indexing'"} <= set(states)
    if no_fastpath:
        assert set(states.values()) == {"off (SSCXR_NO_FASTPATH=1)"}
    else:
        assert states["fast path 'zarr event loop'"] == "on"
