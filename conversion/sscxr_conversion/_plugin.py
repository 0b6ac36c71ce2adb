"""The dask worker plugin that hands storage options to workers outside any task graph.

It is sscxr's own plugin, :class:`sscxr._distributed.StorageOptionsPlugin`: the library and the
converter share one credential registry (:mod:`sscxr.credentials`), so one plugin serves both.
This name stays for code that imported it from here.
"""

from __future__ import annotations

from sscxr._distributed import StorageOptionsPlugin

__all__ = ["StorageOptionsPlugin"]
