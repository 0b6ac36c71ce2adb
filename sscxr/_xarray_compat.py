"""xarray internals sscxr uses, in one place, each with a public fallback.

:func:`lazy_array` wraps an array-like whose ``__getitem__`` takes numpy-style keys (a tuple of
ints, slices and integer arrays, one per dimension, indexing each dimension on its own: "outer"
indexing) as lazily indexed data for an ``xr.DataArray``. The fast path ``"xarray lazy
indexing"`` uses xarray's own ``LazilyIndexedArray`` (``xarray.core.indexing``, not public API),
which reads only what a selection asks for, at ``.values``; off (``SSCXR_NO_FASTPATH=1``,
another xarray, or xarray moved it), the array becomes a dask array chunked as the caller
says (the public path: still lazy, reads whole chunks), or, without dask, is read at once.

>>> import numpy as np, xarray as xr
>>> data = xr.DataArray(lazy_array(np.arange(12).reshape(3, 4), chunks=((1, 2), (4,))), dims=("a", "b"))
>>> data[1:, ::2].values.tolist()
[[4, 6], [8, 10]]
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np
from xarray.backends import BackendArray

from . import _fastpath

__all__ = ["FAST_LAZY", "XARRAY_VERSIONS", "lazy_array"]

FAST_LAZY = "xarray lazy indexing"
"""The fast path's name (:func:`sscxr._fastpath.enabled`, ``sscxr info``)."""
XARRAY_VERSIONS = {"at_least": "2024.10", "below": "2027.1"}
"""The xarray releases whose ``xarray.core.indexing`` sscxr is tested with."""


class _OuterIndexed(BackendArray):
    """A numpy-style array-like as an xarray backend array (xarray hands it explicit indexers)."""

    def __init__(self, array: Any, indexing: Any) -> None:
        self.array, self._indexing = array, indexing
        self.shape, self.dtype = tuple(array.shape), np.dtype(array.dtype)

    def __getattr__(self, name: str) -> Any:  # the wrapped array's own attributes (its state, in tests)
        if name in ("array", "_indexing"):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.array, name)

    def __getitem__(self, key: Any) -> Any:
        indexing = self._indexing
        return indexing.explicit_indexing_adapter(key, self.shape, indexing.IndexingSupport.OUTER,
                                                  lambda k: np.asarray(self.array[k]))


def _fast(array: Any) -> Any | None:
    if not _fastpath.enabled(FAST_LAZY) or not _fastpath.version_ok(FAST_LAZY, "xarray", **XARRAY_VERSIONS):
        return None
    try:
        from xarray.core import indexing

        return indexing.LazilyIndexedArray(_OuterIndexed(array, indexing))
    except (ImportError, AttributeError, TypeError) as exc:  # an xarray that moved or changed it
        _fastpath.fall_back(FAST_LAZY, exc)
        return None


def lazy_array(array: Any, chunks: Any = None) -> Any:
    """``array`` (``shape``, ``dtype``, outer-indexing ``__getitem__``) as lazy data for xarray.

    ``chunks`` (dask's ``chunks=``) shapes the public path's dask array; the fast path reads
    exactly the elements asked for, whatever the chunks.
    """
    fast = _fast(array)
    if fast is not None:
        return fast
    if importlib.util.find_spec("dask") is None:
        return np.asarray(array[tuple(slice(None) for _ in array.shape)])
    import dask.array as da

    meta = np.empty((0,) * len(array.shape), dtype=array.dtype)
    return da.from_array(array, chunks=chunks if chunks is not None else "auto", name=False, meta=meta,
                         asarray=True)
