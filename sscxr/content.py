"""Content versions: 16 hex digits of sha256 over a store's metadata, what a catalog pins.

This module's one job is fingerprinting a store (:func:`content_version`) or metadata already
in memory (:func:`version_of_metadata`, as the converter holds it when it finalises a store).
Data values are never read. Re-exported by :mod:`sscxr.io`.

>>> import zarr
>>> g = zarr.open_group(zarr.storage.MemoryStore(), mode="w", attributes={"archive": "ssc-1"})
>>> len(content_version(g))
16
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

__all__ = ["CONTENT_VERSION_SCHEME", "VERSION_EXCLUDED_ATTRS", "VERSION_EXCLUDED_PROVENANCE", "content_version",
           "version_of_metadata", "versions_of_group"]

VERSION_EXCLUDED_ATTRS = ("content_version", "sscxr_status")
"""Root attrs a content version leaves out (the converter writes them after computing it)."""
VERSION_EXCLUDED_PROVENANCE = ("created",)  # run-dependent: two conversions of one source agree
CONTENT_VERSION_SCHEME = "sscxr-content-version/2"
OLD_CONTENT_VERSION_SCHEMES = ("sscxr-content-version/1",)  # hashed provenance.created too


def _node_documents(metadata: Any) -> dict[str, Any]:
    docs = {}
    for name, buf in metadata.to_buffer_dict(default_buffer_prototype()).items():
        docs[name] = json.loads(buf.to_bytes())
    for doc in docs.values():
        if isinstance(doc, dict):
            doc.pop("consolidated_metadata", None)
    return docs


def _version_of_group(group: zarr.Group, scheme: str = CONTENT_VERSION_SCHEME) -> str:
    members = {path: m.metadata for path, m in group.members(max_depth=None)}
    return version_of_metadata(group.metadata, members, scheme=scheme)


def versions_of_group(group: zarr.Group) -> tuple[str, set[str]]:
    """(the content version, every version the group had under this and earlier schemes)."""
    current = _version_of_group(group)
    return current, {current} | {_version_of_group(group, old) for old in OLD_CONTENT_VERSION_SCHEMES}


def version_of_metadata(root: Any, members: Mapping[str, Any], *, scheme: str = CONTENT_VERSION_SCHEME) -> str:
    """:func:`content_version` from metadata objects already in memory: the root group's and
    every member's (``{path: metadata}``), as the converter holds them when it finalises a store.

    ``scheme`` is for reading stores whose recorded version an earlier scheme computed:
    ``"sscxr-content-version/1"`` also hashed ``provenance.created``."""
    nodes = {"": _node_documents(root)}
    for attr_doc in (nodes[""].get("zarr.json", {}).get("attributes"), nodes[""].get(".zattrs")):
        if not isinstance(attr_doc, dict):
            continue
        for name in VERSION_EXCLUDED_ATTRS:
            attr_doc.pop(name, None)
        provenance = attr_doc.get("provenance")
        if isinstance(provenance, dict) and scheme not in OLD_CONTENT_VERSION_SCHEMES:
            for name in VERSION_EXCLUDED_PROVENANCE:
                provenance.pop(name, None)
    nodes[""].pop(".zmetadata", None)
    for path, metadata in members.items():
        nodes[path] = _node_documents(metadata)
    payload = json.dumps([scheme, sorted(nodes.items())], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def content_version(
    zarr_group_or_url: zarr.Group | str | os.PathLike[str] | Store,
    storage_options: Mapping[str, Any] | None = None,
) -> str:
    """16 hex digits of sha256 over a store's metadata: what a catalog pins.

    Covers every node's path, shape, dtype, chunks, codecs, fill value, dimension names and
    attrs (so the provenance: each source file's sha256, the converter version and the options),
    sorted, and excludes the root attrs ``content_version`` and ``sscxr_status`` (so the
    converter can compute it before it writes them) and ``provenance.created``: two conversions
    of one source with one converter give one version, whenever and wherever they ran. Data
    values are not read: it changes when the converter, the schema or a source file changes, and
    is cheap (one read of the consolidated metadata).

    >>> import zarr
    >>> g = zarr.open_group(zarr.storage.MemoryStore(), mode="w", attributes={"archive": "ssc-1"})
    >>> v = content_version(g)
    >>> g.attrs["sscxr_status"] = "complete"
    >>> content_version(g) == v, len(v)
    (True, 16)
    """
    if isinstance(zarr_group_or_url, zarr.Group):
        return _version_of_group(zarr_group_or_url)
    if isinstance(zarr_group_or_url, Store):
        return _version_of_group(zarr.open_group(zarr_group_or_url, mode="r"))
    from ._storage_errors import translated
    from ._stores import target

    url, store, recipe = target(zarr_group_or_url, storage_options)
    with translated(url, recipe, store):
        return _version_of_group(zarr.open_group(store, mode="r"))
