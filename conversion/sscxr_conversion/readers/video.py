"""Whisker videos: one mp4 per trial -> a frame index (pts, keyframes, checksums) and frame times.

Raw layer: :func:`probe_video` decodes every frame of one mp4 (its bytes) with PyAV and returns a
:class:`VideoInfo`: codec, size, the presentation timestamp of each frame, which frames are
keyframes, and a crc32c per decoded frame (what ``sscxr verify`` compares). A corrupt or
truncated file raises :class:`~sscxr.errors.SourceFormatError` naming the file and the frame.

Labeling layer: :func:`trial_of` maps a file name to a trial id; :func:`frame_times` puts the
frames of one trial on the session's whisker time base (see ``docs/raw.md``).

>>> info = probe_video(mp4_bytes, name="whisker_video/an197522_2013_03_08_trial_0003.mp4")  # doctest: +SKIP
>>> info.n_frames, info.decode_format                                                      # doctest: +SKIP
(2000, 'luma')
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import xarray as xr

from sscxr.errors import InconsistentSourceError, SourceFormatError

from sscxr.video import LUMA, frame_pixels

from .tiff import pixel_crc32c

CORRUPT_HINT = "the video is truncated or corrupt; download it again"
DEFAULT_RATE_HZ = 500.0  # lab pipeline: 2 ms per whisker frame (FORMATS.md §1.3.2)
DEFAULT_OFFSET_S = 0.1  # lab pipeline: video starts 100 ms after trial start
_TRIAL_TOKEN = re.compile(r"(?:trial|tr)[_-]?(\d+)", re.IGNORECASE)
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


@dataclass
class VideoInfo:
    """What one mp4 holds: stream facts and, per frame in presentation order, pts/key/crc32c."""

    name: str
    codec: str
    width: int
    height: int
    pix_fmt: str
    decode_format: str
    time_base: Fraction
    average_rate: float
    pts: np.ndarray = field(repr=False)
    keyframe: np.ndarray = field(repr=False)
    crc32c: np.ndarray = field(repr=False)

    @property
    def n_frames(self) -> int:
        return len(self.pts)


def decode_format_for(pix_fmt: str) -> str:
    """``"luma"`` (the decoded Y plane) for 8-bit grey or YUV video: whisker cameras are
    monochrome; ``"rgb24"`` otherwise (colour, or more than 8 bits).

    >>> decode_format_for("yuv420p"), decode_format_for("rgb24"), decode_format_for("gray16le")
    ('luma', 'rgb24', 'rgb24')
    """
    import av

    try:
        first = av.VideoFormat(pix_fmt).components[0]
    except (ValueError, IndexError):
        return "rgb24"
    mono = pix_fmt.startswith(("gray", "yuv", "yuvj", "nv"))
    return LUMA if mono and first.bits == 8 and first.plane == 0 else "rgb24"


def probe_video(data: bytes, *, name: str, decode_format: str | None = None) -> VideoInfo:
    """Decode every frame of an mp4 (bytes) and index it; errors name the file and frame."""
    import av

    try:
        container = av.open(io.BytesIO(data), mode="r")
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise SourceFormatError(name, f"cannot be opened as a video, so no frame from frame 1 on can be decoded "
                                f"({exc}); a truncated mp4 loses its index (moov atom)", field="frame 1",
                                hint=CORRUPT_HINT) from exc
    with container:
        if not container.streams.video:
            raise SourceFormatError(name, "holds no video stream", hint=CORRUPT_HINT)
        stream = container.streams.video[0]
        stream.codec_context.options = {"err_detect": "explode"}  # fail on corrupt packets, no concealment
        stream.thread_type = "AUTO"
        fmt = decode_format or decode_format_for(stream.codec_context.pix_fmt or "gray")
        pts, key, crc = _decode_all(container, stream, fmt, name)
        expected = int(stream.frames or 0)
        info = VideoInfo(name, stream.codec_context.name, stream.codec_context.width, stream.codec_context.height,
                         stream.codec_context.pix_fmt or "", fmt, Fraction(stream.time_base or Fraction(1, 1)),
                         float(stream.average_rate or 0.0), pts, key, crc)
    if expected and expected != info.n_frames:
        raise SourceFormatError(name, f"decoded {info.n_frames} frames but the container lists {expected}; "
                                f"frame {info.n_frames + 1} is missing or unreadable",
                                field=f"frame {info.n_frames + 1}", hint=CORRUPT_HINT)
    if info.n_frames == 0:
        raise SourceFormatError(name, "holds no decodable frame", field="frame 1", hint=CORRUPT_HINT)
    return info


def _decode_all(container, stream, fmt: str, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import av

    pts: list[int] = []
    key: list[bool] = []
    crc: list[int] = []
    try:
        for frame in container.decode(stream):
            if frame.pts is None:
                raise SourceFormatError(name, f"frame {len(pts) + 1} has no timestamp", field=f"frame {len(pts) + 1}",
                                        hint=CORRUPT_HINT)
            pixels = frame_pixels(frame, fmt)
            pts.append(frame.pts)
            key.append(bool(frame.key_frame))
            crc.append(pixel_crc32c(pixels))
    except (av.error.FFmpegError, ValueError, OSError) as exc:
        raise SourceFormatError(name, f"cannot be decoded at frame {len(pts) + 1} ({exc})",
                                field=f"frame {len(pts) + 1}", hint=CORRUPT_HINT) from exc
    order = np.argsort(pts, kind="stable")
    return (np.asarray(pts, np.int64)[order], np.asarray(key, bool)[order], np.asarray(crc, np.uint32)[order])


def trial_of(name: str, trial_ids: np.ndarray) -> int:
    """The trial id a video file name refers to (FORMATS.md §1.1: naming is [U]).

    Rule: a ``trial``/``tr`` token followed by digits (``..._trial_0012.mp4``), else the last run
    of digits in the file's stem; the number must be one of ``trial_ids``.

    >>> trial_of("whisker/an197522_2013_03_08_trial_012.mp4", np.array([11, 12]))
    12
    """
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    match = _TRIAL_TOKEN.search(stem) or _LAST_NUMBER.search(stem)
    number = int(match.group(1)) if match else None
    if number is None or number not in set(np.asarray(trial_ids).tolist()):
        raise InconsistentSourceError(name, f"names trial {number}, which is not among the session's trial ids "
                                      f"({len(trial_ids)} trials, {int(np.min(trial_ids)) if len(trial_ids) else '-'}"
                                      f"..{int(np.max(trial_ids)) if len(trial_ids) else '-'})",
                                      hint="video files must carry the trial number: '..._trial_NNN.mp4' "
                                      "or end in it")
    return number


def frame_times(n_frames: int, trial_start_s: float, whisker_times_s: np.ndarray) -> tuple[np.ndarray, str]:
    """Times (s, session clock) of a trial's video frames and the rule used.

    * ``"whisker"``: the trial has exactly one whisker sample per video frame; frame ``j`` is at
      whisker sample ``j``'s time (the tracker measured one sample per frame).
    * ``"whisker_rate"``: the trial has whisker samples but not one per frame; frame ``j`` is at
      ``first sample + j / rate``, rate from the whisker samples' median step.
    * ``"default"``: no whisker samples; ``trial start + 0.1 s + j / 500 Hz`` (lab pipeline defaults).

    >>> frame_times(3, 10.0, np.array([])) [0]
    array([10.1  , 10.102, 10.104])
    """
    j = np.arange(n_frames, dtype=np.float64)
    w = np.asarray(whisker_times_s, dtype=np.float64)
    if len(w) == n_frames and n_frames:
        return w.copy(), "whisker"
    if len(w) >= 2:
        step = float(np.median(np.diff(w)))
        if step > 0:
            return w[0] + j * step, "whisker_rate"
    return trial_start_s + DEFAULT_OFFSET_S + j / DEFAULT_RATE_HZ, "default"


@dataclass(frozen=True)
class VideoFile:
    """One trial's mp4 as found in the source: its name, where its bytes sit in ``mp4``, its crc32c."""

    trial: int
    name: str
    offset: int
    size: int
    crc32c: int


def video_index(files: list[VideoFile], infos: dict[int, VideoInfo], trial_start_s: dict[int, float],
                whisker_time_s: np.ndarray, whisker_trial: np.ndarray) -> xr.Dataset:
    """The ``/video`` Dataset (without the ``mp4`` bytes): per trial and per frame (docs/raw.md).

    Trials are sorted by id; frames are concatenated in that order (``first_frame``, ``n_frames``).
    """
    files = sorted(files, key=lambda f: f.trial)
    per_trial: dict[str, list] = {k: [] for k in ("first_frame", "rule", "times")}
    first = 0
    for f in files:
        info = infos[f.trial]
        times, rule = frame_times(info.n_frames, trial_start_s.get(f.trial, np.nan),
                                  whisker_time_s[whisker_trial == f.trial])
        per_trial["first_frame"].append(first)
        per_trial["rule"].append(rule)
        per_trial["times"].append(times)
        first += info.n_frames
    ds = xr.Dataset(coords={"trial": ("trial", np.array([f.trial for f in files], np.int64))})
    _trial_vars(ds, files, infos, per_trial)
    _frame_vars(ds, files, infos, per_trial["times"])
    ds.attrs.update(storage="mp4 bytes", description="whisker video per trial: the original mp4 files, byte-exact, "
                    "concatenated in 'mp4'; decode with sscxr.video.video_frames (docs/raw.md)")
    return ds


def _trial_vars(ds: xr.Dataset, files: list[VideoFile], infos: dict[int, VideoInfo], per_trial: dict) -> None:
    info = [infos[f.trial] for f in files]
    ds["byte_offset"] = ("trial", np.array([f.offset for f in files], np.int64), {"units": "bytes"})
    ds["byte_count"] = ("trial", np.array([f.size for f in files], np.int64), {"units": "bytes"})
    ds["file_crc32c"] = ("trial", np.array([f.crc32c for f in files], np.uint32))
    ds["source_file"] = ("trial", np.array([f.name for f in files], dtype=object))
    ds["first_frame"] = ("trial", np.array(per_trial["first_frame"], np.int64), {"description": "index into frame"})
    ds["n_frames"] = ("trial", np.array([i.n_frames for i in info], np.int64))
    ds["frame_time_rule"] = ("trial", np.array(per_trial["rule"], dtype=object))
    for name in ("codec", "pix_fmt", "decode_format"):
        ds[name] = ("trial", np.array([getattr(i, name) for i in info], dtype=object))
    ds["width"] = ("trial", np.array([i.width for i in info], np.int64), {"units": "px"})
    ds["height"] = ("trial", np.array([i.height for i in info], np.int64), {"units": "px"})
    ds["time_base"] = ("trial", np.array([str(i.time_base) for i in info], dtype=object),
                       {"description": "seconds per pts tick, as a fraction"})
    ds["average_rate"] = ("trial", np.array([i.average_rate for i in info]), {"units": "Hz"})


def _frame_vars(ds: xr.Dataset, files: list[VideoFile], infos: dict[int, VideoInfo], times: list) -> None:
    info = [infos[f.trial] for f in files]
    cat = (lambda arrays, dtype: np.concatenate(arrays).astype(dtype) if arrays else np.zeros(0, dtype))
    ds.coords["frame_trial"] = ("frame", cat([np.full(i.n_frames, f.trial) for f, i in zip(files, info, strict=True)],
                                             np.int64))
    ds.coords["frame_time"] = ("frame", cat(times, np.float64), {"units": "s", "description": "frame time on the "
                                                                 "session clock (whisker time base, see frame_time_rule)"})
    ds["frame_pts"] = ("frame", cat([i.pts for i in info], np.int64), {"description": "presentation timestamp"})
    ds["frame_keyframe"] = ("frame", cat([i.keyframe for i in info], bool))
    ds["frame_crc32c"] = ("frame", cat([i.crc32c for i in info], np.uint32),
                          {"description": "crc32c of the decoded frame (decode_format pixels)"})
