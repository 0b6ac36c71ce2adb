"""The typed API stays typed: mypy over the library and the converter (``[tool.mypy]`` files), and
the public analysis parameters refuse wrong arguments.

One mypy run checks the project and a small file of calls (``CALLS``): the right calls must pass
and every line marked ``# wrong`` must be an error, so a parameter loosened to ``Any`` (which
accepts everything) fails here.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
import subprocess
import sys
import typing
from collections.abc import Callable
from pathlib import Path

import pytest

from sscxr import accessors, align, behavior, resample, response
from sscxr._types import EventName
from sscxr.summary import StoreSummary

ROOT = Path(__file__).resolve().parents[1]

CALLS = '''
from typing import assert_type

import numpy as np
import pandas as pd
import xarray as xr

from sscxr.accessors import SscxDataArrayAccessor, SscxDatasetAccessor, SscxTreeAccessor
from sscxr.align import AlignTo, Trials, event_times, trial_tensor
from sscxr.behavior import first_touch
from sscxr.response import event_response

tree = xr.DataTree()
ds = xr.Dataset()
da = xr.DataArray([1.0])
table = pd.DataFrame({"start_time": [1.0]})
times = np.array([1.0, 2.0])
assert_type(SscxTreeAccessor(tree).trial_tensor("dff", subvolume=1, align_to="first_touch"), xr.DataArray)
assert_type(SscxTreeAccessor(tree).trial_tensor(subvolume="all", align_to=times), dict[int, xr.DataArray])
SscxTreeAccessor(tree).event_response(align_to=xr.DataArray(times, dims="trial"), subvolume=[1, 2],
                                      condition=["pre", "post_touch"])
SscxDatasetAccessor(ds).align([1.0, 2.0], (-1.0, 1.0), trials=[3, 4])
SscxDatasetAccessor(ds).align(table, (-1.0, 1.0))
SscxDatasetAccessor(ds).trial_tensor(events=ds, align_to="pole_in", trials=ds)
SscxDataArrayAccessor(da).trial_tensor(table, align_to=[1.0, 2.0], trials=np.array([1, 2]))
SscxDataArrayAccessor(da).align(da, (0.0, 1.0), trials=pd.Index([1]))
event_times(ds, "reward", trials=ds)
first_touch(table, [1, 2])
a: AlignTo = "trial_start"
t: Trials = ds

SscxTreeAccessor(tree).trial_tensor(align_to=3)  # wrong
SscxTreeAccessor(tree).trial_tensor(window=5.0)  # wrong
SscxTreeAccessor(tree).trial_tensor(subvolume="first")  # wrong
SscxTreeAccessor(tree).event_response(align_to=None)  # wrong
SscxTreeAccessor(tree).event_response(condition=3)  # wrong
SscxDatasetAccessor(ds).align(5, (-1.0, 1.0))  # wrong
SscxDatasetAccessor(ds).align(times, (-1.0, 1.0), trials="1, 2")  # wrong
SscxDatasetAccessor(ds).trial_tensor(events=times)  # wrong
SscxDataArrayAccessor(da).trial_tensor(align_to={"a": 1.0})  # wrong
SscxDataArrayAccessor(da).align(times, (-1.0, 1.0), trials=1.5)  # wrong
trial_tensor(da, align_to=1.5)  # wrong
event_times(ds, 1)  # wrong
event_response(tree, subvolume=1.0)  # wrong
first_touch(ds, trials="all")  # wrong
'''


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, Path]:
    """(exit code, output, the calls file) of one mypy run over the project and ``CALLS``."""
    pytest.importorskip("mypy")
    if os.environ.get("SSCXR_NO_FASTPATH"):  # static analysis: the same result in the README's second pass
        pytest.skip("mypy ran in the pass without SSCXR_NO_FASTPATH")
    tmp = tmp_path_factory.mktemp("typing")
    calls = tmp / "calls_sscxr_api.py"
    calls.write_text(CALLS)
    cache = tmp / "mypy_cache"  # a fresh cache: no stale results from another checkout
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--show-error-codes",
                           "--no-error-summary", "sscxr", "conversion/sscxr_conversion", str(calls)],
                          cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    shutil.rmtree(cache, ignore_errors=True)
    return proc.returncode, proc.stdout + proc.stderr, calls


def _errors_by_file(output: str, calls: Path) -> tuple[list[str], set[int]]:
    """Error lines outside the calls file, and the line numbers with an error inside it."""
    outside, lines = [], set()
    for line in output.splitlines():
        if ": error:" not in line:
            continue
        match = re.match(rf"^{re.escape(str(calls))}:(\d+):", line)
        if match:
            lines.add(int(match.group(1)))
        else:
            outside.append(line)
    return outside, lines


@pytest.mark.timeout(600)
def test_mypy_is_clean(mypy_output: tuple[int, str, Path]) -> None:
    code, output, calls = mypy_output
    outside, _ = _errors_by_file(output, calls)
    assert outside == [], output
    assert code in (0, 1), output  # 1: the calls file's deliberate errors; 2: mypy itself failed


@pytest.mark.timeout(600)
def test_wrong_arguments_are_type_errors_and_right_ones_are_not(mypy_output: tuple[int, str, Path]) -> None:
    _, output, calls = mypy_output
    _, flagged = _errors_by_file(output, calls)
    wrong = {n for n, line in enumerate(CALLS.splitlines(), start=1) if line.endswith("# wrong")}
    assert len(wrong) == 14
    assert flagged - wrong == set(), f"right calls refused:\n{output}"
    assert wrong - flagged == set(), f"wrong calls accepted (lines {sorted(wrong - flagged)}):\n{output}"


def _public_callables() -> list[tuple[str, Callable[..., object]]]:
    out: list[tuple[str, Callable[..., object]]] = []
    for cls in (accessors.SscxTreeAccessor, accessors.SscxDatasetAccessor, accessors.SscxDataArrayAccessor):
        out += [(f"{cls.__name__}.{n}", f) for n, f in vars(cls).items() if callable(f) and not n.startswith("_")]
    for module in (align, behavior, resample, response):
        out += [(f"{module.__name__}.{n}", getattr(module, n)) for n in module.__all__
                if inspect.isfunction(getattr(module, n))]
    return out


def _mentions_any(hint: object) -> bool:
    return hint is typing.Any or any(_mentions_any(arg) for arg in typing.get_args(hint))


@pytest.mark.parametrize(("name", "func"), _public_callables(), ids=[n for n, _ in _public_callables()])
def test_no_public_analysis_parameter_is_any(name: str, func: Callable[..., object]) -> None:
    hints = typing.get_type_hints(func, localns={"StoreSummary": StoreSummary})
    params = [p for p in inspect.signature(func).parameters if p not in ("self", "kw", "kwargs")]
    assert all(p in hints for p in params), f"{name}: unannotated {[p for p in params if p not in hints]}"
    loose = [p for p in params if _mentions_any(hints[p])]
    assert loose == [], f"{name}: parameters typed Any: {loose}"


def test_event_names_are_the_aliases_align_knows() -> None:
    assert set(typing.get_args(EventName)) == set(align.EVENT_ALIASES) | {"trial_start"}
