"""Safe publication: one writer per destination, a new version per conversion, an atomic switch.

A conversion never writes into a store anyone can read. It takes the destination's lock, writes
a new version beside the published one (:mod:`sscxr.versions`), and only once that version is
complete switches the destination to it in one atomic step (a symlink ``rename`` locally, one
PUT of ``current.json`` on object stores). The previous version stays current until then and
stays readable after; older versions are removed (root document first, so a reader still on
one gets :class:`~sscxr.errors.StoreChangedError`, never fill values).

>>> with Publication("memory://doc/pub.zarr", overwrite=False, resume=False) as pub:
...     pub.new
True
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
import warnings
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from sscxr.errors import StoreExistsError, StoreLockedError
from sscxr.versions import LOCK, POINTER, Location, _buffer, _get, _local_path, _put, _run, newer_than

KEEP_PUBLISHED = 2  # the current version and the one before it stay readable


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks (Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return start is None or _process_start(pid) in (None, start)


def new_version_name(after: str | None = None) -> str:
    """``v<UTC time>-<6 hex>``, sorting after ``after`` (the newest version of the location).

    Names must sort by creation: an unfinished version is one newer than the current one. The
    time alone does not ensure it (two conversions in one second; a writer whose clock is
    behind the previous writer's), so a name that would not sort after ``after`` is ``after``
    plus one.

    >>> new_version_name(after="v29991231T235959Z-00000f")
    'v29991231T235959Z-000010'
    >>> new_version_name(after="v29991231T235958Z-ffffff")
    'v29991231T235959Z-000000'
    """
    name = f"v{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
    if after is None or name > after:
        return name
    stamp, suffix = after[1:17], int(after[18:], 16)
    if suffix < 0xFFFFFF:
        return f"v{stamp}-{suffix + 1:06x}"
    later = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ") + timedelta(seconds=1)
    return f"v{later:%Y%m%dT%H%M%SZ}-000000"


class Publication:
    """One conversion's hold on destination ``url``: its lock, the version it writes, the switch.

    On entry the lock is taken and the version to write is chosen:

    - nothing there, or ``overwrite``: a new version (:attr:`new`);
    - ``resume`` with an unfinished version: that one (:attr:`resuming`);
    - ``resume`` with a complete store and nothing unfinished: nothing to do (:attr:`up_to_date`);
    - otherwise :class:`~sscxr.errors.StoreExistsError` naming ``--overwrite`` / ``--resume``.

    A lock held by a live process gives :class:`~sscxr.errors.StoreLockedError`; one left by a
    process of this host that is gone is taken over with a warning (``break_lock`` takes any).
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None, *, overwrite: bool,
                 resume: bool, break_lock: bool = False):
        self.location = Location(url, storage_options)
        self.url = self.location.url
        self.overwrite, self.resume, self.break_lock = overwrite, resume, break_lock
        self.name: str = ""
        self.previous: str | None = None
        self.resuming = self.up_to_date = False
        self.published = False
        self._token = secrets.token_hex(8)
        self._locked = False

    @property
    def new(self) -> bool:
        return not (self.resuming or self.up_to_date)

    @property
    def version_url(self) -> str:
        return self.location.version_url(self.name)

    def __repr__(self) -> str:
        state = "up to date" if self.up_to_date else "resuming" if self.resuming else "new"
        return f"<Publication {self.url}: {state} version {self.name or self.previous}>"

    def __enter__(self) -> Publication:
        self._check_destination()
        self._lock()
        try:
            self._choose()
        except BaseException:
            self._unlock()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._unlock()

    # -- choosing the version ------------------------------------------------------------------
    def _check_destination(self) -> None:
        if not self.location.local:  # a LIST first: SeaweedFS creates a missing bucket on a PUT
            from sscxr.io import storage_errors

            with storage_errors(self.location.versions_url, self.location.storage_options, writing=True):
                self.location.version_names()
            return
        path = _local_path(self.url)
        if os.path.lexists(path) and not os.path.islink(path) and not os.path.isdir(path):
            raise StoreExistsError(f"{self.url} is a file, not a store: choose another DEST")

    def _choose(self) -> None:
        loc = self.location
        self.previous = loc.current()
        legacy = None if self.previous else loc.legacy()
        versions = loc.versions()
        unfinished = newer_than(versions, self.previous)
        if self.resume:
            if legacy is not None and not legacy.complete:
                raise StoreExistsError(f"{self.url} holds an unfinished conversion written by an older sscxr, "
                                       "which cannot be resumed; pass --overwrite to convert it anew")
            if unfinished:
                self.name, self.resuming = unfinished[-1].name, True
                return
            if self.previous or legacy is not None:
                self.up_to_date = True
                self.name = self.previous or ""
                return
        elif not self.overwrite:
            if self.previous or (legacy is not None and legacy.complete):
                what = f"version {self.previous}" if self.previous else "a store"
                interrupted = (f"; an interrupted conversion ({unfinished[-1].name}) is there too: pass --resume "
                               "to finish it") if unfinished else ""
                raise StoreExistsError(f"{self.url} already holds a complete store ({what}); pass --overwrite "
                                       "to publish a new version (the current one stays readable until then)"
                                       + interrupted)
            if unfinished or legacy is not None:
                raise StoreExistsError(f"{self.url} has an unfinished conversion; pass --resume to finish it, "
                                       "or --overwrite to start anew")
        self.name = new_version_name(after=max((v.name for v in versions), default=None))

    # -- the lock --------------------------------------------------------------------------------
    def _lock(self) -> None:
        store = self.location.store
        mine = {"token": self._token, "host": socket.gethostname(), "pid": os.getpid(),
                "pid_start": _process_start(os.getpid()), "started": datetime.now(timezone.utc).isoformat(
                    timespec="seconds"), "destination": self.url}
        data = json.dumps(mine, indent=1).encode()
        for _attempt in range(3):
            _run(store.set_if_not_exists(LOCK, _buffer(data)))
            raw = _get(store, LOCK)
            holder = _parse_lock(raw)
            if holder.get("token") == self._token:
                self._locked = True
                return
            if raw is None:  # released between our two requests: try again
                continue
            stale = self._stale(holder)
            if not (self.break_lock or stale):
                raise StoreLockedError(
                    f"{self.url} is being written by another conversion (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, since {holder.get('started')}); wait for it to finish, or if it is "
                    "no longer running, rerun with --break-lock")
            if _get(store, LOCK) == raw:  # still that one: remove it and take ours
                why = "a conversion that is no longer running" if stale else "another conversion (--break-lock)"
                warnings.warn(f"{self.url}: removed the lock of {why} (pid {holder.get('pid')} on "
                              f"{holder.get('host')}, since {holder.get('started')})", stacklevel=3)
                _run(store.delete(LOCK))
            time.sleep(0.05)
        raise StoreLockedError(f"{self.url}: could not take the writer lock ({self.location.versions_url}/{LOCK})")

    def _stale(self, holder: Mapping[str, Any]) -> bool:
        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
            return False
        return not _alive(int(holder["pid"]), holder.get("pid_start"))

    def _unlock(self) -> None:
        if not self._locked:
            return
        self._locked = False
        store = self.location.store
        if _parse_lock(_get(store, LOCK)).get("token") == self._token:
            _run(store.delete(LOCK))

    # -- publication -----------------------------------------------------------------------------
    def publish(self, content_version: str) -> None:
        """Make the version written current in one atomic step, then remove old versions."""
        if self.up_to_date:
            return
        holder = _parse_lock(_get(self.location.store, LOCK))
        if holder.get("token") != self._token:  # --break-lock by another conversion while this one ran
            self._locked = False
            raise StoreLockedError(
                f"{self.url}: the writer lock was taken over by another conversion (pid {holder.get('pid')} on "
                f"{holder.get('host')}, --break-lock) while this one ran; its version {self.name} was not published")
        if self.location.local:
            self._publish_local()
        else:
            pointer = {"version": self.name, "content_version": content_version,
                       "published": datetime.now(timezone.utc).isoformat(timespec="seconds")}
            _put(self.location.store, POINTER, json.dumps(pointer, indent=1).encode())
        self.published = True
        self.collect()

    def _publish_local(self) -> None:
        path = _local_path(self.url)
        if os.path.isdir(path) and not os.path.islink(path):  # a store from before versions: keep it as one
            stamp = datetime.fromtimestamp(os.path.getmtime(path), timezone.utc)
            self.previous = f"v{stamp:%Y%m%dT%H%M%SZ}-000000"
            os.replace(path, _local_path(self.location.version_url(self.previous)))
        link = f"{path}.tmp-{secrets.token_hex(4)}"
        os.symlink(f"{os.path.basename(path)}{self.location.versions_url[len(self.url):]}/{self.name}", link)
        os.replace(link, path)  # atomic: readers resolve either the old or the new version

    def collect(self) -> list[str]:
        """Remove versions other than the current one and the one before it; return their names.

        Each goes root document first: a reader still holding one gets
        :class:`~sscxr.errors.StoreChangedError` on its next missing chunk.
        """
        keep = {self.name, self.previous} if KEEP_PUBLISHED >= 2 else {self.name}
        removed = []
        for name in self.location.version_names():
            if name in keep:
                continue
            store = self.location.store
            _run(store.delete(f"{name}/zarr.json"))
            _run(store.delete_dir(name))
            if self.location.local:
                import shutil

                shutil.rmtree(_local_path(self.location.version_url(name)), ignore_errors=True)
            removed.append(name)
        return removed


def _parse_lock(raw: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
