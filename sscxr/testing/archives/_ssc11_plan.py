"""Animal-level plan of the synthetic ssc-11 archive: every subvolume's cells, the ablations, the days.

Seeded per piece (``[seed, 1, v]`` layouts, ``[seed, 2]`` ablations, ``[seed, 5, v]`` lost cells), so a
file's content never depends on which other files were generated.
"""

from __future__ import annotations

import datetime as _dt
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._ssc11_model import FOLDERS, TUNING, Ssc11Ablation, Ssc11Params, Ssc11Subvolume, Ssc11Truth, _kind, _mat_version


@dataclass
class _Layout:
    """Every ROI a subvolume ever has (sorted ids = plane-major), with stable per-cell traits."""

    ids: np.ndarray
    plane: np.ndarray
    is_new: np.ndarray
    center: np.ndarray
    tuning: np.ndarray
    protraction: np.ndarray
    rate_hz: np.ndarray
    f0: np.ndarray
    tau_ms: np.ndarray
    noise: np.ndarray
    images: list[np.ndarray]


@dataclass
class _Plan:
    params: Ssc11Params
    seed: int
    animal: str
    animal_dir: Path
    dates: dict[str, list[str]]
    layouts: list[_Layout]
    ablations: list[Ssc11Ablation]
    attempts: list[tuple[np.ndarray, np.ndarray]]
    present: dict[str, list[np.ndarray]]
    unknown_ids: np.ndarray


def _make_plan(p: Ssc11Params, seed: int, animal: str, animal_dir: Path) -> _Plan:
    dates = _condition_days(p)
    layouts = [_layout(p, seed, v) for v in range(p.n_subvolumes)]
    plan = _Plan(p, seed, animal, animal_dir, dates, layouts, [], [], {}, np.zeros(0, np.int64))
    _choose_ablations(plan)
    targeted = np.concatenate([np.r_[ok, bad] for ok, bad in plan.attempts] or [np.zeros(0)])
    lost = [_lost(p, seed, v, lay, targeted) for v, lay in enumerate(layouts)]
    for cond in p.conditions:
        plan.present[cond] = [~lay.is_new if cond == "pre" else ~gone for lay, gone in zip(layouts, lost)]
    return plan


def _condition_days(p: Ssc11Params) -> dict[str, list[str]]:
    first = _dt.date.fromisoformat(p.first_day)
    return {cond: [(first + _dt.timedelta(days=ci * p.days_between_conditions + d)).strftime("%Y_%m_%d")
                   for d in range(p.n_days)] for ci, cond in enumerate(p.conditions)}


@functools.lru_cache(maxsize=8)
def _disk(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel offsets (dx-major, so linear column-major indices come out sorted) and the border flag."""
    r = int(np.ceil(radius))
    dx, dy = (a.ravel() for a in np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij"))
    inside = dx**2 + dy**2 <= radius**2
    dx, dy = dx[inside], dy[inside]
    occupied = set(zip(dx.tolist(), dy.tolist()))
    border = np.array([any((x + a, y + b) not in occupied for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1)))
                       for x, y in zip(dx.tolist(), dy.tolist())])
    return dx, dy, border


def _mask(center: np.ndarray, size: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """1-based column-major indices of a disk and of its border pixels."""
    dx, dy, border = _disk(radius)
    idx = (center[1] + dx) * size + (center[0] + dy) + 1
    return idx.astype(np.int64), idx[border].astype(np.int64)


def _corners(center: np.ndarray, radius: float) -> np.ndarray:
    """2x8 polygon around the ROI: row 1 = x (column), row 2 = y (row), 1-based pixels."""
    theta = np.arange(8) * np.pi / 4
    return np.vstack([center[1] + 1 + radius * np.cos(theta), center[0] + 1 + radius * np.sin(theta)])


def _layout(p: Ssc11Params, seed: int, v: int) -> _Layout:
    rng = np.random.default_rng([seed, 1, v])
    n_new = np.bincount(np.arange(p.new_cells) % p.n_planes, minlength=p.n_planes)
    ids, planes, new = [], [], []
    for j in range(p.n_planes):
        n = p.cells_per_plane + n_new[j]
        ids.append(np.sort(rng.choice(1000, n, replace=False)) + 1 + 1000 * (v * p.n_planes + j))
        planes.append(np.full(n, j + 1))
        flag = np.zeros(n, bool)
        flag[rng.choice(n, n_new[j], replace=False)] = True
        new.append(flag)
    n = sum(len(i) for i in ids)
    r = int(np.ceil(p.roi_radius_px))
    center = rng.integers(r + 1, p.image_size - r - 1, (n, 2))  # (row, column), 0-based
    lay = _Layout(np.concatenate(ids), np.concatenate(planes), np.concatenate(new), center,
                  rng.choice(3, n, p=[0.75, 0.15, 0.10]), rng.random(n) < 0.5, rng.uniform(0.02, 0.2, n),
                  rng.uniform(150, 900, n), rng.uniform(600, 1400, n), rng.uniform(0.03, 0.08, n), [])
    lay.images = [_master_image(p, rng, lay, j + 1) for j in range(p.n_planes)]
    return lay


def _master_image(p: Ssc11Params, rng: np.random.Generator, lay: _Layout, plane: int) -> np.ndarray:
    size = p.image_size
    flat = rng.normal(300.0, 30.0, (2, size * size))
    for i in np.flatnonzero(lay.plane == plane):
        idx, _ = _mask(lay.center[i], size, p.roi_radius_px)
        flat[0, idx - 1] += 600.0
        flat[1, idx - 1] += 900.0 * (lay.tuning[i] > 0)
    img = np.clip(flat, 0, 65535).astype(np.uint16).reshape(2, size, size)  # [channel, column, row]
    return np.ascontiguousarray(img.transpose(2, 1, 0))  # (row, column, channel)


def _choose_ablations(plan: _Plan) -> None:
    p = plan.params
    rng = np.random.default_rng([plan.seed, 2])
    ids = np.concatenate([lay.ids for lay in plan.layouts])
    tuning = np.concatenate([lay.tuning for lay in plan.layouts])
    free = ~np.concatenate([lay.is_new for lay in plan.layouts])
    for ci, cond in enumerate(p.conditions[1:], start=1):
        kind = _kind(cond, p)
        order = rng.permutation(np.flatnonzero(free))
        order = np.r_[order[tuning[order] == TUNING[kind]], order[tuning[order] != TUNING[kind]]]
        pick = order[: p.n_ablated + p.n_failed]
        free[pick] = False
        ok, bad = np.sort(ids[pick[: p.n_ablated]]), np.sort(ids[pick[p.n_ablated:]])
        first_day = _dt.datetime.strptime(plan.dates[cond][0], "%Y_%m_%d").date()
        date = (first_day - _dt.timedelta(days=1)).isoformat()
        plan.attempts.append((ok, bad))
        plan.ablations.append(Ssc11Ablation(kind, cond, date, ok, bad, []))
    if p.unknown_curation_id and plan.ablations:
        used = set(ids.tolist())
        block = 1000 * (p.n_subvolumes * p.n_planes - 1)
        plan.unknown_ids = np.array([next(i for i in range(block + 1000, block, -1) if i not in used)])
        first = plan.ablations[0]
        first.ids = np.sort(np.r_[first.ids, plan.unknown_ids])


def _lost(p: Ssc11Params, seed: int, v: int, lay: _Layout, targeted: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng([seed, 5, v])
    candidates = np.flatnonzero(~lay.is_new & ~np.isin(lay.ids, targeted))
    lost = np.zeros(len(lay.ids), bool)
    lost[rng.choice(candidates, min(p.lost_cells, len(candidates)), replace=False)] = True
    return lost


def _truth(plan: _Plan, subvolumes: dict[str, list[Ssc11Subvolume]]) -> Ssc11Truth:
    p, adir = plan.params, plan.animal_dir
    paths = {c: [_file_path(plan, c, v) for v in range(p.n_subvolumes)] for c in p.conditions}
    versions = {c: [_mat_version(p, ci, v) for v in range(p.n_subvolumes)] for ci, c in enumerate(p.conditions)}
    roi_ids = {c: [lay.ids[m] for lay, m in zip(plan.layouts, plan.present[c])] for c in p.conditions}
    all_ids = np.concatenate([lay.ids for lay in plan.layouts])
    pre = np.concatenate(roi_ids["pre"])
    post = [np.concatenate(roi_ids[c]) for c in p.conditions[1:]]
    lost = np.setdiff1d(pre, np.concatenate(post)) if post else np.zeros(0, np.int64)
    new = np.setdiff1d(np.concatenate(post), pre) if post else np.zeros(0, np.int64)
    return Ssc11Truth(adir.parent, plan.animal, adir, p, plan.seed, {c: adir / FOLDERS[c] for c in p.conditions},
                      paths, versions, plan.dates, roi_ids, all_ids, lost, new, plan.ablations,
                      {a.kind: a.ids for a in plan.ablations}, {a.kind: a.date for a in plan.ablations},
                      plan.unknown_ids, subvolumes, plan)


def _file_path(plan: _Plan, condition: str, v: int) -> Path:
    return plan.animal_dir / FOLDERS[condition] / f"{plan.animal}_vol_{v + 1:02d}_sess_struct.mat"
