"""The typed API stays typed: mypy over the library and the converter (``[tool.mypy]`` files)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_mypy_is_clean(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    cache = tmp_path / "mypy_cache"  # a fresh cache: no stale results from another checkout
    proc = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache)], cwd=ROOT,
                          capture_output=True, text=True, check=False)
    shutil.rmtree(cache, ignore_errors=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
