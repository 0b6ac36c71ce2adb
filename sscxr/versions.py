"""Store locations: immutable versions behind one name, and how a name resolves to a version.

A converted unit is published under a *location*, the URL users pass (``out/x.zarr``,
``s3://bucket/stores/x.zarr``). Each conversion writes a new, complete zarr store, a *version*,
beside it and switches the location to it in one atomic step; a version is never rewritten
after that. So a reader sees one version whole, old or new, never a mix (``docs/publication.md``).

Layout (``L`` is the location URL; not ``L.versions``: SeaweedFS hides ``*.versions`` folders
from listings, it keeps its own object versions there)::

    L-versions/v20261207T150102Z-3fa9c1/   a complete plain zarr store (one per conversion)
    L-versions/lock.json                   held while a conversion writes L (one writer)
    L                                      local: a symlink to L-versions/<current version>
    L-versions/current.json                object stores: {"version": "<current version>", ...}

Locally the location is a symlink, so plain ``xarray.open_datatree("out/x.zarr")`` works; a
symlink is replaced atomically (``rename``). Object stores have no symlinks, but a single PUT
replaces an object atomically: sscxr reads ``current.json`` and opens that version; plain zarr
readers open the version URL (printed by ``sscxr convert`` and ``sscxr info``). A store written
before versions existed (a plain zarr store at ``L``) is opened as it is.

>>> resolve("memory://doc/none.zarr")   # nothing published there: the URL itself
'memory://doc/none.zarr'
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from zarr.abc.store import Store

__all__ = ["VERSIONS_SUFFIX", "Location", "VersionInfo", "resolve"]

VERSIONS_SUFFIX = "-versions"
POINTER = "current.json"
LOCK = "lock.json"
VERSION_NAME = re.compile(r"^v\d{8}T\d{6}Z-[0-9a-f]{6}$")


def _is_local(url: str) -> bool:
    from ._stores import LOCAL_PROTOCOLS, protocol

    return "::" not in url and protocol(url) in LOCAL_PROTOCOLS


def _local_path(url: str) -> str:
    return os.path.abspath(os.path.expanduser(url.split("://", 1)[1] if "://" in url else url))


def _run(coro: Any) -> Any:
    from ._zarr_compat import sync

    return sync(coro)


def _get(store: Store, key: str) -> bytes | None:
    from zarr.buffer import default_buffer_prototype

    buf = _run(store.get(key, default_buffer_prototype()))
    return None if buf is None else bytes(buf.to_bytes())


def _buffer(data: bytes) -> Any:
    from zarr.buffer import default_buffer_prototype

    return default_buffer_prototype().buffer.from_bytes(data)


def _put(store: Store, key: str, data: bytes) -> None:
    _run(store.set(key, _buffer(data)))


def _root_status(raw: bytes | None) -> tuple[str | None, dict[str, Any]]:
    """``(sscxr_status, root attrs)`` of a root ``zarr.json``; ``(None, {})`` when there is none."""
    if not raw:
        return None, {}
    try:
        attrs = dict(json.loads(raw).get("attributes") or {})
    except ValueError:
        return "incomplete", {}  # a root document cut short: never published
    return str(attrs.get("sscxr_status", "incomplete")), attrs


@dataclass(frozen=True)
class VersionInfo:
    """One version of a location: its name, URL and what its root says."""

    name: str
    url: str
    status: str | None  # "complete", "incomplete", or None (nothing readable at its root yet)
    attrs: Mapping[str, Any]

    @property
    def complete(self) -> bool:
        return self.status == "complete"


class Location:
    """The versions of one store name (``url``) and its current version.

    >>> loc = Location("memory://doc/loc.zarr")
    >>> loc.current() is None, loc.versions()
    (True, [])
    """

    def __init__(self, url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None):
        self.url = os.fspath(url).rstrip("/")
        self.storage_options = dict(storage_options or {})
        self.local = _is_local(self.url)
        self.versions_url = self.url + VERSIONS_SUFFIX
        self._store: Store | None = None

    def __repr__(self) -> str:
        return f"<Location {self.url} current={self.current()!r}>"

    # -- objects of the versions folder -------------------------------------------------------
    @property
    def store(self) -> Store:
        """A writable zarr store on ``L-versions`` (its small control objects and versions)."""
        if self._store is None:
            from ._stores import make_store

            self._store = make_store(self.versions_url, self.storage_options, read_only=False)
        return self._store

    def read_store(self) -> Store:
        from ._stores import make_store

        return make_store(self.versions_url, self.storage_options, read_only=True, resolve=False)

    def version_url(self, name: str) -> str:
        return f"{self.versions_url}/{name}"

    # -- the current version -----------------------------------------------------------------
    def current(self) -> str | None:
        """The name of the published version, or None (nothing published, or a pre-versions store)."""
        if self.local:
            path = _local_path(self.url)
            if not os.path.islink(path):
                return None
            name = os.path.basename(os.readlink(path).rstrip("/"))
            return name if VERSION_NAME.match(name) else None
        raw = _get(self.read_store(), POINTER)
        if raw is None:
            return None
        try:
            name = json.loads(raw)["version"]
        except (ValueError, KeyError, TypeError):
            from .errors import StorageAccessError

            raise StorageAccessError(f"{self.versions_url}/{POINTER} is damaged: not a version pointer") from None
        return str(name)

    def current_url(self) -> str | None:
        name = self.current()
        return None if name is None else self.version_url(name)

    def legacy(self) -> VersionInfo | None:
        """A plain zarr store written at ``url`` itself (before versions existed), or None."""
        if self.local:
            path = _local_path(self.url)
            if os.path.islink(path) or not os.path.exists(os.path.join(path, "zarr.json")):
                return None
        from ._stores import make_store

        raw = _get(make_store(self.url, self.storage_options, read_only=True, resolve=False), "zarr.json")
        if raw is None:
            return None
        status, attrs = _root_status(raw)
        return VersionInfo("", self.url, status or "incomplete", attrs)

    def has_legacy_store(self) -> bool:
        """Whether a plain zarr store was written at ``url`` itself (before versions existed)."""
        return self.legacy() is not None

    def version_names(self) -> list[str]:
        """The names of the version folders under ``L-versions``, oldest first (one listing)."""
        try:
            return sorted(n for n in _run(_list_dir(self.read_store())) if VERSION_NAME.match(n))
        except FileNotFoundError:
            return []

    def versions(self) -> list[VersionInfo]:
        """Every version under ``L-versions`` with its root's status, oldest first (names sort by time)."""
        return [self.info(n) for n in self.version_names()]

    def info(self, name: str) -> VersionInfo:
        status, attrs = _root_status(_get(self.read_store(), f"{name}/zarr.json"))
        return VersionInfo(name, self.version_url(name), status, attrs)

    def unfinished(self) -> list[VersionInfo]:
        """Versions newer than the current one: conversions interrupted before their switch.

        A complete one among them was killed between its last write and the switch; ``--resume``
        publishes it. (Versions are named in order, ``sscxr_conversion.publish.new_version_name``.)
        """
        return newer_than(self.versions(), self.current())


def newer_than(versions: list[VersionInfo], current: str | None) -> list[VersionInfo]:
    """The ``versions`` after ``current`` (all of them when nothing is published)."""
    return [v for v in versions if current is None or v.name > current]


async def _list_dir(store: Store) -> list[str]:
    return [name async for name in store.list_dir("")]


def resolve(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> str:
    """The URL of the version ``url`` names now (``url`` itself when it is a plain store or empty).

    Open the result to keep reading one version while newer ones are published.

    >>> resolve("memory://doc/plain.zarr")
    'memory://doc/plain.zarr'
    """
    text = os.fspath(url).rstrip("/")
    if VERSIONS_SUFFIX + "/" in text or text.endswith(VERSIONS_SUFFIX):  # a version (folder) already
        return text
    if _is_local(text):
        path = _local_path(text)
        if os.path.islink(path):
            target = os.path.realpath(path)
            return target if "://" not in text else f"{text.split('://', 1)[0]}://{target}"
        return text
    current = Location(text, storage_options).current()
    return text if current is None else f"{text}{VERSIONS_SUFFIX}/{current}"
