"""``sscxr verify`` of the raw groups: re-read the source and compare it with the store.

:func:`verify_raw` streams the source again (:func:`~.stream.stream_raw`); :class:`RawVerifier`
compares every frame (crc32c of the source pixels, the stored crc32c, the stored pixels) and the
summary images, and :class:`~.video.VideoVerifier` the videos. Problems are returned as lines.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr

from ..provenance import SourceRecord
from ..readers.tiff import RawPlan, pixel_crc32c, plan_raw
from ..spec import ConversionSpec
from .blocks import Block
from .layout import RawLayout, get_array, has_group, read_values, stored_layout
from .stream import RawStacks, stream_raw
from .video import VideoVerifier


class RawVerifier(RawStacks):
    """Re-reads the TIFFs and compares every frame (crc32c of source, stored crc, store pixels)."""

    hash_files = False  # frames are compared one by one; the files' records are the writer's

    def __init__(self, plans: list[RawPlan], spec: ConversionSpec, layout: RawLayout, *, store: Any):
        super().__init__(plans, spec, layout)
        self.store = store
        self.problems: list[str] = []

    def _start(self, i: int, shape: tuple[int, int]) -> tuple[int, int]:
        try:
            group = zarr.open_group(self.store, path=self.plans[i].path, mode="r", zarr_format=3)
            ny, nx = get_array(group, self.names[0]).shape[2:]
            return ny, nx
        except (KeyError, FileNotFoundError, zarr.errors.GroupNotFoundError):
            self.problems.append(f"/{self.plans[i].path}: group or {self.names[0]} missing from the store")
            return shape

    def _emit(self, i: int, block: Block) -> None:
        try:
            self._compare(i, block)
        finally:
            self.pool.give(block)

    def _compare(self, i: int, block: Block) -> None:
        summary = block.summarize()
        self.assemblers[i].accumulate(summary)
        path, t = self.plans[i].path, slice(block.t0, block.t0 + len(block.present))
        try:
            group = zarr.open_group(self.store, path=path, mode="r", zarr_format=3)
            key = (block.plane, t)
            present = read_values(group, "frame_present", key)
            stored = {name: (read_values(group, name, key), read_values(group, f"{name}_crc32c", key))
                      for name in self.names}
        except KeyError as exc:
            self.problems.append(f"/{path}: {exc} missing from the store")
            return
        where = f"/{path} plane index {block.plane} time {t.start}..{t.stop - 1}"
        if not np.array_equal(present, block.present):
            self.problems.append(f"{where}: frame_present differs from the source index and files")
        for c, name in enumerate(self.names):
            pixels, crc = stored[name]
            got = np.array([pixel_crc32c(f) if p else 0 for f, p in zip(pixels, present, strict=True)])
            bad = np.flatnonzero((got != summary.crc[c]) | (crc != summary.crc[c]))
            if bad.size:
                self.problems.append(f"{where}: {bad.size} {name} frame(s) differ from the TIFF pixels, first at time "
                                     f"{block.t0 + int(bad[0])}")

    def summaries(self) -> list[str]:
        """Compare the stored mean/max images with the ones recomputed from the source."""
        problems = []
        for i, plan in enumerate(self.plans):
            if i not in self.assemblers:
                if has_group(self.store, plan.path):
                    problems.append(f"/{plan.path}: in the store, but none of its TIFFs is in the source")
                continue
            asm = self.assemblers[i]
            group = zarr.open_group(self.store, path=plan.path, mode="r", zarr_format=3)
            for c, name in enumerate(self.names):
                if not np.array_equal(read_values(group, f"{name}_mean"), asm.mean()[c], equal_nan=True):
                    problems.append(f"/{plan.path}/{name}_mean: differs from the mean of the source frames")
                if not np.array_equal(read_values(group, f"{name}_max"), asm.max[c]):
                    problems.append(f"/{plan.path}/{name}_max: differs from the max of the source frames")
        return problems


def verify_raw(src: str | os.PathLike, store: Any, groups: Mapping[str, xr.Dataset], spec: ConversionSpec,
               attrs: dict) -> list[str]:
    """Re-read the raw members of ``src`` and compare them with the store (see ``RawVerifier``).

    Adds the tarball's record to ``attrs["provenance"]["sources"]`` like the conversion did.
    """
    stacks = RawVerifier(plan_raw(groups), spec, stored_layout(store, groups), store=store)
    videos = VideoVerifier(store) if spec.video else None
    tar_records: list[SourceRecord] = []
    stream_raw(src, stacks, videos, tar_records)
    stacks.close_blocks()
    attrs["provenance"]["sources"] += [r.to_dict() for r in tar_records]
    return stacks.problems + stacks.summaries() + (videos.finish() if videos is not None else [])
