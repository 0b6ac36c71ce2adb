"""The intake (>= 2) catalog of the sscxr stores: one entry per ssc-1 session and ssc-11 animal.

>>> from sscxr.catalog import open_catalog, find
>>> cat = open_catalog()
>>> find(cat, archive="ssc-11", ablation="whisking", lab="NYU")
['an275798', 'an276013', 'an278288', 'an278759']
>>> cat["an197522_2013_03_08"].metadata["session_date"]
'2013-03-08'

Reading an entry opens the store lazily with :func:`sscxr.io.open_store`::

    tree = cat["an274424"].read()                       # anonymous, from $SSCXR_STORE_ROOT
    tree = cat(store_root="s3://my-bucket/stores")["an274424"].read(
        storage_options={"key": ..., "secret": ...})    # secrets only at read time

The store root is the catalog parameter ``store_root`` (default: ``$SSCXR_STORE_ROOT``, else
:data:`DEFAULT_STORE_ROOT`); ``endpoint_url`` (default ``$SSCXR_S3_ENDPOINT``) and ``anon``
(default true) build the ``storage_options`` when none are given. Each entry pins the
``content_version`` of its store (``null`` = not pinned yet); a store that differs warns
:class:`~sscxr.errors.StoreVersionWarning`. No credential is ever written to a catalog.
"""

from __future__ import annotations

import os
import posixpath
import warnings
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import xarray as xr

from .errors import (
    CatalogError,
    SscxrError,
    MissingDependencyError,
    StoreRootNotSetError,
    StoreVersionWarning,
    UnknownEntryError,
)
from .io import Chunks, content_version, make_store, open_store, read_attrs

try:
    import fsspec
    import yaml
    from intake.readers.entry import Catalog, ReaderDescription
    from intake.readers.readers import BaseReader
    from intake.readers.user_parameters import BaseUserParameter
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError(getattr(exc, "name", None) or "intake", "sscxr.catalog", "catalog") from exc

__all__ = [
    "DEFAULT_STORE_ROOT",
    "STORE_ROOT_ENV",
    "SscxrCatalog",
    "SscxrStoreReader",
    "build_catalog",
    "public_options",
    "default_catalog",
    "entry_metadata",
    "find",
    "open_catalog",
    "write_catalog",
]

DEFAULT_STORE_ROOT = "s3://sscxr-public/stores"
"""Placeholder for the project's public bucket; set ``SSCXR_STORE_ROOT`` to use another root."""
DEFAULT_STORE_ROOT_PUBLISHED = False
"""Whether :data:`DEFAULT_STORE_ROOT` holds the stores yet. While False, reading an entry with no
store root configured is an error (:class:`~sscxr.errors.StoreRootNotSetError`) raised before
any network call, instead of retries against a bucket that does not exist."""
STORE_ROOT_ENV = "SSCXR_STORE_ROOT"
ENDPOINT_ENV = "SSCXR_S3_ENDPOINT"

SSC1_SESSIONS = ("an197522_2013_03_08", "an197522_2013_03_10", "an229717_2013_12_01",
                 "an229719_2013_12_02", "an229719_2013_12_05")  # fmt: skip
"""FORMATS.md §1.1: the five ssc-1 sessions."""
SSC11_ABLATIONS: dict[str, tuple[str, ...]] = {
    "touch": ("an250220", "an257220", "an258836", "an271211", "an281915", "an274424", "an272761",
              "an274577", "an275801"),
    "whisking": ("an278937", "an278939", "an281915", "an275798", "an278288", "an276013", "an278759"),
    "silent": ("an257218", "an258836", "an271211", "an278937", "an278939", "an275801", "an275798",
               "an276013"),
}  # fmt: skip
"""FORMATS.md §2.1 (``get_anims.m``): animals per ablation kind; 16 unique animals."""
NYU_ANIMALS = frozenset({"an272761", "an274424", "an274577", "an275798", "an275801", "an276013",
                         "an278288", "an278759"})  # fmt: skip
"""FORMATS.md §2.1 (``ablation_figure_energy.m``); the other ssc-11 animals are JRC's."""
_LOCAL_UPS = ("CATALOG_PATH", "CATALOG_DIR", "STORAGE_OPTIONS")
_SHIPPED = "sscxr.yaml"


class SscxrStoreReader(BaseReader):
    """intake reader: an sscxr store (``store_root``/``store``) as a lazy ``xarray.DataTree``.

    Keyword arguments: ``store`` (name under the root), ``root`` (the catalog's ``store_root``),
    ``anonymous`` and ``endpoint`` (used to build ``storage_options`` when none are given),
    ``archive``, ``chunks``, ``groups``. The entry's ``content_version`` metadata is checked as a
    pin (see :func:`sscxr.io.open_store`). ``read(storage_options=..., groups=..., chunks=...)``
    overrides the entry's values; credentials belong only there.
    """

    output_instance = "xarray:DataTree"
    imports = {"xarray", "zarr"}
    func = "sscxr.io:open_store"

    def _read(  # type: ignore[override]
        self,
        store: str,
        root: str | None = None,
        archive: str | None = None,
        chunks: Chunks = "auto",
        groups: list[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        anonymous: bool | str | None = True,
        endpoint: str | None = None,
        check_version: str | bool | None = None,
        **kwargs: Any,
    ) -> xr.DataTree:
        url = store_url(store, root)
        options = storage_options if storage_options is not None else _default_options(url, anonymous, endpoint)
        pin = check_version if check_version is not None else self.metadata.get("content_version")
        tree = open_store(url, storage_options=options, chunks=chunks, groups=groups,
                          check_version=pin or None, archive=archive, **kwargs)  # fmt: skip
        tree.encoding = {**tree.encoding, "source": url}  # where it came from, as xarray records a path
        return tree


def store_url(store: str, store_root: str | None = None) -> str:
    """Join a store name to the root (parameter, else ``$SSCXR_STORE_ROOT``, else the default).

    While the default root is a placeholder (:data:`DEFAULT_STORE_ROOT_PUBLISHED` is False), no
    root at all raises :class:`~sscxr.errors.StoreRootNotSetError`, which says how to set one.

    >>> store_url("an274424.zarr", "s3://b/stores/")
    's3://b/stores/an274424.zarr'
    """
    root = store_root if store_root not in (None, "", "None") else None
    root = root or os.environ.get(STORE_ROOT_ENV)
    if not root and not DEFAULT_STORE_ROOT_PUBLISHED:
        raise StoreRootNotSetError(
            f"no store root is configured, so the catalog cannot tell where {store} is (the shipped default "
            f"{DEFAULT_STORE_ROOT} is a placeholder until the public bucket exists). Set one: the environment "
            f"variable {STORE_ROOT_ENV} (e.g. export {STORE_ROOT_ENV}=s3://my-bucket/stores, or a local folder of "
            "*.zarr stores), or per catalog: "
            "cat = sscxr.open_catalog()(store_root=\"s3://my-bucket/stores\")")
    return f"{str(root or DEFAULT_STORE_ROOT).rstrip('/')}/{store}"


def public_options(url: str) -> dict[str, Any] | None:
    """The ``storage_options`` the catalog reads ``url`` with by default: anonymous for S3, at the
    ``$SSCXR_S3_ENDPOINT`` endpoint when set (a non-AWS server); None for other URLs.

    >>> public_options("s3://bucket/stores/an274424.zarr")["anon"], public_options("out/x.zarr")
    (True, None)
    """
    return _default_options(url, True, os.environ.get(ENDPOINT_ENV))


def _default_options(url: str, anon: bool | str | None, endpoint_url: str | None) -> dict[str, Any] | None:
    if not url.split("::")[-1].startswith(("s3://", "s3a://")):
        return None
    options: dict[str, Any] = {"anon": str(anon).lower() not in {"false", "0", "no", "none"}}
    if endpoint_url not in (None, "", "None"):
        options["endpoint_url"] = endpoint_url
    return options


# --------------------------------------------------------------------------------------------
# entries
# --------------------------------------------------------------------------------------------


def _ssc11_animals() -> list[str]:
    return sorted({a for animals in SSC11_ABLATIONS.values() for a in animals})


def entry_metadata(name: str) -> dict[str, Any]:
    """Searchable metadata of a catalog entry as known before its store exists (FORMATS.md).

    >>> entry_metadata("an281915")["ablations"], entry_metadata("an281915")["lab"]
    (['touch', 'whisking'], 'JRC')
    """
    if name in SSC1_SESSIONS:
        animal, y, m, d = name.split("_")
        return {"archive": "ssc-1", "animal": animal, "session_date": f"{y}-{m}-{d}",
                "conditions": [], "ablations": [], "lab": "JRC", "store": f"{name}.zarr",
                "source": f"CRCNS ssc-1 {name}_session.mat", "content_version": None,
                "metadata_from": "FORMATS.md (expected)"}  # fmt: skip
    kinds = sorted(k for k, animals in SSC11_ABLATIONS.items() if name in animals)
    if not kinds:
        raise KeyError(f"{name!r} is neither an ssc-1 session {SSC1_SESSIONS} nor an ssc-11 animal")
    post = ["post"] if len(kinds) == 1 else [f"post_{k}" for k in kinds]
    return {"archive": "ssc-11", "animal": name, "session_date": None, "conditions": ["pre", *post],
            "ablations": kinds, "lab": "NYU" if name in NYU_ANIMALS else "JRC", "store": f"{name}.zarr",
            "source": f"CRCNS ssc-11 {name}/", "content_version": None,
            "metadata_from": "FORMATS.md (expected)"}  # fmt: skip


def _entry(name: str, metadata: Mapping[str, Any]) -> ReaderDescription:
    # reader kwargs must not share a name with a catalog parameter (intake would drop them)
    kwargs = {"store": metadata["store"], "root": "{store_root}", "archive": metadata["archive"],
              "anonymous": "{anon}", "endpoint": "{endpoint_url}", "chunks": {}}  # fmt: skip
    return ReaderDescription(reader="sscxr.catalog:SscxrStoreReader", kwargs=kwargs,
                             metadata=dict(metadata), output_instance=SscxrStoreReader.output_instance)  # fmt: skip


class SscxrCatalog(Catalog):
    """intake's :class:`~intake.readers.entry.Catalog` whose errors are sscxr's.

    An unknown entry name is an :class:`~sscxr.errors.UnknownEntryError` (a ``KeyError``) that
    suggests the closest names and lists them all; intake's own errors while building an entry
    become :class:`~sscxr.errors.CatalogError` with intake's full message. ``cat(...)`` (set
    parameters such as ``store_root``) returns an ``SscxrCatalog`` too.

    >>> cat = open_catalog()
    >>> cat["an19752"]
    Traceback (most recent call last):
    ...
    sscxr.errors.UnknownEntryError: entry='an19752' is not an entry of this catalog; did you mean ...
    """

    def __getitem__(self, item: str) -> Any:
        names = [*self.aliases, *(e for e in self.entries if e not in self.aliases), *self.data]
        if item not in names:
            raise UnknownEntryError("entry", item, sorted(names), what="an entry of this catalog",
                                    hint="sscxr.catalog.find(cat, ...) searches the entries' metadata")  # fmt: skip
        try:
            return super().__getitem__(item)
        except (KeyError, ValueError, TypeError) as exc:
            raise CatalogError(f"catalog entry {item!r} could not be built by intake: "
                               f"{type(exc).__name__}: {exc}") from exc  # fmt: skip

    def __call__(self, **kwargs: Any) -> SscxrCatalog:
        new = super().__call__(**kwargs)
        new.__class__ = type(self)  # intake builds a plain Catalog; same attributes, our errors
        return new


def _empty_catalog() -> Catalog:
    cat = SscxrCatalog(metadata={
        "name": "sscxr",
        "description": "CRCNS ssc-1 sessions (Peron et al. 2015) and ssc-11 animals (Peron et al. "
                       "2020) as sscxr zarr stores. Open an entry with .read() (lazy DataTree).",
        "store_root_env": STORE_ROOT_ENV,
        "default_store_root": DEFAULT_STORE_ROOT,
    })  # fmt: skip
    cat.user_parameters["store_root"] = BaseUserParameter(
        default=f"env({STORE_ROOT_ENV})",
        description=f"URL of the folder holding the stores; unset: ${STORE_ROOT_ENV}, else {DEFAULT_STORE_ROOT}",
    )
    cat.user_parameters["endpoint_url"] = BaseUserParameter(
        default=f"env({ENDPOINT_ENV})", description="S3 endpoint for a non-AWS server (unset: AWS)"
    )
    cat.user_parameters["anon"] = BaseUserParameter(default=True, description="read S3 anonymously")
    return cat


def _put(cat: Catalog, name: str, metadata: Mapping[str, Any]) -> None:
    cat.entries[name] = _entry(name, metadata)
    cat.aliases[name] = name


def default_catalog() -> Catalog:
    """The catalog of all 21 stores with their expected metadata, none pinned.

    >>> len(default_catalog().entries)
    21
    """
    cat = _empty_catalog()
    for name in [*SSC1_SESSIONS, *_ssc11_animals()]:
        _put(cat, name, entry_metadata(name))
    return cat


# --------------------------------------------------------------------------------------------
# reading, writing, searching
# --------------------------------------------------------------------------------------------


def _shipped_path() -> str:
    packaged = resources.files("sscxr") / "catalogs" / _SHIPPED
    if packaged.is_file():
        return str(packaged)
    return str(Path(__file__).resolve().parents[1] / "catalogs" / _SHIPPED)


def open_catalog(path_or_url: str | os.PathLike[str] | None = None, *,
                 storage_options: Mapping[str, Any] | None = None) -> SscxrCatalog:  # fmt: skip
    """Open a catalog YAML (default: the one shipped with sscxr).

    ``storage_options`` are used to read the YAML only and are not kept in the catalog.

    >>> sorted(open_catalog().user_parameters)[:2]
    ['CATALOG_DIR', 'CATALOG_PATH']
    """
    path = os.fspath(path_or_url) if path_or_url is not None else _shipped_path()
    with fsspec.open(path, "rt", **dict(storage_options or {})) as f:
        data = yaml.safe_load(f)
    try:
        cat = SscxrCatalog.from_dict(data)
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        version = data.get("version") if isinstance(data, dict) else None
        raise CatalogError(f"{path} is not an intake 2 catalog (version: {version!r}, expected 2): intake says "
                           f"{type(exc).__name__}: {exc}") from exc  # fmt: skip
    cat.user_parameters["CATALOG_PATH"] = path
    cat.user_parameters["CATALOG_DIR"] = path.rsplit("/", 1)[0] if "/" in path else "."
    recorded = cat.metadata.get("store_root")
    if isinstance(recorded, str) and _relative(recorded):  # stores beside the catalog: found wherever it is
        cat.user_parameters["store_root"] = BaseUserParameter(
            default=_join(_folder_of(path), recorded), description=_RECORDED_ROOT)
    return cat


_RECORDED_ROOT = ("URL of the folder holding the stores: recorded by build_catalog (relative to this catalog's "
                  "folder when it is); pass store_root=... to read another copy")


def _is_url(text: str) -> bool:
    return "://" in text or "::" in text


def _relative(root: str) -> bool:
    return not _is_url(root) and not os.path.isabs(root) and not root.startswith("~")


def _folder_of(path: str) -> str:
    """The folder of a catalog path or URL (absolute for a local path)."""
    if _is_url(path) and not path.startswith("file://"):
        return path.rsplit("/", 1)[0]
    return os.path.dirname(os.path.abspath(os.path.expanduser(path.removeprefix("file://"))))


def _join(folder: str, relative: str) -> str:
    if _is_url(folder):
        protocol, rest = folder.split("://", 1)
        bucket, _, key = rest.partition("/")
        joined = posixpath.normpath(posixpath.join("/" + key, relative)).lstrip("/")
        return f"{protocol}://{bucket}" + (f"/{joined}" if joined else "")
    return os.path.normpath(os.path.join(folder, relative))


def _root_as_seen_from(root: str, out: str) -> str:
    """How a catalog written to ``out`` names ``root``: relative to the catalog's folder when both
    are local, or in the same bucket (so the folder can be moved or copied whole), else ``root``."""
    folder = _folder_of(out)
    if not _is_url(root) or root.startswith("file://"):
        if _is_url(folder):
            return os.path.abspath(os.path.expanduser(root.removeprefix("file://")))
        return os.path.relpath(os.path.abspath(os.path.expanduser(root.removeprefix("file://"))), folder)
    if _is_url(folder):
        (p1, r1), (p2, r2) = root.split("://", 1), folder.split("://", 1)
        b1, _, k1 = r1.partition("/")
        b2, _, k2 = r2.partition("/")
        if (p1, b1) == (p2, b2):
            return posixpath.relpath("/" + k1.strip("/"), "/" + k2.strip("/"))
    return root


def catalog_dict(cat: Catalog) -> dict[str, Any]:
    """The YAML-ready dict of a catalog, without the per-session ``CATALOG_*`` parameters."""
    data = cat.to_dict()
    data["user_parameters"] = {k: v for k, v in data["user_parameters"].items() if k not in _LOCAL_UPS}
    recorded = cat.metadata.get("store_root")
    if isinstance(recorded, str) and "store_root" in data["user_parameters"]:  # as recorded, not as resolved
        data["user_parameters"]["store_root"] = {"default": recorded, "description": _RECORDED_ROOT}
    return data


def write_catalog(cat: Catalog, path: str | os.PathLike[str], *,
                  storage_options: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Write ``cat`` as YAML to a path or URL (entries in name order).

    >>> write_catalog(default_catalog(), "memory://doc/cat.yaml")
    >>> len(open_catalog("memory://doc/cat.yaml").entries)
    21
    """
    with fsspec.open(os.fspath(path), "wt", **dict(storage_options or {})) as f:
        f.write(catalog_yaml(cat))


def catalog_yaml(cat: Catalog) -> str:
    """The YAML text :func:`write_catalog` writes (entries in name order)."""
    data = catalog_dict(cat)
    data["entries"] = dict(sorted(data["entries"].items()))
    data["aliases"] = dict(sorted(data["aliases"].items()))
    header = "# sscxr intake catalog: regenerate with sscxr.catalog.build_catalog (no secrets here)\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False)


def _matches(value: Any, wanted: Any) -> bool:
    if wanted is None:
        return True
    wanted_set = {str(w).lower() for w in (wanted if isinstance(wanted, list | tuple | set) else [wanted])}
    have = value if isinstance(value, list | tuple) else [value]
    return bool(wanted_set & {str(v).lower() for v in have})


def find(catalog: Catalog | None = None, *, archive: str | None = None, animal: str | None = None,
         ablation: str | Iterable[str] | None = None, condition: str | None = None,
         lab: str | None = None, session_date: str | None = None) -> list[str]:  # fmt: skip
    """Names of the entries whose metadata match every given criterion (sorted).

    List-valued metadata (``ablations``, ``conditions``) match when they contain the value;
    several values (``ablation=["touch", "silent"]``) match any of them.

    >>> find(animal="an229719")
    ['an229719_2013_12_02', 'an229719_2013_12_05']
    >>> find(archive="ssc-11", ablation="silent", lab="JRC")
    ['an257218', 'an258836', 'an271211', 'an278937', 'an278939']
    """
    cat = catalog if catalog is not None else open_catalog()
    if animal is not None and str(animal).isdigit():
        animal = f"an{animal}"
    criteria = {"archive": archive, "animal": animal, "ablations": ablation, "conditions": condition,
                "lab": lab, "session_date": session_date}  # fmt: skip
    names = []
    for name in cat.aliases or cat.entries:
        meta = cat.get_entity(name).metadata
        if all(_matches(meta.get(key), wanted) for key, wanted in criteria.items()):
            names.append(name)
    return sorted(names)


# --------------------------------------------------------------------------------------------
# building from stores
# --------------------------------------------------------------------------------------------


def _list_stores(root: str, storage_options: Mapping[str, Any] | None) -> list[str]:
    from ._zarr_compat import sync
    from .versions import VERSIONS_SUFFIX, _list_dir

    store = make_store(root, storage_options, resolve=False)
    found = {n.strip("/").removesuffix(VERSIONS_SUFFIX) for n in sync(_list_dir(store))}  # versions: sscxr.versions
    return sorted(n for n in found if n.endswith(".zarr"))


def _metadata_from_attrs(store: str, attrs: Mapping[str, Any], version: str) -> dict[str, Any]:
    name = store.removesuffix(".zarr")
    try:
        meta = entry_metadata(name)
    except KeyError:
        meta = {"source": None}
    animal = str(attrs.get("animal_id") or meta.get("animal") or name.split("_")[0])
    ablations = attrs.get("ablations") or []
    kinds = sorted({str(a.get("kind")) for a in ablations if isinstance(a, Mapping)} | {
        str(a) for a in ablations if isinstance(a, str)})  # fmt: skip
    lab = attrs.get("lab") or meta.get("lab") or ("NYU" if animal in NYU_ANIMALS else "JRC")
    return {"archive": attrs["archive"], "animal": animal, "session_date": attrs.get("session_date"),
            "conditions": list(attrs.get("conditions") or []), "ablations": kinds, "lab": lab,
            "store": store, "source": meta.get("source"), "content_version": version,
            "metadata_from": "store attrs"}  # fmt: skip


def build_catalog(root: str | os.PathLike[str], *, storage_options: Mapping[str, Any] | None = None,
                  out: str | os.PathLike[str] | None = None, only_found: bool | None = None) -> Catalog:  # fmt: skip
    """Scan the ``*.zarr`` stores under ``root`` and write/refresh their catalog entries.

    Replaces the entry of every complete sscxr store found with metadata read from its root
    attrs, pinned to its content version (recomputed; a store whose recorded ``content_version``
    disagrees warns). Incomplete or foreign stores are skipped with a warning.

    With ``out``, the catalog records ``root`` as its default ``store_root`` (metadata
    ``store_root``), relative to the catalog's own folder when both are local or in one bucket,
    so ``open_catalog(out)[name].read()`` opens the store from ``root`` with no further argument,
    and the folder can be moved whole. ``only_found``: list exactly the stores found (default for
    a catalog written into ``root`` itself, ``ROOT/catalog.yaml``); otherwise start from ``out``
    when it exists (else the shipped catalog) and keep the entries not scanned. ``out`` is rewritten only
    when its text changes. ``storage_options`` are used to read and write (for an ``s3://`` ``out``)
    only: they never reach the catalog.

    >>> cat = build_catalog("s3://bucket/stores", storage_options={"anon": True},
    ...                     out="s3://bucket/stores/catalog.yaml")           # doctest: +SKIP
    """
    root = os.fspath(root).rstrip("/")
    out_text = os.fspath(out) if out is not None else None
    options = dict(storage_options or {})
    existing: str | None = None
    if out_text is not None:
        fs = fsspec.core.url_to_fs(out_text, **(options if _is_url(out_text) else {}))[0]
        if fs.exists(out_text):
            with fsspec.open(out_text, "rt", **(options if _is_url(out_text) else {})) as f:
                existing = f.read()
    if only_found is None:
        only_found = out_text is not None and _root_as_seen_from(root, out_text) == "."
    if only_found:
        cat = _empty_catalog()
    elif existing is not None and out_text is not None:
        cat = open_catalog(out_text, storage_options=options if _is_url(out_text) else None)
    else:
        cat = open_catalog()
    for store in _list_stores(root, storage_options):
        url = f"{root}/{store}"
        try:
            attrs = read_attrs(url, storage_options=storage_options)
        except (SscxrError, OSError, KeyError, ValueError) as exc:
            warnings.warn(f"{url}: skipped (no readable store: {exc})", stacklevel=2)
            continue
        if "archive" not in attrs or attrs.get("sscxr_status") != "complete":
            warnings.warn(f"{url}: skipped (not a complete sscxr store: archive={attrs.get('archive')!r}, "
                          f"sscxr_status={attrs.get('sscxr_status')!r})", stacklevel=2)  # fmt: skip
            continue
        version = content_version(url, storage_options)
        if attrs.get("content_version") not in (None, version):
            warnings.warn(f"{url}: the content_version it records ({attrs['content_version']}) is not the "
                          f"version of its metadata today ({version}): it was converted by an older sscxr or "
                          f"changed since; the catalog pins {version} (`sscxr verify` checks the store against "
                          f"its sources)", StoreVersionWarning, stacklevel=2)  # fmt: skip
        _put(cat, store.removesuffix(".zarr"), _metadata_from_attrs(store, attrs, version))
    if out_text is not None:
        recorded = _root_as_seen_from(root, out_text)
        cat.metadata["store_root"] = recorded
        cat.user_parameters["store_root"] = BaseUserParameter(default=recorded, description=_RECORDED_ROOT)
        text = catalog_yaml(cat)
        if text != existing:
            with fsspec.open(out_text, "wt", **(options if _is_url(out_text) else {})) as f:
                f.write(text)
        cat = open_catalog(out_text, storage_options=options if _is_url(out_text) else None)
    return cat


if __name__ == "__main__":  # python -m sscxr.catalog OUT.yaml: write the default catalog
    import sys

    from sscxr import catalog as _catalog  # the importable module, not __main__

    _catalog.write_catalog(_catalog.default_catalog(), sys.argv[1] if len(sys.argv) > 1 else _catalog._shipped_path())
