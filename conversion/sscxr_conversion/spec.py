"""``ConversionSpec``: what a conversion was asked to do, recorded in the store's provenance."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

SPEC_VERSION = 1


@dataclass(frozen=True)
class ConversionSpec:
    """Options of one conversion. Secrets never go here (storage options are not part of it).

    >>> spec = ConversionSpec(archive="ssc-1", raw=False)
    >>> ConversionSpec.from_dict(spec.to_dict()) == spec
    True
    """

    archive: str = "auto"
    raw: bool = False
    red: bool = False
    video: bool = True
    allow_missing: bool = False
    dff_chunks: tuple[int, int] = (32, 512)
    cname: str = "lz4"
    clevel: int = 5
    spec_version: int = SPEC_VERSION

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversionSpec:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown ConversionSpec fields {sorted(unknown)}; known: {sorted(names)}")
        values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)
