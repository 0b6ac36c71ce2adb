"""Raw imaging stacks and whisker videos: readers, the raw pass, verification, user-side decoding.

A small session is built here (TIFFs at the FORMATS.md §1.1 paths, mp4s made with PyAV, and the
labeled imaging/trials/whisker groups the .mat reader would give); expected values always come
from what was written, never from the converter reading it back.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from sscxr.errors import InconsistentSourceError, SourceFormatError, StoreExistsError

av = pytest.importorskip("av")
tifffile = pytest.importorskip("tifffile")

from sscxr_conversion import raw, write  # noqa: E402
from sscxr_conversion.readers.tiff import data_crc32c, open_stack, pixel_crc32c  # noqa: E402
from sscxr_conversion.readers.video import probe_video, trial_of  # noqa: E402
from sscxr_conversion.spec import ConversionSpec  # noqa: E402
from sscxr_conversion.tasks import Runner, runner  # noqa: E402

LAYOUT = raw.RawLayout(shard_frames=4, shard_px=8, chunk=(2, 8, 8))
TIFF_DIR = "imaging_data/fov_{vv:02d}{ppp:03d}/fluo_batch_out"
TIFF_NAME = "Image_Registration_4_an197522_2013_03_08_main_{n:03d}.tif"


# --------------------------------------------------------------------------------------------
# a small session: TIFFs, mp4s and the groups the .mat reader would give
# --------------------------------------------------------------------------------------------


def interleaved_tiff(green: np.ndarray, red: np.ndarray) -> bytes:
    """A two-channel stack as the registration writes it: pages green, red, green, red, ..."""
    pages = np.empty((2 * len(green), *green.shape[1:]), np.uint16)
    pages[0::2], pages[1::2] = green, red
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        for page in pages:
            tif.write(page, contiguous=False, photometric="minisblack")
    return buf.getvalue()


def luma(frame) -> np.ndarray:  # noqa: ANN001
    """The decoded Y plane, read independently of sscxr.video.frame_pixels."""
    plane = frame.planes[0]
    return np.frombuffer(bytes(plane), np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def mp4_bytes(n_frames: int, seed: int, shape: tuple[int, int] = (32, 48)) -> tuple[bytes, list[np.ndarray]]:
    """An h264 mp4 at 500 Hz and its frames as PyAV decodes them (the luma plane)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=500)
        stream.width, stream.height, stream.pix_fmt = shape[1], shape[0], "yuv420p"
        stream.codec_context.gop_size = 8
        for i in range(n_frames):
            img = ((np.add.outer(np.arange(shape[0]), np.arange(shape[1])) * 3 + i * 7 + seed) % 256).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="gray")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = buf.getvalue()
    with av.open(io.BytesIO(data)) as src:
        frames = [luma(f) for f in src.decode(video=0)]
    return data, frames


@dataclass
class Session:
    root: Path
    groups: dict[str, xr.Dataset]
    green: dict[str, np.ndarray] = field(default_factory=dict)  # path -> (plane, time, y, x), 0 = absent
    red: dict[str, np.ndarray] = field(default_factory=dict)
    present: dict[str, np.ndarray] = field(default_factory=dict)
    videos: dict[int, tuple[str, bytes, list[np.ndarray]]] = field(default_factory=dict)


def make_session(root: Path, *, shape: tuple[int, int] = (16, 16), files: int = 2, frames: int = 5,
                 seed: int = 0) -> Session:
    """Two subvolumes x two planes; frame 3 of plane 0 of subvolume 1 has a NaN index."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    trials = xr.Dataset(coords={"trial": [1, 2, 3, 4]}, data_vars={"start_time": ("trial", [10.0, 20.0, 30.0, 40.0])})
    w_time = np.r_[10.1 + np.arange(12) * 0.002, 20.1 + np.arange(9) * 0.002]
    whisker = xr.Dataset(coords={"time": w_time, "trial": ("time", np.r_[np.full(12, 1), np.full(9, 2)])})
    session = Session(root, {"trials": trials, "whisker": whisker})
    for vv in (1, 2):
        _subvolume(session, rng, vv, shape, files, frames)
    for trial, n in ((1, 12), (2, 10)):
        data, decoded = mp4_bytes(n, seed=trial)
        name = f"whisker_video/an197522_2013_03_08_trial_{trial:03d}.mp4"
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        session.videos[trial] = (name, data, decoded)
    return session


def _subvolume(session: Session, rng: np.random.Generator, vv: int, shape: tuple[int, int], files: int,
               frames: int) -> None:
    n_time, planes = files * frames, [2, 3]
    green = np.zeros((2, n_time, *shape), np.uint16)
    red = np.zeros_like(green)
    file_index = np.repeat(np.arange(files), frames)[None].repeat(2, 0)
    frame_index = np.tile(np.arange(frames), files)[None].repeat(2, 0)
    names = []
    for p, ppp in enumerate(planes):
        folder = TIFF_DIR.format(vv=vv, ppp=ppp)
        names.append([f"/lab/an197522/{folder}/{TIFF_NAME.format(n=f + 1)}" for f in range(files)])
        for f in range(files):
            g = rng.integers(0, 65535, (frames, *shape), dtype=np.uint16)
            r = rng.integers(0, 65535, (frames, *shape), dtype=np.uint16)
            (session.root / folder).mkdir(parents=True, exist_ok=True)
            (session.root / folder / TIFF_NAME.format(n=f + 1)).write_bytes(interleaved_tiff(g, r))
            green[p, f * frames: (f + 1) * frames], red[p, f * frames: (f + 1) * frames] = g, r
    present = np.ones((2, n_time), bool)
    if vv == 1:
        file_index[0, 3] = frame_index[0, 3] = -1
        present[0, 3] = False
        green[0, 3] = red[0, 3] = 0
    time = 10.0 + vv * 100 + np.arange(n_time) * 0.14
    ds = xr.Dataset(coords={"time": ("time", time), "trial": ("time", np.full(n_time, vv)), "plane": planes,
                            "frame_time": (("plane", "time"), time[None] + np.array([[0.035], [0.07]]))})
    ds["source_file"] = (("plane", "file"), np.array(names))
    ds["source_file_index"] = (("plane", "time"), file_index)
    ds["source_frame_index"] = (("plane", "time"), frame_index)
    path = f"raw/subvolume_{vv:02d}"
    session.groups[f"imaging/subvolume_{vv:02d}"] = ds
    session.green[path], session.red[path], session.present[path] = green, red, present


def convert_raw(src: Path | str, session: Session, url: str, *, spec: ConversionSpec | None = None,
                resume: bool = False, workers: int | None = None) -> tuple[list[str], dict, list[str]]:
    """The pipeline's raw step alone: template root, RawStep inside a runner, finalise."""
    spec = spec or ConversionSpec(archive="ssc-1", raw=True, red=True)
    store = write.open_store(url, None, mode="w")
    attrs = {"archive": "ssc-1", "provenance": {"sources": [], "warnings": [], "spec": spec.to_dict()}}
    done = write.prepare(store, url, overwrite=not resume, resume=resume, attrs=attrs)
    messages: list[str] = []
    with runner(url, None, workers=workers) as run:
        written = raw.RawStep(src, session.groups, spec, LAYOUT)(store, url, run, done, attrs, messages)
    write.finalise(store, attrs)
    return written, attrs, messages


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    return make_session(tmp_path_factory.mktemp("raw") / "an197522_2013_03_08")


@pytest.fixture(scope="module")
def converted(session: Session, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[str], dict]:
    url = str(tmp_path_factory.mktemp("store") / "an197522_2013_03_08.zarr")
    written, attrs, messages = convert_raw(session.root, session, url)
    return url, written, attrs


def copy_session(session: Session, dest: Path) -> Session:
    shutil.copytree(session.root, dest)
    return Session(dest, session.groups, session.green, session.red, session.present, session.videos)


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


def test_tiff_frames_are_deinterleaved_views_from_bytes_or_path(tmp_path: Path) -> None:
    green = np.arange(3 * 4 * 5, dtype=np.uint16).reshape(3, 4, 5)
    data = interleaved_tiff(green, green + 1000)
    (tmp_path / "x.tif").write_bytes(data)
    for source in (data, tmp_path / "x.tif"):
        with open_stack(source, name="x.tif") as stack:
            assert (stack.n_frames, stack.frame_shape) == (3, (4, 5))
            np.testing.assert_array_equal(stack.frame(2, 0), green[2])
            np.testing.assert_array_equal(stack.frame(1, 1), green[1] + 1000)
    with open_stack(data, name="x.tif") as stack:
        assert np.shares_memory(stack.frame(0), np.frombuffer(data, np.uint8))


@pytest.mark.parametrize("cut", [0.5, 0.98])
def test_truncated_tiff_names_file_and_frame(cut: float) -> None:
    data = interleaved_tiff(*np.ones((2, 4, 8, 8), np.uint16))
    with pytest.raises(SourceFormatError, match=r"main_007\.tif.*frame \d") as info:
        open_stack(data[: int(len(data) * cut)], name="fov_01002/main_007.tif")
    assert "truncated" in str(info.value)


def test_tiff_with_an_odd_page_count_is_an_incomplete_frame() -> None:
    buf = io.BytesIO()
    tifffile.imwrite(buf, np.ones((5, 8, 8), np.uint16), photometric="minisblack")
    with pytest.raises(InconsistentSourceError, match=r"5 pages.*last frame \(3\)"):
        open_stack(buf.getvalue(), name="odd.tif")


def test_probe_video_indexes_every_frame() -> None:
    data, frames = mp4_bytes(20, seed=0)
    info = probe_video(data, name="t_001.mp4")
    assert info.n_frames == 20 and info.decode_format == "luma" and info.keyframe[0]
    assert np.all(np.diff(info.pts) > 0)
    assert info.crc32c.tolist() == [pixel_crc32c(f) for f in frames]


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_video_names_file_and_frame(damage: str) -> None:
    data = bytearray(mp4_bytes(30, seed=1)[0])
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3: len(data) // 3 + 300] = bytes(300)
    with pytest.raises(SourceFormatError, match=r"trial_005\.mp4.*frame \d+"):
        probe_video(bytes(data), name="whisker/trial_005.mp4")


def test_trial_of_reads_the_trial_token_or_the_last_number() -> None:
    ids = np.array([1, 2, 12])
    assert trial_of("v/an197522_2013_03_08_trial_012.mp4", ids) == 12
    assert trial_of("v/an197522_2013_03_08-0002.mp4", ids) == 2
    with pytest.raises(InconsistentSourceError, match="trial 7"):
        trial_of("v/an197522_2013_03_08_trial_7.mp4", ids)


# --------------------------------------------------------------------------------------------
# the raw pass
# --------------------------------------------------------------------------------------------


def test_raw_frames_match_the_tiff_pixels(session: Session, converted: tuple) -> None:
    url, written, _ = converted
    assert written == ["raw/subvolume_01", "raw/subvolume_02", "video"]
    for path in session.green:
        ds = xr.open_dataset(url, group=path, engine="zarr", chunks=None)
        assert ds["green"].dims == ("plane", "time", "y", "x") and ds["green"].dtype == np.uint16
        np.testing.assert_array_equal(ds["green"].values, session.green[path])
        np.testing.assert_array_equal(ds["red"].values, session.red[path])
        np.testing.assert_array_equal(ds["frame_present"].values, session.present[path])
        imaging = session.groups[path.replace("raw/", "imaging/")]
        np.testing.assert_array_equal(ds["time"].values, imaging["time"].values)  # frame t == dff frame t
        np.testing.assert_array_equal(ds["frame_time"].values, imaging["frame_time"].values)
        assert "block_written" not in ds and ds.attrs["sscxr_written"]


def test_summary_images_equal_numpy_over_present_frames(session: Session, converted: tuple) -> None:
    url = converted[0]
    ds = xr.open_dataset(url, group="raw/subvolume_01", engine="zarr", chunks=None)
    present = session.present["raw/subvolume_01"]
    for name, frames in (("green", session.green["raw/subvolume_01"]), ("red", session.red["raw/subvolume_01"])):
        for p in range(2):
            np.testing.assert_allclose(ds[f"{name}_mean"][p], frames[p][present[p]].mean(axis=0), rtol=1e-12)
            np.testing.assert_array_equal(ds[f"{name}_max"][p], frames[p].max(axis=0))


def test_one_frame_and_one_pixel_tile_read_back(session: Session, converted: tuple) -> None:
    green = zarr.open_array(converted[0], path="raw/subvolume_02/green", mode="r")
    truth = session.green["raw/subvolume_02"]
    assert green.shards == (1, LAYOUT.shard_frames, 8, 8) and green.chunks == (1, 2, 8, 8)
    np.testing.assert_array_equal(green[1, 7], truth[1, 7])
    np.testing.assert_array_equal(green[0, :, 4:8, 8:12], truth[0, :, 4:8, 8:12])


def test_raw_checksums_and_sources_are_recorded(session: Session, converted: tuple) -> None:
    ds = xr.open_dataset(converted[0], group="raw/subvolume_02", engine="zarr", chunks=None)
    truth = session.green["raw/subvolume_02"]
    assert ds["green_crc32c"].values[1, 4] == pixel_crc32c(truth[1, 4])
    names = [r["name"] for r in ds.attrs["source_files"]]
    assert len(names) == 4 and all(n.startswith("imaging_data/fov_02") for n in names)
    assert_source_records(converted[0], session)


def assert_source_records(url: str, session: Session, root: Path | None = None) -> None:
    """Each TIFF's provenance record is its size and the crc32c of all its bytes (put together
    from the block tasks' page hashes and the hashes of the bytes between; names relative to
    ``root``, by default the session folder)."""
    for path in session.green:
        ds = xr.open_dataset(url, group=path, engine="zarr", chunks=None)
        assert ds.attrs["source_files"]
        for record in ds.attrs["source_files"]:
            data = ((root or session.root) / record["name"]).read_bytes()
            assert record["size"] == len(data) and record["crc32c"] == f"{data_crc32c(data):08x}", record


def test_video_bytes_are_the_mp4_files_exactly(session: Session, converted: tuple) -> None:
    video = xr.open_dataset(converted[0], group="video", engine="zarr", chunks=None)
    assert video["trial"].values.tolist() == [1, 2]
    for trial, (name, data, frames) in session.videos.items():
        row = video.sel(trial=trial)
        start = int(row["byte_offset"])
        assert video["mp4"].values[start: start + int(row["byte_count"])].tobytes() == data
        assert int(row["n_frames"]) == len(frames) and str(row["source_file"].values) == name
    times = video["frame_time"].values[video["frame_trial"].values == 1]
    w = session.groups["whisker"]
    np.testing.assert_array_equal(times, w["time"].values[w["trial"].values == 1])  # one sample per frame
    assert video.sel(trial=2)["frame_time_rule"].values == "whisker_rate"


def test_video_frames_are_lazy_and_equal_the_decoded_mp4(session: Session, converted: tuple) -> None:
    from sscxr._fastpath import enabled
    from sscxr.video import video_frames

    tree = xr.open_datatree(converted[0], engine="zarr", chunks={})
    frames = video_frames(tree, trial=1)
    if enabled("xarray lazy indexing"):  # xarray's own lazy array (the fast path) holds the bytes
        assert frames.variable._data.array._bytes is None  # nothing fetched yet
    else:  # the public path: a dask array
        assert frames.chunks is not None
    truth = session.videos[1][2]
    np.testing.assert_array_equal(frames.values, np.stack(truth))
    np.testing.assert_array_equal(frames.isel(time=[9, 2]).values, np.stack([truth[9], truth[2]]))
    at = video_frames(tree, trial=2, time=float(frames["time"][0]) + 10.0)  # trial 2 starts 10 s later
    np.testing.assert_array_equal(at.values, session.videos[2][2][0])
    with pytest.raises(KeyError, match="trial 3 has no video"):
        video_frames(tree, trial=3)


def test_verify_passes_and_finds_a_changed_frame(session: Session, converted: tuple, tmp_path: Path) -> None:
    url = str(tmp_path / "copy.zarr")
    shutil.copytree(converted[0], url)
    spec = ConversionSpec(archive="ssc-1", raw=True, red=True)
    store = write.open_store(url, None, mode="w")
    attrs = {"provenance": {"sources": []}}
    assert raw.verify_raw(session.root, store, session.groups, spec, attrs) == []
    zarr.open_array(store, path="raw/subvolume_02/red", mode="r+")[1, 6, 0, 0] += 1
    problems = raw.verify_raw(session.root, store, session.groups, spec, attrs)
    assert any("red frame(s) differ" in p and "raw/subvolume_02" in p and "time 6" in p for p in problems)


def test_green_only_without_red(session: Session, tmp_path: Path) -> None:
    spec = ConversionSpec(archive="ssc-1", raw=True, red=False, video=False)
    written, _, _ = convert_raw(session.root, session, str(tmp_path / "g.zarr"), spec=spec)
    ds = xr.open_dataset(str(tmp_path / "g.zarr"), group="raw/subvolume_01", engine="zarr", chunks=None)
    assert "red" not in ds and "green" in ds and "video" not in written
    np.testing.assert_array_equal(ds["green"].values, session.green["raw/subvolume_01"])
    assert_source_records(str(tmp_path / "g.zarr"), session)


@pytest.mark.parametrize("red", [True, False])
def test_file_crc32c_reuses_the_tasks_page_hashes(session: Session, tmp_path: Path, red: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's thread hashes only what no task hashes: headers, page directories, the pages
    of a channel not converted and frames the index does not place; the rest of each record is
    the stored per-frame crc32c. The records still equal the crc32c of the whole files."""
    hashed: dict[str, tuple[int, int]] = {}
    original = raw.stream.gap_crcs

    def counting(name: str, source: object, pages: raw.TaskPages) -> tuple[int, list[int]]:
        size, crcs = original(name, source, pages)
        hashed[name] = (size - len(pages.starts) * pages.page, size)
        return size, crcs

    monkeypatch.setattr(raw.stream, "gap_crcs", counting)
    url = str(tmp_path / "pages.zarr")
    convert_raw(session.root, session, url, spec=ConversionSpec(archive="ssc-1", raw=True, red=red, video=False))
    assert_source_records(url, session)
    assert len(hashed) == 8
    page = 16 * 16 * 2
    for name, (by_thread, size) in hashed.items():
        unplaced = 1 if "fov_01002" in name and name.endswith("_001.tif") else 0  # its frame 4 has a NaN index
        assert by_thread == size - page * (5 - unplaced) * (2 if red else 1), name  # 5 frames x 2 channels a file


def test_a_big_endian_tiff_is_hashed_whole_and_converted(session: Session, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages whose bytes are not the little-endian pixels the tasks hash: the thread hashes the
    whole file (and the pixels still convert)."""
    copy = copy_session(session, tmp_path / "src")
    path = copy.root / TIFF_DIR.format(vv=2, ppp=3) / TIFF_NAME.format(n=2)
    pages = tifffile.imread(path, key=slice(None))
    with tifffile.TiffWriter(path, byteorder=">") as tif:
        for p in pages:
            tif.write(p, contiguous=False, photometric="minisblack")
    whole: list[str] = []
    original = raw.stream.gap_crcs

    def recording(name: str, source: object, task_pages: raw.TaskPages) -> tuple[int, list[int]]:
        if not len(task_pages.starts):
            whole.append(name)
        return original(name, source, task_pages)

    monkeypatch.setattr(raw.stream, "gap_crcs", recording)
    url = str(tmp_path / "be.zarr")
    convert_raw(copy.root, copy, url)
    assert [Path(n).name for n in whole] == [path.name] and "fov_02003" in whole[0]
    ds = xr.open_dataset(url, group="raw/subvolume_02", engine="zarr", chunks=None)
    np.testing.assert_array_equal(ds["red"].values, session.red["raw/subvolume_02"])
    assert_source_records(url, copy)


def test_blocks_are_read_by_reference_and_encoded_shard_by_shard(session: Session, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path: tasks map the TIFFs themselves (the driver copies no pixels) and write
    whole shards from tiled slabs (never through zarr's setitem); every pixel still reads back."""
    def no_copy(*args: object, **kwargs: object) -> None:
        raise AssertionError("the driver copied a frame")

    def no_zarr(*args: object) -> None:
        raise AssertionError("a block went through zarr's setitem")

    monkeypatch.setattr(raw.BufferPool, "take", no_copy)
    monkeypatch.setattr(raw.Block, "pixels", no_zarr)
    url = str(tmp_path / "ref.zarr")
    convert_raw(session.root, session, url)
    for path in session.green:
        ds = xr.open_dataset(url, group=path, engine="zarr", chunks=None)
        np.testing.assert_array_equal(ds["green"].values, session.green[path])
        np.testing.assert_array_equal(ds["red"].values, session.red[path])
    assert_source_records(url, session)


@pytest.mark.parametrize("uneven", [False, True], ids=["even pages", "headers of different sizes"])
def test_scan_copies_evenly_spaced_pages_at_once_and_others_frame_by_frame(tmp_path: Path, uneven: bool) -> None:
    """Pages evenly spaced in one file are read as one strided view per slab; pages whose headers
    differ in size (a per-frame description, as ScanImage writes) one by one. Both give the
    frames' own pixels, crc32c, sums and maxima: summed in uint16 where a slab's max times its
    4 frames fits (the first slab, one pixel at 16383 in every frame: 65532), in uint32 where
    it does not (the second: 16384 x 4 = 65536 would wrap to 0; the third: any uint16)."""
    rng = np.random.default_rng(1)
    frames = np.concatenate([rng.integers(0, 16384, (8, 16, 16), dtype=np.uint16),
                             rng.integers(0, 65535, (2, 16, 16), dtype=np.uint16)])
    frames[0:4, 3, 5] = 16383
    frames[4:8, 3, 5] = 16384
    path = tmp_path / "x_main_001.tif"
    with tifffile.TiffWriter(path) as tif:
        for i, f in enumerate(frames):
            tif.write(f, contiguous=False, photometric="minisblack", metadata=None,
                      description="t=" + "0" * (3 * i if uneven else 3))
    with tifffile.TiffFile(path) as tif:
        offsets = np.array([[page.dataoffsets[0] for page in tif.pages]], np.int64)
    assert (len(set(np.diff(offsets[0]))) > 1) == uneven
    block = raw.Block(0, 0, 0, np.ones(10, bool), (16, 16), [raw.FileRef(str(path), path.stat().st_size, "<u2")],
                      np.zeros(10, np.int64), offsets)
    with block.frames() as frame:
        run = frame.run(0, 0, 4)
        assert (run is None) == uneven
        if run is not None:
            np.testing.assert_array_equal(run, frames[:4])
            del run
    slabs: list[np.ndarray] = []
    summary = block.scan((8, 8), 4, lambda c, k, slab: slabs.append(slab.copy()))
    padded = np.concatenate([frames, np.zeros((2, 16, 16), np.uint16)])
    for k, slab in enumerate(slabs):  # (tile y, tile x, frame, y, x)
        np.testing.assert_array_equal(slab, padded[4 * k: 4 * k + 4].reshape(4, 2, 8, 2, 8).transpose(1, 3, 0, 2, 4))
    assert len(slabs) == 3
    assert summary.crc[0].tolist() == [pixel_crc32c(f) for f in frames]
    np.testing.assert_array_equal(summary.sum[0], frames.sum(0, dtype=np.uint32))
    np.testing.assert_array_equal(summary.max[0], frames.max(0))


def test_a_layout_shards_py_does_not_encode_goes_through_zarr(session: Session, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(raw.blockwrite, "sharded_layout", lambda array: None)
    url = str(tmp_path / "zarr.zarr")
    convert_raw(session.root, session, url)
    ds = xr.open_dataset(url, group="raw/subvolume_01", engine="zarr", chunks=None)
    np.testing.assert_array_equal(ds["green"].values, session.green["raw/subvolume_01"])
    np.testing.assert_array_equal(ds["red"].values, session.red["raw/subvolume_01"])


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_template_and_finished_group_are_the_objects_zarr_writes(session: Session, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The raw group is built in memory and put at once, at the start (template) and after the
    last block (summary images, attrs, written mark): byte for byte what building it through
    zarr in the store gives, the root's attrs kept, an earlier attempt's objects replaced."""
    plan = raw.plan_raw(session.groups)[0]
    names, shape = ("green", "red"), (16, 16)
    fast, slow = tmp_path / "fast.zarr", tmp_path / "slow.zarr"
    for url in (fast, slow):
        store = write.open_store(str(url), None, mode="w")
        write.prepare(store, str(url), overwrite=True, resume=False, attrs={"archive": "ssc-1"})
    (fast / plan.path / "junk").mkdir(parents=True)
    (fast / plan.path / "junk" / "zarr.json").write_text("{}")  # an earlier attempt's leftover
    group = raw.create_template(write.open_store(str(fast), None), plan, shape, names, LAYOUT)
    raw.layout._build_template(write.open_store(str(slow), None), plan, shape, names, LAYOUT)  # through zarr, in place
    assert _files(fast) == _files(slow)
    assert zarr.open_group(str(fast), mode="r").attrs["archive"] == "ssc-1"

    # the finished group: what zarr's create_array, attrs.update and del write in place
    writer = raw.RawWriter([plan], ConversionSpec(archive="ssc-1", raw=True, red=True), LAYOUT,
                           store=write.open_store(str(fast), None), url=str(fast), run=Runner(), done=set())
    writer.groups[0] = group
    asm = writer._assembler(0, shape)
    rng = np.random.default_rng(3)
    asm.sum[:] = rng.integers(0, 10**6, asm.sum.shape)
    asm.max[:] = rng.integers(0, 65535, asm.max.shape)
    asm.count[:] = [9, 10]
    monkeypatch.setattr(writer, "source_records", lambda i: [{"name": "a.tif", "size": 1, "crc32c": 2}])
    writer.warnings[0] = ["a warning"]
    puts: list[list[str]] = []
    real_put = write.put_many
    monkeypatch.setattr(write, "put_many", lambda store, blobs: (puts.append(sorted(blobs)), real_put(store, blobs))[1])
    assert writer._finish_group(0) == plan.path
    head = f"{plan.path}/zarr.json"  # written once, last: never an attr-less group doc in between
    assert puts[-1] == [head] and all(head not in keys for keys in puts[:-1])
    ref = zarr.open_group(str(slow), path=plan.path, mode="r+")
    image = {"chunks": (1, *shape), "dimension_names": ("plane", "y", "x"), "overwrite": True,
             "compressors": [zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]}
    for c, name in enumerate(names):
        ref.create_array(f"{name}_mean", data=asm.mean()[c], **image,
                         attributes={"units": "counts", "description": f"mean of the present {name} frames"})
        ref.create_array(f"{name}_max", data=asm.max[c], **image,
                         attributes={"units": "counts", "description": f"max of the {name} frames"})
    ref.attrs.update(source_files=[{"name": "a.tif", "size": 1, "crc32c": 2}], warnings=["a warning"],
                     frames_present=[9, 10], description="registered imaging frames; raw frame t is the same "
                     "instant as dff frame t of the imaging subvolume (docs/raw.md)")
    ref.attrs[write.WRITTEN] = True
    del ref["block_written"]
    assert _files(fast) == _files(slow)
    assert "block_written" not in zarr.open_group(str(fast), path=plan.path, mode="r").array_keys()


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def _first_tiff(root: Path, vv: int = 2, ppp: int = 3, n: int = 2) -> Path:
    return root / TIFF_DIR.format(vv=vv, ppp=ppp) / TIFF_NAME.format(n=n)


def test_absent_file_is_an_error_naming_it(session: Session, tmp_path: Path) -> None:
    copy = copy_session(session, tmp_path / "src")
    _first_tiff(copy.root).unlink()
    with pytest.raises(SourceFormatError, match=r"fov_02003/fluo_batch_out/.*main_002\.tif.*not in the source") as info:
        convert_raw(copy.root, copy, str(tmp_path / "s.zarr"))
    assert "--allow-missing" in str(info.value)


def test_absent_file_with_allow_missing_is_masked_and_warned(session: Session, tmp_path: Path) -> None:
    copy = copy_session(session, tmp_path / "src")
    _first_tiff(copy.root).unlink()
    spec = ConversionSpec(archive="ssc-1", raw=True, red=True, allow_missing=True, video=False)
    url = str(tmp_path / "s.zarr")
    _, attrs, messages = convert_raw(copy.root, copy, url, spec=spec)
    ds = xr.open_dataset(url, group="raw/subvolume_02", engine="zarr", chunks=None)
    assert not ds["frame_present"].values[1, 5:].any() and ds["frame_present"].values[1, :5].all()
    assert (ds["green"].values[1, 5:] == 0).all()
    np.testing.assert_array_equal(ds["green"].values[1, :5], session.green["raw/subvolume_02"][1, :5])
    assert any("main_002.tif" in w and "masked" in w for w in attrs["provenance"]["warnings"])
    assert messages == attrs["provenance"]["warnings"]


def test_frame_count_disagreeing_with_the_index_names_file_and_frame(session: Session, tmp_path: Path) -> None:
    copy = copy_session(session, tmp_path / "src")
    short = np.ones((3, 16, 16), np.uint16)
    _first_tiff(copy.root).write_bytes(interleaved_tiff(short, short))
    with pytest.raises(InconsistentSourceError, match=r"main_002\.tif.*holds 3 frames.*frame 4"):
        convert_raw(copy.root, copy, str(tmp_path / "s.zarr"))


def test_truncated_tiff_in_a_conversion_names_the_file(session: Session, tmp_path: Path) -> None:
    copy = copy_session(session, tmp_path / "src")
    path = _first_tiff(copy.root)
    path.write_bytes(path.read_bytes()[:-700])
    with pytest.raises(SourceFormatError, match=r"main_002\.tif.*frame \d"):
        convert_raw(copy.root, copy, str(tmp_path / "s.zarr"))


def test_corrupt_video_in_a_conversion_names_file_and_frame(session: Session, tmp_path: Path) -> None:
    copy = copy_session(session, tmp_path / "src")
    path = copy.root / copy.videos[2][0]
    data = bytearray(path.read_bytes())
    data[len(data) // 3: len(data) // 3 + 200] = bytes(200)
    path.write_bytes(bytes(data))
    with pytest.raises(SourceFormatError, match=r"trial_002\.mp4.*frame \d+"):
        convert_raw(copy.root, copy, str(tmp_path / "s.zarr"))


# --------------------------------------------------------------------------------------------
# streaming, resume, workers
# --------------------------------------------------------------------------------------------


def test_tar_gz_source_is_streamed_without_extraction(session: Session, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tarball = tmp_path / "an197522_2013_03_08.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(session.root, arcname=session.root.name)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr("tempfile.tempdir", str(scratch))
    before = {p for p in tmp_path.rglob("*")}
    url = str(tmp_path / "t.zarr")
    _, attrs, _ = convert_raw(tarball, session, url)
    created = {p for p in tmp_path.rglob("*")} - before
    assert all(Path(url) in p.parents or p == Path(url) for p in created), "only the store is written"
    assert not any(scratch.iterdir())
    assert attrs["provenance"]["sources"][-1]["name"] == tarball.name
    ds = xr.open_dataset(url, group="raw/subvolume_01", engine="zarr", chunks=None)
    np.testing.assert_array_equal(ds["green"].values, session.green["raw/subvolume_01"])
    video = xr.open_dataset(url, group="video", engine="zarr", chunks=None)
    assert video["trial"].values.tolist() == [1, 2]
    assert_source_records(url, session, session.root.parent)  # pages hashed from the member's bytes in memory


def test_resume_after_an_interrupted_raw_conversion(session: Session, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    url = str(tmp_path / "r.zarr")
    calls: list[tuple] = []
    original = raw.write_block

    def failing(url_: str, path: str, names: tuple, block: raw.Block, *rest: object) -> tuple:
        if len(calls) == 4:
            raise OSError("connection lost")
        calls.append((path, block.plane, block.index))
        return original(url_, path, names, block, *rest)

    monkeypatch.setattr(raw.writer, "write_block", failing)
    spec = ConversionSpec(archive="ssc-1", raw=True, red=True, video=False)
    with pytest.raises(OSError, match="connection lost"):
        convert_raw(session.root, session, url, spec=spec)
    group = zarr.open_group(url, path="raw/subvolume_01", mode="r")
    assert "block_written" in group.array_keys() and group["block_written"][:].sum() >= 1
    first = list(calls)
    calls.clear()
    monkeypatch.setattr(raw.writer, "write_block", lambda *a: (calls.append(a[1:3]), original(*a))[1])
    convert_raw(session.root, session, url, spec=spec, resume=True)
    for path in session.green:
        ds = xr.open_dataset(url, group=path, engine="zarr", chunks=None)
        np.testing.assert_array_equal(ds["green"].values, session.green[path])
        np.testing.assert_array_equal(ds["red"].values, session.red[path])
    assert len(calls) + len(first) == 12  # 2 subvolumes x 2 planes x ceil(10 / 4) blocks, none twice
    assert_source_records(url, session)  # the pages of blocks written before: hashed again on resume


def test_resume_refuses_a_changed_source(session: Session, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = copy_session(session, tmp_path / "src")
    url = str(tmp_path / "r.zarr")
    spec = ConversionSpec(archive="ssc-1", raw=True, red=True, video=False)
    original, count = raw.write_block, []

    def failing(*args: object) -> tuple:
        if len(count) == 3:
            raise OSError("killed")
        count.append(1)
        return original(*args)

    monkeypatch.setattr(raw.writer, "write_block", failing)
    with pytest.raises(OSError):
        convert_raw(copy.root, copy, url, spec=spec)
    monkeypatch.setattr(raw.writer, "write_block", original)
    g = np.full((5, 16, 16), 7, np.uint16)
    (copy.root / TIFF_DIR.format(vv=1, ppp=2) / TIFF_NAME.format(n=1)).write_bytes(interleaved_tiff(g, g))
    with pytest.raises(StoreExistsError, match="source changed"):
        convert_raw(copy.root, copy, url, spec=spec, resume=True)


@pytest.mark.timeout(120)
def test_two_dask_workers_write_the_same_store(session: Session, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    url = str(tmp_path / "w.zarr")
    convert_raw(session.root, session, url, workers=2)
    for path in session.green:
        ds = xr.open_dataset(url, group=path, engine="zarr", chunks=None)
        np.testing.assert_array_equal(ds["green"].values, session.green[path])
    video = xr.open_dataset(url, group="video", engine="zarr", chunks=None)
    assert int(video["n_frames"].sum()) == 22
    assert_source_records(url, session)  # page hashes computed in the workers


# --------------------------------------------------------------------------------------------
# end to end: synthetic archive (sscxr.testing.archives) -> sscxr_conversion.convert -> verify
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    from sscxr.testing.archives import write_ssc1_session

    root = tmp_path_factory.mktemp("archive") / "an197522_2013_03_08"
    return write_ssc1_session(root, preset="tiny", seed=3, raw=True, video=True, image_size=32, frames_per_tiff=150,
                              n_video_trials=2, whisker_s=0.5, tar="tar.gz")


def expected_stack(truth, sv, channel: int) -> np.ndarray:  # noqa: ANN001
    """(plane, time, y, x) from the writer's truth: its pages placed by sourceFileFrameIdx."""
    size = truth.params.image_size
    out = np.zeros((len(sv.planes), len(sv.time_ms), size, size), np.uint16)
    for p, (names, idx) in enumerate(zip(sv.source_file_list, sv.source_file_frame_idx, strict=True)):
        for t in np.flatnonzero(np.isfinite(idx[0])):
            name = names[int(idx[0, t]) - 1]
            out[p, t] = truth.tiff_pages(name[name.index("imaging_data/"):])[2 * (int(idx[1, t]) - 1) + channel]
    return out


@pytest.mark.parametrize("source", ["folder", "tar.gz"])
def test_convert_raw_end_to_end_matches_the_archive(archive, source: str, tmp_path: Path) -> None:  # noqa: ANN001
    from sscxr.video import video_frames
    from sscxr_conversion import convert, verify

    src = archive.directory if source == "folder" else archive.tar_path
    url = str(tmp_path / "an197522_2013_03_08.zarr")
    result = convert(src, url, spec=ConversionSpec(raw=True, red=True), progress=False)
    assert {f"raw/subvolume_{sv.vv:02d}" for sv in archive.subvolumes} | {"video"} <= set(result.groups)
    tree = xr.open_datatree(url, engine="zarr", chunks=None)
    for sv in archive.subvolumes:
        ds = tree[f"raw/subvolume_{sv.vv:02d}"].to_dataset()
        np.testing.assert_array_equal(ds["green"].values, expected_stack(archive, sv, 0))
        np.testing.assert_array_equal(ds["red"].values, expected_stack(archive, sv, 1))
        np.testing.assert_array_equal(ds["frame_present"].values, np.isfinite(np.array(sv.source_file_frame_idx)[:, 0]))
        np.testing.assert_array_equal(ds["time"].values, tree[f"imaging/subvolume_{sv.vv:02d}"]["time"].values)
    video = tree["video"].to_dataset()
    assert video["trial"].values.tolist() == sorted(archive.videos)
    for trial, (name, time_ms) in archive.videos.items():
        frames = video_frames(tree, trial)
        np.testing.assert_allclose(frames["time"].values, np.asarray(time_ms) / 1000)
        with av.open(str(archive.directory / name)) as mp4:
            first = luma(next(mp4.decode(video=0)))
        np.testing.assert_array_equal(frames.isel(time=0).values, first)
    if source == "tar.gz":
        assert tree.attrs["provenance"]["sources"][-1]["name"] == archive.tar_path.name
    assert verify(src, url) == []


def test_convert_raw_skips_subvolumes_without_tiffs_and_warns(tmp_path: Path) -> None:
    from sscxr.testing.archives import write_ssc1_session
    from sscxr_conversion import convert

    truth = write_ssc1_session(tmp_path / "an197522_2013_03_08", preset="tiny", seed=4, raw=True, raw_subvolumes=(1,),
                               image_size=16, frames_per_tiff=200)
    url = str(tmp_path / "s.zarr")
    result = convert(truth.directory, url, spec=ConversionSpec(raw=True, video=False), progress=False)
    assert "raw/subvolume_01" in result.groups and "raw/subvolume_02" not in result.groups
    assert any("raw/subvolume_02: none of its" in w for w in result.warnings)
    with pytest.raises(SourceFormatError, match="none of the .* listed TIFF files"):
        convert(_only_mat(truth, tmp_path), str(tmp_path / "t.zarr"), spec=ConversionSpec(raw=True), progress=False)


def _only_mat(truth, tmp_path: Path) -> Path:  # noqa: ANN001
    folder = tmp_path / "mat_only"
    folder.mkdir()
    shutil.copy(truth.mat_path, folder / truth.mat_path.name)
    return folder / truth.mat_path.name


def test_blocks_refer_to_files_only_where_the_workers_can_read_them() -> None:
    class Client:
        def __init__(self, *addresses: str):
            self.addresses = addresses

        def scheduler_info(self) -> dict:
            return {"workers": {a: {} for a in self.addresses}}

    class Run:
        def __init__(self, client: object = None):
            self.client = client

    assert raw.step._shares_files(Run())  # local threads
    assert raw.step._shares_files(Run(Client("tcp://127.0.0.1:4001", "inproc://10.0.0.1/1/2")))
    assert not raw.step._shares_files(Run(Client("tcp://127.0.0.1:4001", "tcp://node-17.cluster.example:4002")))
    assert not raw.step._shares_files(Run(Client()))


def test_only_blocks_holding_pixels_are_scattered_to_workers() -> None:
    """A block that refers to its TIFFs is a few kB of offsets and travels with its task; one
    holding pixels (workers on other hosts), and big bytes, are scattered first."""
    by_reference = raw.Block(0, 0, 0, np.ones(4, bool), (8, 8), [raw.FileRef("x.tif", 1, "<u2")],
                             np.zeros(4, np.int64), np.zeros((1, 4), np.int64))
    holding = raw.Block(0, 0, 0, np.ones(4, bool), (8, 8), [], np.full(4, -1, np.int64), np.zeros((1, 4), np.int64),
                        data=np.zeros((1, 4, 8, 8), np.uint16))
    assert not raw.is_big(by_reference) and raw.is_big(holding)
    assert raw.is_big(bytes(2 << 20)) and not raw.is_big(b"small")


class _Concurrency:
    """Tasks that count how many of them run at once (``peak``)."""

    def __init__(self) -> None:
        self.lock, self.running, self.peak = threading.Lock(), 0, 0

    def square(self, i: int) -> int:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        time.sleep(0.05)
        with self.lock:
            self.running -= 1
        return i * i


def test_runner_submit_bounds_the_tasks_in_flight_and_hands_results_to_the_driver() -> None:
    """``Runner.submit`` (the raw pass's stream -> tasks): never more than ``max_pending`` tasks
    unfinished, every result to its ``then`` in the submitting thread, all of them by ``drain``."""
    tasks = _Concurrency()
    results: dict[int, int] = {}
    threads: set[int] = set()

    def then(i: int, value: int) -> None:
        threads.add(threading.get_ident())
        results[i] = value

    with ThreadPoolExecutor(max_workers=4) as pool:
        run = Runner(pool=pool, max_pending=2)
        for i in range(8):
            run.submit(tasks.square, i, then=partial(then, i))
        run.drain()
    assert results == {i: i * i for i in range(8)}
    assert tasks.peak <= 2 and threads == {threading.get_ident()}
    inline: list[int] = []
    Runner().submit(tasks.square, 3, then=inline.append)  # no pool, no client: at once, in this thread
    assert inline == [9]


def test_runner_raises_a_failed_task_and_streams_its_input() -> None:
    """A task's exception reaches the driver (from ``submit`` or ``drain``); ``run`` takes its
    tasks from a stream, never more than ``max_pending`` of them unfinished."""
    def fail(x: int) -> int:
        raise ValueError(f"bad {x}")

    tasks = _Concurrency()
    with ThreadPoolExecutor(max_workers=4) as pool:
        run = Runner(pool=pool, max_pending=3)
        run.submit(fail, 1)
        with pytest.raises(ValueError, match="bad 1"):
            run.drain()
        stream = ((i,) for i in range(10))
        assert sorted(run.run(tasks.square, stream)) == [i * i for i in range(10)]
        assert tasks.peak <= 3
        with pytest.raises(ValueError, match="bad 2"):
            list(run.run(fail, [(2,)]))


@pytest.mark.timeout(120)
def test_runner_scatters_the_arguments_it_is_told_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """On dask, ``scatter`` picks the arguments sent to a worker ahead of the task (a block
    holding pixels): the others go inside the task; the results are the same."""
    pytest.importorskip("distributed")
    with runner("memory://scatter", None, workers=1) as run:
        scattered: list[object] = []
        real = run.client.scatter
        monkeypatch.setattr(run.client, "scatter", lambda data, **kw: (scattered.append(data), real(data, **kw))[1])
        results: list[int] = []
        big = bytes(2 << 20)
        run.submit(len, big, then=results.append, scatter=raw.is_big)
        run.submit(len, b"small", then=results.append, scatter=raw.is_big)
        run.drain()
        assert sorted(results) == [5, 2 << 20] and scattered == [big]
        assert sorted(run.run(len, [(big,), (b"xy",)], scatter=raw.is_big)) == [2, 2 << 20]
        assert scattered == [big, big]


def test_local_cluster_workers_share_the_cores() -> None:
    """``--workers N`` splits this machine's cores among the N workers (one worker: every core;
    never more threads than cores), so raw block tasks are not left one core per process."""
    from dask.system import CPU_COUNT

    with runner("memory://cores", None, workers=1) as run:
        assert list(run.client.nthreads().values()) == [CPU_COUNT]
    with runner("memory://cores", None, workers=CPU_COUNT + 1) as run:
        assert list(run.client.nthreads().values()) == [1] * (CPU_COUNT + 1)


@pytest.mark.timeout(120)
def test_local_cluster_workers_keep_glibcs_adaptive_malloc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LocalCluster of ``--workers N`` starts its workers without dask's
    ``MALLOC_TRIM_THRESHOLD_``, which made every Blosc scratch buffer a fresh mmap in the tasks."""
    import os

    import dask

    pytest.importorskip("distributed")  # its config defaults load with it
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)  # a default cluster earlier in this process sets it
    assert dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_") is not None  # dask's default
    with runner(str(tmp_path / "w.zarr"), None, workers=1) as run:
        assert set(run.client.run(os.environ.get, "MALLOC_TRIM_THRESHOLD_").values()) == {None}
    assert dask.config.get("distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_") is not None  # left as it was


def _parent_command(pid: int) -> str:
    """The command line of process ``pid``'s parent (Linux)."""
    import os

    stat = Path(f"/proc/{pid}/stat").read_text()
    parent = int(stat.rsplit(")", 1)[1].split()[1])
    return Path(f"/proc/{parent}/cmdline").read_bytes().replace(b"\0", b" ").decode() if parent != os.getpid() else "this process"


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_local_cluster_workers_are_forked_from_a_server_that_imported_the_tasks_modules(tmp_path: Path) -> None:
    """On Linux, ``--workers N`` forks its workers from a forkserver that imported the write
    tasks' modules (~0.2 s less per CLI run, far less for a second cluster in one process);
    without one, they are spawned by this process, as dask does by default."""
    import multiprocessing
    import os
    import sys

    import dask

    from sscxr_conversion import tasks

    pytest.importorskip("distributed")
    if not sys.platform.startswith("linux"):
        pytest.skip("workers are forked from a forkserver on Linux only")
    method = dask.config.get(tasks.START_METHOD)
    with runner(str(tmp_path / "w.zarr"), None, workers=1) as run:
        pids = list(run.client.run(os.getpid).values())
        command = _parent_command(pids[0])
        assert "multiprocessing.forkserver" in command and "sscxr_conversion.raw" in command, command
    assert dask.config.get(tasks.START_METHOD) == method  # left as it was
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
        with runner(str(tmp_path / "s.zarr"), None, workers=1) as run:
            assert _parent_command(list(run.client.run(os.getpid).values())[0]) == "this process"


def _run_python(script: str, tmp_path: Path) -> str:
    """Run ``script`` in a new Python process (no forkserver yet, unlike this one); its stdout."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_TRIM_THRESHOLD_", "PYTHONHASHSEED")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=150)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.timeout(180)
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_prestarted_forkserver_gives_workers_dasks_environment(tmp_path: Path) -> None:
    """``prestart_workers`` starts the workers' forkserver ahead of the cluster, with the
    environment a dask nanny gives a new worker (``PYTHONHASHSEED`` fixed, so every worker hashes
    strings alike; the BLAS thread counts; no ``MALLOC_TRIM_THRESHOLD_``), leaving this process's
    ``os.environ`` as it was; the cluster started after it forks its workers from that server."""
    import json
    import subprocess
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("workers are forked from a forkserver on Linux only")
    url = str(tmp_path / "w.zarr")
    out = _run_python(f"""
import json, os, time
from multiprocessing import forkserver
from pathlib import Path
import dask
from distributed import Nanny
from sscxr_conversion import tasks

before = dict(os.environ)
assert tasks.prestart_workers({url!r}, workers=2)
assert dict(os.environ) == before
server = forkserver._forkserver._forkserver_pid
deadline = time.monotonic() + 60  # its environ is the new one once it has exec'd (then cmdline names it)
cmdline = Path(f"/proc/{{server}}/cmdline")
while b"multiprocessing.forkserver" not in cmdline.read_bytes() and time.monotonic() < deadline:
    time.sleep(0.01)
environ = dict(e.split("=", 1) for e in Path(f"/proc/{{server}}/environ").read_text().split("\\0") if "=" in e)
with dask.config.set({{tasks.TRIM: None}}):
    nanny, ours = Nanny("tcp://127.0.0.1:1", nthreads=1).pre_spawn_env, tasks._pre_spawn_env()
with tasks.runner({url!r}, None, workers=2) as run:
    parents = [int(Path(f"/proc/{{pid}}/stat").read_text().rsplit(")", 1)[1].split()[1])
               for pid in run.client.run(os.getpid).values()]
    hashes = sorted(run.client.run(hash, "sscxr").values())
print(json.dumps({{"server": server, "parents": parents, "environ": environ, "ours": ours,
                  "nanny": nanny, "hashes": hashes}}))
""", tmp_path)
    got = json.loads(out.strip().splitlines()[-1])
    assert got["parents"] == [got["server"]] * 2
    assert got["ours"] == got["nanny"]  # what dask's own nanny computes, with runner's settings
    env = got["environ"]
    assert env["PYTHONHASHSEED"] == "6640" and env["OMP_NUM_THREADS"] == "1" and "MALLOC_TRIM_THRESHOLD_" not in env
    seeded = subprocess.run([sys.executable, "-c", "print(hash('sscxr'))"], env={"PYTHONHASHSEED": "6640"},
                            capture_output=True, text=True, check=True).stdout.strip()
    assert got["hashes"] == [int(seeded)] * 2


@pytest.mark.timeout(180)
def test_convert_starts_the_workers_forkserver_before_it_reads_the_source(tmp_path: Path) -> None:
    """``convert(..., workers=N)`` starts the forkserver first, so its imports overlap the
    reading of the session ``.mat``; without ``workers`` it starts none."""
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("workers are forked from a forkserver on Linux only")
    (tmp_path / "an197522_2013_03_08_session.mat").write_bytes(b"")
    out = _run_python("""
from multiprocessing import forkserver
from sscxr_conversion import convert, pipeline

def read_plan(*args, **kwargs):
    print("running" if forkserver._forkserver._forkserver_pid is not None else "none")
    raise KeyboardInterrupt

pipeline.read_plan = read_plan
for workers in (None, 2):
    try:
        convert("an197522_2013_03_08_session.mat", f"out{workers}.zarr", workers=workers, progress=False)
    except KeyboardInterrupt:
        pass
""", tmp_path)
    assert out.split() == ["none", "running"]


def test_a_referenced_tiff_that_changed_or_vanished_is_a_clear_error(tmp_path: Path) -> None:
    """A task reading frames by reference checks the file is the one the driver indexed."""
    path = tmp_path / "x_main_001.tif"
    path.write_bytes(b"\0" * 1024)

    def block(size: int) -> raw.Block:
        return raw.Block(0, 0, 0, np.ones(1, bool), (16, 16), [raw.FileRef(str(path), size, "<u2")],
                         np.zeros(1, np.int64), np.zeros((1, 1), np.int64))

    np.testing.assert_array_equal(block(1024).pixels(), np.zeros((1, 1, 16, 16), np.uint16))
    with pytest.raises(InconsistentSourceError, match="x_main_001.tif.*changed during the conversion"):
        block(2048).summarize()
    path.unlink()
    with pytest.raises(SourceFormatError, match="x_main_001.tif.*cannot be read by the task"):
        block(1024).summarize()
