"""Ablation curation files of ssc-11: which ROI ids were ablated, of which kind, when.

Two flavours (FORMATS.md §2.4):

* **NYU** ``<YYYY_MM_DD>_ablation[_<kind>]/manualCurationData.mat`` (or
  ``<YYYY_MM_DD>_<kind>_ablation/``): ``ablationTargetIds`` and ``ablationSuccessful``;
  ablated = the successful targets.
* **JRC** ``an<ID>_<YYYY_MM_DD>.mat`` (or ``an<ID>_all.mat``) at the animal's top level:
  ``ablated_ids``.

The kind (``touch``, ``whisking``, ``silent``) is in the NYU folder name except for ``touch``;
:func:`kind_of` says how a file that does not name it gets one.

>>> curation_file("an274424/2019_01_14_ablation_silent/manualCurationData.mat")
('NYU', 'silent', '2019-01-14')
>>> curation_file("an250220/an250220_all.mat")
('JRC', '', '')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from sscxr.errors import InconsistentSourceError

from ._matfile import load_mat

KINDS = ("touch", "whisking", "silent")
DEFAULT_KIND = "touch"
NYU = re.compile(r"(?:^|/)(\d{4})_(\d{2})_(\d{2})_(?:(\w+?)_ablation|ablation(?:_(\w+))?)/manualCurationData\.mat$")
JRC = re.compile(r"(?:^|/)an\d+_(?:(\d{4})_(\d{2})_(\d{2})|all)\.mat$")


@dataclass(frozen=True)
class Ablation:
    """One curation file's ablated ROI ids, with its kind, date (ISO, "" if unknown) and source."""

    kind: str
    date: str
    source: str
    lab: str
    ids: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """The entry of the root attr ``ablations``."""
        return {"kind": self.kind, "date": self.date, "source": self.source, "lab": self.lab, "ids": list(self.ids)}


def curation_file(name: str) -> tuple[str, str, str] | None:
    """``(lab, kind or "", date or "")`` when ``name`` (relative path) is a curation file, else None.

    JRC files must sit directly in the animal folder (not in a condition folder).
    """
    m = NYU.search(name)
    if m:
        return "NYU", (m.group(4) or m.group(5) or "").lower(), f"{m.group(1)}-{m.group(2)}-{m.group(3)}"
    m = JRC.search(name)
    if m and "session_neuropilone" not in name and "ablation_log" not in name:
        return "JRC", "", f"{m.group(1)}-{m.group(2)}-{m.group(3)}" if m.group(1) else ""
    return None


def kind_of(name: str, curation_names: list[str], conditions: list[str], animal: str) -> tuple[str, str | None]:
    """The ablation kind of curation file ``name``, and a warning when it cannot be known.

    In order: the kind in the NYU folder name; the kind of a NYU folder of the same date; the
    animal's only ``post_<kind>`` condition; for an animal with one ``post`` condition, its kind in
    FORMATS.md's animal lists; a plain NYU ``<date>_ablation`` folder is ``touch`` (the kind whose
    folder has no suffix); otherwise ``unspecified``.
    """
    lab, kind, date = curation_file(name) or ("", "", "")
    if kind:
        return kind, None
    same_date = {c[1] for n in curation_names if (c := curation_file(n)) and date and c[2] == date and c[1]}
    if len(same_date) == 1:
        return same_date.pop(), None
    kinds = sorted({c.split("_", 1)[1] for c in conditions if c.startswith("post_")})
    if len(kinds) == 1:
        return kinds[0], None
    if not kinds and (listed := _listed_kinds(animal)) and len(listed) == 1:
        return listed[0], None
    if lab == "NYU":
        return DEFAULT_KIND, None
    return "unspecified", (f"the ablation kind is not in the file name and the animal has post conditions "
                           f"{[c for c in conditions if c.startswith('post')]}; its ids are flagged "
                           "'ablated_unspecified'")


def _listed_kinds(animal: str) -> list[str]:
    try:
        from sscxr.catalog import SSC11_ABLATIONS
    except ImportError:
        return []
    return [kind for kind, animals in SSC11_ABLATIONS.items() if animal in animals]


def read_curation(name: str, data: bytes, kind: str) -> Ablation:
    """The ablated ids of one curation file (``name`` relative to SRC, ``data`` its bytes)."""
    found = curation_file(name)
    if found is None:
        raise ValueError(f"{name} is not a curation file name")
    lab, _, date = found
    ids = _nyu_ids(name, data) if lab == "NYU" else load_mat(data, name=name, variable="ablated_ids").vector()
    return Ablation(kind, date, name, lab, tuple(int(i) for i in np.unique(ids[np.isfinite(ids)])))


def _nyu_ids(name: str, data: bytes) -> np.ndarray:
    targets = load_mat(data, name=name, variable="ablationTargetIds")
    success = load_mat(data, name=name, variable="ablationSuccessful")
    ids, ok = targets.vector(), success.vector(dtype=None).astype(bool)
    if len(ids) != len(ok):
        raise InconsistentSourceError(name, f"has {len(ids)} ablationTargetIds but {len(ok)} ablationSuccessful",
                                      field="ablationSuccessful")
    return ids[ok]


def ablated_ids(ablations: list[Ablation]) -> dict[str, np.ndarray]:
    """Sorted ROI ids per kind, several files of one kind combined."""
    kinds: dict[str, set[int]] = {}
    for a in ablations:
        kinds.setdefault(a.kind, set()).update(a.ids)
    return {k: np.array(sorted(v), dtype=np.int64) for k, v in sorted(kinds.items())}
