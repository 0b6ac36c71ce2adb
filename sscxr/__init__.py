"""sscxr: the CRCNS ssc-1 and ssc-11 vibrissal S1 archives as labeled, cloud-native xarray data.

Open a converted store lazily (local path, ``memory://``, ``s3://`` or any fsspec URL):

>>> import sscxr                                                   # doctest: +SKIP
>>> session = sscxr.open_session("s3://bucket/an197522_2013_03_08.zarr",
...                              storage_options={"anon": True})   # doctest: +SKIP
>>> tensor = session.sscx.trial_tensor("dff", subvolume=5, align_to="first_touch")  # doctest: +SKIP

or find it in the catalog: ``sscxr.open_catalog()``.

Every public submodule is reachable from ``import sscxr`` alone (``sscxr.io.open_group``,
``sscxr.plot.plot_trial_tensor``, ``sscxr.catalog.find``, ...): each is imported on first use
(PEP 562), so ``import sscxr`` stays light (no matplotlib, dask or intake until needed).

>>> import sscxr
>>> "plot" in dir(sscxr) and callable(sscxr.io.open_group)
True
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from . import errors, schema

try:
    __version__ = version("sscxr")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"

_SUBMODULES = ("accessors", "align", "behavior", "catalog", "cli", "content", "credentials", "dataset", "demo",
               "errors", "info", "io", "plot", "resample", "response", "schema", "summary", "testing", "versions",
               "video")  # fmt: skip
"""Public submodules, imported on first attribute access."""
_FUNCTIONS = {"open_session": "io", "open_animal": "io", "open_store": "io", "open_catalog": "catalog",
              "map_catalog": "dataset", "show_versions": "info"}
"""Top-level functions -> the submodule that defines them."""

__all__ = ["__version__", *_FUNCTIONS, *_SUBMODULES]

from . import accessors as _accessors  # noqa: E402,F401  (registers the ``.sscx`` accessors)

if TYPE_CHECKING:  # what the lazy ``__getattr__`` gives, for type checkers and IDEs
    from . import (accessors, align, behavior, catalog, cli, content, credentials, dataset, demo, info, io, plot,
                   resample, response, summary, testing, versions, video)
    from .catalog import open_catalog
    from .dataset import map_catalog
    from .info import show_versions
    from .io import open_animal, open_session, open_store


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)  # the import also sets it as an attribute
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(f".{_FUNCTIONS[name]}", __name__), name)
    raise AttributeError(f"module 'sscxr' has no attribute {name!r}; it has {sorted(__all__)}")


def __dir__() -> list[str]:
    return sorted(__all__)
