"""Whisker videos (``/video``): each trial's mp4 kept byte for byte, with a frame index.

Input: the ``*.mp4`` members of the stream (:mod:`.stream`), matched to trials by name
(:func:`~sscxr_conversion.readers.video.trial_of`). :class:`VideoWriter` appends their bytes to
``/video/mp4`` in whole chunks as they come and has each one decoded (indexed) by PyAV in a task;
:class:`VideoVerifier` compares a store with the source again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

from sscxr.errors import InconsistentSourceError

from .. import write
from ..readers.tiff import data_crc32c
from ..readers.video import VideoFile, VideoInfo, probe_video, trial_of, video_index
from ..tasks import Runner
from .blocks import is_big
from .layout import quiet_xarray


MP4 = re.compile(r"\.mp4$", re.IGNORECASE)


MP4_CHUNK = 4 << 20  # bytes per chunk of /video/mp4 (uncompressed: mp4 is compressed already)


def _read(source: bytes | Path) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


def _probe(data: bytes, name: str) -> VideoInfo:
    return probe_video(data, name=name)


class VideoWriter:
    """Appends each trial's mp4 to ``/video/mp4`` in whole chunks; decodes (indexes) it in a task."""

    path = "video"

    def __init__(self, groups: Mapping[str, xr.Dataset], *, store: Any, run: Runner):
        trials, whisker = groups["trials"], groups.get("whisker")
        self.trial_ids = trials["trial"].values
        self.trial_start = dict(zip(self.trial_ids.tolist(), trials["start_time"].values.tolist(), strict=True))
        self.whisker = ((whisker["time"].values, whisker["trial"].values) if whisker is not None
                        else (np.zeros(0), np.zeros(0, np.int64)))
        self.store, self.run = store, run
        self.files: dict[int, VideoFile] = {}
        self.infos: dict[int, VideoInfo] = {}
        self.buffer, self.flushed = bytearray(), 0
        self.array: zarr.Array | None = None

    @staticmethod
    def wants(name: str) -> bool:
        return bool(MP4.search(name))

    def add(self, name: str, source: bytes | Path) -> None:
        data = _read(source)
        trial = trial_of(name, self.trial_ids)
        if trial in self.files:
            raise InconsistentSourceError(name, f"is a second video of trial {trial} (the first is "
                                          f"{self.files[trial].name})")
        self.files[trial] = VideoFile(trial, name, self.flushed + len(self.buffer), len(data), data_crc32c(data))
        if self.array is None:
            group = zarr.open_group(self.store, path=self.path, mode="w", zarr_format=3)
            self.array = group.create_array("mp4", shape=(0,), chunks=(MP4_CHUNK,), dtype="uint8", fill_value=0,
                                            compressors=None, dimension_names=("byte",), attributes={
                                                "description": "every trial's mp4 file, byte-exact, concatenated: "
                                                "trial k is mp4[byte_offset[k]:byte_offset[k] + byte_count[k]]"})
        self.buffer += data
        self._flush(len(self.buffer) // MP4_CHUNK * MP4_CHUNK)
        self.run.submit(_probe, data, name, then=partial(self.infos.__setitem__, trial), scatter=is_big)

    def _flush(self, n: int) -> None:
        if n == 0 or self.array is None:
            return
        chunk = np.frombuffer(bytes(self.buffer[:n]), np.uint8)
        self.array.resize((self.flushed + n,))
        self.array[self.flushed: self.flushed + n] = chunk
        del self.buffer[:n]
        self.flushed += n

    def finish(self) -> tuple[list[str], list[str]]:
        """Write the tail and the frame index, mark the group; ``(written, warnings)``."""
        if self.array is None:
            return [], ["no whisker video (*.mp4) found in the source: /video not written"]
        self._flush(len(self.buffer))
        self.run.drain()
        ds = video_index(list(self.files.values()), self.infos, self.trial_start, *self.whisker)
        with quiet_xarray():
            ds.to_zarr(self.store, group=self.path, mode="a", zarr_format=3, consolidated=False)
        zarr.open_group(self.store, path=self.path, mode="r+", zarr_format=3).attrs[write.WRITTEN] = True
        return [self.path], []


class VideoVerifier:
    """Compares each source mp4 with the stored bytes, and its decoded frames with the frame index."""

    def __init__(self, store: Any):
        try:
            self.ds: xr.Dataset | None = xr.open_dataset(store, group="video", engine="zarr", consolidated=False,
                                                         chunks=None)
        except (KeyError, FileNotFoundError, OSError):
            self.ds = None
        self.problems: list[str] = []
        self.seen: set[int] = set()
        self.wants = VideoWriter.wants

    def add(self, name: str, source: bytes | Path) -> None:
        data = _read(source)
        if self.ds is None:
            self.problems.append(f"/video: missing from the store, but the source has {name}")
            return
        trial = trial_of(name, self.ds["trial"].values)
        self.seen.add(trial)
        row = self.ds.sel(trial=trial)
        start, size = int(row["byte_offset"]), int(row["byte_count"])
        if size != len(data) or self.ds["mp4"][start: start + size].values.tobytes() != data:
            self.problems.append(f"/video/mp4: the bytes of trial {trial} differ from {name}")
        info = probe_video(data, name=name, decode_format=str(row["decode_format"].values))
        frames = slice(int(row["first_frame"]), int(row["first_frame"]) + int(row["n_frames"]))
        for var, want in (("frame_pts", info.pts), ("frame_keyframe", info.keyframe), ("frame_crc32c", info.crc32c)):
            if not np.array_equal(self.ds[var][frames].values, want):
                self.problems.append(f"/video/{var}: trial {trial} differs from the decoded frames of {name}")

    def finish(self) -> list[str]:
        if self.ds is not None:
            for trial in sorted(set(self.ds["trial"].values.tolist()) - self.seen):
                self.problems.append(f"/video: trial {trial} is in the store but its mp4 is not in the source")
        return self.problems
