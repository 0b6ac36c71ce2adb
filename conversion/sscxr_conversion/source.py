"""Sources: an extracted folder, a single ``.mat``, or a ``.tar`` / ``.tar.gz`` read as a stream.

``iter_members`` yields the wanted members in archive order with their bytes; unwanted members
are skipped without being buffered, so a tarball is never extracted to disk.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sscxr.errors import SourceFormatError

from .provenance import HashingReader, SourceRecord, record_bytes

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass
class Member:
    """A source file's name (relative to SRC), its bytes and its provenance record."""

    name: str
    data: bytes
    record: SourceRecord


def is_tar(src: str | os.PathLike) -> bool:
    return str(src).endswith(TAR_SUFFIXES)


def iter_members(src: str | os.PathLike, want: Callable[[str], bool],
                 records: list[SourceRecord] | None = None) -> Iterator[Member]:
    """Yield the members of ``src`` whose relative name satisfies ``want``, in order.

    For a tarball, the tarball's own record (size, sha256 of the compressed bytes) is appended
    to ``records`` once the stream is exhausted.
    """
    path = Path(src)
    if not path.exists():
        raise SourceFormatError(str(src), "does not exist")
    if is_tar(path):
        yield from _tar_members(path, want, records)
    elif path.is_dir():
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            name = file.relative_to(path).as_posix()
            if want(name):
                yield _member(name, file.read_bytes())
    else:
        yield _member(path.name, path.read_bytes())


def _member(name: str, data: bytes) -> Member:
    return Member(name, data, record_bytes(name, data))


def _tar_members(path: Path, want: Callable[[str], bool], records: list[SourceRecord] | None) -> Iterator[Member]:
    with path.open("rb") as raw:
        hashing = HashingReader(raw)
        try:
            with tarfile.open(fileobj=hashing, mode="r|*") as tar:  # type: ignore[call-overload]
                for info in tar:
                    if info.isfile() and want(info.name):
                        fobj = tar.extractfile(info)
                        assert fobj is not None
                        yield _member(info.name, fobj.read())
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise SourceFormatError(str(path), f"is not a readable tar archive ({exc})",
                                    hint="the download is truncated or corrupt") from exc
        hashing.drain()
    if records is not None:
        records.append(SourceRecord(path.name, hashing.size, hashing.sha.hexdigest()))
