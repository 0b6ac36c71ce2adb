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

The generator is split by stage: ``_ssc11_model`` (parameters, presets, truth records),
``_ssc11_plan`` (cells, ablations, days of the animal), ``_ssc11_subvolume`` (one file's data) and
``_ssc11_sess`` (the ``sess`` struct, the MAT and curation writers); this module ties them together.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ._ssc11_model import (CHOICES, FOLDERS, SSC11_PRESETS, Ssc11Ablation, Ssc11EventSeries, Ssc11Params,
                           Ssc11Subvolume, Ssc11Truth, Ssc11Whisker, _check_params)
from ._ssc11_plan import _make_plan, _truth
from ._ssc11_sess import _created, _save_mat, _sess, _write_curation
from ._ssc11_subvolume import _make_subvolume

__all__ = ["write_ssc11_animal", "Ssc11Params", "SSC11_PRESETS", "Ssc11Truth", "Ssc11Subvolume",
           "Ssc11EventSeries", "Ssc11Whisker", "Ssc11Ablation", "CHOICES", "FOLDERS"]


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
