"""Stores from a URL + ``storage_options``, whose pickle carries no secret.

This module's one job is building zarr stores (:func:`make_store`): the backend for a URL (local
path, fsspec, obstore for ``s3://``), the store classes that pickle as a *recipe* (URL, backend,
options minus secrets) for dask graphs and workers, and that report storage failures as one clear
error (:mod:`sscxr._storage_errors`). Secrets stay in the process that was given them, in the
one credential registry (:mod:`sscxr.credentials`). The public names are re-exported by
:mod:`sscxr.io`.

>>> import pickle
>>> store = make_store("memory://doc-stores/x.zarr", {"key": "K", "secret": "S"}, resolve=False)
>>> b"S" in pickle.dumps(store) or b"K" in pickle.dumps(store)
False
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import json
import os
import re
import secrets
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal

import zarr
from zarr.abc.store import Store
from zarr.buffer import default_buffer_prototype

from . import credentials
from ._storage_errors import diagnose, translated
from ._zarr_compat import on_zarr_loop, sync
from .errors import MissingDependencyError, SscxrError, StorageAccessError

__all__ = ["OBSTORE_RETRY", "Recipe", "check_writable", "make_store", "recipe_for", "storage_errors", "target"]

LOCAL_PROTOCOLS = frozenset({"", "file", "local"})
_PROTOCOL_PACKAGES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", None),
                      "gcs": ("gcsfs", None), "az": ("adlfs", None), "abfs": ("adlfs", None),
                      "http": ("aiohttp", None), "https": ("aiohttp", None)}  # fmt: skip


def protocol(url: str) -> str:
    """The URL's protocol, lower case (``""`` for a local path, and for a ``::`` chain).

    >>> protocol("S3://b/x.zarr"), protocol("simplecache::s3://b/x.zarr"), protocol("/data/x.zarr")
    ('s3', '', '')
    """
    head = url.split("::", 1)[0]
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", head)
    return match.group(1).lower() if match else ""


@dataclass(frozen=True, eq=False)
class Recipe:
    """How to rebuild a store: URL, backend and storage options minus secrets."""

    url: str
    backend: Literal["local", "fsspec", "obstore"]
    public_options: dict[str, Any] = field(default_factory=dict)
    credential_token: str | None = None
    read_only: bool = True

    @property
    def options(self) -> dict[str, Any]:
        """The full options in the process that was given them, else the public ones completed
        with those registered for the URL here (e.g. on a dask worker)."""
        full = credentials.recall(self.url, self.credential_token)
        if full is not None:
            return full
        return credentials.with_registered(self.url, copy.deepcopy(self.public_options))

    @property
    def anonymous(self) -> bool:
        return bool(self.options.get("anon"))

    @property
    def has_credentials(self) -> bool:
        return bool(credentials.secret_values(self.options))

    def key(self) -> str:
        """Identity of the store this recipe builds (no secret in it; the token is random)."""
        public = json.dumps(self.public_options, sort_keys=True, default=repr)
        return f"{self.backend}|{self.url}|{public}|{self.credential_token}|{self.read_only}"

    def scrub(self, text: str) -> str:
        for value in sorted(credentials.secret_values(self.options), key=len, reverse=True):
            text = text.replace(value, "***")
        return text


def _rebuild_store(recipe: Recipe) -> Store:
    return build(recipe)


class _SecretFreePickle:
    """Mixin: pickle as (URL, backend, options minus secrets); tokenize without pickling."""

    _sscxr_recipe: Recipe
    read_only: bool

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_store, (replace(self._sscxr_recipe, read_only=self.read_only),))

    def __dask_tokenize__(self) -> str:
        return replace(self._sscxr_recipe, read_only=self.read_only).key()

    def with_read_only(self, read_only: bool = False) -> Any:
        new = super().with_read_only(read_only)  # type: ignore[misc]
        new._sscxr_recipe = self._sscxr_recipe
        return new

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        """The object at ``key``; a missing chunk of a store whose root is gone is an error.

        zarr reads a missing chunk as fill values. In a published version that only happens
        when the version was removed (a newer conversion replaced it, ``docs/publication.md``):
        :class:`~sscxr.errors.StoreChangedError` then, never fill values for lost data.
        """
        value = await super().get(key, prototype, byte_range)  # type: ignore[misc]
        if value is None and self.read_only and not key.endswith("zarr.json") and "/" in key:
            if not await super().exists("zarr.json"):  # type: ignore[misc]
                from .errors import StoreChangedError

                raise StoreChangedError(
                    f"{self._sscxr_recipe.url}: this store was removed while it was being read "
                    f"(a newer conversion replaced it): open it again to read the current version"
                )
        return value


class _StorageErrors:
    """Mixin for remote stores: a failure of a read or write, wherever it runs (inside a dask
    ``compute``, on a worker), is a :class:`StorageAccessError` naming the URL, without secret,
    when :func:`_diagnose` recognises it (refused, unreachable, missing bucket); others pass."""

    _sscxr_recipe: Recipe

    def _sscxr_translate(self, exc: Exception, writing: bool) -> Exception:
        recipe = getattr(self, "_sscxr_recipe", None)
        if recipe is None or recipe.backend == "local" or isinstance(exc, SscxrError):
            return exc
        return diagnose(exc, recipe.url, recipe, None, writing) or exc  # no probe: we are on zarr's loop

    async def get(self, key: str, prototype: Any = None, byte_range: Any = None) -> Any:
        try:
            return await super().get(key, prototype, byte_range)  # type: ignore[misc]
        except Exception as exc:
            raise self._sscxr_translate(exc, False) from None

    async def get_partial_values(self, prototype: Any, key_ranges: Any) -> Any:
        try:
            return await super().get_partial_values(prototype, key_ranges)  # type: ignore[misc]
        except Exception as exc:
            raise self._sscxr_translate(exc, False) from None

    async def exists(self, key: str) -> bool:
        try:
            return bool(await super().exists(key))  # type: ignore[misc]
        except Exception as exc:
            raise self._sscxr_translate(exc, False) from None

    async def set(self, key: str, value: Any, *args: Any, **kwargs: Any) -> None:
        try:
            await super().set(key, value, *args, **kwargs)  # type: ignore[misc]
        except Exception as exc:
            raise self._sscxr_translate(exc, True) from None

    async def delete(self, key: str) -> None:
        try:
            await super().delete(key)  # type: ignore[misc]
        except Exception as exc:
            raise self._sscxr_translate(exc, True) from None

    async def delete_dir(self, prefix: str) -> None:
        try:
            await super().delete_dir(prefix)  # type: ignore[misc]
        except Exception as exc:
            raise self._sscxr_translate(exc, True) from None


class _SafeLocalStore(_SecretFreePickle, zarr.storage.LocalStore):
    pass


class _SafeFsspecStore(_StorageErrors, _SecretFreePickle, zarr.storage.FsspecStore):
    pass


def _safe_object_store_class() -> type:
    from zarr.storage import ObjectStore

    class _SafeObjectStore(_StorageErrors, _SecretFreePickle, ObjectStore):  # type: ignore[type-arg]
        pass

    return _SafeObjectStore


_SAFE_OBJECT_STORE: type | None = None

OBSTORE_RETRY: dict[str, Any] = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=10),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2},
}
"""obstore's retries (5xx, dropped connections, timeouts): 3, as the AWS SDKs' standard mode, within
10 s. obstore's own default, 10 within 3 minutes, left a compute hanging for minutes once the
server was gone before the error came."""


def _obstore_s3_kwargs(url: str, options: Mapping[str, Any]) -> dict[str, Any] | None:
    """Translate s3fs-style ``storage_options`` to ``obstore.store.S3Store`` arguments.

    Returns None when an option has no obstore equivalent (then s3fs is used).
    """
    ignorable = {"skip_instance_cache", "use_listings_cache", "listings_expiry_time", "asynchronous",
                 "default_block_size", "default_cache_type", "default_fill_cache", "cache_regions",
                 "use_ssl"}  # fmt: skip
    bucket, _, prefix = url.split("://", 1)[1].partition("/")
    kwargs: dict[str, Any] = {"bucket": bucket, "prefix": prefix.strip("/") or None}
    config: dict[str, Any] = {}
    client_kwargs = dict(options.get("client_kwargs") or {})
    endpoint = options.get("endpoint_url") or client_kwargs.pop("endpoint_url", None)
    region = options.get("region") or client_kwargs.pop("region_name", None)
    if client_kwargs:
        return None
    names = {"key": "access_key_id", "secret": "secret_access_key", "token": "session_token"}
    for name, value in options.items():
        if name in names and value is not None:
            config[names[name]] = value
        elif name == "anon":
            config["skip_signature"] = bool(value)
        elif name == "requester_pays":
            config["request_payer"] = bool(value)
        elif name not in ignorable | {"endpoint_url", "region", "client_kwargs"}:
            return None
    if endpoint:
        config["endpoint"] = endpoint
        kwargs["client_options"] = {"allow_http": str(endpoint).startswith("http://")}
    config["region"] = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    kwargs["config"] = config
    kwargs["retry_config"] = dict(OBSTORE_RETRY)
    return kwargs


def _s3_client() -> str:
    choice = os.environ.get("SSCXR_S3_CLIENT", "auto").lower()
    if choice not in {"auto", "obstore", "s3fs"}:
        raise ValueError(f"SSCXR_S3_CLIENT is {choice!r}; expected 'auto', 'obstore' or 's3fs'")
    if choice == "auto":
        return "obstore" if importlib.util.find_spec("obstore") else "s3fs"
    return choice


def _profile_credentials_only(options: Mapping[str, Any]) -> bool:
    """Whether S3 credentials can come only from an AWS profile (``AWS_PROFILE``,
    ``~/.aws/credentials``): obstore reads the ``AWS_*`` variables and roles, not profiles."""
    if options.get("anon") or credentials.secret_values(options) or os.environ.get("AWS_ACCESS_KEY_ID"):
        return False
    shared = os.environ.get("AWS_SHARED_CREDENTIALS_FILE") or os.path.expanduser("~/.aws/credentials")
    return bool(os.environ.get("AWS_PROFILE")) or os.path.isfile(shared)


def _require_protocol(protocol: str) -> None:
    from fsspec.registry import get_filesystem_class, known_implementations, registry

    known = known_implementations
    if protocol not in known and protocol not in registry:
        raise StorageAccessError(
            f"unknown URL protocol {protocol!r}: expected a local path, memory://, s3:// or a "
            f"protocol fsspec knows ({', '.join(sorted(p for p in known if len(p) < 8)[:25])}, ...)"
        )
    try:
        get_filesystem_class(protocol)
    except ImportError:
        package, extra = _PROTOCOL_PACKAGES.get(protocol, (None, None))
        if extra:
            raise MissingDependencyError(package or protocol, f"Reading {protocol}:// URLs", extra) from None
        hint = known.get(protocol, {}).get("err", f"install the fsspec implementation of {protocol}")
        raise StorageAccessError(f"{protocol}:// URLs need a package that is not installed: {hint}") from None


def recipe_for(url: str, storage_options: Mapping[str, Any] | None, read_only: bool) -> Recipe:
    options = credentials.with_registered(url, copy.deepcopy(dict(storage_options or {})))
    proto = protocol(url)
    if "::" in url:
        backend: Literal["local", "fsspec", "obstore"] = "fsspec"
    elif proto in LOCAL_PROTOCOLS:
        backend = "local"
    elif (proto in {"s3", "s3a"} and _s3_client() == "obstore" and _obstore_s3_kwargs(url, options) is not None
          and not _profile_credentials_only(options)):
        backend = "obstore"
    else:
        backend = "fsspec"
    if backend == "fsspec":
        for proto in {part if "://" not in part else protocol(part) for part in url.split("::")}:
            if proto not in LOCAL_PROTOCOLS and proto not in {"memory"}:
                _require_protocol(proto)
    if backend == "local" and options:
        raise StorageAccessError(
            f"storage_options {sorted(options)} were given for the local path {url!r}; local "
            "paths take none (drop them, or give a remote URL)"
        )
    return Recipe(url, backend, credentials.redact(options), credentials.remember(url, options), read_only)


_BUILT: dict[str, Store] = {}  # process-local cache: building an S3 client costs ~15 ms
_BUILT_MAX = 64
_BUILT_LOCK = threading.Lock()


def build(recipe: Recipe) -> Store:
    """The store ``recipe`` describes (cached: stores built before the credential registry last
    changed are not reused, they were built with other options)."""
    key = f"{credentials.generation()}|{on_zarr_loop()}|{recipe.key()}"
    store = _BUILT.get(key)
    if store is None:
        store = _build_uncached(recipe)
        with _BUILT_LOCK:
            if len(_BUILT) >= _BUILT_MAX:
                _BUILT.pop(next(iter(_BUILT)))
            _BUILT[key] = store
    return store


def _build_uncached(recipe: Recipe) -> Store:
    global _SAFE_OBJECT_STORE
    url, options = recipe.url, recipe.options
    if recipe.backend == "local":
        path = url.split("://", 1)[1] if "://" in url else url
        store: Any = _SafeLocalStore(os.path.expanduser(path), read_only=recipe.read_only)
    elif recipe.backend == "obstore":
        from obstore.store import S3Store

        kwargs = _obstore_s3_kwargs(url, options) or {}
        _SAFE_OBJECT_STORE = _SAFE_OBJECT_STORE or _safe_object_store_class()
        store = _SAFE_OBJECT_STORE(S3Store(**kwargs), read_only=recipe.read_only)
    else:
        if "::" not in url:
            options.setdefault("skip_instance_cache", True)  # cached s3fs instances carry their loop
        if protocol(url) in {"s3", "s3a"}:
            options.setdefault("use_listings_cache", False)  # stores are listed again after writes
        store = _fsspec_store(url, options, recipe.read_only)
    store._sscxr_recipe = recipe
    return store  # type: ignore[no-any-return]


def _fsspec_store(url: str, options: dict[str, Any], read_only: bool) -> Any:
    """An fsspec-backed store for ``url``.

    With zarr's event loop (:func:`sscxr._zarr_compat.on_zarr_loop`), an asynchronous
    filesystem driven on that loop, as zarr builds it. Without it, sscxr's own store calls run on
    fresh event loops, where an asynchronous s3fs (whose client is bound to the loop it started
    on) fails: the filesystem is then a synchronous one, doing its I/O on fsspec's own loop
    thread, behind fsspec's public async wrapper, which any event loop may drive (slower).
    """
    if on_zarr_loop():
        with warnings.catch_warnings():  # sync layers (simplecache::) get zarr's async wrapper
            warnings.filterwarnings("ignore", message=".*was not created with `asynchronous=True`")
            return _SafeFsspecStore.from_url(url, storage_options=options, read_only=read_only)
    import fsspec
    from fsspec.implementations.asyn_wrapper import AsyncFileSystemWrapper

    fs, path = fsspec.url_to_fs(url, **options)
    return _SafeFsspecStore(fs=AsyncFileSystemWrapper(fs, asynchronous=True), path=path, read_only=read_only)


def make_store(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None,
               *, read_only: bool = True, resolve: bool | None = None) -> Store:
    """A zarr store for ``url``, whose pickle (dask graphs) carries no credential.

    ``storage_options`` are fsspec/s3fs style (``anon``, ``key``, ``secret``, ``token``,
    ``endpoint_url``, ``client_kwargs={"region_name": ...}``); for ``s3://`` they are translated
    to obstore when it is installed and every option has an obstore equivalent. A URL like
    ``simplecache::s3://...`` caches what it reads locally (options per layer:
    ``{"s3": {...}, "simplecache": {"cache_storage": DIR}}``).

    A read-only store (and any store with ``resolve=True``) is built on the version ``url``
    names now (:mod:`sscxr.versions`), so it keeps reading that version while newer ones are
    published.

    >>> store = make_store("memory://doc/x.zarr")
    >>> isinstance(store, zarr.storage.FsspecStore), store.read_only
    (True, True)
    """
    url = os.fspath(url).rstrip("/") if not str(url).endswith("://") else os.fspath(url)
    if read_only if resolve is None else resolve:
        url = _resolve(url, storage_options)
    return build(recipe_for(url, storage_options, read_only))


def target(where: str | os.PathLike[str] | Store, storage_options: Mapping[str, Any] | None, *,
           resolve: Any = None) -> tuple[str, Store, Recipe]:
    """(label for messages, store, recipe) of a URL (read-only, on the version it names now) or
    of a zarr store built elsewhere. ``resolve(url, storage_options)``: how to resolve the URL
    (default :func:`_resolve`)."""
    if isinstance(where, Store):
        if storage_options:
            raise StorageAccessError("storage_options go with a URL; this is a zarr store already built")
        return str(where), where, Recipe(str(where), "local")
    url = os.fspath(where).rstrip("/")
    recipe = recipe_for((resolve or _resolve)(url, storage_options), storage_options, True)
    return url, build(recipe), recipe


def _resolve(url: str, storage_options: Mapping[str, Any] | None) -> str:
    """The URL of the version ``url`` names now (:func:`sscxr.versions.resolve`), errors translated."""
    from .versions import resolve

    recipe = recipe_for(url, storage_options, True)
    with translated(url, recipe):
        return resolve(url, storage_options)



@contextlib.contextmanager
def storage_errors(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None, *,
                   writing: bool = False) -> Iterator[None]:  # fmt: skip
    """Turn storage failures inside the block into :class:`StorageAccessError` without secrets.

    For writers (the converter) that use :func:`make_store` directly:

    >>> with storage_errors("memory://doc/y.zarr", writing=True):
    ...     pass
    """
    url = os.fspath(url).rstrip("/")
    with translated(url, recipe_for(url, storage_options, not writing), writing=writing):
        yield


def check_writable(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`StorageAccessError` unless ``url`` accepts writes (tries one tiny object).

    Call it before a long conversion to fail in a second rather than after an hour.

    >>> check_writable("memory://doc/w.zarr")
    """
    url = os.fspath(url).rstrip("/")
    recipe = recipe_for(url, storage_options, False)
    store = build(recipe)
    probe = f".sscxr-write-probe-{secrets.token_hex(4)}"
    with translated(url, recipe, store, writing=True):
        sync(store.set(probe, default_buffer_prototype().buffer.from_bytes(b"probe")))
        sync(store.delete(probe))
