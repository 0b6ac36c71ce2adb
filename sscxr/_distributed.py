"""The dask worker plugin that hands storage options (credentials) to workers outside any task graph.

One mechanism for the library and the converter: :func:`sscxr.credentials.register_worker_credentials`
(also ``sscxr.io.register_worker_credentials``) registers it, and so does the converter
(``sscxr_conversion.tasks.share_options``). On each worker it fills the one credential registry,
:mod:`sscxr.credentials`, which both the library's stores and the converter's tasks read.
The plugin is pickled once to the scheduler and each worker (that is its job); no task carries
it. Its ``repr`` hides the options.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["StorageOptionsPlugin"]


class StorageOptionsPlugin(WorkerPlugin):
    """Registers storage options for the URLs under ``url`` in each worker process
    (:func:`sscxr.credentials.register_credentials`); one plugin per URL prefix (re-registering
    replaces it).

    >>> plugin = StorageOptionsPlugin("s3://bucket/stores", {"key": "K", "secret": "S"})
    >>> plugin
    StorageOptionsPlugin('s3://bucket/stores', <2 options hidden>)
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any]):
        self.url = url
        self.storage_options = dict(storage_options)
        self.name = f"sscxr-storage-options-{hashlib.sha256(url.encode()).hexdigest()[:12]}"

    def setup(self, worker: Any) -> None:
        from .credentials import register_credentials

        register_credentials(self.url, self.storage_options)

    def __repr__(self) -> str:  # never show credentials
        return f"{type(self).__name__}({self.url!r}, <{len(self.storage_options)} options hidden>)"
