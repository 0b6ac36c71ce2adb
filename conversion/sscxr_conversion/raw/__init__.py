"""Raw imaging stacks (``/raw/subvolume_NN``) and whisker videos (``/video``) of an ssc-1 session.

The raw pass streams the source once (folder files in index order, or a tarball's members in
archive order), so nothing is extracted to disk and each TIFF is read exactly once:

1. **Plan** (:func:`~sscxr_conversion.readers.tiff.plan_raw`): from each imaging subvolume's
   ``source_file`` / ``source_file_index`` / ``source_frame_index`` (FORMATS.md §1.3.3), where
   every frame of every plane comes from; raw frame ``t`` is the same instant as ``dff`` frame ``t``.
2. **Layout** (:mod:`.layout`): the chunking (:class:`RawLayout`) and each group's template.
3. **Stream** (:mod:`.stream`): :func:`stream_raw` hands each TIFF to :class:`RawStacks`, which
   places its frames into per-(plane, block) :class:`Block` s (:mod:`.assemble`, :mod:`.blocks`).
4. **Write** (:mod:`.writer`, :mod:`.blockwrite`): one task per full block computes its per-frame
   crc32c and its part of the summary images (sum, max: no extra read), writes whole shards (a
   region write; tasks never share a shard) and marks the block done, so ``--resume`` skips it;
   the driver writes the summary images and marks the group.

Videos (:mod:`.video`) keep each trial's mp4 bytes exactly, concatenated in ``mp4`` (appended in
whole chunks as the stream goes), with a frame index decoded by PyAV in tasks. :class:`RawStep`
(:mod:`.step`) is what the pipeline calls; :func:`verify_raw` (:mod:`.verify`) re-reads the source
for ``sscxr verify``. Tasks run on the pipeline's :class:`~sscxr_conversion.tasks.Runner`.
See ``docs/raw.md`` for the layout, the measurements behind it and the streaming rules.

>>> from sscxr_conversion.raw import LAYOUT
>>> LAYOUT.shapes((512, 512))
((1, 128, 128, 128), (1, 16, 128, 128))
"""

from ..readers.tiff import plan_raw
from .assemble import Assembler, BufferPool
from .blocks import Block, BlockSummary, FileRef, is_big
from .blockwrite import put_region, write_block
from .layout import LAYOUT, RawLayout, create_template
from .step import RawStep
from .stream import RawStacks, TaskPages, gap_crcs, stream_raw
from .verify import RawVerifier, verify_raw
from .video import VideoVerifier, VideoWriter
from .writer import RawWriter

__all__ = ["LAYOUT", "Assembler", "Block", "BlockSummary", "BufferPool", "FileRef", "RawLayout", "RawStacks",
           "RawStep", "RawVerifier", "RawWriter", "TaskPages", "VideoVerifier", "VideoWriter", "create_template",
           "gap_crcs", "is_big", "plan_raw", "put_region", "stream_raw", "verify_raw", "write_block"]
