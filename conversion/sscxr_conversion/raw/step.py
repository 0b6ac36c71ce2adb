"""The ``--raw`` step the pipeline calls (:class:`RawStep`): one pass over the source that
writes every ``/raw/subvolume_NN`` group and ``/video``, on the pipeline's task runner.

Inputs: the source path (session folder, its ``.mat`` or tarball), the imaging groups already
read (their source index), the spec, and the pipeline's store, :class:`~sscxr_conversion.tasks.Runner`
and resume state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr
import zarr

from ..progress import byte_bar, closing
from ..provenance import SourceRecord
from ..readers.tiff import plan_raw
from ..spec import ConversionSpec
from ..tasks import Runner
from .layout import LAYOUT, RawLayout
from .stream import stream_raw
from .verify import verify_raw
from .video import VideoWriter
from .writer import RawWriter


@dataclass
class RawStep:
    """``--raw``: write ``/raw/subvolume_NN`` and ``/video`` from ``src`` (called by the pipeline,
    inside its task runner, before finalise). Adds the tarball's record and the warnings to
    ``attrs["provenance"]``.

    >>> step = RawStep("an197522_2013_03_08.tar.gz", groups, ConversionSpec(raw=True))  # doctest: +SKIP
    >>> step(store, url, run, done=set(), attrs=attrs, warnings=[])                      # doctest: +SKIP
    ['raw/subvolume_01', 'raw/subvolume_02', 'video']
    """

    src: str | os.PathLike
    groups: Mapping[str, xr.Dataset]
    spec: ConversionSpec
    layout: RawLayout = LAYOUT
    progress: bool = False  # a byte bar over the TIFFs and videos (or the tarball) as they are read

    def __call__(self, store: Any, url: str, run: Runner, done: set[str], attrs: dict,
                 messages: list[str]) -> list[str]:
        with _block_runner(run) as run:
            stacks = RawWriter(plan_raw(self.groups), self.spec, self.layout, store=store, url=url, run=run,
                               done=done)
            stacks.by_reference = _shares_files(run)
            videos = VideoWriter(self.groups, store=store, run=run) if self.spec.video and "video" not in done else None
            tar_records: list[SourceRecord] = []
            try:
                with closing(byte_bar(None, f"reading raw frames and videos of {Path(self.src).name}",
                                      enabled=self.progress)) as bar:
                    stream_raw(self.src, stacks, videos, tar_records, bar=bar)
                    written = stacks.finish()
            finally:
                stacks.close()
            video_written, video_warnings = videos.finish() if videos is not None else ([], [])
        new = [w for ws in stacks.warnings.values() for w in ws] + video_warnings + _done_warnings(store, done)
        attrs["provenance"]["sources"] += [r.to_dict() for r in tar_records]
        attrs["provenance"]["warnings"] += new
        messages += new
        return written + video_written

    def verify(self, store: Any, attrs: dict) -> list[str]:
        """``sscxr verify`` of the raw groups: see :func:`verify_raw`."""
        return verify_raw(self.src, store, self.groups, self.spec, attrs)


@contextmanager
def _block_runner(run: Runner) -> Iterator[Runner]:
    """Block tasks on local threads use every core: their work (crc32c, sums, Blosc) releases
    the GIL, unlike the xarray-heavy group writes the pipeline's single thread is sized for."""
    if run.client is not None or run.pool is None:
        yield run
        return
    threads = max(2, os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        yield Runner(pool=pool, max_pending=threads + 1)


def _shares_files(run: Runner) -> bool:
    """Whether block tasks see this machine's files: local threads, or dask workers on this host
    (a LocalCluster, or a scheduler whose workers all run here). Otherwise the driver copies
    the frames into the blocks it sends."""
    client = getattr(run, "client", None)
    if client is None:
        return True
    import socket
    from urllib.parse import urlsplit

    here = {"127.0.0.1", "localhost", "::1", socket.gethostname()}
    try:
        here.add(socket.gethostbyname(socket.gethostname()))
    except OSError:
        pass
    workers = client.scheduler_info().get("workers", {})
    return bool(workers) and all(addr.startswith("inproc://") or urlsplit(addr).hostname in here for addr in workers)


def _done_warnings(store: Any, done: set[str]) -> list[str]:
    """Warnings recorded by raw groups written before a resume."""
    out: list[str] = []
    for path in sorted(p for p in done if p.startswith("raw/")):
        found = zarr.open_group(store, path=path, mode="r", zarr_format=3).attrs.get("warnings", [])
        out += [str(w) for w in found] if isinstance(found, list) else []
    return out
