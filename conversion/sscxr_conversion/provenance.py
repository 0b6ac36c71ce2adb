"""Provenance records: which source files (name, size, sha256), which converter, when, how."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any

from .spec import ConversionSpec

CHUNK = 1 << 20


@dataclass(frozen=True)
class SourceRecord:
    """One source file as read: its name relative to SRC, size in bytes and sha256."""

    name: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class HashingReader:
    """Wraps a binary stream; hashes and counts every byte read through it."""

    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        """``read`` into ``buffer`` (gzip readers ask for it)."""
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            view = memoryview(buffer)[:n]
            self.sha.update(view)
            self.size += n
        return n or 0

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def record_bytes(name: str, data: bytes) -> SourceRecord:
    return SourceRecord(name, len(data), hashlib.sha256(data).hexdigest())


def record_file(name: str, path: Path) -> SourceRecord:
    """Size and sha256 of a file on disk, streamed in 1 MiB blocks."""
    sha = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            sha.update(block)
    return SourceRecord(name, path.stat().st_size, sha.hexdigest())


def converter_version() -> str:
    try:
        return version("sscxr-conversion")
    except PackageNotFoundError:
        return "0+unknown"


def provenance(sources: list[SourceRecord], spec: ConversionSpec, warnings: list[str]) -> dict[str, Any]:
    """The ``provenance`` root attr (see docs/store-layout.md)."""
    return {
        "sources": [s.to_dict() for s in sources],
        "converter": f"sscxr-conversion {converter_version()}",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "spec": spec.to_dict(),
        "warnings": list(warnings),
    }
