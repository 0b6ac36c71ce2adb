"""Open sscxr stores lazily from a URL, and fingerprint their metadata.

The library knows storage only as a URL plus ``storage_options`` (STYLE rule 3): a local path,
``memory://``, ``s3://bucket/prefix/x.zarr``, a cached ``simplecache::s3://...`` chain, or any
URL fsspec opens. S3 support is the ``s3`` extra; when `obstore <https://developmentseed.org/obstore>`_
is installed, ``s3://`` URLs use it (faster than s3fs on every measurement in
``docs/benchmarks-remote.md``); set ``SSCXR_S3_CLIENT=s3fs`` to force s3fs. s3fs is also used when
credentials can come only from an AWS profile (``AWS_PROFILE``, ``~/.aws/credentials``), which
obstore does not read.

>>> import sscxr.io as sio
>>> tree = sio.open_session("s3://bucket/an197522_2013_03_08.zarr",
...                         storage_options={"anon": True})              # doctest: +SKIP
>>> one = sio.open_group("s3://bucket/an197522_2013_03_08.zarr",
...                      "imaging/subvolume_05", storage_options={"anon": True})  # doctest: +SKIP
>>> one.dff.sel(cell=12).isel(time=slice(0, 80)).values                  # doctest: +SKIP

Credentials never leave the process that was given them: stores built here pickle (for dask
graphs, ``distributed`` workers, ``cloudpickle``) without any secret. Unpickled in the same
process they find the secret again in a process-local registry; elsewhere they fall back to the
worker's own credential chain (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, roles; with s3fs
also ``~/.aws`` profiles).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import fnmatch
import hashlib
import importlib.util
import json
import os
import re
import secrets
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, Literal, TypeAlias

import numpy as np
import xarray as xr
import zarr
from zarr.abc.store import Store
from zarr.storage import StorePath

from .errors import (
    IncompleteStoreError,
    MissingDependencyError,
    SchemaError,
    SscxrError,
    StorageAccessError,
    StoreNotFoundError,
    StoreVersionWarning,
)

__all__ = [
    "ANALYSIS_BLOCK_BYTES",
    "Chunks",
    "StoreLike",
    "GroupNotFoundError",
    "content_version",
    "describe",
    "make_store",
    "open_animal",
    "open_group",
    "open_session",
    "open_store",
    "read_attrs",
    "register_credentials",
    "register_worker_credentials",
    "analysis_chunks",
    "check_writable",
    "storage_errors",
]

Chunks: TypeAlias = Literal["auto", "analysis"] | Mapping[str, Any] | None
"""``"auto"``: the store's own chunks with dask (numpy-backed lazy arrays without dask);
``"analysis"``: dask blocks of many store chunks, sized for a scheduler (:data:`ANALYSIS_BLOCK_BYTES`);
``None``: lazy numpy-backed arrays; a mapping: dimension -> chunk size, as xarray's ``chunks=``
(dimensions not named keep the store's chunks); dask keys always name the group."""

ANALYSIS_BLOCK_BYTES = 64 * 2**20
"""Target size of one dask block with ``chunks="analysis"``: a block of cells x every frame.

A real subvolume's dF/F (1,500 cells x 45,150 frames, float64, store chunks of 32 x 512) is then
10 blocks of 160 cells (58 MB) instead of 4,183 store chunks, and an ssc-11 condition's
``event_response(subvolume="all")`` about 100 tasks per subvolume (``docs/benchmarks-dataset.md``).
Each block is a whole number of store chunks, and every frame of its cells: analyses along
``time`` (trial tensors, event responses) need no rechunking."""

ARCHIVE_OPENERS = {"ssc-1": "sscxr.open_session", "ssc-11": "sscxr.open_animal"}
VERSION_EXCLUDED_ATTRS = ("content_version", "sscxr_status")
VERSION_EXCLUDED_PROVENANCE = ("created",)  # run-dependent: two conversions of one source agree
_CONTENT_VERSION_SCHEME = "sscxr-content-version/2"
_OLD_CONTENT_VERSION_SCHEMES = ("sscxr-content-version/1",)  # hashed provenance.created too
_LOCAL_PROTOCOLS = {"", "file", "local"}
_SECRET_KEYS = frozenset(
    {
        "key", "secret", "token", "password", "session_token", "access_key_id",
        "secret_access_key", "aws_access_key_id", "aws_secret_access_key", "aws_session_token",
        "account_key", "sas_token", "client_secret", "connection_string", "credentials",
    }
)  # fmt: skip
_PROTOCOL_PACKAGES = {"s3": ("s3fs", "s3"), "s3a": ("s3fs", "s3"), "gs": ("gcsfs", None),
                      "gcs": ("gcsfs", None), "az": ("adlfs", None), "abfs": ("adlfs", None),
                      "http": ("aiohttp", None), "https": ("aiohttp", None)}  # fmt: skip


class GroupNotFoundError(SscxrError, KeyError):
    """A group asked for in ``groups=`` or ``open_group`` is not in the store."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0])


# --------------------------------------------------------------------------------------------
# URL + storage_options -> zarr store whose pickle carries no secret
# --------------------------------------------------------------------------------------------

_CREDENTIALS: dict[str, dict[str, Any]] = {}  # process-local: token -> full storage_options
_CREDENTIALS_LOCK = threading.Lock()


def _protocol(url: str) -> str:
    head = url.split("::", 1)[0]
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", head)
    return match.group(1).lower() if match else ""


def _is_secret(key: str, value: Any) -> bool:
    return key.lower() in _SECRET_KEYS and value not in (None, "anon", True, False)


def _redact(options: Any) -> Any:
    """A deep copy of ``options`` without any credential value."""
    if isinstance(options, Mapping):
        return {k: _redact(v) for k, v in options.items() if not _is_secret(str(k), v)}
    if isinstance(options, list | tuple):
        return type(options)(_redact(v) for v in options)
    return options


def _secret_values(options: Any) -> list[str]:
    if isinstance(options, Mapping):
        out = [str(v) for k, v in options.items() if _is_secret(str(k), v) and str(v)]
        return out + [s for v in options.values() for s in _secret_values(v)]
    if isinstance(options, list | tuple):
        return [s for v in options for s in _secret_values(v)]
    return []


_REGISTERED: dict[str, dict[str, Any]] = {}  # process-local: URL prefix -> storage options (register_credentials)


def _prefix(url: str) -> str:
    return os.fspath(url).rstrip("/")


def register_credentials(url_prefix: str, storage_options: Mapping[str, Any] | None) -> None:
    """Use ``storage_options`` for every URL under ``url_prefix`` opened in this process.

    Options given to an opener (:func:`open_store`, :func:`make_store`, ...) that hold no
    credential are completed with these (a registered ``key``/``secret`` drops ``anon=True``),
    and so are stores unpickled here from a dask graph built in another process (whose secrets
    stayed there). This is how dask workers get credentials without any secret in a task graph:
    :func:`register_worker_credentials` runs it on every worker. ``None`` or ``{}`` forgets the
    prefix.

    >>> register_credentials("memory://doc-creds", {"anon": False})
    >>> _registered_options("memory://doc-creds/x.zarr")
    {'anon': False}
    >>> register_credentials("memory://doc-creds", None)
    """
    prefix = _prefix(url_prefix)
    with _CREDENTIALS_LOCK:
        if storage_options:
            _REGISTERED[prefix] = copy.deepcopy(dict(storage_options))
        else:
            _REGISTERED.pop(prefix, None)
        _BUILT.clear()  # stores built before were built with other options


def _registered_options(url: str) -> dict[str, Any] | None:
    """The options registered for the longest prefix of ``url`` (None: none)."""
    url = _prefix(url)
    hits = [p for p in _REGISTERED if url == p or url.startswith(p + "/") or (p.endswith("://") and url.startswith(p))]
    return copy.deepcopy(_REGISTERED[max(hits, key=len)]) if hits else None


def _with_registered(url: str, options: dict[str, Any]) -> dict[str, Any]:
    if not _REGISTERED or _secret_values(options):
        return options
    registered = _registered_options(url)
    if registered is None:
        return options
    merged = {**options, **registered}
    if _secret_values(registered) and "anon" not in registered:
        merged.pop("anon", None)
    return merged


def register_worker_credentials(client: Any, url_prefix: str, storage_options: Mapping[str, Any]) -> None:
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


def _register_credentials(options: dict[str, Any]) -> str | None:
    if not _secret_values(options):
        return None
    with _CREDENTIALS_LOCK:
        for token, known in _CREDENTIALS.items():
            if known == options:
                return token
        token = secrets.token_hex(8)
        _CREDENTIALS[token] = copy.deepcopy(options)
        return token


@dataclass(frozen=True, eq=False)
class _Recipe:
    """How to rebuild a store: URL, backend and storage options minus secrets."""

    url: str
    backend: Literal["local", "fsspec", "obstore"]
    public_options: dict[str, Any] = field(default_factory=dict)
    credential_token: str | None = None
    read_only: bool = True

    @property
    def options(self) -> dict[str, Any]:
        """The full options in the process that registered them, else the public ones."""
        full = _CREDENTIALS.get(self.credential_token or "")
        if full is not None:
            return copy.deepcopy(full)
        return _with_registered(self.url, copy.deepcopy(self.public_options))  # e.g. on a dask worker

    @property
    def anonymous(self) -> bool:
        return bool(self.options.get("anon"))

    @property
    def has_credentials(self) -> bool:
        return bool(_secret_values(self.options))

    def key(self) -> str:
        """Identity of the store this recipe builds (no secret in it; the token is random)."""
        public = json.dumps(self.public_options, sort_keys=True, default=repr)
        return f"{self.backend}|{self.url}|{public}|{self.credential_token}|{self.read_only}"

    def scrub(self, text: str) -> str:
        for value in sorted(_secret_values(self.options), key=len, reverse=True):
            text = text.replace(value, "***")
        return text


def _rebuild_store(recipe: _Recipe) -> Store:
    return _build(recipe)


class _SecretFreePickle:
    """Mixin: pickle as (URL, backend, options minus secrets); tokenize without pickling."""

    _sscxr_recipe: _Recipe
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

    _sscxr_recipe: _Recipe

    def _sscxr_translate(self, exc: Exception, writing: bool) -> Exception:
        recipe = getattr(self, "_sscxr_recipe", None)
        if recipe is None or recipe.backend == "local" or isinstance(exc, SscxrError):
            return exc
        return _diagnose(exc, recipe.url, recipe, None, writing) or exc  # no probe: we are on zarr's loop

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
    if options.get("anon") or _secret_values(options) or os.environ.get("AWS_ACCESS_KEY_ID"):
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


def _recipe_for(url: str, storage_options: Mapping[str, Any] | None, read_only: bool) -> _Recipe:
    options = _with_registered(url, dict(storage_options or {}))
    protocol = _protocol(url)
    if "::" in url:
        backend: Literal["local", "fsspec", "obstore"] = "fsspec"
    elif protocol in _LOCAL_PROTOCOLS:
        backend = "local"
    elif (protocol in {"s3", "s3a"} and _s3_client() == "obstore" and _obstore_s3_kwargs(url, options) is not None
          and not _profile_credentials_only(options)):
        backend = "obstore"
    else:
        backend = "fsspec"
    if backend == "fsspec":
        for proto in {part if "://" not in part else _protocol(part) for part in url.split("::")}:
            if proto not in _LOCAL_PROTOCOLS and proto not in {"memory"}:
                _require_protocol(proto)
    if backend == "local" and options:
        raise StorageAccessError(
            f"storage_options {sorted(options)} were given for the local path {url!r}; local "
            "paths take none (drop them, or give a remote URL)"
        )
    return _Recipe(url, backend, _redact(options), _register_credentials(options), read_only)


_BUILT: dict[str, Store] = {}  # process-local cache: building an S3 client costs ~15 ms
_BUILT_MAX = 64


def _build(recipe: _Recipe) -> Store:
    key = recipe.key()
    store = _BUILT.get(key)
    if store is None:
        store = _build_uncached(recipe)
        with _CREDENTIALS_LOCK:
            if len(_BUILT) >= _BUILT_MAX:
                _BUILT.pop(next(iter(_BUILT)))
            _BUILT[key] = store
    return store


def _build_uncached(recipe: _Recipe) -> Store:
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
        if _protocol(url) in {"s3", "s3a"}:
            options.setdefault("use_listings_cache", False)  # stores are listed again after writes
        with warnings.catch_warnings():  # sync layers (simplecache::) get zarr's async wrapper
            warnings.filterwarnings("ignore", message=".*was not created with `asynchronous=True`")
            store = _SafeFsspecStore.from_url(url, storage_options=options, read_only=recipe.read_only)
    store._sscxr_recipe = recipe
    return store  # type: ignore[no-any-return]


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
    return _build(_recipe_for(url, storage_options, read_only))


def _resolve(url: str, storage_options: Mapping[str, Any] | None) -> str:
    """The URL of the version ``url`` names now (:func:`sscxr.versions.resolve`), errors translated."""
    from .versions import resolve

    recipe = _recipe_for(url, storage_options, True)
    with _translated(url, recipe):
        return resolve(url, storage_options)


# --------------------------------------------------------------------------------------------
# errors: what went wrong, without echoing secrets
# --------------------------------------------------------------------------------------------


def _endpoint(recipe: _Recipe) -> str:
    opts = recipe.options
    endpoint = opts.get("endpoint_url") or (opts.get("client_kwargs") or {}).get("endpoint_url")
    return f" at endpoint {endpoint}" if endpoint else ""


def _bucket(url: str) -> str:
    return url.split("::")[-1].split("://", 1)[-1].split("/", 1)[0]


def _probe_missing(store: Store) -> str:
    """Text of the error a direct GET of ``zarr.json`` gives (zarr hides it as 'not found')."""
    try:
        inner = getattr(store, "store", None)
        if inner is not None and type(inner).__module__.startswith("obstore"):
            import obstore

            obstore.get(inner, "zarr.json")
        elif isinstance(store, zarr.storage.FsspecStore) and hasattr(store.fs, "_cat_file"):
            from fsspec.asyn import sync as run_sync

            run_sync(store.fs.loop, store.fs._cat_file, f"{store.path}/zarr.json")
    except Exception as exc:  # noqa: BLE001  (we only want its text)
        return f"{type(exc).__name__}: {exc}"
    return ""


def _diagnose(exc: BaseException, url: str, recipe: _Recipe, store: Store | None,
              writing: bool = False) -> SscxrError | None:  # fmt: skip
    text = recipe.scrub(f"{type(exc).__name__}: {exc}")
    where = f"{url}{_endpoint(recipe)}"
    verb = "write to" if writing else "read of"
    obstore_kind = type(exc).__module__.startswith("obstore") and type(exc).__name__
    not_found = isinstance(exc, FileNotFoundError | KeyError) or obstore_kind == "NotFoundError"
    if not_found and store is not None and recipe.backend != "local":
        text = recipe.scrub(_probe_missing(store)) or text
    if "NoSuchBucket" in text or "bucket does not exist" in text:
        return StorageAccessError(f"bucket {_bucket(url)!r} does not exist{_endpoint(recipe)}: check the URL {url}")
    denied = isinstance(exc, PermissionError) or obstore_kind in {"PermissionDeniedError", "UnauthenticatedError"}
    shown = (text.strip().splitlines() or [""])[0]  # obstore appends a multi-line "Debug source"
    if denied or re.search(r"AccessDenied|Forbidden|\b403\b|NoCredentialsError|Unable to locate credentials", text):
        give = ("Give credentials: storage_options={'key': ..., 'secret': ...}, or set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY and drop anon=True")  # fmt: skip
        if recipe.anonymous:
            why = "anonymous writes are never allowed" if writing else "the bucket is private (or does not exist)"
            return StorageAccessError(f"anonymous {verb} {where} was refused: {why}. {give}")
        if recipe.credential_token and recipe.credential_token not in _CREDENTIALS:
            return StorageAccessError(
                f"{verb} {where} was refused in a process without credentials (a dask worker?): the "
                "storage_options' key and secret stay in the process they were given to (they never "
                "travel in task graphs); give the workers credentials of their own: "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE in their environment, an IAM "
                "role, or sscxr.io.register_worker_credentials(client, URL_PREFIX, storage_options)"
            )
        if not recipe.has_credentials:
            return StorageAccessError(
                f"{verb} {where} was refused: storage_options hold no credentials and those of the "
                f"environment (if any) were refused or lack permission. {give}"
            )
        if re.search(r"SignatureDoesNotMatch|InvalidAccessKeyId|InvalidClientTokenId", text):
            return StorageAccessError(f"the credentials given for {where} were rejected: wrong access key or secret")
        return StorageAccessError(
            f"{verb} {where} was denied: the credentials lack permission, or are wrong ({shown[:200]})"
        )
    if re.search(r"Connect(ion)? ?(refused|error)|ConnectorError|EndpointConnectionError|error sending request|"
                 r"Cannot connect|Could not connect|dns error", text, re.IGNORECASE):  # fmt: skip
        return StorageAccessError(f"cannot reach the storage service for {where}: {shown[:300]}")
    if not writing and (not_found or "GroupNotFound" in text or "not found" in text.lower()):
        return StoreNotFoundError(
            f"no zarr store at {where}: nothing was found there (check the URL; stores end in .zarr)"
        )
    return None


@contextlib.contextmanager
def _translated(url: str, recipe: _Recipe, store: Store | None = None, writing: bool = False) -> Iterator[None]:
    try:
        yield
    except SscxrError:
        raise
    except Exception as exc:
        err = _diagnose(exc, url, recipe, store, writing)
        if err is None:
            raise
        raise err from None


@contextlib.contextmanager
def storage_errors(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None, *,
                   writing: bool = False) -> Iterator[None]:  # fmt: skip
    """Turn storage failures inside the block into :class:`StorageAccessError` without secrets.

    For writers (the converter) that use :func:`make_store` directly:

    >>> with storage_errors("memory://doc/y.zarr", writing=True):
    ...     pass
    """
    url = os.fspath(url).rstrip("/")
    with _translated(url, _recipe_for(url, storage_options, not writing), writing=writing):
        yield


def check_writable(url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`StorageAccessError` unless ``url`` accepts writes (tries one tiny object).

    Call it before a long conversion to fail in a second rather than after an hour.

    >>> check_writable("memory://doc/w.zarr")
    """
    url = os.fspath(url).rstrip("/")
    recipe = _recipe_for(url, storage_options, False)
    store = _build(recipe)
    probe = f".sscxr-write-probe-{secrets.token_hex(4)}"
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    with _translated(url, recipe, store, writing=True):
        sync(store.set(probe, default_buffer_prototype().buffer.from_bytes(b"probe")))
        sync(store.delete(probe))


# --------------------------------------------------------------------------------------------
# content version
# --------------------------------------------------------------------------------------------


def _node_documents(metadata: Any) -> dict[str, Any]:
    from zarr.core.buffer import default_buffer_prototype

    docs = {}
    for name, buf in metadata.to_buffer_dict(default_buffer_prototype()).items():
        docs[name] = json.loads(buf.to_bytes())
    for doc in docs.values():
        if isinstance(doc, dict):
            doc.pop("consolidated_metadata", None)
    return docs


def _version_of_group(group: zarr.Group, scheme: str = _CONTENT_VERSION_SCHEME) -> str:
    members = {path: m.metadata for path, m in group.members(max_depth=None)}
    return version_of_metadata(group.metadata, members, scheme=scheme)


def _versions_of_group(group: zarr.Group) -> tuple[str, set[str]]:
    """(the content version, every version the group had under this and earlier schemes)."""
    current = _version_of_group(group)
    return current, {current} | {_version_of_group(group, old) for old in _OLD_CONTENT_VERSION_SCHEMES}


def version_of_metadata(root: Any, members: Mapping[str, Any], *, scheme: str = _CONTENT_VERSION_SCHEME) -> str:
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
        if isinstance(provenance, dict) and scheme not in _OLD_CONTENT_VERSION_SCHEMES:
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
    url, store, recipe = _target(zarr_group_or_url, storage_options)
    with _translated(url, recipe, store):
        return _version_of_group(zarr.open_group(store, mode="r"))


# --------------------------------------------------------------------------------------------
# opening
# --------------------------------------------------------------------------------------------


def _xarray_chunks(chunks: Chunks) -> Any:
    if isinstance(chunks, str):
        if chunks not in ("auto", "analysis"):
            raise ValueError(f"chunks={chunks!r}: expected 'auto', 'analysis', None or a mapping of dim -> chunk size")
        if not importlib.util.find_spec("dask"):
            if chunks == "analysis":
                raise MissingDependencyError("dask", 'chunks="analysis"', "dask")
            return None
        return chunks if chunks == "analysis" else {}
    return chunks


def analysis_chunks(dims: Sequence[str], shape: Sequence[int], stored: Sequence[int], itemsize: int,
                    target: int | None = None) -> tuple[int, ...]:
    """Block shape of ``chunks="analysis"``: whole when it fits ``target`` bytes, else whole along
    ``time`` and the other dims split, first dim first, in whole numbers of store chunks.

    >>> analysis_chunks(("cell", "time"), (1500, 45150), (32, 512), 8)     # 160 cells x all frames
    (160, 45150)
    >>> analysis_chunks(("cell",), (1500,), (1500,), 8)
    (1500,)
    """
    target = ANALYSIS_BLOCK_BYTES if target is None else target
    shape = tuple(int(n) for n in shape)
    if int(np.prod(shape, dtype=np.int64)) * itemsize <= target:
        return shape
    blocks = list(shape)
    order = [i for i, d in enumerate(dims) if d != "time"] + [i for i, d in enumerate(dims) if d == "time"]
    for i in order:
        rest = int(np.prod([b for j, b in enumerate(blocks) if j != i], dtype=np.int64)) * itemsize
        step = max(1, int(stored[i]))
        blocks[i] = min(shape[i], max(1, target // max(1, step * rest)) * step)
        if int(np.prod(blocks, dtype=np.int64)) * itemsize <= target:
            break
    return tuple(blocks)


StoreLike: TypeAlias = str | os.PathLike[str] | Store
"""A URL or path (with ``storage_options``), or a zarr store you built yourself."""


class _MetadataCache(zarr.storage.WrapperStore):  # type: ignore[type-arg]
    """Serves objects already fetched (metadata, index chunks), so xarray does not fetch them again.

    The root ``zarr.json`` of a consolidated store holds every node's metadata (hundreds of
    kB for a session); sscxr reads it once to check the store, xarray then gets it from here.
    Index coordinates are fetched all at once (:func:`_prefetch_indexes`) and served from here
    while xarray builds its indexes one by one. Pickles as the wrapped store (the cache never
    travels in dask graphs).
    """

    def __init__(self, store: Store, documents: Mapping[str, Any]) -> None:
        super().__init__(store)
        self._documents = dict(documents)

    def __reduce__(self) -> tuple[Any, ...]:
        return self._store.__reduce__()  # type: ignore[no-any-return]

    def __dask_tokenize__(self) -> Any:
        inner = getattr(self._store, "__dask_tokenize__", None)
        return inner() if inner is not None else id(self._store)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        if byte_range is None and key in self._documents:
            return self._documents[key]
        return await self._store.get(key, prototype, byte_range)

    def add(self, documents: Mapping[str, Any]) -> None:
        self._documents.update(documents)


def _target(target: StoreLike, storage_options: Mapping[str, Any] | None) -> tuple[str, Store, _Recipe]:
    """(label for messages, store, recipe) of a URL or of a zarr store built elsewhere."""
    if isinstance(target, Store):
        if storage_options:
            raise StorageAccessError("storage_options go with a URL; this is a zarr store already built")
        return str(target), target, _Recipe(str(target), "local")
    url = os.fspath(target).rstrip("/")
    recipe = _recipe_for(_resolve(url, storage_options), storage_options, True)
    return url, _build(recipe), recipe


def _get_document(store: Store, key: str) -> Any:
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    return sync(store.get(key, default_buffer_prototype()))


def _open_root(target: StoreLike, storage_options: Mapping[str, Any] | None
               ) -> tuple[str, Store, zarr.Group, _Recipe]:  # fmt: skip
    """(label, store, root group, recipe): one GET of the root metadata (zarr v3)."""
    url, store, recipe = _target(target, storage_options)
    with _translated(url, recipe, store):
        try:
            document = _get_document(store, "zarr.json")
        except FileNotFoundError:  # a local path that does not exist
            document = None
        if document is None and not isinstance(target, Store):
            _refuse_removed(url, recipe.url)
            _refuse_unfinished(url, storage_options)
        if document is not None:
            store = _MetadataCache(store, {"zarr.json": document})
            root = zarr.open_group(store, mode="r", zarr_format=3)
        else:  # zarr v2, or nothing there (zarr says which)
            root = zarr.open_group(store, mode="r")
    return url, store, root, recipe


def _refuse_removed(url: str, resolved: str) -> None:
    """``url`` named a version that has no root document by the time it is read: removed."""
    from .versions import VERSIONS_SUFFIX

    if resolved != url and VERSIONS_SUFFIX + "/" in resolved:
        from .errors import StoreChangedError

        raise StoreChangedError(f"{url}: the version it named ({resolved}) was removed while it was being opened "
                                "(newer conversions replaced it): open it again to read the current version")


def _refuse_unfinished(url: str, storage_options: Mapping[str, Any] | None) -> None:
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


def _check_root(url: str, attrs: Mapping[str, Any], archive: str | None, require_complete: bool) -> None:
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


def _check_version(url: str, root: zarr.Group, check_version: str | bool) -> None:
    actual, known = _versions_of_group(root)  # a store converted before scheme 2 keeps its pins
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


def _select_groups(root: zarr.Group, patterns: Sequence[str], url: str) -> list[str]:
    all_groups = [path for path, node in root.members(max_depth=None) if isinstance(node, zarr.Group)]
    chosen: list[str] = []
    for pattern in patterns:
        pattern = pattern.strip("/")
        hits = [g for g in all_groups if fnmatch.fnmatchcase(g, pattern)]
        if not hits:
            raise GroupNotFoundError(f"{url}: no group matches {pattern!r}; groups: {', '.join(sorted(all_groups))}")
        chosen += [g for g in hits if g not in chosen]
    with_data = {path for path, node in root.members(max_depth=None) if isinstance(node, zarr.Group)
                 and any(True for _ in node.array_keys())}  # fmt: skip
    ancestors = {"/".join(g.split("/")[:i]) for g in chosen for i in range(1, g.count("/") + 1)}
    return sorted(set(chosen) | (ancestors & with_data))


def _index_chunk_keys(group: zarr.Group, paths: Sequence[str] | None) -> list[str]:
    """Keys of every chunk of the dimension coordinates of the groups at ``paths`` (None: all).

    Uses only metadata already in memory (consolidated); returns [] when it is not.
    """
    if not _has_consolidated(group):
        return []
    keys = []
    for path, node in group.members(max_depth=None):
        parent, _, name = path.rpartition("/")
        if paths is not None and parent not in paths:
            continue
        if isinstance(node, zarr.Array) and _dimension_names(node) == (name,):
            prefix = f"{parent}/{name}" if parent else name
            keys += [f"{prefix}/{node.metadata.encode_chunk_key(c)}" for c in np.ndindex(*node.cdata_shape)]
    return keys


def _dimension_names(array: zarr.Array) -> tuple[str, ...]:
    """The array's dimension names (zarr v3 metadata, or xarray's v2 attribute)."""
    names = getattr(array.metadata, "dimension_names", None) or array.attrs.get("_ARRAY_DIMENSIONS") or ()
    return tuple(str(n) for n in names)  # type: ignore[union-attr]


def _prefetch_indexes(store: Store, group: zarr.Group, paths: Sequence[str] | None, prefix: str = "") -> None:
    """Fetch the index coordinates of the groups to open concurrently, into the store's cache.

    ``xr.open_datatree`` loads them one after the other: one round trip each, which is most
    of the time it takes to open a session over S3.
    """
    keys = [f"{prefix}/{k}" if prefix else k for k in _index_chunk_keys(group, paths)]
    if not keys or not isinstance(store, _MetadataCache):
        return
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    async def fetch_all() -> list[Any]:
        return await asyncio.gather(*(store.get(k, default_buffer_prototype()) for k in keys))

    store.add({k: buf for k, buf in zip(keys, sync(fetch_all()), strict=True) if buf is not None})


def _chunk_on_store_chunks(ds: xr.Dataset, path: str, token: str, chunks: Any = None) -> xr.Dataset:
    """Dask arrays named after the group ``path``, chunked as xarray's ``chunks=`` would chunk them.

    ``chunks`` maps dimensions to sizes (``None``, ``{}``: each variable's own zarr chunks; a
    size of ``-1``: whole; ``"auto"``: dask's choice, aligned with the zarr chunks); dimensions
    it does not name keep their zarr chunks, as in ``xr.open_dataset(..., chunks=...)``.
    xarray names its dask arrays ``open_dataset-<variable>-<token of the store and chunks>``,
    without the group: two groups' same-named variables then share their keys, and one
    ``dask.compute`` of both returns one group's values for the other. Here the name holds the
    group path and a token of this opening.

    The freshly opened dataset is ours alone, so each variable's data is swapped in place
    (``assign`` would re-merge the dataset once per call: a third of the open time).
    """
    from dask.array.core import normalize_chunks

    analysis = isinstance(chunks, str) and chunks == "analysis"
    asked = {} if analysis else dict.fromkeys(ds.dims, chunks) if isinstance(chunks, int | str) else dict(chunks or {})
    for name, var in ds.variables.items():
        if name in ds.xindexes or var.ndim == 0:
            continue
        preferred = var.encoding.get("preferred_chunks", {})
        stored = tuple(preferred.get(d, size) for d, size in zip(var.dims, var.shape, strict=True))
        wanted: tuple[Any, ...]
        if analysis:  # big variables in blocks of whole store chunks; small ones (coordinates) whole
            wanted = analysis_chunks([str(d) for d in var.dims], var.shape, stored, var.dtype.itemsize or 8)
        else:
            wanted = tuple(asked.get(d) or own for d, own in zip(var.dims, stored, strict=True))
        blocks = normalize_chunks(wanted, var.shape, dtype=var.dtype, previous_chunks=stored)
        kwargs = {"name": f"sscxr-open-{name}-{path}-{token}"}
        var.data = var.chunk(dict(zip(var.dims, blocks, strict=True)), from_array_kwargs=kwargs).data
    return ds


def _open_datasets(store: Store | StorePath, paths: Sequence[str] | None, chunks: Any, consolidated: bool,
                   zarr_format: int | None = None) -> dict[str, xr.Dataset]:  # fmt: skip
    """Open groups (all when ``paths`` is None) as Datasets keyed by ``/path``.

    With dask (``chunks`` not None), arrays are chunked here, not by xarray, so that their dask
    keys name the group (:func:`_chunk_on_store_chunks`). Index chunks should be in the store's
    cache already (:func:`_prefetch_indexes`).
    """
    kwargs: dict[str, Any] = {"engine": "zarr", "consolidated": consolidated, "zarr_format": zarr_format,
                              "chunks": None}  # fmt: skip
    if chunks is not None:
        kwargs["cache"] = False
    target: Any = store  # xarray's annotations do not list zarr stores, which it opens
    if paths is None:
        datasets = dict(xr.open_groups(target, **kwargs))
    else:
        datasets = {"/" + p.strip("/"): xr.open_dataset(target, group=p or None, **kwargs) for p in paths}
    if chunks is None:
        return datasets
    token = secrets.token_hex(8)
    return {path: _chunk_on_store_chunks(ds, path, token, chunks) for path, ds in datasets.items()}


def _open_subtree(store: Store, root: zarr.Group, paths: Sequence[str], chunks: Any, consolidated: bool) -> xr.DataTree:
    with_root = any(True for _ in root.array_keys())
    _prefetch_indexes(store, root, [""] * with_root + list(paths))
    nodes = _open_datasets(store, [""] * with_root + list(paths), chunks, consolidated, root.metadata.zarr_format)
    if not with_root:
        nodes["/"] = xr.Dataset(attrs=dict(root.attrs))
    return xr.DataTree.from_dict(nodes)


def _validate(tree: xr.DataTree, url: str, opened: Sequence[str] | None) -> None:
    from .schema import problems_in, validate

    problems = validate(tree, raise_on_error=False)
    if opened is not None:
        problems = problems_in(problems, opened)
    if problems:
        raise SchemaError(problems, where=url)


def open_store(
    url: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Chunks = "auto",
    groups: Sequence[str] | None = None,
    check_version: str | bool | None = None,
    archive: str | None = None,
    validate: bool = True,
    require_complete: bool = True,
) -> xr.DataTree:
    """Open any sscxr store (session or animal) lazily as a DataTree.

    Parameters
    ----------
    url, storage_options
        Where the store is; see :func:`make_store`. ``url`` may also be a zarr store object
        (then without ``storage_options``).
    chunks
        ``"auto"`` (default): dask arrays on the store's own chunks when dask is installed,
        lazily indexed numpy-backed arrays otherwise; ``"analysis"``: dask blocks of many store
        chunks (a block of cells x every frame, about :data:`ANALYSIS_BLOCK_BYTES`), for graphs a
        scheduler handles well (``docs/analysis.md``); ``None``: lazy numpy arrays; a mapping:
        dimension -> chunk size, as xarray's ``chunks=`` (dimensions not named keep the store's
        chunks). Dask keys name the group, so same-named variables of different groups can be
        computed together.
    groups
        Open only these groups (paths such as ``"imaging/subvolume_05"``, or glob patterns such
        as ``"imaging/*"``) plus the root attrs. Much faster than the whole tree on S3: the
        whole tree loads every group's index coordinates.
    check_version
        A content version (16 hex) this store should have, e.g. a catalog pin, or ``True`` to
        check the store against its own recorded ``content_version``. A mismatch warns
        :class:`~sscxr.errors.StoreVersionWarning` (``warnings.simplefilter("error",
        StoreVersionWarning)`` makes it an error).
    archive
        ``"ssc-1"`` or ``"ssc-11"`` to refuse the other kind.
    validate, require_complete
        Refuse schema-invalid (:class:`~sscxr.errors.SchemaError`) and unfinished
        (:class:`~sscxr.errors.IncompleteStoreError`) stores. Turn off only to inspect one.

    >>> tree = open_store("s3://bucket/an274424.zarr", storage_options={"anon": True},
    ...                   groups=["cells"])                                    # doctest: +SKIP
    """
    url, store, root, recipe = _open_root(url, storage_options)
    attrs = dict(root.attrs)
    _check_root(url, attrs, archive, require_complete)
    if check_version:
        _check_version(url, root, check_version)
    xr_chunks = _xarray_chunks(chunks)
    consolidated = _has_consolidated(root)
    with _translated(url, recipe, store):
        if groups is None:
            _prefetch_indexes(store, root, None)
            datasets = _open_datasets(store, None, xr_chunks, consolidated, root.metadata.zarr_format)
            tree = xr.DataTree.from_dict(datasets)
            opened = None
        else:
            opened = _select_groups(root, [groups] if isinstance(groups, str) else groups, url)
            tree = _open_subtree(store, root, opened, xr_chunks, consolidated)
    if validate:
        _validate(tree, url, opened)
    return tree


def open_session(
    url: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Chunks = "auto",
    groups: Sequence[str] | None = None,
    check_version: str | bool | None = None,
) -> xr.DataTree:
    """Open an ssc-1 session store lazily (see :func:`open_store` for the parameters).

    >>> s = open_session("s3://bucket/an197522_2013_03_08.zarr",
    ...                  storage_options={"anon": True})                       # doctest: +SKIP
    >>> s["imaging/subvolume_05"].dff.sel(cell=12).values                      # doctest: +SKIP
    """
    return open_store(url, storage_options=storage_options, chunks=chunks, groups=groups,
                      check_version=check_version, archive="ssc-1")  # fmt: skip


def open_animal(
    url: StoreLike,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Chunks = "auto",
    groups: Sequence[str] | None = None,
    check_version: str | bool | None = None,
) -> xr.DataTree:
    """Open an ssc-11 animal store lazily (see :func:`open_store` for the parameters).

    >>> a = open_animal("an274424.zarr", groups=["cells", "pre/*"])             # doctest: +SKIP
    """
    return open_store(url, storage_options=storage_options, chunks=chunks, groups=groups,
                      check_version=check_version, archive="ssc-11")  # fmt: skip


def open_group(
    url: StoreLike,
    group: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    chunks: Chunks = "auto",
    require_complete: bool = True,
) -> xr.Dataset:
    """Open one group of a store as a Dataset: the fastest way to one cell x one trial.

    Reads only that group's metadata (a session's root metadata, which describes every
    group, is hundreds of kB) and its index coordinates: one GET when the group carries its
    own consolidated metadata (``zarr.consolidate_metadata(store, path=group)``), else one
    listing and one GET per member. A group the converter marked
    ``sscxr_written`` is complete whatever the rest of the store; for other groups the root
    status is checked as in :func:`open_store`. Root attrs: :func:`read_attrs`.

    >>> sv = open_group("s3://bucket/an197522_2013_03_08.zarr", "imaging/subvolume_05",
    ...                 storage_options={"anon": True})                       # doctest: +SKIP
    >>> sv.dff.sel(cell=12).where((sv.trial == 7).compute(), drop=True).values  # doctest: +SKIP
    """
    label, store, recipe = _target(url, storage_options)
    path = group.strip("/")
    with _translated(label, recipe, store):
        store, node = _v3_group(store, path)
        root = None
        if node is None or (require_complete and node.attrs.get("sscxr_written") is not True):
            _, store, root, _ = _open_root(store, None)
            _check_root(label, dict(root.attrs), None, require_complete)
            if node is None:
                _select_groups(root, [path], label)  # raises GroupNotFoundError listing the groups
        known = node if node is not None else root
        zarr_format = known.metadata.zarr_format if known is not None else None
        if path and node is not None and _has_consolidated(node):  # its own consolidated metadata: one GET
            _prefetch_indexes(store, node, [""], prefix=path)
            view = StorePath(store, path)  # xarray reads consolidated metadata only at its root
            return _open_datasets(view, [""], _xarray_chunks(chunks), True, zarr_format)["/"]
        # xarray would take a sub-group's consolidated metadata from the store's root, i.e. the whole
        # session's (hundreds of kB): listing the group's own members is ~20x fewer bytes.
        consolidated = not path and _has_consolidated(known)
        return _open_datasets(store, [path], _xarray_chunks(chunks), consolidated, zarr_format)["/" + path]


def _v3_group(store: Store, path: str) -> tuple[Store, zarr.Group | None]:
    """The group at ``path`` from one GET of its ``zarr.json`` (None: absent, an array, zarr v2)."""
    key = f"{path}/zarr.json" if path else "zarr.json"
    document = _get_document(store, key)
    if document is None:
        return store, None
    store = _MetadataCache(store, {key: document})
    try:
        return store, zarr.open_group(store, path=path, mode="r", zarr_format=3)
    except (FileNotFoundError, KeyError, ValueError, TypeError):
        return store, None


def _has_consolidated(node: zarr.Group | None) -> bool:
    return node is not None and getattr(node.metadata, "consolidated_metadata", None) is not None


def describe(url: StoreLike, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Every group's variables (dims, shape, dtype, chunks, units) from metadata alone.

    One read of the consolidated metadata, no xarray objects: the cheap way to list what a
    store holds (``sscxr info``), ~10x faster than opening the whole tree.

    >>> describe("s3://bucket/an197522_2013_03_08.zarr", storage_options={"anon": True}
    ...          )["imaging/subvolume_05"]["dff"]["dims"]                                 # doctest: +SKIP
    ('cell', 'time')
    """
    _, _, root, _ = _open_root(url, storage_options)
    groups: dict[str, dict[str, Any]] = {"": {}}
    for path, node in root.members(max_depth=None):
        parent, _, name = path.rpartition("/")
        if isinstance(node, zarr.Group):
            groups.setdefault(path, {})
            continue
        groups.setdefault(parent, {})[name] = {
            "dims": _dimension_names(node), "shape": node.shape, "dtype": str(node.dtype), "chunks": node.chunks,
            "units": node.attrs.get("units"),
        }  # fmt: skip
    return groups


def read_attrs(url: StoreLike, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The root attrs of a store (one metadata read), without any check.

    >>> read_attrs("s3://bucket/an274424.zarr", storage_options={"anon": True})["archive"]  # doctest: +SKIP
    'ssc-11'
    """
    return dict(_open_root(url, storage_options)[2].attrs)
