"""Where the raw frames go in the store: the chunking (:class:`RawLayout`), the group template
of one imaging subvolume (:func:`create_template`) and what ``--resume`` reuses of it.

Inputs: a :class:`~sscxr_conversion.readers.tiff.RawPlan` (from the imaging groups' source
index, :func:`~sscxr_conversion.readers.tiff.plan_raw`) and the frame shape of its first TIFF.
The template holds the coordinates, the sharded ``green``/``red`` stacks, their per-frame
crc32c, ``frame_present`` and the per-block resume markers ``block_written``, all at their fill
value; block tasks (:mod:`.blockwrite`) then fill whole shards.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec

from .. import write
from ..readers.tiff import RawPlan, plan_raw


@dataclass(frozen=True)
class RawLayout:
    """Chunking of the raw stacks: shards of ``shard_frames`` frames x ``shard_px`` x ``shard_px``
    pixels of one plane, inner chunks of ``chunk`` = (time, y, x), Blosc ``cname``/``clevel`` with
    byte shuffle. A write task fills ``shard_frames`` frames of one plane: whole shards. Measured
    in ``docs/raw.md``: a frame is 16 shard reads in parallel, a pixel tile one whole shard per
    128 frames.
    """

    shard_frames: int = 128
    shard_px: int = 128
    chunk: tuple[int, int, int] = (16, 128, 128)
    cname: str = "lz4"
    clevel: int = 1

    def to_attrs(self) -> dict[str, Any]:
        return {"shard_frames": self.shard_frames, "shard_px": self.shard_px, "chunk": list(self.chunk),
                "cname": self.cname, "clevel": self.clevel}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> RawLayout:
        return cls(**{**attrs, "chunk": tuple(attrs["chunk"])})

    def shapes(self, shape: tuple[int, int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(shard, inner chunk)`` of a ``(plane, time, y, x)`` stack of ``shape`` frames."""
        sy, sx = (_divisor(n, self.shard_px) for n in shape)
        chunk = (_divisor(self.shard_frames, self.chunk[0]), _divisor(sy, self.chunk[1]), _divisor(sx, self.chunk[2]))
        return (1, self.shard_frames, sy, sx), (1, *chunk)


LAYOUT = RawLayout()


def get_array(group: zarr.Group, name: str) -> zarr.Array:
    """``group[name]``, which must be an array (KeyError otherwise)."""
    node = group[name]
    if not isinstance(node, zarr.Array):
        raise KeyError(f"{group.path}/{name} is a group, expected an array")
    return node


def read_values(group: zarr.Group, name: str, key: Any = slice(None)) -> np.ndarray:
    return np.asarray(get_array(group, name)[key])


def _divisor(n: int, at_most: int) -> int:
    """The largest divisor of ``n`` not above ``at_most`` (inner chunks must tile a shard)."""
    return next(d for d in range(min(n, at_most), 0, -1) if n % d == 0)


def create_template(store: Any, plan: RawPlan, shape: tuple[int, int], names: tuple[str, ...],
                    layout: RawLayout) -> zarr.Group:
    """Coords (xarray), then the sharded stacks and per-frame arrays (zarr), all fill 0,
    replacing anything under ``plan.path``.

    Built in memory and put at once (:func:`~.write.put_group`, the group's ``zarr.json`` last):
    the same objects as building it in ``store`` directly, without the ~25 zarr round trips of
    ~2 ms each to a local folder, while no block task can start yet.
    """
    staged: dict[str, Any] = {}
    _build_template(zarr.storage.MemoryStore(staged), plan, shape, names, layout)
    write.put_group(store, plan.path, staged)
    return zarr.open_group(store, path=plan.path, mode="r+", zarr_format=3)


def _build_template(store: Any, plan: RawPlan, shape: tuple[int, int], names: tuple[str, ...],
                    layout: RawLayout) -> None:
    with quiet_xarray():
        plan.coords.to_zarr(store, group=plan.path, mode="w", zarr_format=3, consolidated=False)
    group = zarr.open_group(store, path=plan.path, mode="r+", zarr_format=3)
    (n_p, n_t), (ny, nx), ts = plan.file_index.shape, shape, layout.shard_frames
    shards, chunks = layout.shapes(shape)
    small = [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")]  # one chunk per block, put directly (write_block)
    per_frame: dict[str, Any] = {"shape": (n_p, n_t), "chunks": (1, ts), "dimension_names": ("plane", "time"),
                                 "compressors": small}
    for name in names:
        group.create_array(name, shape=(n_p, n_t, ny, nx), dtype="uint16", chunks=chunks, shards=shards,
                           compressors=[BloscCodec(cname=layout.cname, clevel=layout.clevel,  # type: ignore[arg-type]
                                                   shuffle="shuffle")],
                           fill_value=0, dimension_names=("plane", "time", "y", "x"), attributes={
                               "coordinates": "trial frame_time", "units": "counts",
                               "description": f"registered {name} frames (TIFF pages {'even' if name == 'green' else 'odd'})"
                               ", placed by sourceFileFrameIdx; 0 where frame_present is false"})
        group.create_array(f"{name}_crc32c", dtype="uint32", fill_value=0, **per_frame, attributes={
            "description": f"crc32c of each {name} frame's little-endian uint16 pixels, as read from the TIFF "
                           "(0 where absent)"})
    group.create_array("frame_present", dtype="bool", fill_value=False, **per_frame, attributes={
        "description": "the frame was read from its TIFF (false: NaN index or absent file, pixels are 0)"})
    n_blocks = -(-n_t // ts)
    group.create_array("block_written", shape=(n_p, n_blocks), chunks=(1, 1), dtype="bool", fill_value=False,
                       dimension_names=("plane", "block"), compressors=small)
    group.attrs.update(layout=layout.to_attrs(), channels=list(names), frame_shape=list(shape))


def resumable_group(store: Any, plan: RawPlan, names: tuple[str, ...], layout: RawLayout) -> zarr.Group | None:
    """The group of an interrupted attempt, when its template matches this plan and layout."""
    try:
        group = zarr.open_group(store, path=plan.path, mode="r+", zarr_format=3)
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return None
    keys = set(group.array_keys())
    same = ("block_written" in keys and all(n in keys for n in names) and group.attrs.get("layout") == layout.to_attrs()
            and get_array(group, names[0]).shape[:2] == plan.file_index.shape)
    return group if same else None


def has_group(store: Any, path: str) -> bool:
    try:
        zarr.open_group(store, path=path, mode="r", zarr_format=3)
    except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
        return False
    return True


def stored_layout(store: Any, groups: Mapping[str, xr.Dataset]) -> RawLayout:
    for plan in plan_raw(groups):
        try:
            layout = zarr.open_group(store, path=plan.path, mode="r", zarr_format=3).attrs.get("layout")
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            continue
        if isinstance(layout, Mapping):
            return RawLayout.from_attrs(layout)
    return LAYOUT


@contextmanager
def quiet_xarray() -> Iterator[None]:
    """xarray warns about variable-length strings having no zarr v3 spec; they are fine here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        yield
