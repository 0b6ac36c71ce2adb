"""``sscxr verify``: re-read the source and prove the store holds the same values."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from sscxr.errors import IncompleteStoreError, SchemaError, VerificationError
from sscxr.io import read_attrs, storage_errors
from sscxr.schema import STATUS_COMPLETE

from . import write
from .pipeline import detect_archive, read_plan
from .spec import ConversionSpec


def verify(src: str | os.PathLike, dest: str, *, storage_options: Mapping[str, Any] | None = None,
           raise_on_mismatch: bool = True) -> list[str]:
    """Compare every value of every group read from ``src`` with the store at ``dest``.

    Returns the mismatches (NaN-aware); raises :class:`~sscxr.errors.VerificationError` listing
    them all when there are any and ``raise_on_mismatch``. A store whose conversion did not
    finish is not compared (its missing groups would read as missing or, partly written, as
    matching): :class:`~sscxr.errors.IncompleteStoreError`, naming ``--resume``. Tasks are built
    one at a time, so verifying holds one task's groups in memory, as converting does.
    """
    read_attrs(dest, storage_options=storage_options)  # nothing published yet: says so, naming --resume
    with storage_errors(dest, storage_options):  # a wrong URL or a refusal: one clear error
        store = write.open_store(dest, storage_options, mode="r")
        root = xr.open_zarr(store, consolidated=False, zarr_format=3)
    status = root.attrs.get("sscxr_status")
    if status is not None and status != STATUS_COMPLETE:
        raise IncompleteStoreError(
            f"{dest}: the conversion did not finish (root attr sscxr_status is {status!r}), so there is "
            f"nothing to verify yet; finish it with `sscxr convert {src} {dest} --resume`"
        )
    provenance = root.attrs.get("provenance")
    recorded = provenance.get("spec") if isinstance(provenance, Mapping) else None
    if not isinstance(recorded, Mapping):
        raise SchemaError(["root attrs: no provenance.spec: this is not a store sscxr convert wrote"], where=dest)
    spec = ConversionSpec.from_dict({**recorded, "archive": detect_archive(src)})
    plan = read_plan(src, spec)
    raw = plan.raw.verify(store, plan.attrs) if plan.raw is not None else []  # frames, videos; adds the tarball
    problems = _compare_sources(plan.attrs, root.attrs) + raw
    problems += _compare_groups(store, plan.groups.items())
    summaries = []
    for task in plan.tasks:
        groups, summary = task.build()
        problems += _compare_groups(store, groups)
        summaries.append(summary)
    if plan.finish is not None:
        finished = plan.finish(summaries)
        problems += _compare_groups(store, finished.groups.items())
        problems += _compare_attrs(finished.attrs, root.attrs)
    if problems and raise_on_mismatch:
        raise VerificationError(problems)
    return problems


def _compare_groups(store: Any, groups: Iterable[tuple[str, xr.Dataset]]) -> list[str]:
    return [p for path, ds in groups for p in compare_group(ds, _open_group(store, path), path)]


def _compare_attrs(want: Mapping[str, Any], stored: Mapping[str, Any]) -> list[str]:
    return [f"root attrs: {k} is {stored.get(k)!r} in the store, {v!r} from the source"
            for k, v in want.items() if _jsonable(stored.get(k)) != _jsonable(v)]


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


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
