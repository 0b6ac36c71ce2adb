"""Machine and package facts recorded with every benchmark result."""

from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("sscxr", "sscxr-conversion", "numpy", "scipy", "xarray", "zarr", "dask", "distributed",
            "fsspec", "s3fs", "obstore", "h5py", "pynapple", "pandas", "tifffile", "av")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def machine_markdown() -> str:
    """A markdown block: CPU, cores, memory, Python, and package versions."""
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    lines = [f"- machine: {cpu_model()}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, {platform.platform()}",
             f"- Python {platform.python_version()}"]
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    lines.append("- packages: " + ", ".join(versions))
    return "\n".join(lines)
