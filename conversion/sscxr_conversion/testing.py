"""Testing helpers for the converter: simulate a conversion killed in the middle of a group."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from typing import Any

CRASH_MID_GROUP = textwrap.dedent("""
    import os, signal, sys
    import sscxr_conversion.write as write
    real, count = write.write_group, [0]
    def crashing(store, path, ds, spec, **options):
        count[0] += 1
        if count[0] == int(sys.argv[3]):      # die in the middle of a group: half its variables
            half = ds[list(ds.data_vars)[: max(1, len(ds.data_vars) // 2)]]
            half.to_zarr(store, group=path, mode="w", zarr_format=3, consolidated=False)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(store, path, ds, spec, **options)
    write.write_group = crashing
    from sscxr_conversion import convert
    convert(sys.argv[1], sys.argv[2], progress=False)
""")


def run_killed_conversion(src: str | os.PathLike, dest: str, crash_at: int,
                          timeout: float = 120) -> subprocess.CompletedProcess:
    """Convert ``src`` to ``dest`` in a subprocess that SIGKILLs itself half-way through the
    ``crash_at``-th group write (returncode -9 when it got that far).

    >>> proc = run_killed_conversion("an197522_2013_03_08_session.mat", "x.zarr", 2)  # doctest: +SKIP
    >>> proc.returncode                                                               # doctest: +SKIP
    -9
    """
    return subprocess.run([sys.executable, "-c", CRASH_MID_GROUP, str(src), str(dest), str(crash_at)],
                          capture_output=True, text=True, timeout=timeout)


def unfinished_version(dest: str, storage_options: Any = None) -> str:
    """The URL of the newest unfinished version under ``dest`` (an interrupted conversion).

    >>> unfinished_version("x.zarr")                     # doctest: +SKIP
    'x.zarr-versions/v20261207T150102Z-3fa9c1'
    """
    from sscxr.versions import Location

    found = Location(dest, storage_options).unfinished()
    if not found:
        raise AssertionError(f"{dest}: no unfinished version")
    return found[-1].url
