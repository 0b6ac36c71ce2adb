"""The ssc-11 synthetic archive's parameters, presets, layout constants and truth records.

Split from :mod:`sscxr.testing.archives.ssc11` (which re-exports every public name here):

>>> from sscxr.testing.archives.ssc11 import SSC11_PRESETS
>>> SSC11_PRESETS["tiny"].n_subvolumes, SSC11_PRESETS["full"].cells_per_plane
(2, 500)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
        from ._ssc11_subvolume import _make_subvolume  # the generator imports these records

        return _make_subvolume(self._plan, self.params.conditions.index(condition), index - 1)



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

