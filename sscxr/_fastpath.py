"""The one switch for sscxr's fast paths: code that uses another package's internals.

Every use of another package's private API lives in a compat module (``*_compat.py`` or
``*_fastpath.py``). Each such fast path asks :func:`enabled` before it runs, checks the version
of the package it reaches into with :func:`version_ok`, and on any failure calls
:func:`fall_back`, which warns once, in one line, and turns that fast path off for the rest of
the process; the caller then takes the public path (zarr's own array writes, ``scipy.io.loadmat``
and so on), which gives the same result, more slowly.

``SSCXR_NO_FASTPATH=1`` in the environment turns every fast path off (the test suite runs once
that way in CI).

>>> import os
>>> os.environ.pop("SSCXR_NO_FASTPATH", None) and None
>>> enabled("example")
True
>>> with forced_off():
...     enabled("example")
False
"""

from __future__ import annotations

import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version

ENV = "SSCXR_NO_FASTPATH"

_off: dict[str, str] = {}  # fast path name -> why it is off in this process
_lock = threading.Lock()
_forced = threading.local()


class FastPathWarning(UserWarning):
    """A fast path does not work here; sscxr uses the public path instead (same result, slower)."""


def disabled_by_environment() -> bool:
    """True when ``SSCXR_NO_FASTPATH`` is set to a true value (``1``, ``true``, ``yes``, ``on``)."""
    return os.environ.get(ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def enabled(name: str) -> bool:
    """Whether the fast path ``name`` may run: not forced off, and not failed before here."""
    return not (disabled_by_environment() or getattr(_forced, "off", False) or name in _off)


def fall_back(name: str, reason: object) -> None:
    """Turn the fast path ``name`` off for this process, warning once in one line why."""
    with _lock:
        if name in _off:
            return
        _off[name] = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    warnings.warn(f"sscxr: the fast {name} does not work here ({_off[name]}); falling back to the "
                  f"public path (same result, slower). Set {ENV}=1 to silence this.",
                  FastPathWarning, stacklevel=3)


def version_ok(name: str, package: str, *, at_least: str, below: str | None = None) -> bool:
    """True if ``package``'s installed version is in ``[at_least, below)``; otherwise
    :func:`fall_back` ``name`` (a release that may have moved the internals it uses)."""
    why = untested(package, at_least=at_least, below=below)
    if why is not None:
        fall_back(name, why)
        return False
    return True


def untested(package: str, *, at_least: str, below: str | None = None) -> str | None:
    """Why ``package`` (or ``"python"``) is outside the versions ``[at_least, below)`` a fast path
    is tested with, or None when it is inside them."""
    import sys

    from packaging.version import Version

    try:
        found = Version("%d.%d.%d" % sys.version_info[:3] if package == "python" else version(package))
    except PackageNotFoundError:
        return f"{package} is not installed"
    if found < Version(at_least) or (below is not None and found >= Version(below)):
        span = f">={at_least}" + (f",<{below}" if below else "")
        return f"{package} {found} is outside the versions it is tested with ({span})"
    return None


def status() -> dict[str, str]:
    """Fast paths turned off in this process, and why (for ``sscxr info`` and bug reports)."""
    with _lock:
        return dict(_off)


@contextmanager
def forced_off() -> Iterator[None]:
    """Within the block, in this thread, every fast path is off (as with ``SSCXR_NO_FASTPATH=1``)."""
    before = getattr(_forced, "off", False)
    _forced.off = True
    try:
        yield
    finally:
        _forced.off = before


def reset(name: str | None = None) -> None:
    """Forget earlier failures (tests)."""
    with _lock:
        if name is None:
            _off.clear()
        else:
            _off.pop(name, None)
