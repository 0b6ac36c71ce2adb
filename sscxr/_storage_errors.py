"""Storage failures as one clear error naming the URL, never echoing a secret.

:func:`diagnose` turns what s3fs, obstore, aiohttp or zarr raised (refused, unreachable, missing
bucket or store) into a :class:`~sscxr.errors.StorageAccessError` or
:class:`~sscxr.errors.StoreNotFoundError` whose message says what to do, with every credential
value scrubbed; :func:`translated` applies it to a block. The public wrapper is
:func:`sscxr.io.storage_errors`.

>>> from sscxr._stores import recipe_for
>>> recipe = recipe_for("memory://doc/e.zarr", None, True)
>>> str(diagnose(PermissionError("403 Forbidden"), recipe.url, recipe, None)).split(": ")[0]
'read of memory://doc/e.zarr was refused'
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import zarr
from zarr.abc.store import Store

from . import credentials
from .errors import SscxrError, StorageAccessError, StoreNotFoundError

if TYPE_CHECKING:
    from ._stores import Recipe

__all__ = ["diagnose", "translated"]


def _endpoint(recipe: Recipe) -> str:
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
        elif isinstance(store, zarr.storage.FsspecStore) and getattr(store.fs, "sync_fs", None) is not None:
            store.fs.sync_fs.cat_file(f"{store.path}/zarr.json")  # a synchronous filesystem behind fsspec's wrapper
        elif isinstance(store, zarr.storage.FsspecStore) and hasattr(store.fs, "_cat_file"):
            from fsspec.asyn import sync as run_sync

            run_sync(store.fs.loop, store.fs._cat_file, f"{store.path}/zarr.json")
    except Exception as exc:  # noqa: BLE001  (we only want its text)
        return f"{type(exc).__name__}: {exc}"
    return ""


def diagnose(exc: BaseException, url: str, recipe: Recipe, store: Store | None,
              writing: bool = False) -> SscxrError | None:  # fmt: skip
    """The sscxr error for ``exc`` raised at ``url`` (None: not one it recognises); ``store``
    (not on zarr's loop) lets it probe what a 'not found' really was."""
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
        if recipe.credential_token and credentials.recall(recipe.url, recipe.credential_token) is None:
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
def translated(url: str, recipe: Recipe, store: Store | None = None, writing: bool = False) -> Iterator[None]:
    """Within the block, a failure :func:`diagnose` recognises is raised as its sscxr error."""
    try:
        yield
    except SscxrError:
        raise
    except Exception as exc:
        err = diagnose(exc, url, recipe, store, writing)
        if err is None:
            raise
        raise err from None
