"""``sscxr info``: a store's tree, sizes and provenance as text; ``sscxr info --versions``
(:func:`show_versions`): the versions and fast paths of this installation, for bug reports."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import zarr


def describe_store(url: str, *, storage_options: Mapping[str, Any] | None = None) -> str:
    """Text listing of a store: status, version, provenance, then every group and array.

    >>> print(describe_store("an197522_2013_03_08.zarr"))   # doctest: +SKIP
    an197522_2013_03_08.zarr  [ssc-1, complete, version 3f2a...]
    ...
    """
    from .io import make_store, storage_errors
    from .versions import resolve

    with storage_errors(url, storage_options):  # a wrong URL or a refusal: one clear error
        version = resolve(url, storage_options)
        text = _describe(url, zarr.open_group(make_store(version, storage_options), mode="r"))
    if version != url.rstrip("/"):
        head, _, rest = text.partition("\n")
        text = f"{head}\npublished version: {version}\n{rest}"
    return text


def _describe(url: str, root: zarr.Group) -> str:
    attrs = root.attrs.asdict()
    lines = [f"{url}  [{attrs.get('archive', '?')}, {attrs.get('sscxr_status', '?')}, "
             f"version {attrs.get('content_version', '-')}]"]
    prov = attrs.get("provenance")
    lines += _provenance_lines(prov if isinstance(prov, Mapping) else {})
    total = 0
    for path, node in sorted(root.members(max_depth=None), key=lambda kv: kv[0]):
        depth = path.count("/")
        if isinstance(node, zarr.Group):
            lines.append(f"{'  ' * depth}{path.rsplit('/', 1)[-1]}/")
            continue
        stored = node.nbytes_stored()
        total += stored
        lines.append(f"{'  ' * depth}{path.rsplit('/', 1)[-1]:<24} {str(node.shape):<18} {str(node.dtype):<10} "
                     f"{_size(stored):>9} stored, chunks {node.chunks}")
    lines.append(f"total stored: {_size(total)}")
    return "\n".join(lines)


def _provenance_lines(prov: Mapping[str, Any]) -> list[str]:
    out = [f"converter: {prov.get('converter', '?')}, created {prov.get('created', '?')}"]
    out += [f"source: {s['name']} ({_size(s['size'])}, sha256 {s['sha256'][:16]}...)" for s in prov.get("sources", [])]
    out.append(f"options: {json.dumps(prov.get('spec', {}))}")
    out += [f"warning: {w}" for w in prov.get("warnings", [])]
    return out


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


PACKAGES = ("numpy", "xarray", "zarr", "numcodecs", "pandas", "fsspec", "s3fs", "obstore", "dask",
            "distributed", "scipy", "h5py", "intake", "tifffile", "av", "sscxr-conversion")


def fast_paths() -> dict[str, str]:
    """Each fast path (another package's internals, used where it pays) and its state here:
    ``"on"``, ``"off (SSCXR_NO_FASTPATH=1)"`` or ``"off: <why>"`` (an untested version, or a
    failure this process already fell back from).

    >>> {"zarr event loop", "xarray lazy indexing"} <= set(fast_paths())
    True
    """
    from . import _exit_compat, _fastpath, _xarray_compat, _zarr_compat

    tested: dict[str, tuple[str, str, str | None]] = {
        _zarr_compat.FAST_SYNC: ("zarr", _zarr_compat.ZARR_VERSIONS["at_least"], _zarr_compat.ZARR_VERSIONS["below"]),
        _xarray_compat.FAST_LAZY: ("xarray", _xarray_compat.XARRAY_VERSIONS["at_least"],
                                   _xarray_compat.XARRAY_VERSIONS["below"]),
        _exit_compat.FAST_EXIT: ("python", _exit_compat.PYTHON_VERSIONS["at_least"],
                                 _exit_compat.PYTHON_VERSIONS["below"]),
    }
    try:  # the converter's, when it is installed
        from sscxr_conversion import _zarr_fastpath

        tested.update({name: (pkg, lo, hi) for name, (pkg, lo, hi) in _zarr_fastpath.TESTED.items()})
    except ImportError:
        pass
    failed = _fastpath.status()
    states = {}
    for name, (package, at_least, below) in sorted(tested.items()):
        why = _fastpath.untested(package, at_least=at_least, below=below)
        if _fastpath.disabled_by_environment():
            states[name] = f"off ({_fastpath.ENV}=1)"
        elif name in failed:
            states[name] = f"off: {failed[name]}"
        else:
            states[name] = "on" if why is None else f"off: {why}"
    return states


def show_versions() -> None:
    """Print the versions of Python, sscxr and the packages it works with, and each fast path's
    state: the text to paste into a bug report (as ``sscxr info --versions`` prints it).

    >>> sscxr.show_versions()  # doctest: +SKIP
    python       3.11.7
    sscxr        0.4.0
    numpy        2.4.6
    ...
    fast path 'group encoder': on
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from . import __version__

    lines: list[str] = [f"{'python':<18} {platform.python_version()} ({platform.platform()})", f"{'sscxr':<18} {__version__}"]
    for package in PACKAGES:
        try:
            lines.append(f"{package:<18} {version(package)}")
        except PackageNotFoundError:
            lines.append(f"{package:<18} (not installed)")
    lines += [f"fast path {name!r}: {state}" for name, state in fast_paths().items()]
    print("\n".join(lines))
