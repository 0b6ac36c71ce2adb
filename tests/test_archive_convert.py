"""Whole-archive conversion (issue 27): many units under SRC -> DEST/<unit>.zarr, report, catalog."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sscxr
from sscxr.errors import SourceFormatError, StoreExistsError
from sscxr.testing.archives import write_ssc1_session, write_ssc11_animal
from sscxr_conversion import ConversionSpec, convert_archive, find_units, verify
from sscxr_conversion.testing import run_killed_conversion

DAMAGED = "an229719_2013_12_02"
GOOD = ["an197522_2013_03_08", "an229717_2013_12_01", "an250220", "an274424"]


def _download(root: Path, damaged: bool = True) -> Path:
    """A download-shaped folder: a session folder, a session .tar.gz, two ssc-11 animals under
    ssc-11/, and (``damaged``) a truncated loose session file."""
    arc = root / "crcns_upload_for_manuscript"
    scratch = root / "scratch"
    write_ssc1_session(arc / "an197522_2013_03_08", preset="tiny", seed=1)
    t = write_ssc1_session(scratch / "an229717_2013_12_01", animal="an229717", date="2013_12_01", preset="tiny",
                           seed=2, tar="tar.gz")
    shutil.move(t.tar_path, arc / t.tar_path.name)
    write_ssc11_animal(arc / "ssc-11", animal="an274424", preset="tiny", seed=3)
    write_ssc11_animal(arc / "ssc-11", animal="an250220", preset="tiny", seed=4)
    if damaged:
        d = write_ssc1_session(scratch / "dmg", animal="an229719", date="2013_12_02", preset="tiny", seed=5)
        data = d.mat_path.read_bytes()
        (arc / d.mat_path.name).write_bytes(data[: len(data) // 2])
    shutil.rmtree(scratch)
    return arc


@pytest.fixture(scope="module")
def download(tmp_path_factory) -> Path:
    return _download(tmp_path_factory.mktemp("download"))


@pytest.fixture
def archive(download, tmp_path) -> Path:
    return Path(shutil.copytree(download, tmp_path / "crcns_upload_for_manuscript"))


def _cli(*args: str, timeout: float = 300, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sscxr", *args], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def _listing(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and symlink under root with its size and mtime (symlinks: lstat)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_symlink() or p.is_file():
            out[p.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


# --------------------------------------------------------------------------------------------
# finding units
# --------------------------------------------------------------------------------------------


def test_units_are_found_at_any_depth_and_named(archive):
    units, ignored = find_units(archive)
    assert [(u.name, u.archive, u.kind) for u in units] == [
        ("an197522_2013_03_08", "ssc-1", "folder"), ("an229717_2013_12_01", "ssc-1", "tarball"),
        (DAMAGED, "ssc-1", "file"), ("an250220", "ssc-11", "folder"), ("an274424", "ssc-11", "folder")]
    assert ignored == []
    (archive / "readme.tar").write_bytes(b"")
    assert "readme.tar" in find_units(archive)[1][0]


def test_two_sources_of_one_unit_are_refused_naming_both(archive, tmp_path):
    twin = archive / "ssc-11" / "an197522_2013_03_08_session.tar.gz"
    shutil.copy(archive / "an229717_2013_12_01_session.tar.gz", twin)
    proc = _cli("convert", str(archive), str(tmp_path / "out"))
    assert proc.returncode == 2 and not (tmp_path / "out").exists()
    line = proc.stderr.strip()
    assert len(line.splitlines()) == 1 and "an197522_2013_03_08 is claimed by 2 sources" in line
    assert str(twin) in line and str(archive / "an197522_2013_03_08") in line


def test_bad_input_is_one_clear_line(archive, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _cli("convert", str(empty), str(tmp_path / "o1"))
    assert proc.returncode == 2 and "is neither an ssc-1 session" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    dest = tmp_path / "x.zarr"  # several units into one store
    proc = _cli("convert", str(archive), str(dest), "--only", "an2*")
    assert proc.returncode == 2 and "names a store" in proc.stderr and not dest.exists()
    store = tmp_path / "plain"
    store.mkdir()
    (store / "zarr.json").write_text("{}")
    with pytest.raises(StoreExistsError, match="is a zarr store, not a folder of stores"):
        convert_archive(archive, str(store), only="an27*")
    proc = _cli("convert", str(archive / "an197522_2013_03_08"), str(tmp_path / "one.zarr"), "--dry-run")
    assert proc.returncode == 2 and "--dry-run applies to a SRC holding several units" in proc.stderr
    with pytest.raises(SourceFormatError, match="no unit matching --only nope"):
        convert_archive(archive, str(tmp_path / "o2"), only="nope")


# --------------------------------------------------------------------------------------------
# the done test: one command, verified stores, report, catalog; rerun rewrites nothing
# --------------------------------------------------------------------------------------------


def test_download_converts_in_one_command_and_rerun_rewrites_nothing(archive, tmp_path):
    dest = tmp_path / "stores"
    proc = _cli("convert", str(archive), str(dest), "--workers", "2")
    assert proc.returncode == 1, proc.stderr  # one unit failed
    assert f"{DAMAGED} failed: SourceFormatError" in proc.stderr and "download it again" in proc.stderr
    for name in GOOD:
        assert f"converted {name}" in proc.stdout
    report = json.loads((dest / "conversion-report.json").read_text())
    units = {u["unit"]: u for u in report["units"]}
    assert {u: units[u]["status"] for u in units} == {**dict.fromkeys(GOOD, "converted"), DAMAGED: "failed"}
    for name in GOOD:
        u = units[name]
        assert u["bytes_read"] > 0 and u["bytes_written"] > 0 and u["seconds"] > 0 and u["source"]
        assert verify(u["source"], str(dest / f"{name}.zarr")) == []
    assert "truncated" in units[DAMAGED]["error"] and units[DAMAGED]["source"].endswith("_session.mat")
    # no complete store for the failed unit: nothing published, nothing opens
    assert not os.path.lexists(dest / f"{DAMAGED}.zarr")
    with pytest.raises(sscxr.errors.SscxrError):
        sscxr.open_session(str(dest / f"{DAMAGED}.zarr"))
    cat = sscxr.open_catalog(str(dest / "catalog.yaml"))
    assert sorted(cat) == sorted(GOOD)
    assert cat["an274424"].read().attrs["archive"] == "ssc-11"
    assert cat["an229717_2013_12_01"].read().attrs["archive"] == "ssc-1"

    (archive / f"{DAMAGED}_session.mat").unlink()
    before = _listing(dest)
    time.sleep(0.05)
    again = _cli("convert", str(archive), str(dest), "--workers", "2")
    assert again.returncode == 0, again.stderr
    after = _listing(dest)
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == {"conversion-report.json"}, changed  # stores and catalog untouched
    assert set(after) == set(before)
    assert all(u["status"] == "skipped" for u in json.loads((dest / "conversion-report.json").read_text())["units"]
               if u["unit"] in GOOD)

    (dest / "catalog.yaml").unlink()  # a rerun that converts nothing still writes a missing catalog
    assert convert_archive(archive, str(dest), progress=False, verbose=False).exit_code == 0
    assert sorted(sscxr.open_catalog(str(dest / "catalog.yaml"))) == sorted(GOOD)
    moved = Path(shutil.move(str(dest), str(tmp_path / "moved")))  # the folder can be moved
    assert sscxr.open_catalog(str(moved / "catalog.yaml"))["an250220"].read().attrs["archive"] == "ssc-11"


def test_dry_run_lists_units_and_writes_nothing(archive, tmp_path):
    dest = tmp_path / "stores"
    proc = _cli("convert", str(archive), str(dest), "--dry-run", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert not dest.exists()
    for name in [*GOOD, DAMAGED]:
        assert f"new {name}" in proc.stdout
    assert str(archive / "an229717_2013_12_01_session.tar.gz") in proc.stdout
    assert "would read" in proc.stdout and "MB/s of source per worker core" in proc.stdout
    convert_archive(archive, str(dest), only=["an274*", "an1975*"], progress=False, verbose=False)
    before = _listing(dest)
    report = convert_archive(archive, str(dest), dry_run=True)
    assert _listing(dest) == before
    assert report["an274424"].status == "up to date" and report["an250220"].status == "new"
    assert report.estimate["bytes_read"] == sum(report[n].source_bytes for n in ("an250220", "an229717_2013_12_01",
                                                                                   DAMAGED))


# --------------------------------------------------------------------------------------------
# rerun = resume; changed sources; --only; --check-hashes
# --------------------------------------------------------------------------------------------


def test_rerun_resumes_an_interrupted_unit_and_skips_finished_ones(archive, tmp_path):
    dest = tmp_path / "stores"
    first = convert_archive(archive, str(dest), only="an274424", progress=False, verbose=False)
    assert first["an274424"].status == "converted"
    proc = run_killed_conversion(archive / "an197522_2013_03_08", str(dest / "an197522_2013_03_08.zarr"), 2)
    assert proc.returncode == -9, proc.stderr
    report = convert_archive(archive, str(dest), only=["an274424", "an1975*"], progress=False, verbose=False)
    assert report["an197522_2013_03_08"].status == "resumed"
    assert report["an274424"].status == "skipped" and report["an274424"].bytes_read == 0
    assert verify(archive / "an197522_2013_03_08", str(dest / "an197522_2013_03_08.zarr")) == []


def test_changed_source_is_reconverted_only_with_overwrite(archive, tmp_path):
    dest = tmp_path / "stores"
    only = ["an1975*", "an229717*"]
    convert_archive(archive, str(dest), only=only, progress=False, verbose=False)
    folder = archive / "an197522_2013_03_08"
    mat = folder / "an197522_2013_03_08_session.mat"
    os.utime(mat, ns=(mat.stat().st_atime_ns, mat.stat().st_mtime_ns + 10**9))  # touched, same bytes
    touched = convert_archive(archive, str(dest), only=only, progress=False, verbose=False)
    assert touched["an197522_2013_03_08"].status == "skipped"
    assert "sha256 as recorded" in touched["an197522_2013_03_08"].reason
    assert touched["an197522_2013_03_08"].bytes_read == mat.stat().st_size  # hashed to tell
    assert "name, size, mtime" in touched["an229717_2013_12_01"].reason  # not hashed
    hashed = convert_archive(archive, str(dest), only=only, check_hashes=True, dry_run=True)
    assert hashed["an229717_2013_12_01"].bytes_read > 0

    write_ssc1_session(folder, preset="tiny", seed=99)  # new content
    listing = _listing(dest)
    stale = convert_archive(archive, str(dest), only=only, progress=False, verbose=False)
    assert stale["an197522_2013_03_08"].status == "skipped" and stale.exit_code == 0
    assert "changed source" in stale["an197522_2013_03_08"].reason and "--overwrite" in stale.summary()
    assert {k for k, v in _listing(dest).items() if listing.get(k) != v} == {"conversion-report.json"}
    redone = convert_archive(archive, str(dest), only=only, overwrite=True, progress=False, verbose=False)
    assert redone["an197522_2013_03_08"].status == "converted"
    assert redone["an229717_2013_12_01"].status == "skipped"
    assert verify(folder, str(dest / "an197522_2013_03_08.zarr")) == []
    other = convert_archive(archive, str(dest), only=only, spec=ConversionSpec(clevel=3), dry_run=True)
    assert other["an229717_2013_12_01"].status == "changed" and "clevel=5->3" in other["an229717_2013_12_01"].reason


# --------------------------------------------------------------------------------------------
# S3 and catalogs
# --------------------------------------------------------------------------------------------


def test_whole_archive_to_s3(moto_server, moto_bucket, tmp_path):
    arc = _download(tmp_path, damaged=False)
    shutil.rmtree(arc / "ssc-11" / "an250220")
    root = moto_server.url(moto_bucket, "stores")
    options = moto_server.storage_options()
    client = moto_server.client()

    def keys() -> dict[str, str]:
        found = client.list_objects_v2(Bucket=moto_bucket).get("Contents", [])
        return {o["Key"]: o["ETag"] + str(o["LastModified"]) for o in found}

    dry = convert_archive(arc, root, storage_options=options, dry_run=True)
    assert [u.status for u in dry.units] == ["new"] * 3 and keys() == {}
    report = convert_archive(arc, root, storage_options=options, workers=2, progress=False, verbose=False)
    assert report.exit_code == 0 and [u.status for u in report.units] == ["converted"] * 3
    objects = keys()
    assert "stores/catalog.yaml" in objects and "stores/conversion-report.json" in objects
    text = client.get_object(Bucket=moto_bucket, Key="stores/catalog.yaml")["Body"].read().decode()
    text += client.get_object(Bucket=moto_bucket, Key="stores/conversion-report.json")["Body"].read().decode()
    assert options["secret"] not in text and options["key"] not in text
    cat = sscxr.open_catalog(f"{root}/catalog.yaml", storage_options=options)
    assert cat["an274424"].read(storage_options=options).attrs["archive"] == "ssc-11"
    assert verify(arc / "an197522_2013_03_08", f"{root}/an197522_2013_03_08.zarr", storage_options=options) == []
    again = convert_archive(arc, root, storage_options=options, workers=2, progress=False, verbose=False)
    assert [u.status for u in again.units] == ["skipped"] * 3
    assert {k for k, v in keys().items() if objects.get(k) != v} == {"stores/conversion-report.json"}


def test_s3_errors_are_one_clear_line(moto_server, archive):
    options = moto_server.storage_options()  # credentials from the environment, as docs/remote.md advises
    proc = _cli("convert", str(archive), "s3://no-such-bucket-sscxr/stores", "--storage-options",
                json.dumps({"endpoint_url": options["endpoint_url"]}),
                env={"AWS_ACCESS_KEY_ID": options["key"], "AWS_SECRET_ACCESS_KEY": options["secret"]})
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-bucket-sscxr" in lines[0] and "Traceback" not in proc.stderr
    assert moto_server.storage_options()["secret"] not in proc.stderr


def test_catalog_build_into_its_root_opens_from_there(archive, tmp_path):
    dest = tmp_path / "stores"
    convert_archive(archive, str(dest), only="an27*", progress=False, verbose=False, catalog=False)
    assert not (dest / "catalog.yaml").exists()
    proc = _cli("catalog", "build", str(dest), "--out", str(dest / "catalog.yaml"))
    assert proc.returncode == 0, proc.stderr
    cat = sscxr.open_catalog(str(dest / "catalog.yaml"))
    assert list(cat) == ["an274424"]
    assert cat["an274424"].read().attrs["archive"] == "ssc-11"
    assert "store_root: ." in (dest / "catalog.yaml").read_text()


def test_one_unit_as_src_keeps_the_single_store_behaviour(archive, tmp_path):
    proc = _cli("convert", str(archive / "ssc-11" / "an274424"), str(tmp_path / "an274424.zarr"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert sscxr.open_animal(str(tmp_path / "an274424.zarr")).attrs["archive"] == "ssc-11"
    assert not (tmp_path / "conversion-report.json").exists()
