"""Refusing stores that should not be read: unfinished, removed while opening, of the other
archive, or whose metadata changed after conversion.

This module's one job is those checks, one clear error (or :class:`~sscxr.errors.StoreVersionWarning`)
each, naming the store and what to do; :mod:`sscxr.io` runs them when it opens a store.

>>> check_root("x.zarr", {"archive": "ssc-1", "sscxr_status": "complete"}, "ssc-1", True)
>>> check_root("x.zarr", {"archive": "ssc-11", "sscxr_status": "complete"}, "ssc-1", True)
Traceback (most recent call last):
...
sscxr.errors.SchemaError: ...
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import zarr

from .content import versions_of_group
from .errors import IncompleteStoreError, SchemaError, StoreVersionWarning

__all__ = ["ARCHIVE_OPENERS", "check_root", "check_version", "refuse_removed", "refuse_unfinished"]

ARCHIVE_OPENERS = {"ssc-1": "sscxr.open_session", "ssc-11": "sscxr.open_animal"}
"""The opener of each archive's stores, named in errors."""


def refuse_removed(url: str, resolved: str) -> None:
    """``url`` named a version that has no root document by the time it is read: removed."""
    from .versions import VERSIONS_SUFFIX

    if resolved != url and VERSIONS_SUFFIX + "/" in resolved:
        from .errors import StoreChangedError

        raise StoreChangedError(f"{url}: the version it named ({resolved}) was removed while it was being opened "
                                "(newer conversions replaced it): open it again to read the current version")


def refuse_unfinished(url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Nothing published at ``url``: an :class:`IncompleteStoreError` if a conversion is unfinished."""
    from .versions import VERSIONS_SUFFIX, Location

    if VERSIONS_SUFFIX + "/" in url:
        return
    unfinished = Location(url, storage_options).unfinished()
    if unfinished:
        raise IncompleteStoreError(
            f"{url}: nothing is published there yet: its conversion did not finish "
            f"({unfinished[-1].url}); finish it with `sscxr convert SRC {url} --resume`"
        )


def check_root(url: str, attrs: Mapping[str, Any], archive: str | None, require_complete: bool) -> None:
    if "archive" not in attrs:
        raise SchemaError(["root attrs: missing 'archive': this is not an sscxr store"], where=url)
    if archive is not None and attrs["archive"] != archive:
        raise SchemaError(
            [f"root attrs: archive is {attrs['archive']!r}, expected {archive!r}: open it with "
             f"{ARCHIVE_OPENERS.get(str(attrs['archive']), 'sscxr.open_store')}()"],
            where=url,
        )  # fmt: skip
    status = attrs.get("sscxr_status")
    if require_complete and status != "complete":
        raise IncompleteStoreError(
            f"{url}: conversion did not finish (root attr sscxr_status is {status!r}, expected "
            f"'complete'); finish it with `sscxr convert SRC {url} --resume`"
        )


def check_version(url: str, root: zarr.Group, check_version: str | bool) -> None:
    actual, known = versions_of_group(root)  # a store converted before scheme 2 keeps its pins
    recorded = root.attrs.get("content_version")
    if recorded is not None and recorded not in known:
        warnings.warn(
            f"{url}: metadata changed after conversion (recorded content_version {recorded}, "
            f"now {actual})",
            StoreVersionWarning,
            stacklevel=3,
        )
    if isinstance(check_version, str) and check_version not in known:
        warnings.warn(
            f"{url}: content version is {actual}, but {check_version} was pinned (by a catalog "
            "entry?): the store was re-converted since; refresh the pin with "
            "sscxr.catalog.build_catalog, or open the store the pin was made for",
            StoreVersionWarning,
            stacklevel=3,
        )
