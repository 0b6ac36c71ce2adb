"""Helpers to write MAT v5 files with MATLAB's nesting, deterministically (scipy.io.savemat).

* :func:`cell` -> a MATLAB cell (numpy object array, 1xN);
* :func:`struct_array` -> a MATLAB struct array (numpy record array, 1xN);
* a plain ``dict`` -> a 1x1 struct (fields in insertion order).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Mon Mar 11 12:00:00 2013"


def cell(items: Sequence[Any]) -> np.ndarray:
    """A 1xN MATLAB cell holding ``items`` (any values, including dicts and arrays)."""
    out = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out[0, i] = item
    return out


def struct_array(records: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """A 1xN MATLAB struct array; every record has the same fields, in the same order."""
    names = list(records[0])
    out = np.zeros((1, len(records)), dtype=[(n, object) for n in names])
    for i, rec in enumerate(records):
        if list(rec) != names:
            raise ValueError(f"struct array element {i} has fields {list(rec)}, expected {names}")
        for n in names:
            out[0, i][n] = rec[n]
    return out


def save_v5(path: str | Path, variables: Mapping[str, Any]) -> Path:
    """``scipy.io.savemat`` (compressed, row vectors) with a fixed header, so bytes are stable."""
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, dict(variables), do_compression=True, oned_as="row")
    data = bytearray(buf.getvalue())
    data[:116] = HEADER.ljust(116, b" ")
    path = Path(path)
    path.write_bytes(bytes(data))
    return path
