"""Labeling of one ssc-1 imaging subvolume: dF/F, per-cell coords, frame times, ROI masks.

See ``docs/store-layout.md`` (``/imaging/subvolume_NN`` and ``.../rois``) for every name.
"""

from __future__ import annotations

import re

import numpy as np
import xarray as xr

from sscxr.errors import InconsistentSourceError

from ._hashes import node_unit, snake
from ._matfile import MatNode

FOV = re.compile(r"fov_(\d{2})(\d{3})")
KNOWN_FIELDS = {"ids", "idStrs", "idStrDetailed", "timeUnit", "time", "trial", "valueMatrix", "imagingPlane"}
PLANES_PER_VOLUME = 4  # 3 imaged planes + 1 flyback (plane 001), FORMATS.md §1.1
UM_PER_FIELD = 600.0  # 512 px span 600 um
PLANE_SPACING_UM = 15.0
MISSING = -1


def read_subvolume(s: MatNode, entry: MatNode, descr: MatNode | None, *, key: str, position: int,
                   warnings: list[str]) -> tuple[xr.Dataset, xr.Dataset]:
    """The ``imaging/subvolume_NN`` Dataset and its ``rois`` Dataset for one TSA entry."""
    ids = entry["ids"].vector().astype(np.int64)
    time = entry["time"].vector() * node_unit(s, entry)
    trial = entry["trial"].vector()
    _check_length(entry["trial"], len(trial), len(time), "time")
    planes = [_plane(p, i) for i, p in enumerate(entry["imagingPlane"].items())]
    vv = _subvolume_number(planes, position)
    cell_plane = cell_planes(ids, planes, entry, "imagingPlane{p}.ids")
    ds = xr.Dataset(coords=imaging_coords(ids, time, trial, planes, cell_plane, vv))
    ds["dff"] = (("cell", "time"), entry["valueMatrix"].matrix(len(ids), len(time)), {"units": "dF/F"})
    for name in entry.fields():
        if name not in KNOWN_FIELDS:
            _carry_extra(ds, entry[name], name, len(ids), len(time), warnings)
    _labels(ds, entry, len(ids))
    add_source_files(ds, planes, len(time))
    rois, centroid = _rois(descr, planes, ids, warnings)
    add_positions(ds, centroid, cell_plane, planes, position)
    add_frame_times(ds, planes)
    if descr is not None and descr.has("value") and len(descr["value"].items()) > 1:
        ds["ca_valid_trial"] = ("ca_valid_trial", descr["value"].item(1).vector().astype(np.int64),
                                {"description": "trial ids with valid Ca data (descrHash value{2})"})
    ds.attrs.update(subvolume=vv, hash_key=key, hash_index=position + 1)
    return ds, rois


def _check_length(node: MatNode, got: int, expected: int, of: str) -> None:
    if got != expected:
        raise InconsistentSourceError(node.file, f"has {got} entries but {of} has {expected}", field=node.path)


def _plane(node: MatNode, index: int) -> dict:
    files = node["sourceFileList"].texts() if node.has("sourceFileList") else []
    fov = next((FOV.search(f) for f in files if FOV.search(f)), None)
    return {"index": index, "files": files,
            "frame_idx": node["sourceFileFrameIdx"] if node.has("sourceFileFrameIdx") else None,
            "vv": int(fov.group(1)) if fov else None,
            "ppp": int(fov.group(2)) if fov else index + 2,
            "ids": node["ids"].vector().astype(np.int64) if node.has("ids") else np.zeros(0, np.int64)}


def _subvolume_number(planes: list[dict], position: int) -> int:
    numbers = {p["vv"] for p in planes if p["vv"] is not None}
    return numbers.pop() if len(numbers) == 1 else position


def cell_planes(ids: np.ndarray, planes: list[dict], where: MatNode, plane_ids: str) -> np.ndarray:
    """The plane number (``ppp``) of every cell, from each plane's id list (named ``plane_ids``).

    >>> planes = [{"ppp": 2, "ids": np.array([1, 2])}, {"ppp": 3, "ids": np.array([7])}]
    >>> cell_planes(np.array([7, 1]), planes, MatNode({}, "s", "x.mat"), "ids").tolist()
    [3, 2]
    """
    out = np.full(len(ids), -1, dtype=np.int64)
    for p in planes:
        out[np.isin(ids, p["ids"])] = p["ppp"]
    if len(planes) == 1:
        out[:] = planes[0]["ppp"]
    missing = ids[out < 0]
    if missing.size:
        raise InconsistentSourceError(where.file, f"ROI ids {missing[:5].tolist()} are in ids but "
                                      f"in no {plane_ids}", field=f"{where.path}.{plane_ids.split('{')[0]}")
    return out


def imaging_coords(ids: np.ndarray, time: np.ndarray, trial: np.ndarray, planes: list[dict],
                   cell_plane: np.ndarray, vv: int) -> dict:
    """The coords of an imaging group: cell, time, trial (per frame, -1 missing), plane, cell_plane, fov."""
    fov = np.array([f"fov_{vv:02d}{p:03d}" for p in cell_plane])
    trial_ids = np.where(np.isfinite(trial), trial, MISSING).astype(np.int64)
    return {
        "cell": ("cell", ids, {"description": "ROI id (source)"}),
        "time": ("time", time, {"units": "s", "description": "volume start time (source 'time')"}),
        "trial": ("time", trial_ids, {"missing": MISSING}),
        "plane": ("plane", np.array([p["ppp"] for p in planes], dtype=np.int64),
                  {"description": "plane number PPP of fov_VVPPP (001 = flyback, never imaged)"}),
        "cell_plane": ("cell", cell_plane, {"description": "plane number of the cell's plane"}),
        "fov": ("cell", fov),
    }


def _carry_extra(ds: xr.Dataset, node: MatNode, name: str, n_cells: int, n_time: int,
                 warnings: list[str]) -> None:
    try:
        arr = node.matrix(n_cells, n_time)
    except ValueError:
        warnings.append(f"{node.file}: {node.path} is not a (cell, time) matrix; kept as attrs only")
        return
    ds[snake(name)] = (("cell", "time"), arr, {"source_field": name})


def _labels(ds: xr.Dataset, entry: MatNode, n_cells: int) -> None:
    if entry.has("idStrs"):
        labels = entry["idStrs"].texts()
        if len(labels) == n_cells:
            ds.coords["cell_label"] = ("cell", np.array(labels, dtype=str))
    if entry.has("idStrDetailed"):
        detail = entry["idStrDetailed"].texts() if not _is_numeric(entry["idStrDetailed"]) else []
        if len(detail) == n_cells:
            ds.coords["cell_label_detailed"] = ("cell", np.array(detail, dtype=str))


def _is_numeric(node: MatNode) -> bool:
    v = node.value
    return isinstance(v, np.ndarray) and v.dtype.kind in "fiub"


def add_source_files(ds: xr.Dataset, planes: list[dict], n_time: int) -> None:
    """``source_file`` names and 0-based ``source_file_index``/``source_frame_index`` per plane.

    Each plane dict gives ``files`` (list of str) and ``frame_idx`` (a 2xF MatNode of 1-based
    [file; frame] indices with NaN for missing, or None).
    """
    n_files = max((len(p["files"]) for p in planes), default=0)
    names = np.full((len(planes), n_files), "", dtype=object)
    file_idx = np.full((len(planes), n_time), MISSING, dtype=np.int64)
    frame_idx = np.full((len(planes), n_time), MISSING, dtype=np.int64)
    for i, p in enumerate(planes):
        names[i, : len(p["files"])] = p["files"]
        if p["frame_idx"] is not None:
            idx = p["frame_idx"].matrix(2, None)
            _check_length(p["frame_idx"], idx.shape[1], n_time, "time")
            file_idx[i], frame_idx[i] = _zero_based(idx[0]), _zero_based(idx[1])
    attrs = {"index_base": 0, "missing": MISSING}
    ds["source_file"] = (("plane", "file"), names.astype(str))
    ds["source_file_index"] = (("plane", "time"), file_idx, attrs | {"description": "index into source_file"})
    ds["source_frame_index"] = (("plane", "time"), frame_idx, attrs | {"description": "frame within that file"})


def _zero_based(one_based: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(one_based), one_based - 1, MISSING).astype(np.int64)


def add_frame_times(ds: xr.Dataset, planes: list[dict]) -> None:
    """``frame_time`` (plane, time): volume start + (PPP-1) * volume_period / planes_per_volume."""
    time = ds["time"].values
    trial = ds["trial"].values
    same = (trial[1:] == trial[:-1]) & np.isfinite(np.diff(time))
    steps = np.diff(time)[same]
    period = float(np.median(steps)) if steps.size else np.nan
    offsets = np.array([(p["ppp"] - 1) * period / PLANES_PER_VOLUME for p in planes])
    ds.coords["frame_time"] = (("plane", "time"), time[None, :] + offsets[:, None], {
        "units": "s", "description": "acquisition time of each plane's frame: time + (plane-1) * "
        "volume_period / planes_per_volume (plane 001 is the flyback frame)"})
    ds.attrs.update(frame_rate_hz=1.0 / period if period > 0 else np.nan, volume_period_s=period,
                    planes_per_volume=PLANES_PER_VOLUME, plane_offset_s=offsets.tolist(),
                    frame_time_rule="time + (plane - 1) * volume_period_s / planes_per_volume")


def add_positions(ds: xr.Dataset, centroid: dict, cell_plane: np.ndarray, planes: list[dict],
                  position: int) -> None:
    """``x_um``, ``y_um`` (centroid px * um/px) and ``z_um`` = ((plane-1) + (position-1)*3) * 15.

    ``position`` is the subvolume's 1-based position: ssc-1's k-1 of ``timeSeriesArrayHash``,
    ssc-11's sorted file order, so z = (subvolume-1)*45 + (plane-1)*15 in both archives.
    """
    ids = ds["cell"].values
    xy = np.array([centroid.get(int(i), (np.nan, np.nan, np.nan)) for i in ids]).reshape(len(ids), 3)
    index_of = {p["ppp"]: p["index"] for p in planes}
    plane_index = np.array([index_of[p] for p in cell_plane])
    ds.coords["x_um"] = ("cell", xy[:, 0] * xy[:, 2], {"units": "um", "rule": "mask centroid x * 600/width"})
    ds.coords["y_um"] = ("cell", xy[:, 1] * xy[:, 2], {"units": "um", "rule": "mask centroid y * 600/width"})
    z = (plane_index + (position - 1) * 3) * PLANE_SPACING_UM
    ds.coords["z_um"] = ("cell", z.astype(float), {"units": "um", "rule": "((plane-1) + (k-2)*3) * 15, relative"})


def _rois(descr: MatNode | None, planes: list[dict], ids: np.ndarray,
          warnings: list[str]) -> tuple[xr.Dataset, dict]:
    cols = roi_columns()
    images = []
    plane_structs = _plane_structs(descr, warnings)
    for plane, node in zip(planes, plane_structs + [None] * (len(planes) - len(plane_structs)), strict=False):
        image = master_image(node)
        images.append(image)
        width = image.shape[-1] if image is not None else 512
        height = image.shape[-2] if image is not None else 512
        for roi in (node["rois"].items() if node is not None and node.has("rois") else []):
            _add_roi(cols, roi, height, UM_PER_FIELD / width)
    return rois_dataset(cols, images, planes)


def _plane_structs(descr: MatNode | None, warnings: list[str]) -> list[MatNode]:
    if descr is None or not descr.has("value"):
        warnings.append("a subvolume has no descrHash entry: no ROI masks or master images")
        return []
    first = descr["value"].item(0)
    if _is_numeric(first) and first.array().ndim == 3:  # single-plane: value{1} is the image itself
        return [MatNode({"masterImage": first.value}, first.path, first.file)]
    return first.items()


def master_image(node: MatNode | None) -> np.ndarray | None:
    """A plane's ``masterImage`` (MATLAB y, x[, channel]) as (channel, y, x), or None."""
    if node is None or not node.has("masterImage"):
        return None
    img = node["masterImage"].array()
    img = img[:, :, None] if img.ndim == 2 else img
    return np.moveaxis(img, 2, 0)  # MATLAB (y, x, channel) -> (channel, y, x)


def _add_roi(cols: dict, roi: MatNode, height: int, um_per_px: float) -> None:
    idx = roi["indicesWithinImage"].vector().astype(np.int64) if roi.has("indicesWithinImage") else np.zeros(0, np.int64)
    corners = roi["cornersXY"].matrix(2, None) if roi.has("cornersXY") else None
    add_roi(cols, int(roi["id"].scalar()), idx, corners, height, um_per_px)


def roi_columns() -> dict[str, list]:
    """Empty per-ROI columns for :func:`add_roi` / :func:`rois_dataset`."""
    return {k: [] for k in ("rid", "index", "corners", "height", "um_per_px")}


def mask_pixels(index: np.ndarray, height: int | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB 1-based column-major linear indices -> 0-based (y, x); ``height`` is the image's (or
    each index's) number of rows.

    >>> mask_pixels(np.array([1, 2, 513]), 512)
    (array([0, 1, 0]), array([0, 0, 1]))
    """
    return (index - 1) % height, (index - 1) // height


def add_roi(cols: dict, rid: int, index: np.ndarray, corners: np.ndarray | None,
            height: int, um_per_px: float) -> None:
    """Append one ROI: its id, MATLAB mask indices, 2xm x/y corners (or None) and image geometry.

    Pixels and centroids are computed for all ROIs at once by :func:`roi_pixels`.
    """
    cols["rid"].append(rid); cols["index"].append(index); cols["corners"].append(corners)
    cols["height"].append(height); cols["um_per_px"].append(um_per_px)


def roi_pixels(cols: dict) -> tuple[dict[str, np.ndarray], dict[int, tuple[float, float, float]]]:
    """Per-pixel and per-corner columns of every ROI in ``cols``, and each ROI's centroid
    ``{id: (x px, y px, um per px)}`` (NaN for an empty mask), vectorised over ROIs.

    >>> cols = roi_columns()
    >>> add_roi(cols, 7, np.array([1, 2, 513]), None, 512, 1.0)
    >>> add_roi(cols, 9, np.zeros(0, np.int64), None, 512, 1.0)
    >>> pixels, centroid = roi_pixels(cols)
    >>> pixels["mask_cell"].tolist(), pixels["mask_x"].tolist(), centroid[7][:2]
    ([7, 7, 7], [0, 0, 1], (0.3333333333333333, 0.3333333333333333))
    >>> bool(np.isnan(centroid[9][0]))
    True
    """
    rid = np.asarray(cols["rid"], dtype=np.int64)
    counts = np.array([len(i) for i in cols["index"]], dtype=np.int64)
    index = np.concatenate(cols["index"]).astype(np.int64) if cols["index"] else np.zeros(0, np.int64)
    height = np.repeat(np.asarray(cols["height"], dtype=np.int64), counts)
    y, x = mask_pixels(index, height)
    which = np.repeat(np.arange(len(rid)), counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        cx = np.bincount(which, weights=x, minlength=len(rid)) / counts
        cy = np.bincount(which, weights=y, minlength=len(rid)) / counts
    corners = [c for c in cols["corners"] if c is not None]
    n_corners = [c.shape[1] for c in corners]
    with_corners = rid[[c is not None for c in cols["corners"]]] if len(rid) else rid
    out = {"mask_cell": np.repeat(rid, counts), "mask_y": y, "mask_x": x, "mask_index": index,
           "corner_cell": np.repeat(with_corners, n_corners),
           "corner_x": np.concatenate([c[0] for c in corners]) if corners else np.zeros(0),
           "corner_y": np.concatenate([c[1] for c in corners]) if corners else np.zeros(0)}
    centroid = {int(r): (float(a), float(b), float(u))
                for r, a, b, u in zip(rid, cx, cy, cols["um_per_px"], strict=True)}
    return out, centroid


def rois_dataset(cols: dict, images: list, planes: list[dict]) -> tuple[xr.Dataset, dict]:
    """The ``rois`` group (mask pixels, corners and, when every plane has one, master images)
    and the ROIs' centroids (see :func:`roi_pixels`)."""
    cat, centroid = roi_pixels(cols)
    ds = xr.Dataset()
    for k in ("mask_cell", "mask_y", "mask_x", "mask_index"):
        ds[k] = ("pixel", cat[k].astype(np.int64))
    for k in ("corner_cell", "corner_x", "corner_y"):
        ds[k] = ("corner", cat[k].astype(np.int64 if k == "corner_cell" else float))
    ds["mask_index"].attrs.update(index_base=1, order="F", description="MATLAB linear index into (y, x)")
    ds["corner_x"].attrs["units"] = ds["corner_y"].attrs["units"] = "px"
    present = [im for im in images if im is not None]
    if present and len(present) == len(planes):
        stack = np.stack(present)
        channel = ["green", "red"][: stack.shape[1]] + [f"ch{i}" for i in range(2, stack.shape[1])]
        ds["master_image"] = (("plane", "channel", "y", "x"), stack)
        ds.coords["channel"] = ("channel", channel)
    return ds, centroid
