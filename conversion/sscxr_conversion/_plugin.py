"""The dask worker plugin that hands storage options to workers outside any task graph.

It is sscxr's own plugin (:class:`sscxr._distributed.StorageOptionsPlugin`, the one
``sscxr.map_catalog`` uses), extended to register the options with the converter's tasks too.
"""

from __future__ import annotations

from typing import Any

from sscxr._distributed import StorageOptionsPlugin as _LibraryPlugin

from .tasks import register_options


class StorageOptionsPlugin(_LibraryPlugin):
    """Registers storage options for one store URL (or a folder of stores) in each worker process
    (library and converter); one plugin per URL, so a cluster shared by many stores keeps them all."""

    def setup(self, worker: Any) -> None:
        super().setup(worker)
        register_options(self.url, self.storage_options)
