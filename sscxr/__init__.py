"""sscxr: the CRCNS ssc-1 and ssc-11 vibrissal S1 archives as labeled, cloud-native xarray data.

Open a converted store lazily (local path, ``memory://``, ``s3://`` or any fsspec URL):

>>> import sscxr                                                   # doctest: +SKIP
>>> session = sscxr.open_session("s3://bucket/an197522_2013_03_08.zarr",
...                              storage_options={"anon": True})   # doctest: +SKIP
>>> tensor = session.sscx.trial_tensor("dff", subvolume=5, align_to="first_touch")  # doctest: +SKIP

or find it in the catalog: ``sscxr.open_catalog()``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from . import errors, schema

try:
    __version__ = version("sscxr")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

__all__ = ["__version__", "errors", "schema", "open_session", "open_animal", "open_catalog"]

from . import accessors as _accessors  # noqa: E402,F401  (registers the ``.sscx`` accessors)


def __getattr__(name: str) -> Any:
    if name in {"open_session", "open_animal", "open_store"}:
        from . import io

        return getattr(io, name)
    if name == "open_catalog":
        from .catalog import open_catalog

        return open_catalog
    raise AttributeError(f"module 'sscxr' has no attribute {name!r}")
