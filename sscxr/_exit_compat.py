"""Ending the process without the interpreter's finalization: CPython internals, with a public fallback.

The command line ends a run that used obstore with :func:`exit_now`: the exit handlers run
(``atexit``), the output is flushed, and the process ends (``os._exit``) before the interpreter
finalizes, where a callback from obstore's runtime threads can abort it on Python before 3.14
(python/cpython#87135; PyO3/pyo3#4874; ``sscxr.cli.run``). Running the exit handlers needs
``atexit._run_exitfuncs`` (not public API): the fast path ``"exit before finalization"``. Off
(``SSCXR_NO_FASTPATH=1``, Python 3.14 or later, which no longer aborts there, or a Python without
it) it is ``sys.exit(code)``: the ordinary exit, same handlers and output.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import NoReturn

from . import _fastpath

__all__ = ["FAST_EXIT", "PYTHON_VERSIONS", "exit_now"]

FAST_EXIT = "exit before finalization"
"""The fast path's name (:func:`sscxr._fastpath.enabled`, ``sscxr info``)."""
PYTHON_VERSIONS = {"at_least": "3.11", "below": "3.14"}
"""The Pythons that need it (3.14 no longer aborts at finalization)."""


def exit_now(code: int) -> NoReturn:
    """Run the exit handlers, flush, and end the process with status ``code``, skipping the
    interpreter's finalization where that is needed and possible; else ``sys.exit(code)``."""
    run_handlers = getattr(atexit, "_run_exitfuncs", None)
    if not _fastpath.enabled(FAST_EXIT) or _fastpath.untested("python", **PYTHON_VERSIONS) is not None:
        sys.exit(code)
    if run_handlers is None:
        _fastpath.fall_back(FAST_EXIT, "this Python has no atexit._run_exitfuncs")
        sys.exit(code)
    run_handlers()  # what finalization would run first: zarr's loop, logging, finalizers
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
