"""Whisker video frames from a session store, decoded lazily on the whisker time base.

A session store keeps each trial's whisker video as its original mp4 bytes in ``/video/mp4``
with a frame index (``frame_pts``, ``frame_keyframe``, ``frame_time``; see ``docs/raw.md``).
:func:`video_frames` returns one trial's frames as a lazy ``(time, y, x)`` DataArray: nothing is
read until values are asked for, then only that trial's bytes are fetched and only the frames
asked for are decoded (from the keyframe before each), with PyAV (``pip install av``).

>>> import sscxr
>>> tree = sscxr.open_session("an197522_2013_03_08.zarr")          # doctest: +SKIP
>>> frames = video_frames(tree, trial=12)                          # doctest: +SKIP
>>> frames.sel(time=slice(3.10, 3.12)).values.shape                # doctest: +SKIP
(11, 480, 640)
>>> video_frames(tree, trial=12, time=[3.1, 3.2]).shape            # doctest: +SKIP
(2, 480, 640)
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._xarray_compat import lazy_array
from .errors import MissingDependencyError

__all__ = ["video_frames", "decode_frames", "frame_pixels", "LUMA"]

LUMA = "luma"
"""Decode format: the decoded luma plane (Y) itself, no range or colour conversion. Monochrome
whisker cameras give YUV or gray video whose picture is the luma plane; PyAV's ``"gray"`` instead
rescales video-range luma (16-235) to 0-255 and costs 10x more per frame."""


def frame_pixels(frame: Any, fmt: str = LUMA) -> np.ndarray:
    """The pixels of a decoded PyAV frame: its luma plane (``"luma"``) or ``frame.to_ndarray(format=fmt)``.

    >>> frame_pixels(frame).shape  # doctest: +SKIP
    (480, 640)
    """
    if fmt != LUMA:
        return np.asarray(frame.to_ndarray(format=fmt))
    plane = frame.planes[0]
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width].copy()


def video_frames(session: xr.DataTree | xr.Dataset, trial: int, time: float | Sequence[float] | np.ndarray | None = None,
                 *, format: str | None = None) -> xr.DataArray:
    """One trial's whisker video frames, lazily, with ``time`` (s) on the session clock.

    ``session`` is a session tree (``sscxr.open_session``) or its ``/video`` Dataset. With
    ``time``, the frames nearest those times (one per time). ``format``: ``"luma"`` (the decoded
    Y plane, the store's ``decode_format`` for monochrome video) or a PyAV pixel format
    (``"gray"``, ``"rgb24"``, which adds a ``rgb`` dim).

    >>> video_frames(tree, 12).isel(time=0).values  # doctest: +SKIP
    """
    video = _video_group(session)
    if trial not in video.indexes["trial"]:
        raise KeyError(f"trial {trial} has no video; trials with video: {video['trial'].values.tolist()[:20]}...")
    row = video.sel(trial=trial)
    first, n = int(row["first_frame"]), int(row["n_frames"])
    frames = video.isel(frame=slice(first, first + n))
    fmt = format or str(row["decode_format"].values)
    array = _TrialVideo(video["mp4"], int(row["byte_offset"]), int(row["byte_count"]),
                        frames["frame_pts"].values, frames["frame_keyframe"].values, fmt,
                        (int(row["height"]), int(row["width"])))
    dims = ("time", "y", "x", "rgb")[: len(array.shape)]
    out = xr.DataArray(lazy_array(array, array.chunks()), dims=dims, name="video", coords={
        "time": ("time", frames["frame_time"].values, {"units": "s"}),
        "frame": ("time", np.arange(n)), "pts": ("time", frames["frame_pts"].values)},
        attrs={"trial": int(trial), "decode_format": fmt, "source_file": str(row["source_file"].values)})
    return out if time is None else out.sel(time=time, method="nearest")


def _video_group(session: xr.DataTree | xr.Dataset) -> xr.Dataset:
    if isinstance(session, xr.Dataset):
        ds = session
    elif "video" in session.children:
        ds = session["video"].to_dataset()
    else:
        ds = session.to_dataset()
    if "mp4" not in ds or "frame_pts" not in ds:
        raise KeyError("no whisker videos here: expected a session tree with a /video group (converted with "
                       "`sscxr convert --raw`) or that group's Dataset")
    return ds


class _TrialVideo:
    """The frames of one mp4 as an array-like (numpy-style keys, one per dimension): fetches the
    bytes once, decodes the frames asked for. :func:`sscxr._xarray_compat.lazy_array` makes it lazy."""

    def __init__(self, mp4: xr.DataArray, offset: int, size: int, pts: np.ndarray, keyframe: np.ndarray,
                 fmt: str, shape: tuple[int, int]):
        self.mp4, self.offset, self.nbytes_mp4 = mp4, offset, size
        self.pts, self.keyframe_pts, self.fmt = np.asarray(pts), np.asarray(pts)[np.asarray(keyframe, bool)], fmt
        self.shape = (len(self.pts), *shape) + ((3,) if fmt in ("rgb24", "bgr24") else ())
        self.dtype = np.dtype(np.uint8)
        self._bytes: bytes | None = None
        self._lock = threading.Lock()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Dask chunks for the public path: one per group of pictures (keyframe to keyframe), which
        one seek decodes."""
        starts = sorted({0, *np.flatnonzero(np.isin(self.pts, self.keyframe_pts)).tolist()})
        along_time = tuple(int(b - a) for a, b in zip(starts, [*starts[1:], len(self.pts)], strict=True) if b > a)
        return (along_time or (0,), *((n,) for n in self.shape[1:]))

    def __getitem__(self, key: tuple) -> np.ndarray:
        wanted = np.arange(len(self.pts))[key[0]]
        flat = np.atleast_1d(wanted)
        frames = decode_frames(self._data(), self.pts[flat], self.keyframe_pts, self.fmt)
        stack = np.stack(frames) if len(frames) else np.zeros((0, *self.shape[1:]), self.dtype)
        out = stack[(slice(None), *key[1:])]
        return out[0] if np.ndim(wanted) == 0 else out

    def _data(self) -> bytes:
        with self._lock:
            if self._bytes is None:
                self._bytes = np.asarray(self.mp4[self.offset: self.offset + self.nbytes_mp4].values, np.uint8).tobytes()
            return self._bytes


def decode_frames(data: bytes, pts: np.ndarray | Sequence[int], keyframe_pts: np.ndarray, fmt: str = LUMA
                  ) -> list[np.ndarray]:
    """Decode the frames with presentation timestamps ``pts`` (in that order) from mp4 ``data``.

    Seeks to the keyframe at or before each run of wanted frames and decodes forward, so a frame
    costs at most one group of pictures.

    >>> decode_frames(mp4_bytes, [0, 32], keyframe_pts=np.array([0]))  # doctest: +SKIP
    [array(...), array(...)]
    """
    try:
        import av
    except ImportError as exc:
        raise MissingDependencyError("av", "decoding whisker videos", install="pip install av") from exc
    wanted = sorted(set(int(p) for p in pts))
    keys = np.sort(np.asarray(keyframe_pts, np.int64))
    found: dict[int, np.ndarray] = {}
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for segment in _segments(wanted, keys):
            _decode_segment(container, stream, segment, fmt, found)
    missing = [p for p in wanted if p not in found]
    if missing:
        raise ValueError(f"frames with pts {missing[:5]} were not found in the video (index and mp4 disagree)")
    return [found[int(p)] for p in pts]


def _segments(wanted: list[int], keys: np.ndarray) -> list[tuple[int, list[int]]]:
    """Group wanted pts by the keyframe at or before each: ``[(keyframe pts, [pts...])]``."""
    groups: dict[int, list[int]] = {}
    for p in wanted:
        i = int(np.searchsorted(keys, p, side="right")) - 1
        groups.setdefault(int(keys[i]) if i >= 0 else (int(keys[0]) if len(keys) else 0), []).append(p)
    return sorted(groups.items())


def _decode_segment(container: Any, stream: Any, segment: tuple[int, list[int]], fmt: str,
                    found: dict[int, np.ndarray]) -> None:
    key, pts = segment
    todo, last = set(pts), max(pts)
    container.seek(key, stream=stream, backward=True, any_frame=False)
    for frame in container.decode(stream):
        if frame.pts in todo:
            found[frame.pts] = frame_pixels(frame, fmt)
            todo.discard(frame.pts)
        if not todo or (frame.pts is not None and frame.pts > last):
            break
