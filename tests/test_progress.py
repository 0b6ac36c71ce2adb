"""sscxr._progress: a progress bar without ``TqdmWarning: IProgress not found`` in a notebook
that lacks ipywidgets. A Jupyter kernel is simulated in a fresh interpreter the way tqdm detects
one (``ipykernel.zmqshell`` imported, IPython's shell a ZMQInteractiveShell); ipywidgets is made
unimportable with ``sys.modules['ipywidgets'] = None``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

FAKE_KERNEL = """
import sys, types, warnings
warnings.simplefilter("always")
class ZMQInteractiveShell: pass
ipython = types.ModuleType("IPython"); ipython.get_ipython = lambda: ZMQInteractiveShell()
sys.modules["IPython"] = ipython
sys.modules["ipykernel.zmqshell"] = types.ModuleType("ipykernel.zmqshell")
sys.modules["ipywidgets"] = None
"""


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", FAKE_KERNEL + code], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


def test_the_simulated_kernel_makes_tqdm_auto_warn():
    done = _run("import tqdm.auto")  # the control: what the helper has to avoid
    assert done.returncode == 0, done.stderr
    assert "IProgress not found" in done.stderr


def test_progress_bar_in_a_notebook_without_ipywidgets_does_not_warn():
    code = """
from sscxr._progress import progress_bar, progress_class
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    bar = progress_bar(total=2, desc="groups")
    bar.update(2)
    bar.close()
print(progress_class().__module__, [str(w.message) for w in seen])
"""
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert "IProgress" not in done.stderr
    assert done.stdout.split("\n")[0] == "tqdm.std []"
    assert "groups: 100%" in done.stderr  # the text bar was drawn


def test_outside_a_notebook_it_is_the_text_bar():
    from sscxr._progress import progress_bar

    bar = progress_bar(range(3), disable=True)
    assert type(bar).__module__ == "tqdm.std" and list(bar) == [0, 1, 2]


def test_docstring_examples():
    import doctest

    import sscxr._progress

    assert doctest.testmod(sscxr._progress, raise_on_error=True).attempted >= 4
