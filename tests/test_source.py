"""Reading sources as streams (sscxr_conversion.source): tarballs in every tar format, any size."""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
from pathlib import Path

import pytest

from sscxr.errors import SourceFormatError
from sscxr_conversion.source import iter_members

LONG = "an197522_2013_03_08/imaging_data/" + "fov_01002/" * 12 + "Image_Registration_4_an197522_main_001.tif"
FILES = {  # sizes around the 512-byte tar block, and a name longer than ustar's 100 characters
    "a/empty.mat": b"",
    "a/block.bin": bytes(range(256)) * 2,
    "a/odd.bin": b"x" * 513,
    LONG: bytes(range(251)) * 4001,
    "a/skipped.txt": b"not wanted" * 100,
}


def _tarball(path: Path, fmt: int, gz: bool) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w", format=fmt) as tar:
        folder = tarfile.TarInfo("a")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)  # a directory record: skipped
        for name, data in FILES.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_tarball_members_arrive_whole_in_archive_order(tmp_path: Path, fmt: int, gz: bool) -> None:
    path = _tarball(tmp_path / ("t.tar.gz" if gz else "t.tar"), fmt, gz)
    records: list = []
    got = [(m.name, m.data) for m in iter_members(path, lambda n: not n.endswith(".txt"), records)]
    assert got == [(name, data) for name, data in FILES.items() if not name.endswith(".txt")]
    assert records[0].size == path.stat().st_size
    assert records[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("cut", [0.3, 0.7, 0.97])
def test_a_tarball_cut_short_is_a_clear_error(tmp_path: Path, cut: float) -> None:
    whole = _tarball(tmp_path / "t.tar.gz", tarfile.PAX_FORMAT, True).read_bytes()
    short = tmp_path / "short.tar.gz"
    short.write_bytes(whole[: int(len(whole) * cut)])
    with pytest.raises(SourceFormatError, match="short.tar.gz.*not a readable tar archive"):
        list(iter_members(short, lambda n: True))


def test_leaving_a_tarball_early_stops_its_inflate_thread(tmp_path: Path) -> None:
    path = _tarball(tmp_path / "t.tar.gz", tarfile.PAX_FORMAT, True)
    before = threading.active_count()
    members = iter_members(path, lambda n: True)
    assert next(members).name == "a/empty.mat"
    members.close()  # as the .mat pass does once it has the session file
    assert threading.active_count() == before
