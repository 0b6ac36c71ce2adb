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


# --------------------------------------------------------------------------------------------
# conversion progress: bytes while the source is read, then groups
# --------------------------------------------------------------------------------------------


class _Recorder:
    """Stands in for ``sscxr._progress.progress_bar``: records every bar and each update, in order."""

    def __init__(self) -> None:
        self.log: list[tuple[str, str, float]] = []  # (desc, "new"/"update"/"close", value)
        self.bars: list[_Bar] = []

    def __call__(self, iterable=None, *, total=None, desc=None, unit="it", disable=False, **kwargs):
        bar = _Bar(self, desc or "", unit, total, disable)
        self.bars.append(bar)
        self.log.append((bar.desc, "new", total or 0))
        return bar


class _Bar:
    def __init__(self, rec: _Recorder, desc: str, unit: str, total, disable: bool):
        self.rec, self.desc, self.unit, self.total, self.disable, self.n = rec, desc, unit, total, disable, 0
        self.updates: list[int] = []

    def update(self, n=1):
        self.n += n
        self.updates.append(n)
        self.rec.log.append((self.desc, "update", n))

    def refresh(self):
        pass

    def close(self):
        self.rec.log.append((self.desc, "close", self.n))


def test_conversion_progress_counts_source_bytes_while_reading(tmp_path, monkeypatch):
    from sscxr.testing.archives import write_ssc1_session
    from sscxr_conversion import convert, progress

    truth = write_ssc1_session(tmp_path / "an197522_2013_03_08", preset="tiny", seed=0)
    recorder = _Recorder()
    monkeypatch.setattr(progress, "progress_bar", recorder)
    convert(truth.directory, str(tmp_path / "out.zarr"), progress=True)

    reading, writing = recorder.bars[0], recorder.bars[1]
    size = truth.mat_path.stat().st_size
    assert (reading.desc, reading.unit, reading.total) == (f"reading {truth.mat_path.name}", "B", size)
    assert sum(reading.updates) == size and len(reading.updates) >= 5, reading.updates  # a bar that moves
    assert writing.unit == "group" and not writing.disable
    first_group = recorder.log.index((writing.desc, "update", 1))
    last_byte = max(i for i, (desc, what, _) in enumerate(recorder.log) if desc == reading.desc and what == "update")
    assert last_byte < first_group  # the bytes were counted during the read, before any group was written


def test_raw_pass_counts_the_tarball_bytes(tmp_path, monkeypatch):
    from sscxr.testing.archives import write_ssc1_session
    from sscxr_conversion import ConversionSpec, convert, progress

    truth = write_ssc1_session(tmp_path / "an197522_2013_03_08", preset="tiny", seed=0, raw=True,
                               raw_subvolumes=(1,), video=True, n_video_trials=2, tar="tar.gz")
    recorder = _Recorder()
    monkeypatch.setattr(progress, "progress_bar", recorder)
    convert(truth.tar_path, str(tmp_path / "out.zarr"), spec=ConversionSpec(raw=True), progress=True)
    raw = [b for b in recorder.bars if b.desc.startswith("reading raw frames")]
    assert len(raw) == 1 and raw[0].unit == "B"
    assert raw[0].total == truth.tar_path.stat().st_size == raw[0].n


def test_conversion_in_a_notebook_without_ipywidgets_does_not_warn(tmp_path):
    from sscxr.testing.archives import write_ssc1_session

    truth = write_ssc1_session(tmp_path / "an197522_2013_03_08", preset="tiny", seed=0)
    code = f"""
from sscxr_conversion import convert
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    convert({str(truth.directory)!r}, {str(tmp_path / "out.zarr")!r}, progress=True)
print([str(w.message) for w in seen if "Tqdm" in type(w.message).__name__])
"""
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'conversion'}"}
    done = subprocess.run([sys.executable, "-c", FAKE_KERNEL + code], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "IProgress" not in done.stderr and "TqdmWarning" not in done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert f"reading {truth.mat_path.name}: 100%" in done.stderr  # the text bar drew the reading


def test_conversion_progress_docstring_examples():
    import doctest

    from sscxr_conversion import progress

    assert doctest.testmod(progress, raise_on_error=True).attempted >= 5
