"""``sscxr verify``: re-read the source and prove the store holds the same values."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

from sscxr.errors import VerificationError

from . import write
from .pipeline import detect_archive, read_ssc1
from .spec import ConversionSpec


def verify(src: str | os.PathLike, dest: str, *, storage_options: Mapping[str, Any] | None = None,
           raise_on_mismatch: bool = True) -> list[str]:
    """Compare every value of every group read from ``src`` with the store at ``dest``.

    Returns the mismatches (NaN-aware); raises :class:`~sscxr.errors.VerificationError` listing
    them all when there are any and ``raise_on_mismatch``.
    """
    store = write.open_store(dest, storage_options, mode="r")
    root = xr.open_zarr(store, consolidated=False, zarr_format=3)
    spec = ConversionSpec.from_dict(root.attrs["provenance"]["spec"])
    if detect_archive(src) == "ssc-11":
        from .ssc11_pipeline import read_animal

        attrs, groups, tasks, _ = read_animal(src, spec)
    else:
        attrs, groups, tasks, _ = read_ssc1(src, spec)
    groups = {**groups, **{p: ds for t in tasks for p, ds in t}}
    raw_problems = []
    if spec.raw and spec.archive == "ssc-1":  # TIFF frames and videos; also records the tarball
        from .raw import verify_raw

        raw_problems = verify_raw(src, store, groups, spec, attrs)
    problems = _compare_sources(attrs, root.attrs) + raw_problems
    for path, ds in groups.items():
        problems += compare_group(ds, _open_group(store, path), path)
    if problems and raise_on_mismatch:
        raise VerificationError(problems)
    return problems


def _open_group(store: Any, path: str) -> xr.Dataset | None:
    try:
        return xr.open_dataset(store, group=path, engine="zarr", consolidated=False, chunks=None)
    except (FileNotFoundError, KeyError, OSError):
        return None


def _compare_sources(attrs: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    want = [(s["name"], s["sha256"]) for s in attrs["provenance"]["sources"]]
    got = [(s["name"], s["sha256"]) for s in stored.get("provenance", {}).get("sources", [])]
    return [] if want == got else [f"provenance: store was made from {got}, source is {want}"]


def compare_group(expected: xr.Dataset, actual: xr.Dataset | None, path: str) -> list[str]:
    """Every variable/coord of ``expected`` must be in ``actual`` with equal values (NaN == NaN)."""
    if actual is None:
        return [f"/{path}: group missing from the store"]
    problems = []
    for name, var in expected.variables.items():
        if name not in actual.variables:
            problems.append(f"/{path}/{name}: missing from the store")
            continue
        problems += _compare_values(var, actual.variables[name], f"/{path}/{name}")
    return problems


def _compare_values(want: xr.Variable, got: xr.Variable, where: str) -> list[str]:
    if want.dims != got.dims or want.shape != got.shape:
        return [f"{where}: dims/shape {got.dims}{got.shape}, source has {want.dims}{want.shape}"]
    a, b = np.asarray(want.values), np.asarray(got.values)
    if a.dtype.kind in "OUS" or b.dtype.kind in "OUS":
        bad = np.asarray(_as_str(a) != _as_str(b))
    else:
        nan = np.isnan(a) & np.isnan(b) if a.dtype.kind == "f" and b.dtype.kind == "f" else False
        bad = np.asarray((a != b) & ~nan)
    if not bad.any():
        return []
    first = np.argwhere(bad)[0] if bad.ndim else ()
    return [f"{where}: {int(bad.sum())} value(s) differ, first at index {tuple(int(i) for i in first)}: "
            f"source {a[tuple(first)]!r}, store {b[tuple(first)]!r}"]


def _as_str(values: np.ndarray) -> np.ndarray:
    """Any string dtype (fixed, object, numpy StringDType from zarr) as comparable ``<U``."""
    return np.array(values.tolist(), dtype=str).reshape(values.shape)
