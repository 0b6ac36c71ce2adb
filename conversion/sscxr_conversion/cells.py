"""The ssc-11 ``/cells`` table: every ROI id of an animal, where it is, whether it was ablated.

ROI ids are the join key across subvolume files and conditions (FORMATS.md §2.4). A cell's
position comes from the first condition that has it (conditions in folder order, ``pre``
first); ``present_<condition>`` says which conditions imaged it. ``ablated_<kind>`` comes from
the curation files, ``ablated`` is any kind, and ``near_ablated`` is the paper's proximity rule.

>>> near_ablated(np.array([0.0, 5.0, 50.0]), np.zeros(3), np.zeros(3), np.array([True, False, False])).tolist()
[False, True, False]
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sscxr.errors import InconsistentSourceError

from .readers.curation import Ablation, ablated_ids

LATERAL_UM = 10.0
DEPTH_UM = 30.0
POSITION_TOLERANCE_UM = 0.5
ROW_VARS = ("subvolume", "plane", "fov", "x_um", "y_um", "z_um")


def cell_rows(imaging: xr.Dataset, subvolume: int, source: str) -> xr.Dataset:
    """One subvolume file's rows of ``/cells``: subvolume, plane index (1..P), fov, x/y/z in um."""
    plane_numbers = list(imaging["plane"].values)
    plane_index = np.array([plane_numbers.index(p) + 1 for p in imaging["cell_plane"].values], dtype=np.int64)
    rows = xr.Dataset(coords={"cell": ("cell", imaging["cell"].values)})
    rows["subvolume"] = ("cell", np.full(imaging.sizes["cell"], subvolume, dtype=np.int64))
    rows["plane"] = ("cell", plane_index, {"description": "1-based imaged plane within the subvolume"})
    rows["fov"] = ("cell", imaging["fov"].values.astype(str))
    for name in ("x_um", "y_um", "z_um"):
        rows[name] = ("cell", imaging[name].values.astype(float), {"units": "um"})
    return rows.assign_attrs(source=source)


def near_ablated(x: np.ndarray, y: np.ndarray, z: np.ndarray, ablated: np.ndarray, *,
                 lateral_um: float = LATERAL_UM, depth_um: float = DEPTH_UM) -> np.ndarray:
    """Cells within ``lateral_um`` laterally and ``depth_um`` in depth of an ablated cell, not ablated."""
    if not ablated.any():
        return np.zeros(len(x), dtype=bool)
    lateral = np.hypot(x[:, None] - x[ablated][None, :], y[:, None] - y[ablated][None, :])
    dz = np.abs(z[:, None] - z[ablated][None, :])
    return ((lateral < lateral_um) & (dz < depth_um)).any(axis=1) & ~ablated


def cell_table(parts: list[tuple[str, xr.Dataset]], conditions: list[str], ablations: list[Ablation],
               warnings: list[str]) -> xr.Dataset:
    """``/cells`` from ``(condition, rows)`` of every subvolume file and the curation files."""
    table = _union_rows(parts, warnings)
    for name in ("x_um", "y_um", "z_um"):
        table[name].attrs["units"] = "um"
    table["z_um"].attrs["rule"] = "(subvolume - 1) * 45 + (plane - 1) * 15, relative"
    table["x_um"].attrs["rule"] = table["y_um"].attrs["rule"] = "mask centroid (0-based px) * umPerPixel (600/512)"
    ids = table["cell"].values
    for condition in conditions:
        seen = [rows["cell"].values for c, rows in parts if c == condition]
        table[f"present_{condition}"] = ("cell", np.isin(ids, np.concatenate(seen) if seen else []))
    any_ablated = np.zeros(len(ids), dtype=bool)
    for kind, kind_ids in ablated_ids(ablations).items():
        flag = np.isin(ids, kind_ids)
        table[f"ablated_{kind}"] = ("cell", flag, {"description": f"ablated in the {kind} ablation"})
        any_ablated |= flag
    table["ablated"] = ("cell", any_ablated, {"description": "ablated in any ablation"})
    x, y, z = (table[v].values for v in ("x_um", "y_um", "z_um"))
    table["near_ablated"] = ("cell", near_ablated(x, y, z, any_ablated),
                             {"rule": f"lateral distance < {LATERAL_UM} um and |dz| < {DEPTH_UM} um "
                                      "to an ablated cell, not itself ablated"})
    warnings += _orphans(ablations, ids)
    return table


def _union_rows(parts: list[tuple[str, xr.Dataset]], warnings: list[str]) -> xr.Dataset:
    if not parts:
        return xr.Dataset(coords={"cell": ("cell", np.zeros(0, np.int64))},
                          data_vars={v: ("cell", np.zeros(0)) for v in ROW_VARS})
    table = xr.concat([rows for _, rows in parts], dim="cell", combine_attrs="drop")
    sources = np.concatenate([[rows.attrs.get("source", "?")] * rows.sizes["cell"] for _, rows in parts])
    _, first = np.unique(table["cell"].values, return_index=True)
    _check_same_cells(table, first, sources, warnings)
    return table.isel(cell=np.sort(first)).sortby("cell")


def _check_same_cells(table: xr.Dataset, first: np.ndarray, sources: np.ndarray, warnings: list[str]) -> None:
    """Every later row of an id must agree with its first row (same subvolume and plane)."""
    ids = table["cell"].values
    ref = np.searchsorted(ids[first], ids, sorter=np.argsort(ids[first]))
    ref = first[np.argsort(ids[first])][ref]
    for name in ("subvolume", "plane"):
        values = table[name].values
        bad = np.flatnonzero(values != values[ref])
        if bad.size:
            i = bad[0]
            raise InconsistentSourceError(sources[i], f"ROI id {ids[i]} has {name} {values[i]} here but "
                                          f"{values[ref[i]]} in {sources[ref[i]]}; ROI ids must be unique per animal")
    moved = np.hypot(table["x_um"].values - table["x_um"].values[ref], table["y_um"].values - table["y_um"].values[ref])
    if np.nanmax(moved, initial=0.0) > POSITION_TOLERANCE_UM:
        warnings.append(f"{int((moved > POSITION_TOLERANCE_UM).sum())} ROI(s) have masks whose centroid moves by more "
                        f"than {POSITION_TOLERANCE_UM} um between conditions; /cells keeps the first condition's")


def _orphans(ablations: list[Ablation], ids: np.ndarray) -> list[str]:
    out = []
    for a in ablations:
        missing = sorted(set(a.ids) - set(ids.tolist()))
        if missing:
            out.append(f"{a.source}: ablated ROI id(s) {missing} are in no subvolume file of the animal; "
                       "they are listed in the root attr 'ablations' but have no row in /cells")
    return out
