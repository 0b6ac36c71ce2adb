"""Raw media of a synthetic ssc-1 session: registered TIFF stacks and per-trial whisker mp4s."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def frame_seed(seed: int, relpath: str) -> int:
    """A stable per-file seed, so pixels can be regenerated without reading the file."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{relpath}".encode()).digest()[:8], "little")


def tiff_pages(seed: int, relpath: str, n_frames: int, size: int) -> np.ndarray:
    """The pages of one TIFF: (2 * n_frames, size, size) uint16, green and red interleaved.

    Page ``2i`` is green frame ``i`` and page ``2i + 1`` red frame ``i``: a fixed pattern plus
    cheap per-page noise (vectorised, ~1 GB/s).
    """
    rng = np.random.default_rng(frame_seed(seed, relpath))
    base = rng.integers(200, 2000, size=(2, size, size), dtype=np.uint16)
    noise = rng.integers(0, 64, size=(n_frames, 2, size, size), dtype=np.uint16)
    return (noise + base[None]).reshape(2 * n_frames, size, size)


def write_tiff(path: Path, pages: np.ndarray) -> None:
    import tifffile

    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, pages, photometric="minisblack", metadata=None, software=None, datetime=None)


def video_frames(angle: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(n, h, w, 3) uint8 frames: a bright bar whose column follows the whisker angle."""
    h, w = size
    finite = np.nan_to_num(angle, nan=0.0)
    col = np.clip(((finite - finite.min()) / (np.ptp(finite) or 1.0) * (w - 1)).astype(int), 0, w - 1)
    frames = np.zeros((len(angle), h, w, 3), dtype=np.uint8)
    frames[np.arange(len(angle)), :, col, :] = 255
    return frames


def write_mp4(path: Path, frames: np.ndarray, fps: int = 500) -> None:
    """Encode ``frames`` with PyAV (mpeg4, yuv420p), one frame per whisker sample."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        container.metadata["creation_time"] = "2013-03-08T12:00:00Z"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
