"""``sscxr info``: a store's tree, sizes and provenance as text."""

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
