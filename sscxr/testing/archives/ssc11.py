"""A synthetic ssc-11 animal with the real on-disk layout (``shared/FORMATS.md`` §2-§4).

>>> truth = write_ssc11_animal(tmp_path, animal="an274424", preset="tiny", seed=0)  # doctest: +SKIP
>>> [p.name for p in truth.paths["pre"]]                                          # doctest: +SKIP
['an274424_vol_01_sess_struct.mat', 'an274424_vol_02_sess_struct.mat']
>>> sub = truth.subvolume("post_touch", 1)   # what that file holds, in ms and 1-based ids  # doctest: +SKIP
>>> sub.mat_version, sub.dff.shape, sub.roi_ids[:2]                                # doctest: +SKIP
('7.3', (23, 1258), array([ 41, 112]))
>>> truth.ablated_ids["touch"], truth.ablation_dates["touch"]                      # doctest: +SKIP
(array([1350, 2044, 5187]), '2019-04-07')

Under ``<root>/<animal>/``: one folder per condition (``session_neuropilone_preablate_merged``,
``..._postablate[_silent|_whisking|_touch]_merged``) holding one ``<animal>_vol_NN_sess_struct.mat``
per subvolume (variable ``sess``: the struct conversion of the lab's ``session.session`` object,
days merged as ``session_merge`` does: trial ids + 1000 and time + 1 day per day, only the trials
valid for that subvolume), MAT v5 or v7.3 per file, and the ablation curation files in the NYU
(``<date>_ablation*/manualCurationData.mat``) and/or JRC (``<animal>_<date>.mat``) flavour.

Choices where FORMATS.md is [U]/[I] are listed in :data:`CHOICES`. Generation is seeded per
piece (layout, ablations, schedule, one stream per file), so :meth:`Ssc11Truth.subvolume`
regenerates any file's truth without keeping the large presets in memory.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ._matv73 import savemat73

__all__ = ["write_ssc11_animal", "Ssc11Params", "SSC11_PRESETS", "Ssc11Truth", "Ssc11Subvolume",
           "Ssc11EventSeries", "Ssc11Whisker", "Ssc11Ablation"]

FOLDERS = {"pre": "session_neuropilone_preablate_merged", "post": "session_neuropilone_postablate_merged",
           "post_silent": "session_neuropilone_postablate_silent_merged",
           "post_whisking": "session_neuropilone_postablate_whisking_merged",
           "post_touch": "session_neuropilone_postablate_touch_merged"}
KINDS = ("touch", "whisking", "silent")
NYU_SUFFIX = {"touch": "", "silent": "_silent", "whisking": "_whisking"}
TUNING = {"silent": 0, "touch": 1, "whisking": 2}  # which cells an ablation of that kind targets
TRIAL_TYPES = ["HitL", "HitR", "ErrL", "ErrR", "NoLickL", "NoLickR"]
TRIAL_TYPE_P = [0.35, 0.35, 0.1, 0.1, 0.05, 0.05]
TRIAL_TYPE_COLOR = np.array([[0, 0, 1], [1, 0, 0], [0.5, 0.5, 1], [1, 0.5, 0.5], [0.3, 0.3, 0.3], [0.6, 0.6, 0.6]])
DAY_MS = 86_400_000.0
KERNEL_LAGS = 8
TRIAL_AVG_FRAMES = 70
PROTOCOL = "pole_detect_twoport_sp"
DERIVED = {10000: "Whisker setpoint", 10010: "Mean whisker amplitude",
           20112: "Max abs dKappa protraction touches", 20113: "Max abs dKappa retraction touches"}
DFF_OPTS = {"actParams": {"cofThresh": 0.15, "nabThresh": 0.005, "forceRedo": 1.0},
            "fZeroFilterParams": {"timeUnit": 1.0, "filterType": "quantile", "filterSizeSeconds": 60.0,
                                  "quantileThresh": np.zeros((0, 0))}}
EVDET_OPTS = {"timeUnit": 1.0, "tausInDt": np.arange(3.0, 31.0), "tRiseInDt": np.arange(1.0, 6.0),
              "initThreshSF": np.array([1.5, 2.0, 2.5]), "debug": 0.0, "minFitRawCorr": 0.25,
              "fitResidualSDThresh": 2.0}
CHOICES = {
    "file name": "<animal>_vol_NN_sess_struct.mat, NN = subvolume = VV of fov_VVPPP [I]",
    "planes": "PPP = 002..004 (plane 001 is the flyback frame, as in ssc-1) [I]",
    "trials": "each subvolume is imaged on a block of trials per day; one trial per block is invalid and "
              "dropped, so trial ids have gaps [I]",
    "fileList/fileFrameIdx": "cell 1xP; fileList{p} = cell of one TIFF path per trial; fileFrameIdx{p} = "
                             "2xF [file; frame], 1-based, NaN on missing frames [I]",
    "trialType": "1xT row index (1..6) of trialTypeMat [I]",
    "caTSA.idStrs": "'ROI <id>' [U]",
    "event times": "calcium event onset = peak time - rise time; time constants in ms [U]",
    "masks": "indices 1-based column-major into imageBounds (image_size x image_size), row vectors [I]",
    "masterImage": "uint16, channel 2 = red [U dtype]",
    "curation": "top-level variables ablationTargetIds (1xN double), ablationSuccessful (1xN logical) "
                "and ablated_ids (1xN double), as ABL's load() reads them [C names, I shapes]",
    "v7.3": "MATLAB R2019 layout (see _matv73); large arrays chunked + deflate level 3 [I]",
    "calcium": "dF/F = exponential transients (decay counted in frames) + noise, NaN frames for all cells, one "
               "cell blanked over one trial; raw F = F0 (1 + dF/F); ablated cells have no events after [synthetic]",
    "days": "condition k's days start at first_day + k * days_between_conditions; ablation = the day before "
            "the first post day; merged day d starts ~10 am + (d-1) days on the ms clock [I]",
    "behaviour": "behavESA series Pole Movement (type 2, [in out] per trial), Left/Right Licks (1), Water "
                 "Delivery (2), Response Cue (2); touches 'Protraction/Retraction contacts for C2' with "
                 "kappaMaxAbsOverTouch, thetaAtTouchOnset, touchNumberWithinTrial per on and off entry [I]",
}


@dataclass(frozen=True)
class Ssc11Params:
    """Sizes and switches of a synthetic ssc-11 animal; override any field by name.

    ``mat_versions``: ``"mixed"`` (conditions alternate v5, v7.3, ...), ``"5"``, ``"7.3"``, or one
    entry per condition, each a version or a tuple with one version per subvolume.
    ``curation``: ``"nyu"``, ``"jrc"`` or ``"both"``. ``lost_cells``/``new_cells``: per subvolume,
    ROIs present pre but in no post condition / only in post conditions.
    """

    n_subvolumes: int = 2
    n_planes: int = 3
    cells_per_plane: int = 8
    n_days: int = 3
    trials_per_day: int = 6
    frames_per_trial: int = 70
    volume_rate_hz: float = 7.0
    image_size: int = 64
    roi_radius_px: float = 2.0
    whiskers: tuple[str, ...] = ("c2",)
    whisker_rate_hz: float = 500.0
    whisker_s: float = 2.0
    nan_fraction: float = 0.01
    conditions: tuple[str, ...] = ("pre", "post_touch")
    post_kind: str = "touch"
    mat_versions: str | tuple[str | tuple[str, ...], ...] = "mixed"
    lost_cells: int = 1
    new_cells: int = 0
    curation: str = "both"
    n_ablated: int = 3
    n_failed: int = 1
    repeat_attempt: bool = True
    unknown_curation_id: bool = False
    derived: bool = True
    compress: bool = True
    first_day: str = "2019-03-31"
    days_between_conditions: int = 8
    keep_truth: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Ssc11Params:
        """Inverse of :meth:`to_dict` (lists, e.g. from JSON, become tuples again)."""
        def frozen(v: Any) -> Any:
            return tuple(frozen(x) for x in v) if isinstance(v, list | tuple) else v

        return cls(**{k: frozen(v) for k, v in d.items()})


SSC11_PRESETS: dict[str, Ssc11Params] = {
    "tiny": Ssc11Params(),
    "small": Ssc11Params(cells_per_plane=20, trials_per_day=15, image_size=512, roi_radius_px=5.0,
                         whisker_s=4.0, lost_cells=2, new_cells=1),
    "full": Ssc11Params(n_subvolumes=4, cells_per_plane=500, trials_per_day=215, image_size=512,
                        roi_radius_px=5.0, whisker_s=4.0, nan_fraction=0.002, lost_cells=20, new_cells=5,
                        n_ablated=15, n_failed=3, keep_truth=False),
}


# --------------------------------------------------------------------------------------------
# truth
# --------------------------------------------------------------------------------------------


@dataclass
class Ssc11EventSeries:
    """One event series as written: ``type`` 1 = point events, 2 = [on off] pairs interleaved."""

    type: int
    times_ms: np.ndarray
    trials: np.ndarray
    properties: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Ssc11Whisker:
    """Whisker time series (rows = ``tags``), sampled only in trials with video."""

    tags: list[str]
    time_ms: np.ndarray
    trial: np.ndarray
    angle: np.ndarray
    curvature_change: np.ndarray
    valid_trials: np.ndarray


@dataclass
class Ssc11Subvolume:
    """One ``sess`` file as written: ms on the merged clock, 1-based ids and indices."""

    condition: str
    index: int
    path: Path
    mat_version: str
    roi_ids: np.ndarray
    roi_plane: np.ndarray
    plane_numbers: list[int]
    fov_names: list[str]
    mask_indices: dict[int, np.ndarray]
    border_indices: dict[int, np.ndarray]
    corners: dict[int, np.ndarray]
    master_image: list[np.ndarray]
    raw_f: np.ndarray
    dff: np.ndarray
    time_ms: np.ndarray
    trial: np.ndarray
    day: np.ndarray
    trigger_offset_ms: np.ndarray
    nan_frames: np.ndarray
    file_list: list[list[str]]
    file_frame_idx: list[np.ndarray]
    trial_ids: np.ndarray
    trial_start_ms: np.ndarray
    trial_end_ms: np.ndarray
    trial_type_mat: np.ndarray
    trial_type: list[str]
    cell_features: dict[str, np.ndarray]
    ca_events: dict[str, np.ndarray]
    behaviour: dict[str, Ssc11EventSeries]
    whisker: Ssc11Whisker
    touches: dict[str, Ssc11EventSeries]
    pole_in_reach: Ssc11EventSeries
    derived: dict[int, np.ndarray] | None
    dead_ids: np.ndarray


@dataclass
class Ssc11Ablation:
    """One ablation: ``ids`` = unique successful targets (what ABL computes), ``failed_ids`` = never successful."""

    kind: str
    condition: str
    date: str
    ids: np.ndarray
    failed_ids: np.ndarray
    curation_files: list[Path]


@dataclass
class Ssc11Truth:
    """What :func:`write_ssc11_animal` wrote (ms, 1-based ids).

    ``subvolumes`` holds every file's :class:`Ssc11Subvolume` when ``params.keep_truth``;
    :meth:`subvolume` returns it either way (regenerating it when not kept).
    """

    root: Path
    animal: str
    animal_dir: Path
    params: Ssc11Params
    seed: int
    condition_dirs: dict[str, Path]
    paths: dict[str, list[Path]]
    mat_versions: dict[str, list[str]]
    days: dict[str, list[str]]
    roi_ids: dict[str, list[np.ndarray]]
    all_roi_ids: np.ndarray
    lost_ids: np.ndarray
    new_ids: np.ndarray
    ablations: list[Ssc11Ablation]
    ablated_ids: dict[str, np.ndarray]
    ablation_dates: dict[str, str]
    unknown_curation_ids: np.ndarray
    subvolumes: dict[str, list[Ssc11Subvolume]]
    _plan: Any = field(repr=False, default=None)

    def subvolume(self, condition: str, index: int) -> Ssc11Subvolume:
        """The truth of subvolume ``index`` (1-based, = sorted file order) of ``condition``."""
        if condition not in self.paths:
            raise KeyError(f"no condition {condition!r}; this animal has {list(self.paths)}")
        if not 1 <= index <= self.params.n_subvolumes:
            raise IndexError(f"subvolume index is 1-based, 1..{self.params.n_subvolumes}; got {index}")
        if self.subvolumes.get(condition):
            return self.subvolumes[condition][index - 1]
        return _make_subvolume(self._plan, self.params.conditions.index(condition), index - 1)


# --------------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------------


def write_ssc11_animal(root: str | Path, *, animal: str = "an274424", preset: str = "tiny", seed: int = 0,
                       **overrides: Any) -> Ssc11Truth:
    """Write ``<root>/<animal>/`` as the CRCNS ssc-11 archive lays it out; return the truth.

    ``preset`` is a key of :data:`SSC11_PRESETS`; ``overrides`` set :class:`Ssc11Params` fields.
    The same arguments give the same bytes.
    """
    params = _params(preset, overrides)
    plan = _make_plan(params, seed, animal, Path(root) / animal)
    subvolumes: dict[str, list[Ssc11Subvolume]] = {c: [] for c in params.conditions}
    for ci, cond in enumerate(params.conditions):
        plan.animal_dir.joinpath(FOLDERS[cond]).mkdir(parents=True, exist_ok=True)
        for v in range(params.n_subvolumes):
            sub = _make_subvolume(plan, ci, v)
            _save_mat(sub.path, {"sess": _sess(sub, plan)}, sub.mat_version, _created(plan.dates[cond][-1]),
                      params.compress)
            if params.keep_truth:
                subvolumes[cond].append(sub)
    _write_curation(plan)
    return _truth(plan, subvolumes)


def _params(preset: str, overrides: dict[str, Any]) -> Ssc11Params:
    if preset not in SSC11_PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {sorted(SSC11_PRESETS)}")
    names = {f.name for f in dataclasses.fields(Ssc11Params)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown Ssc11Params field(s) {unknown}; valid fields: {sorted(names)}")
    params = dataclasses.replace(SSC11_PRESETS[preset], **overrides)
    problems = _check_params(params)
    if problems:
        raise ValueError("invalid ssc-11 archive parameters:\n  " + "\n  ".join(problems))
    return params


def _check_params(p: Ssc11Params) -> list[str]:
    problems = []
    if not p.conditions or p.conditions[0] != "pre":
        problems.append(f"conditions must start with 'pre', got {p.conditions}")
    bad = [c for c in p.conditions if c not in FOLDERS]
    if bad or len(set(p.conditions)) != len(p.conditions):
        problems.append(f"conditions must be distinct names from {list(FOLDERS)}, got {p.conditions}")
    kinds = [_kind(c, p) for c in p.conditions[1:] if c in FOLDERS]
    if len(set(kinds)) != len(kinds) or p.post_kind not in KINDS:
        problems.append(f"each post condition needs its own ablation kind from {KINDS} (post_kind={p.post_kind!r})")
    if p.curation not in ("nyu", "jrc", "both"):
        problems.append(f"curation must be 'nyu', 'jrc' or 'both', got {p.curation!r}")
    if p.cells_per_plane + p.new_cells > 999 or p.n_subvolumes * (p.trials_per_day + 1) > 999:
        problems.append("ROI ids and trial ids each live in blocks of 1000: too many cells per plane or trials per day")
    if p.days_between_conditions <= p.n_days:
        problems.append("days_between_conditions must exceed n_days so the ablation date falls between conditions")
    if min(p.n_subvolumes, p.n_planes, p.n_days, p.trials_per_day, len(p.whiskers)) < 1 or p.frames_per_trial < 5:
        problems.append("sizes must be >= 1 (frames_per_trial >= 5)")
    if p.whisker_s * 1000 + 100 > (p.frames_per_trial - 2) * 1000 / p.volume_rate_hz + 2000 or \
            p.whisker_s * p.whisker_rate_hz < 1:
        problems.append("the whisker video (whisker_s) must hold a sample and end before the next trial starts")
    if p.image_size < 2 * p.roi_radius_px + 4:
        problems.append(f"image_size {p.image_size} is too small for roi_radius_px {p.roi_radius_px}")
    try:
        [_mat_version(p, ci, v) for ci in range(len(p.conditions)) for v in range(p.n_subvolumes)]
    except (ValueError, IndexError, TypeError) as exc:
        problems.append(str(exc))
    return problems


def _kind(condition: str, p: Ssc11Params) -> str:
    return p.post_kind if condition == "post" else condition.removeprefix("post_")


def _mat_version(p: Ssc11Params, ci: int, v: int) -> str:
    spec: Any = p.mat_versions
    if spec == "mixed":
        spec = "5" if ci % 2 == 0 else "7.3"
    elif not isinstance(spec, str):
        if len(spec) != len(p.conditions):
            raise ValueError(f"mat_versions needs one entry per condition {p.conditions}, got {spec}")
        spec = spec[ci] if isinstance(spec[ci], str) else spec[ci][v]
    if spec not in ("5", "7.3"):
        raise ValueError(f"a MAT version is '5' or '7.3', got {spec!r}")
    return spec


# --------------------------------------------------------------------------------------------
# animal-level plan: cells, ablations, days
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# one file: trials, frames, behaviour, whisker, calcium, features
# --------------------------------------------------------------------------------------------


def _schedule(p: Ssc11Params, seed: int, ci: int) -> dict[str, np.ndarray]:
    """Every trial of every day of condition ``ci``: subvolumes imaged one block after another."""
    rng = np.random.default_rng([seed, 3, ci])
    period, per_block = 1000.0 / p.volume_rate_hz, p.trials_per_day + 1
    parts = []
    for d in range(p.n_days):
        n = p.n_subvolumes * per_block
        n_frames = np.maximum(p.frames_per_trial + rng.integers(-2, 3, n), 5)
        length = n_frames * period + 100.0
        gaps = length + rng.uniform(2e3, 4e3, n)  # trial + inter-trial interval
        start = d * DAY_MS + 3.6e7 + rng.uniform(0, 3.6e6) + np.r_[0, np.cumsum(gaps)[:-1]]
        kept = np.ones(n, bool)
        dropped = rng.integers(1, max(per_block - 1, 2), p.n_subvolumes)  # never a block's first or last
        kept[np.arange(p.n_subvolumes) * per_block + dropped] = False
        parts.append((1000 * d + np.arange(1, n + 1), np.round(start, 3), n_frames, length,
                      np.repeat(np.arange(p.n_subvolumes), per_block), kept))
    names = ("ids", "start", "n_frames", "length", "subvolume", "kept")
    return {k: np.concatenate(col) for k, col in zip(names, zip(*parts))}


def _make_subvolume(plan: _Plan, ci: int, v: int) -> Ssc11Subvolume:
    p, cond = plan.params, plan.params.conditions[ci]
    rng = np.random.default_rng([plan.seed, 4, ci, v])
    sched = _schedule(p, plan.seed, ci)
    sel = (sched["subvolume"] == v) & sched["kept"]
    trials = {k: a[sel] for k, a in sched.items()}
    frames = _frames(trials, p, rng)
    beh = _behaviour(trials, rng)
    whisker, touches, in_reach, labels = _whisker(trials, beh, p, rng)
    cells = _cells(plan, ci, v)
    ca = _calcium(cells, frames, touches, p, rng)
    features = _features(cells, ca, frames, beh["type"], p, rng)
    return _assemble(plan, ci, v, cells, trials, frames, beh, (whisker, touches, in_reach, labels), ca, features)


def _frames(trials: dict[str, np.ndarray], p: Ssc11Params, rng: np.random.Generator) -> dict[str, np.ndarray]:
    period, n = 1000.0 / p.volume_rate_hz, trials["n_frames"]
    offset = rng.uniform(10, 60, len(n))
    k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
    nan = rng.random(n.sum()) < p.nan_fraction
    if p.nan_fraction > 0 and not nan.any():
        nan[rng.integers(n.sum())] = True
    return {"time": np.repeat(trials["start"] + offset, n) + k * period, "trial": np.repeat(trials["ids"], n),
            "offset": np.repeat(offset, n), "frame_in_trial": k + 1, "trial_pos": np.repeat(np.arange(len(n)), n),
            "nan": nan}


def _behaviour(trials: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, Any]:
    """Trial outcomes and behavESA series (pole, licks, water, cue) in ms on the merged clock."""
    t, start = trials["ids"], trials["start"]
    kind = rng.choice(6, len(t), p=TRIAL_TYPE_P)
    move_in = start + rng.uniform(400, 700, len(t))
    move_out = move_in + 1500.0
    cue = move_out + rng.uniform(450, 550, len(t))
    left, right, water = _licks(kind, t, cue, rng)
    series = {"Pole Movement": _pairs(move_in, move_out, t),
              "Left Licks": Ssc11EventSeries(1, left[0], left[1]),
              "Right Licks": Ssc11EventSeries(1, right[0], right[1]),
              "Water Delivery": _pairs(water[0], water[0] + 40.0, water[1]),
              "Response Cue": _pairs(cue, cue + 100.0, t)}
    return {"type": kind, "series": series, "in_reach": move_in + 200.0, "out_of_reach": move_out + 100.0}


def _licks(kind: np.ndarray, trials: np.ndarray, cue: np.ndarray,
           rng: np.random.Generator) -> tuple[tuple[np.ndarray, np.ndarray], ...]:  # fmt: skip
    """Left/right lick times and water onsets: hits lick the correct side, errors the other."""
    out: dict[str, list[tuple[float, float]]] = {"L": [], "R": [], "W": []}
    for k, trial, c in zip(kind.tolist(), trials.tolist(), cue.tolist()):
        if k >= 4:
            continue
        side = "LR"[k % 2] if k < 2 else "RL"[k % 2]
        times = c + rng.uniform(150, 400) + np.cumsum(rng.uniform(110, 170, rng.integers(2, 7)))
        out[side] += [(x, trial) for x in times]
        if k < 2:
            out["W"].append((times[0] + 10.0, trial))
    return tuple((np.array([x for x, _ in out[s]]), np.array([y for _, y in out[s]], dtype=np.int64))
                 for s in "LRW")


def _pairs(on: np.ndarray, off: np.ndarray, trials: np.ndarray) -> Ssc11EventSeries:
    return Ssc11EventSeries(2, np.column_stack([on, off]).ravel(), np.repeat(np.asarray(trials, np.int64), 2))


def _whisker(trials: dict[str, np.ndarray], beh: dict[str, Any], p: Ssc11Params, rng: np.random.Generator) -> tuple:
    """Angle and curvature change at ``whisker_rate_hz`` in trials with video, plus classified touches."""
    valid = rng.random(len(trials["ids"])) > 0.1
    if len(valid) >= 4:
        valid[rng.integers(len(valid))] = False
    per, dt = int(round(p.whisker_s * p.whisker_rate_hz)), 1000.0 / p.whisker_rate_hz
    nv, t0 = int(valid.sum()), trials["start"][valid] + 100.0
    time = np.repeat(t0, per) + np.tile(np.arange(per) * dt, nv)
    trial = np.repeat(trials["ids"][valid], per)
    rel = time - np.repeat(t0, per)
    shape = (len(p.whiskers), len(time))
    phase = rng.uniform(0, 2 * np.pi, (3, len(p.whiskers), nv)).repeat(per, axis=2)
    angle = (-5 + 8 * np.sin(2 * np.pi * rel / 3000 + phase[0])
             + 6 * (1 + np.sin(2 * np.pi * rel / 1700 + phase[1])) * np.sin(2 * np.pi * 15 * rel / 1000 + phase[2])
             + rng.normal(0, 0.3, shape))
    kappa = rng.normal(0, 5e-4, shape)
    missing = rng.random(len(time)) < 0.005
    angle[:, missing], kappa[:, missing] = np.nan, np.nan
    labels = np.zeros(shape, np.int8)
    touches = {}
    for w, tag in enumerate(p.whiskers):
        touches.update(_touches(tag, time, angle[w], kappa[w], labels[w], beh, trials, valid, rng))
    reach = _pairs(beh["in_reach"][valid], beh["out_of_reach"][valid], trials["ids"][valid])
    whisker = Ssc11Whisker(list(p.whiskers), time, trial, angle, kappa, trials["ids"][valid])
    return whisker, touches, reach, labels


def _touches(tag: str, time: np.ndarray, angle: np.ndarray, kappa: np.ndarray, labels: np.ndarray,
             beh: dict[str, Any], trials: dict[str, np.ndarray], valid: np.ndarray,
             rng: np.random.Generator) -> dict[str, Ssc11EventSeries]:  # fmt: skip
    """Touches while the pole is in reach; Δκ is set during each touch (protraction < 0 < retraction)."""
    rows: dict[bool, list[tuple[float, float, int, float, float, int]]] = {True: [], False: []}
    for i in np.flatnonzero(valid):
        onsets = beh["in_reach"][i] + np.cumsum(rng.uniform(100, 300, rng.integers(0, 4)))
        onsets = onsets[onsets < beh["out_of_reach"][i] - 100]
        for number, on in enumerate(onsets, start=1):
            off, pro = on + rng.uniform(15, 80), bool(rng.random() < 0.5)
            a, b = np.searchsorted(time, [on, off])
            kappa[a:b] += (-1 if pro else 1) * rng.uniform(0.002, 0.02) + rng.normal(0, 5e-4, b - a)
            if np.isnan(kappa[a:b]).all():
                continue
            labels[a:b] = 1 if pro else 2
            peak = kappa[a:b][np.nanargmax(np.abs(kappa[a:b]))]
            rows[pro].append((on, off, int(trials["ids"][i]), peak, angle[a], number))
    return {f"{name} contacts for {tag.upper()}": _touch_series(rows[pro]) for name, pro in
            (("Protraction", True), ("Retraction", False))}


def _touch_series(rows: list[tuple[float, float, int, float, float, int]]) -> Ssc11EventSeries:
    a = np.array(rows, dtype=float).reshape(-1, 6)
    props = {"kappaMaxAbsOverTouch": a[:, 3], "thetaAtTouchOnset": a[:, 4], "touchNumberWithinTrial": a[:, 5]}
    series = _pairs(a[:, 0], a[:, 1], a[:, 2].astype(np.int64))
    series.properties = {k: np.repeat(x, 2) for k, x in props.items()}  # stored once per on and off entry
    return series


def _cells(plan: _Plan, ci: int, v: int) -> dict[str, np.ndarray]:
    lay, cond = plan.layouts[v], plan.params.conditions[ci]
    keep = plan.present[cond][v]
    dead_ids = np.concatenate([a.ids for a in plan.ablations[:ci]] or [np.zeros(0, np.int64)])
    cells = {k: getattr(lay, k)[keep] for k in ("ids", "plane", "center", "tuning", "protraction", "rate_hz",
                                                 "f0", "tau_ms", "noise")}
    cells["dead"] = np.isin(cells["ids"], dead_ids)
    return cells


def _calcium(cells: dict[str, np.ndarray], frames: dict[str, np.ndarray], touches: dict[str, Ssc11EventSeries],
             p: Ssc11Params, rng: np.random.Generator) -> dict[str, Any]:  # fmt: skip
    """ΔF/F = decaying transients at Poisson (and touch-locked) events + noise; raw F = F0 (1 + ΔF/F)."""
    time, nan = frames["time"], frames["nan"]
    n_cells, n_frames = len(cells["ids"]), len(time)
    cell, frame = _event_frames(cells, frames, touches, p, rng)
    blank_cell, blank_frames = _blank(n_cells, frames, rng)
    keep = ~nan[frame] & ~((cell == blank_cell) & blank_frames[frame])
    cell, frame = cell[keep], frame[keep]
    amp = rng.lognormal(np.log(0.5), 0.4, cell.size)
    y = _transients(cell, frame, amp, cells["tau_ms"] * p.volume_rate_hz / 1000.0, n_frames)
    for rows in np.array_split(np.arange(n_frames), max(1, n_frames // 2000)):  # noise in blocks: small temporaries
        y[rows] += rng.standard_normal((len(rows), n_cells)) * cells["noise"]
    y[nan] = np.nan
    if blank_cell >= 0:
        y[blank_frames, blank_cell] = np.nan
    dff = y.T  # cells x frames, Fortran-ordered
    raw = (cells["f0"] * (1.0 + y)).T
    return {"dff": dff, "raw": raw, "events": _event_table(cells, cell, frame, amp, frames, rng)}


def _event_frames(cells: dict[str, np.ndarray], frames: dict[str, np.ndarray], touches: dict[str, Ssc11EventSeries],
                  p: Ssc11Params, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(cell row, frame) of every event, sorted, unique: Poisson events plus touch-locked ones in touch cells."""
    time, n_frames = frames["time"], len(frames["time"])
    rate = np.where(cells["dead"], 0.0, cells["rate_hz"])
    cell = np.repeat(np.arange(len(rate)), rng.poisson(rate * n_frames / p.volume_rate_hz))
    frame = rng.integers(0, n_frames, cell.size)
    onsets = np.concatenate([s.times_ms[0::2] for s in touches.values()] or [np.zeros(0)])
    touch_cells = np.flatnonzero((cells["tuning"] == 1) & ~cells["dead"])
    hit = rng.random((len(touch_cells), len(onsets))) < 0.5
    cell = np.r_[cell, np.repeat(touch_cells, hit.sum(axis=1))]
    frame = np.r_[frame, np.minimum(np.searchsorted(time, onsets)[np.nonzero(hit)[1]], n_frames - 1)]
    key = np.sort(cell.astype(np.int64) * n_frames + frame)
    key = key[np.r_[True, key[1:] != key[:-1]]] if key.size else key
    return key // max(n_frames, 1), key % max(n_frames, 1)


def _transients(cell: np.ndarray, frame: np.ndarray, amp: np.ndarray, tau_frames: np.ndarray,
                n_frames: int) -> np.ndarray:  # fmt: skip
    """Exponential decays counted in frames, as a (frames, cells) C-ordered array.

    Its transpose (cells x frames, Fortran-ordered) is what MATLAB stores column-major, so both
    writers copy it without transposing 0.5 GB in the full preset.
    """
    y = np.zeros((n_frames, len(tau_frames)))
    y[frame, cell] = amp
    a = np.exp(-1.0 / tau_frames)
    for t in range(1, n_frames):
        y[t] += a * y[t - 1]
    return y


def _blank(n_cells: int, frames: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[int, np.ndarray]:
    """One cell blanked (NaN) over one trial, as the lab's ``blankTrials`` leaves it: (row or -1, frame mask)."""
    n_trials = frames["trial_pos"].max(initial=-1) + 1
    if n_cells < 2 or n_trials < 2:
        return -1, np.zeros(len(frames["time"]), bool)
    return int(rng.integers(n_cells)), frames["trial_pos"] == rng.integers(n_trials)


def _event_table(cells: dict[str, np.ndarray], cell: np.ndarray, frame: np.ndarray, amp: np.ndarray,
                 frames: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:  # fmt: skip
    peak = frames["time"][frame]
    rise = rng.uniform(50, 150, cell.size)
    tau = cells["tau_ms"][cell]
    return {"roi_id": cells["ids"][cell], "event_time": peak - rise, "peak_time": peak, "end_time": peak + 3 * tau,
            "peak_value": amp, "decay_time_constant": tau, "rise_time_constant": rise,
            "trial": frames["trial"][frame]}


def _features(cells: dict[str, np.ndarray], ca: dict[str, Any], frames: dict[str, np.ndarray], kind: np.ndarray,
              p: Ssc11Params, rng: np.random.Generator) -> dict[str, np.ndarray]:  # fmt: skip
    """The cellFeatures hash: GLM scores (touch/whisking cells score high, dead cells ~0), rates, trial averages."""
    n, alive = len(cells["ids"]), ~cells["dead"]
    touch = np.where((cells["tuning"] == 1) & alive, rng.uniform(0.3, 0.8, n), rng.uniform(0, 0.15, n) * alive)
    whisk = np.where((cells["tuning"] == 2) & alive, rng.uniform(0.2, 0.6, n), rng.uniform(0, 0.15, n) * alive)
    lag = np.linspace(1.0, 0.2, KERNEL_LAGS)[:, None]
    kernel = np.where(cells["protraction"], lag, lag[::-1]) * touch + rng.normal(0, 0.02, (KERNEL_LAGS, n))
    valid_s = max((~frames["nan"]).sum(), 1) / p.volume_rate_hz
    rate = np.bincount(np.searchsorted(cells["ids"], ca["events"]["roi_id"]), minlength=n) / valid_s
    base, w = "eventBasedDff_k16t14_", p.whiskers[0].lower()
    return {f"{base}MeanWhiskerAmplitudeGLMScore": whisk,
            f"{base}MeanWhiskerAmplitudeGLMShuffleScore": rng.uniform(0, 0.05, n),
            f"{base}{w}AbsMaxKappaZeroNotouchGLMScore": touch,
            f"{base}{w}AbsMaxKappaZeroNotouchGLMShuffleScore": rng.uniform(0, 0.05, n),
            f"{base}{w}AbsMaxKappaZeroNotouchGLMStimKernelWeight": kernel,
            "eventRateHz": rate,
            "dffBased_HitLTrialAvg": _trial_average(ca["dff"], frames, kind == 0),
            "dffBased_HitRTrialAvg": _trial_average(ca["dff"], frames, kind == 1)}


def _trial_average(dff: np.ndarray, frames: dict[str, np.ndarray], chosen: np.ndarray) -> np.ndarray:
    """Mean ΔF/F over the chosen trials' first 70 frames: 70 x cells (NaN where no trial has data)."""
    starts = np.flatnonzero(frames["frame_in_trial"] == 1)[chosen]
    idx = starts[:, None] + np.arange(TRIAL_AVG_FRAMES)[None, :]
    ok = (idx < dff.shape[1]) & (frames["trial_pos"][np.minimum(idx, dff.shape[1] - 1)] ==
                                 frames["trial_pos"][starts][:, None])
    stack = np.where(ok[None], dff[:, np.minimum(idx, dff.shape[1] - 1)], np.nan)  # cells x trials x 70
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(stack, axis=1).T if len(starts) else np.full((TRIAL_AVG_FRAMES, dff.shape[0]), np.nan)


def _derived(frames: dict[str, np.ndarray], whisker: Ssc11Whisker, labels: np.ndarray,
             p: Ssc11Params) -> dict[int, np.ndarray]:  # fmt: skip
    """Whisker variables of the first whisker resampled onto the imaging frames (one frame = one bin)."""
    lo = np.searchsorted(whisker.time_ms, frames["time"])
    hi = np.searchsorted(whisker.time_ms, frames["time"] + 1000.0 / p.volume_rate_hz)
    angle, kappa = whisker.angle[0], np.abs(whisker.curvature_change[0])
    total = _bin_reduce(np.add, np.nan_to_num(angle), lo, hi)
    count = _bin_reduce(np.add, (~np.isnan(angle)).astype(float), lo, hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        setpoint = total / count
    amplitude = (_bin_reduce(np.fmax, angle, lo, hi) - _bin_reduce(np.fmin, angle, lo, hi)) / 2
    return {10000: setpoint, 10010: amplitude,
            20112: _bin_reduce(np.fmax, np.where(labels[0] == 1, kappa, 0.0), lo, hi),
            20113: _bin_reduce(np.fmax, np.where(labels[0] == 2, kappa, 0.0), lo, hi)}


def _bin_reduce(ufunc: np.ufunc, values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``ufunc`` over ``values[lo:hi]`` per bin in one ``reduceat``; NaN for empty bins."""
    ext = np.append(values.astype(float), np.nan)
    bounds = np.empty(2 * len(lo), np.intp)
    bounds[0::2], bounds[1::2] = lo, hi
    out = ufunc.reduceat(ext, bounds)[0::2] if len(lo) else np.zeros(0)
    out[hi <= lo] = np.nan
    return out


def _assemble(plan: _Plan, ci: int, v: int, cells: dict[str, np.ndarray], trials: dict[str, np.ndarray],
              frames: dict[str, np.ndarray], beh: dict[str, Any], whisk: tuple, ca: dict[str, Any],
              features: dict[str, np.ndarray]) -> Ssc11Subvolume:  # fmt: skip
    p, cond = plan.params, plan.params.conditions[ci]
    whisker, touches, in_reach, labels = whisk
    masks = {int(r): _mask(c, p.image_size, p.roi_radius_px) for r, c in zip(cells["ids"], cells["center"])}
    planes = [j + 2 for j in range(p.n_planes)]
    ttm = np.zeros((6, len(trials["ids"])))
    ttm[beh["type"], np.arange(len(trials["ids"]))] = 1.0
    files, ffi = _file_lists(plan, cond, v, trials, frames)
    return Ssc11Subvolume(
        cond, v + 1, _file_path(plan, cond, v), _mat_version(p, ci, v), cells["ids"], cells["plane"], planes,
        [f"fov_{v + 1:02d}{pp:03d}" for pp in planes], {r: m[0] for r, m in masks.items()},
        {r: m[1] for r, m in masks.items()},
        {int(r): _corners(c, p.roi_radius_px) for r, c in zip(cells["ids"], cells["center"])},
        plan.layouts[v].images, ca["raw"], ca["dff"], frames["time"], frames["trial"],
        (frames["trial"] - 1) // 1000 + 1, frames["offset"], frames["nan"], files, ffi, trials["ids"],
        trials["start"], trials["start"] + trials["length"], ttm, [TRIAL_TYPES[k] for k in beh["type"]], features,
        ca["events"], beh["series"], whisker, touches, in_reach,
        _derived(frames, whisker, labels, p) if p.derived else None, cells["ids"][cells["dead"]])


def _file_lists(plan: _Plan, cond: str, v: int, trials: dict[str, np.ndarray],
                frames: dict[str, np.ndarray]) -> tuple[list[list[str]], list[np.ndarray]]:  # fmt: skip
    """Per plane: one registered TIFF per trial, and [file; frame] (1-based, NaN when missing) per frame."""
    a = plan.animal
    day = (trials["ids"] - 1) // 1000
    files, idx = [], []
    for j in range(plan.params.n_planes):
        fov = f"fov_{v + 1:02d}{j + 2:03d}"
        files.append([f"{a}/{plan.dates[cond][d]}/scanimage/{fov}/fluo_batch_out/Image_Registration_4_{a}_"
                      f"{plan.dates[cond][d]}_main_{t - 1000 * d:03d}.tif" for d, t in zip(day, trials["ids"])])
        ffi = np.vstack([frames["trial_pos"] + 1.0, frames["frame_in_trial"].astype(float)])
        ffi[:, frames["nan"]] = np.nan
        idx.append(ffi)
    return files, idx


# --------------------------------------------------------------------------------------------
# the sess struct (dict = struct, object array = cell), as MATLAB's struct(sessionObject) gives
# --------------------------------------------------------------------------------------------


def _cell(items: list[Any]) -> np.ndarray:
    out = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        out[0, i] = item
    return out


def _hash(d: dict[str, Any]) -> dict[str, Any]:
    """The lab's ``hash`` class as a struct: ``keys`` and ``values`` cells."""
    if not d:
        return {"keys": np.empty((0, 0), object), "values": np.empty((0, 0), object)}
    return {"keys": _cell(list(d)), "values": _cell(list(d.values()))}


def _es(es_id: int, name: str, s: Ssc11EventSeries, starts: dict[int, float]) -> dict[str, Any]:
    rel = s.times_ms - np.array([starts[t] for t in s.trials.tolist()]) if len(s.trials) else np.zeros(0)
    return {"id": float(es_id), "idStr": name, "color": np.zeros(3), "type": float(s.type), "timeUnit": 1.0,
            "eventTimes": s.times_ms.astype(float), "eventTrials": s.trials.astype(float),
            "eventTimesRelTrialStart": rel, "eventPropertiesHash": _hash(s.properties)}


def _esa(series: dict[str, Ssc11EventSeries], trial_times: np.ndarray, starts: dict[int, float]) -> dict[str, Any]:
    return {"esa": _cell([_es(i, n, s, starts) for i, (n, s) in enumerate(series.items(), 1)]),
            "ids": np.arange(1.0, len(series) + 1), "trialTimes": trial_times}


def _tsa(ids: list[float], names: list[str], time: np.ndarray, trial: np.ndarray, values: np.ndarray) -> dict:
    return {"ids": np.asarray(ids, float), "idStrs": _cell(names), "trialIndices": trial.astype(float),
            "time": time, "timeUnit": 1.0, "valueMatrix": values}


def _sess(sub: Ssc11Subvolume, plan: _Plan) -> dict[str, Any]:
    trial_times = np.column_stack([sub.trial_ids, sub.trial_start_ms, sub.trial_end_ms]).astype(float)
    starts = dict(zip(sub.trial_ids.tolist(), sub.trial_start_ms.tolist()))
    features, w = _hash(sub.cell_features), sub.whisker
    sess: dict[str, Any] = {
        "mouseId": plan.animal, "dateStr": "compound", "behavProtocolName": PROTOCOL,
        "whiskerTag": _cell(list(plan.params.whiskers)),
        "trialIds": sub.trial_ids.astype(float), "trialStartTimes": sub.trial_start_ms,
        "trialTypeMat": sub.trial_type_mat, "trialType": sub.trial_type_mat.argmax(axis=0) + 1.0,
        "trialTypeStr": _cell(TRIAL_TYPES), "trialTypeColor": TRIAL_TYPE_COLOR,
        "validTrialIds": sub.trial_ids.astype(float), "validCaTrialIds": sub.trial_ids.astype(float),
        "validWhiskerTrialIds": w.valid_trials.astype(float),
        "behavESA": _esa(sub.behaviour, trial_times, starts),
        "caTSA": _ca_tsa(sub, plan, features, trial_times),
        "whiskerAngleTSA": _tsa(list(range(1, len(w.tags) + 1)), [f"Angle {t.upper()}" for t in w.tags],
                                w.time_ms, w.trial, w.angle),
        "whiskerCurvatureChangeTSA": _tsa(list(range(1, len(w.tags) + 1)),
                                          [f"Curvature change {t.upper()}" for t in w.tags], w.time_ms, w.trial,
                                          w.curvature_change),
        "whiskerBarContactClassifiedESA": _esa(sub.touches, trial_times, starts),
        "whiskerBarInReachES": _es(1, "Bar in reach", sub.pole_in_reach, starts),
        "cellFeatures": features,
    }
    if sub.derived is not None:
        tag = plan.params.whiskers[0].upper()
        sess["derivedDataTSA"] = _tsa(list(map(float, DERIVED)), [f"{DERIVED[k]} {tag}" for k in DERIVED],
                                      sub.time_ms, sub.trial, np.vstack(list(sub.derived.values())))
    return sess


def _ca_tsa(sub: Ssc11Subvolume, plan: _Plan, features: dict[str, Any], trial_times: np.ndarray) -> dict[str, Any]:
    p, ids = plan.params, sub.roi_ids.astype(float)
    names = [f"ROI {int(r)}" for r in sub.roi_ids]
    base = _tsa(list(ids), names, sub.time_ms, sub.trial, sub.raw_f)
    depth = 128.0 + 45.0 * (sub.index - 1) + 15.0 * (sub.roi_plane - 1)
    n_events = np.bincount(np.searchsorted(sub.roi_ids, sub.ca_events["roi_id"]), minlength=len(ids))
    return {**base,
            "numFOVs": float(p.n_planes), "roiFOVidx": sub.roi_plane.astype(float),
            "roiArray": _cell([_roi_array(sub, plan, j) for j in range(p.n_planes)]),
            "activeRoiIds": ids[n_events > 0], "triggerOffsetForTrialInMS": sub.trigger_offset_ms,
            "roiDepthInMicrons": depth,
            "dffTimeSeriesArray": _tsa(list(ids), names, sub.time_ms, sub.trial, sub.dff),
            "caPeakEventSeriesArray": {"esa": _cell(_ca_event_series(sub)), "ids": ids, "trialTimes": trial_times},
            "dffOpts": DFF_OPTS, "evdetOpts": EVDET_OPTS,
            "fileList": _cell([_cell(files) for files in sub.file_list]), "fileFrameIdx": _cell(sub.file_frame_idx),
            "cellFeatures": features}


def _ca_event_series(sub: Ssc11Subvolume) -> list[dict[str, Any]]:
    """One calciumEventSeries struct per cell, in caTSA.ids order."""
    ev = sub.ca_events
    bounds = np.searchsorted(ev["roi_id"], sub.roi_ids, "left"), np.searchsorted(ev["roi_id"], sub.roi_ids, "right")
    out = []
    for rid, a, b in zip(sub.roi_ids.tolist(), *bounds):
        out.append({"id": float(rid), "idStr": f"ROI {rid}", "type": 1.0, "timeUnit": 1.0,
                    "eventTimes": ev["event_time"][a:b], "eventTrials": ev["trial"][a:b].astype(float),
                    "peakTimes": ev["peak_time"][a:b], "endTimes": ev["end_time"][a:b],
                    "peakValues": ev["peak_value"][a:b], "decayTimeConstants": ev["decay_time_constant"][a:b],
                    "riseTimeConstants": ev["rise_time_constant"][a:b]})
    return out


def _roi_array(sub: Ssc11Subvolume, plan: _Plan, j: int) -> dict[str, Any]:
    """The roiArray object of plane ``j`` (0-based) as a struct; ``rois`` is a cell of roi structs."""
    p, size = plan.params, float(plan.params.image_size)
    ids = sub.roi_ids[sub.roi_plane == j + 1]
    block = 1000 * ((sub.index - 1) * p.n_planes + j)
    rois = [{"id": float(r), "color": np.array([1.0, 0.0, 0.0]), "groups": np.zeros((0, 0)),
             "corners": sub.corners[int(r)], "indices": sub.mask_indices[int(r)].astype(float),
             "borderIndices": sub.border_indices[int(r)].astype(float), "imageBounds": np.array([size, size])}
            for r in ids]
    return {"roiIds": ids.astype(float), "rois": _cell(rois), "idStr": f"{plan.animal}_{sub.fov_names[j]}",
            "masterImage": sub.master_image[j], "imageBounds": np.array([size, size]),
            "settings": {"umPerPixel": 600.0 / size}, "metaData": {"subvolId": float(sub.index)},
            "roiIdRange": np.array([block + 1.0, block + 1000.0])}


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def _created(day: str) -> str:
    """MATLAB's header date (``asctime`` style) for the evening of ``day`` (YYYY_MM_DD)."""
    d = _dt.datetime.strptime(day, "%Y_%m_%d").replace(hour=18)
    return f"{d:%a %b} {d.day:2d} {d:%H:%M:%S %Y}"


def _save_v5(path: Path, variables: dict[str, Any], created: str, compress: bool = True) -> None:
    """``scipy.io.savemat`` (zlib-compressed as MATLAB's v7, 1-D as rows, 63-char names), fixed header."""
    import scipy.io

    header = f"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: {created}".encode().ljust(116, b" ")
    with path.open("wb") as fh:
        scipy.io.savemat(fh, variables, do_compression=compress, oned_as="row", long_field_names=True)
        fh.seek(0)
        fh.write(header)


def _save_mat(path: Path, variables: dict[str, Any], version: str, created: str, compress: bool) -> None:
    if version == "7.3":
        savemat73(path, variables, created=created, compression=3 if compress else None)
    else:
        _save_v5(path, variables, created, compress)


def _write_curation(plan: _Plan) -> None:
    """Per ablation: NYU ``<date>_ablation[_kind]/manualCurationData.mat`` and/or JRC ``<animal>_<date>.mat``."""
    p = plan.params
    for abl, (ok, bad) in zip(plan.ablations, plan.attempts):
        date = abl.date.replace("-", "_")
        extra = plan.unknown_ids if abl is plan.ablations[0] else np.zeros(0, np.int64)
        if p.curation in ("nyu", "both"):
            folder = plan.animal_dir / f"{date}_ablation{NYU_SUFFIX[abl.kind]}"
            folder.mkdir(parents=True, exist_ok=True)
            targets, success = _attempts(ok, bad, extra, p.repeat_attempt, plan.seed)
            path = folder / "manualCurationData.mat"
            _save_v5(path, {"ablationTargetIds": targets, "ablationSuccessful": success}, _created(date))
            abl.curation_files.append(path)
        if p.curation in ("jrc", "both"):
            path = plan.animal_dir / f"{plan.animal}_{date}.mat"
            _save_v5(path, {"ablated_ids": np.r_[ok, extra].astype(float)}, _created(date))
            abl.curation_files.append(path)


def _attempts(ok: np.ndarray, bad: np.ndarray, extra: np.ndarray, repeat: bool,
              seed: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Targets in attempt order with their success flags; a repeated target first failed, then succeeded."""
    rng = np.random.default_rng([seed, 6, len(ok), len(bad)])
    ids = np.r_[ok, extra, bad].astype(float)
    success = np.r_[np.ones(len(ok) + len(extra), bool), np.zeros(len(bad), bool)]
    order = rng.permutation(len(ids))
    ids, success = ids[order], success[order]
    if repeat and len(ok):
        ids, success = np.r_[float(ok[0]), ids], np.r_[False, success]
    return ids, success
