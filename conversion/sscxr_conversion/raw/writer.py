"""Writing the raw groups: :class:`RawWriter` sends each full block to a task and finishes
each group (summary images, source records, written mark) after its last block.

Input: the blocks :class:`~.stream.RawStacks` assembles from the stream; output: one
``/raw/subvolume_NN`` group per plan, from the template of :mod:`.layout`. Blocks already
written by an interrupted attempt (``--resume``) are checked against the source instead.
"""

from __future__ import annotations

import dataclasses
import uuid
from functools import partial
from typing import Any

import numpy as np
import zarr
from zarr.buffer import default_buffer_prototype
from zarr.codecs import BloscCodec

from sscxr._zarr_compat import sync
from sscxr.errors import StoreExistsError

from .. import write
from ..readers.tiff import RawPlan
from ..spec import ConversionSpec
from ..tasks import Runner
from .assemble import Assembler
from .blocks import Block, BlockSummary, is_big
from .blockwrite import write_block
from .layout import RawLayout, create_template, get_array, read_values, resumable_group
from .stream import RawStacks


class RawWriter(RawStacks):
    """Writes the raw groups of the plans not yet ``done``; blocks already written (resume) are
    checked against the source instead of rewritten."""

    def __init__(self, plans: list[RawPlan], spec: ConversionSpec, layout: RawLayout, *, store: Any, url: str,
                 run: Runner, done: set[str]):
        super().__init__([p for p in plans if p.path not in done], spec, layout)
        self.store, self.url, self.run = store, url, run
        self.token = uuid.uuid4().hex  # this conversion's tasks share their opened arrays (write_block)
        self.groups: dict[int, zarr.Group] = {}
        self.done_blocks: dict[int, np.ndarray] = {}

    def _start(self, i: int, shape: tuple[int, int]) -> tuple[int, int]:
        plan = self.plans[i]
        group = resumable_group(self.store, plan, self.names, self.layout)
        if group is None:
            group = create_template(self.store, plan, shape, self.names, self.layout)
            done = np.zeros(get_array(group, "block_written").shape, bool)  # none yet: no need to read them
        else:
            done = read_values(group, "block_written")
        self.groups[i], self.done_blocks[i] = group, done
        ny, nx = get_array(group, self.names[0]).shape[2:]
        return ny, nx

    def _emit(self, i: int, block: Block) -> None:
        asm = self.assemblers[i]
        if self.done_blocks[i][block.plane, block.index]:
            summary = block.summarize()
            self._check_unchanged(i, block, summary)
            asm.accumulate(summary)
            self.pool.give(block)
        else:
            self.run.submit(write_block, self.url, self.plans[i].path, self.names, block, self.token,
                            then=partial(self._written, asm, block), scatter=is_big)

    def _written(self, asm: Assembler, block: Block, summary: BlockSummary) -> None:
        asm.accumulate(summary)
        self.pool.give(block)

    def _check_unchanged(self, i: int, block: Block, summary: BlockSummary) -> None:
        t = slice(block.t0, block.t0 + len(block.present))
        for c, name in enumerate(self.names):
            if not np.array_equal(read_values(self.groups[i], f"{name}_crc32c", (block.plane, t)), summary.crc[c]):
                raise StoreExistsError(
                    f"{self.url}: the {name} frames {t.start}..{t.stop - 1} of {self.plans[i].path} plane "
                    f"{int(self.plans[i].coords['plane'][block.plane])} written by the interrupted conversion differ "
                    "from the source TIFFs now; the source changed, so --resume cannot finish it (use --overwrite)")

    def finish(self) -> list[str]:
        """Close the last blocks, wait for every write, then summaries and markers per group."""
        self.close_blocks()
        self.run.drain()
        return [self._finish_group(i) for i in sorted(self.assemblers)]

    def _finish_group(self, i: int) -> str:
        """The summary images, then the group's attrs, marked written (its ``zarr.json`` last).

        Built in a memory store and put at once, as :func:`create_template` is: this runs after
        the last block, when nothing else is left to overlap the ~10 zarr round trips with.
        """
        plan, asm, group = self.plans[i], self.assemblers[i], self.groups[i]
        mean = asm.mean()
        image: dict[str, Any] = {"chunks": (1, *mean.shape[2:]), "dimension_names": ("plane", "y", "x"), "overwrite": True,
                                 "compressors": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]}  # in the serial tail: fast
        staged: dict[str, Any] = {}
        stage = zarr.open_group(zarr.storage.MemoryStore(staged), path=plan.path, mode="w", zarr_format=3)
        for c, name in enumerate(self.names):
            stage.create_array(f"{name}_mean", data=mean[c], **image,
                               attributes={"units": "counts", "description": f"mean of the present {name} frames"})
            stage.create_array(f"{name}_max", data=asm.max[c], **image,
                               attributes={"units": "counts", "description": f"max of the {name} frames"})
        attrs = {**group.attrs.asdict(), "source_files": self.source_records(i), "warnings": self.warnings[i],
                 "frames_present": asm.count.tolist(),
                 "description": "registered imaging frames; raw frame t is the same instant as dff frame t "
                 "of the imaging subvolume (docs/raw.md)", write.WRITTEN: True}
        meta = dataclasses.replace(group.metadata, attributes=attrs)  # the staged group's own doc is empty
        staged[f"{plan.path}/zarr.json"] = meta.to_buffer_dict(default_buffer_prototype())["zarr.json"]
        sync(self.store.delete_dir(f"{plan.path}/block_written"))  # the per-block resume markers are done with
        write.put_group(self.store, plan.path, staged, replace=False)  # the arrays, then the group's zarr.json
        return plan.path
