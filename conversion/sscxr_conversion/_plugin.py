"""The dask worker plugin that hands storage options to workers outside any task graph."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

from .tasks import register_options


class StorageOptionsPlugin(WorkerPlugin):
    """Registers storage options for one store URL (or a folder of stores) in each worker process."""

    name = "sscxr-storage-options"

    def __init__(self, url: str, storage_options: Mapping[str, Any]):
        self.name = f"sscxr-storage-options-{url}"  # one per URL: a cluster shared by many stores keeps them all
        self.url = url
        self.storage_options = dict(storage_options)

    def setup(self, worker: Any) -> None:
        register_options(self.url, self.storage_options)

    def __repr__(self) -> str:  # never show credentials
        return f"StorageOptionsPlugin({self.url!r}, <{len(self.storage_options)} options hidden>)"
