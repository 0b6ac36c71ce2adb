"""Testing helpers shipped with sscxr: synthetic archives, store-shaped trees, S3 servers.

``sscxr.testing.archives`` writes synthetic CRCNS ssc-1 / ssc-11 archives with the real on-disk
layout (see ``shared/FORMATS.md``) and returns the ground truth it wrote;
``sscxr.testing.stores`` builds in-memory trees shaped like converted stores;
``sscxr.testing.s3`` starts local S3 servers; ``sscxr.testing.notebooks`` runs the notebooks of
``docs/notebooks/`` and checks their committed outputs. Each is imported on first use:

>>> import sscxr
>>> sscxr.testing.stores.make_session_tree(n_subvolumes=1, n_cells=3, n_trials=2).attrs["archive"]
'ssc-1'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["archives", "notebooks", "s3", "stores"]

if TYPE_CHECKING:
    from . import archives, notebooks, s3, stores


def __getattr__(name: str) -> Any:
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'sscxr.testing' has no attribute {name!r}; it has {__all__}")


def __dir__() -> list[str]:
    return sorted(__all__)
