"""The one credential registry: which storage options (credentials) a URL is opened with.

Credentials never travel in a dask graph, a pickled store or a store's attrs. A process learns
them in one of three ways, all kept here in one registry, **URL prefix -> storage options**, where
the longest registered prefix of a URL wins:

* :func:`register_credentials` (a user, or a dask worker plugin: :func:`register_worker_credentials`
  sends the options once to every worker of a ``distributed.Client``, outside any task);
* the converter registering its destination for its write tasks
  (``sscxr_conversion.tasks.register_options``, which calls :func:`register_credentials`);
* a store built with secret options (:func:`sscxr.io.make_store`): :func:`remember` keeps them
  under the store's URL and a random tag, so that store's pickle, unpickled in the same
  process, finds exactly its own options again (:func:`recall`); elsewhere it falls back to the
  prefixes registered there, then to the worker's own credential chain (environment, roles).

What counts as a secret (:func:`is_secret`) and how options are shown without one
(:func:`redact`) are here too.

>>> register_credentials("memory://doc-creds", {"key": "K", "secret": "S"})
>>> registered_options("memory://doc-creds/a/x.zarr")
{'key': 'K', 'secret': 'S'}
>>> redact({"key": "K", "secret": "S", "endpoint_url": "http://h"})
{'endpoint_url': 'http://h'}
>>> register_credentials("memory://doc-creds", None)
>>> registered_options("memory://doc-creds/a/x.zarr") is None
True
"""

from __future__ import annotations

import copy
import os
import secrets
import threading
from collections.abc import Mapping
from typing import Any

__all__ = [
    "SECRET_KEYS",
    "is_secret",
    "redact",
    "secret_values",
    "register_credentials",
    "register_worker_credentials",
    "registered_options",
    "is_registered",
    "with_registered",
    "remember",
    "recall",
    "generation",
]

SECRET_KEYS = frozenset(
    {
        "key", "secret", "token", "password", "session_token", "access_key_id",
        "secret_access_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
        "account_key", "sas_token", "client_secret", "connection_string", "credentials",
    }
)  # fmt: skip
"""Option names whose values are credentials (any nesting level, any case)."""

# The registry: (URL prefix, tag) -> storage options. Tag "" for registered prefixes; a random
# tag for one store's own options (remember/recall), which prefix lookups never see.
_REGISTRY: dict[tuple[str, str], dict[str, Any]] = {}
_LOCK = threading.Lock()
_GENERATION = [0]  # bumped on every change: caches of built stores key on it


def is_secret(key: str, value: Any) -> bool:
    """Whether the option ``key=value`` is a credential (``anon=True`` and ``None`` are not).

    >>> is_secret("secret", "abc"), is_secret("anon", True), is_secret("key", None)
    (True, False, False)
    """
    return key.lower() in SECRET_KEYS and value not in (None, "anon", True, False)


def redact(options: Any) -> Any:
    """A deep copy of ``options`` without any credential value.

    >>> redact({"s3": {"key": "K", "anon": False}})
    {'s3': {'anon': False}}
    """
    if isinstance(options, Mapping):
        return {k: redact(v) for k, v in options.items() if not is_secret(str(k), v)}
    if isinstance(options, list | tuple):
        return type(options)(redact(v) for v in options)
    return options


def secret_values(options: Any) -> list[str]:
    """Every credential value in ``options`` (to scrub from messages).

    >>> secret_values({"key": "K", "client_kwargs": {"token": "T"}, "anon": False})
    ['K', 'T']
    """
    if isinstance(options, Mapping):
        out = [str(v) for k, v in options.items() if is_secret(str(k), v) and str(v)]
        return out + [s for v in options.values() for s in secret_values(v)]
    if isinstance(options, list | tuple):
        return [s for v in options for s in secret_values(v)]
    return []


def _prefix(url: str | os.PathLike[str]) -> str:
    text = os.fspath(url)
    return text if text.endswith("://") else text.rstrip("/")


def _holds(prefix: str, url: str) -> bool:
    return url == prefix or url.startswith(prefix + "/") or (prefix.endswith("://") and url.startswith(prefix))


def generation() -> int:
    """A number that changes whenever the registry does (caches of built stores key on it)."""
    return _GENERATION[0]


def register_credentials(url_prefix: str | os.PathLike[str], storage_options: Mapping[str, Any] | None) -> None:
    """Use ``storage_options`` for every URL under ``url_prefix`` opened in this process.

    Options given to an opener (:func:`sscxr.io.open_store`, :func:`sscxr.io.make_store`, ...)
    that hold no credential are completed with these (a registered ``key``/``secret`` drops
    ``anon=True``), and so are stores unpickled here from a dask graph built in another process
    (whose secrets stayed there). This is how dask workers get credentials without any secret in
    a task graph: :func:`register_worker_credentials` runs it on every worker. ``None`` or ``{}``
    forgets the prefix. The longest registered prefix of a URL wins.

    >>> register_credentials("memory://doc-reg", {"anon": False})
    >>> register_credentials("memory://doc-reg/private", {"key": "K", "secret": "S"})
    >>> registered_options("memory://doc-reg/public/x.zarr")
    {'anon': False}
    >>> sorted(registered_options("memory://doc-reg/private/x.zarr"))
    ['key', 'secret']
    >>> for p in ("memory://doc-reg", "memory://doc-reg/private"):
    ...     register_credentials(p, None)
    """
    prefix = _prefix(url_prefix)
    with _LOCK:
        if storage_options:
            _REGISTRY[(prefix, "")] = copy.deepcopy(dict(storage_options))
        else:
            _REGISTRY.pop((prefix, ""), None)
        _GENERATION[0] += 1


def registered_options(url: str | os.PathLike[str]) -> dict[str, Any] | None:
    """A copy of the options registered for the longest prefix of ``url`` (None: none)."""
    url = _prefix(url)
    with _LOCK:
        hits = [prefix for prefix, tag in _REGISTRY if not tag and _holds(prefix, url)]
        return copy.deepcopy(_REGISTRY[(max(hits, key=len), "")]) if hits else None


def is_registered(url: str | os.PathLike[str]) -> bool:
    """Whether options are registered for ``url`` or a prefix of it in this process."""
    url = _prefix(url)
    with _LOCK:
        return any(not tag and _holds(prefix, url) for prefix, tag in _REGISTRY)


def with_registered(url: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` completed with those registered for ``url`` (unless they hold a secret of their own).

    >>> register_credentials("memory://doc-with", {"key": "K", "secret": "S"})
    >>> with_registered("memory://doc-with/x.zarr", {"anon": True})
    {'key': 'K', 'secret': 'S'}
    >>> with_registered("memory://doc-with/x.zarr", {"key": "mine", "secret": "own"})
    {'key': 'mine', 'secret': 'own'}
    >>> register_credentials("memory://doc-with", None)
    """
    if secret_values(options):
        return options
    registered = registered_options(url)
    if registered is None:
        return options
    merged = {**options, **registered}
    if secret_values(registered) and "anon" not in registered:
        merged.pop("anon", None)
    return merged


def remember(url: str, options: Mapping[str, Any]) -> str | None:
    """Keep one store's secret ``options`` here, under its URL and a random tag (returned; None
    when they hold no secret). The tag, not the options, goes into the store's pickle."""
    if not secret_values(options):
        return None
    url = _prefix(url)
    with _LOCK:
        for (prefix, tag), known in _REGISTRY.items():
            if tag and prefix == url and known == options:
                return tag
        tag = secrets.token_hex(8)
        _REGISTRY[(url, tag)] = copy.deepcopy(dict(options))
        return tag


def recall(url: str, tag: str | None) -> dict[str, Any] | None:
    """A copy of the options :func:`remember` kept for ``url`` under ``tag`` (None: not in this process)."""
    if not tag:
        return None
    with _LOCK:
        known = _REGISTRY.get((_prefix(url), tag))
        return copy.deepcopy(known) if known is not None else None


def register_worker_credentials(client: Any, url_prefix: str | os.PathLike[str],
                                storage_options: Mapping[str, Any]) -> None:  # fmt: skip
    """Give every worker of a ``distributed.Client`` (present and future) ``storage_options`` for
    the URLs under ``url_prefix``, through a worker plugin: never through a task graph.

    The plugin (:class:`sscxr._distributed.StorageOptionsPlugin`, also the converter's) travels
    once from the client to the scheduler and each worker, which call
    :func:`register_credentials`; this process registers them too (graphs built here then read
    here and on the workers alike). On managed clusters prefer credentials the workers already
    have (environment or IAM role; see ``docs/analysis.md``, "Whole catalog on a cluster").

    >>> register_worker_credentials(client, "s3://bucket/stores",
    ...                             {"key": ..., "secret": ...})           # doctest: +SKIP
    """
    from ._distributed import StorageOptionsPlugin

    register_credentials(url_prefix, storage_options)
    client.register_plugin(StorageOptionsPlugin(_prefix(url_prefix), storage_options))
