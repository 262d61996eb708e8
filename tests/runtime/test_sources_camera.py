"""Camera sources on real files written here: videos, truncated videos, image folders and globs."""

from __future__ import annotations

import os
import threading
import time

import cv2
import numpy as np
import pytest

from fusionrt.data import scene_digit

from fusionrt.errors import SourceError
from fusionrt.frame import Modality
from fusionrt.runtime.sources import Replay, SourceOptions, open_source
from fusionrt.runtime.sources.camera import csi_pipeline, gstreamer_available, require_gstreamer

DETERMINISTIC = SourceOptions(replay=Replay.DETERMINISTIC)
HEIGHT, WIDTH = 48, 64


def picture(i: int) -> np.ndarray:
    """Frame i: a flat grey level 10*i with a white square whose position also encodes i."""
    image = np.full((HEIGHT, WIDTH, 3), 10 * i % 250, np.uint8)
    x = 2 * i % (WIDTH - 8)
    image[4:12, x : x + 8] = 255
    return image


def write_video(path, n: int, fps: float, fourcc: str) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened(), f"this OpenCV cannot write {fourcc} to {path.suffix}"
    for i in range(n):
        writer.write(picture(i))
    writer.release()


def collect(source, limit: int | None = None, timeout_s: float = 20.0):
    """Frames of `source` (at most `limit`), iterated on a thread so a hang fails instead of blocking."""
    frames, errors = [], []

    def run():
        try:
            for frame in source.frames():
                frames.append(frame)
                if limit is not None and len(frames) >= limit:
                    source.close()
        except Exception as e:  # handed to the test thread
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"{source.uri} hung for {timeout_s} s"
    if errors:
        raise errors[0]
    return frames


@pytest.mark.parametrize("name,fourcc", [("clip.mp4", "mp4v"), ("clip.avi", "MJPG")])
def test_video_file_reads_every_frame_in_order(tmp_path, name, fourcc):
    path = tmp_path / name
    write_video(path, 12, 30.0, fourcc)
    source = open_source(str(path), "image", options=DETERMINISTIC)
    assert source.modality is Modality.IMAGE and source.rate_hz == pytest.approx(30.0)
    frames = collect(source)
    assert [f.seq for f in frames] == list(range(12))
    assert all(f.data.shape == (HEIGHT, WIDTH, 3) and f.data.dtype == np.uint8 for f in frames)
    assert all(f.label is None for f in frames)
    assert [f.t_ns for f in frames] == [round(i * 1e9 / 30) for i in range(12)]
    levels = [float(np.median(f.data[20:, :])) for f in frames]  # below the square: the grey level
    assert levels == pytest.approx([10 * i for i in range(12)], abs=4)
    assert source.stats["frames"] == 12


def test_deterministic_replay_is_identical_twice(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 10, 25.0, "mp4v")
    runs = [collect(open_source(str(path), "image", options=DETERMINISTIC)) for _ in range(2)]
    assert [(f.seq, f.t_ns) for f in runs[0]] == [(f.seq, f.t_ns) for f in runs[1]]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(*runs, strict=True))


def test_realtime_replay_takes_the_clip_duration(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, 10, 20.0, "MJPG")
    source = open_source(str(path), "image")
    start = time.monotonic_ns()
    frames = collect(source)
    elapsed_s = (time.monotonic_ns() - start) / 1e9
    assert len(frames) == 10
    assert 0.9 * 9 / 20 <= elapsed_s < 9 / 20 + 0.5  # the last frame is due 9/20 s after the first
    gaps = np.diff([f.t_ns for f in frames]) / 1e9
    assert np.all(gaps > 0)
    assert np.median(gaps) == pytest.approx(0.05, abs=0.01)
    assert frames[0].t_ns >= start


def test_fps_option_sets_the_replay_rate(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 4, 30.0, "mp4v")
    frames = collect(open_source(str(path), "image", options=SourceOptions(fps=10, replay="deterministic")))
    assert [f.t_ns for f in frames] == [0, 100_000_000, 200_000_000, 300_000_000]


def test_loop_restarts_the_file_with_continuing_seq_and_time(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 5, 10.0, "mp4v")
    source = open_source(str(path), "image", options=SourceOptions(loop=True, replay=Replay.DETERMINISTIC))
    frames = collect(source, limit=13)
    assert [f.seq for f in frames] == list(range(13))
    assert np.all(np.diff([f.t_ns for f in frames]) == 100_000_000)
    assert np.array_equal(frames[5].data, frames[0].data) and np.array_equal(frames[12].data, frames[2].data)
    assert source.stats["loops"] == 2


def test_truncated_avi_raises_instead_of_hanging(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, 40, 30.0, "MJPG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    source = open_source(str(path), "image", options=DETERMINISTIC)
    with pytest.raises(SourceError, match="clip.avi.*truncated"):
        collect(source)
    assert 0 < source.stats["frames"] < 40


def test_truncated_mp4_fails_at_open_naming_the_file(tmp_path):
    path = tmp_path / "clip.mp4"
    write_video(path, 40, 30.0, "mp4v")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the moov index is at the end: nothing decodable
    with pytest.raises(SourceError, match="clip.mp4"):
        open_source(str(path), "image")


def test_missing_and_undecodable_video_files(tmp_path):
    with pytest.raises(SourceError, match="nothere.mp4 does not exist"):
        open_source(str(tmp_path / "nothere.mp4"), "image")
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"not a video at all" * 20)
    with pytest.raises(SourceError, match="junk.mkv"):
        open_source(str(junk), "image")


def test_image_directory_in_natural_order_skipping_other_files(tmp_path):
    for i in (1, 2, 10):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), picture(i))
    (tmp_path / "notes.txt").write_text("not an image")
    gray = np.full((HEIGHT, WIDTH), 200, np.uint8)
    cv2.imwrite(str(tmp_path / "frame11.png"), gray)
    source = open_source(str(tmp_path), "image", options=SourceOptions(fps=5, replay="deterministic"))
    frames = collect(source)
    assert np.array_equal(frames[0].data, picture(1))
    assert np.array_equal(frames[1].data, picture(2))
    assert np.array_equal(frames[2].data, picture(10))
    assert frames[3].data.shape == (HEIGHT, WIDTH, 3) and np.all(frames[3].data == 200)
    assert [f.t_ns for f in frames] == [0, 200_000_000, 400_000_000, 600_000_000]


def test_glob_and_single_image(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"a{i}.jpg"), picture(i))
        cv2.imwrite(str(tmp_path / f"b{i}.png"), picture(i + 3))
    frames = collect(open_source(str(tmp_path / "a*.jpg"), "image", options=DETERMINISTIC))
    assert len(frames) == 3
    assert [float(np.median(f.data[20:])) for f in frames] == pytest.approx([0, 10, 20], abs=3)
    looped = open_source(str(tmp_path / "b1.png"), "image", options=SourceOptions(loop=True, replay="deterministic"))
    frames = collect(looped, limit=3)
    assert all(np.array_equal(f.data, picture(4)) for f in frames)


def test_image_sequence_errors(tmp_path):
    with pytest.raises(SourceError, match="image file .*nothere.jpg does not exist"):
        open_source(str(tmp_path / "nothere.jpg"), "image")
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path), "image")
    with pytest.raises(SourceError, match="no images"):
        open_source(str(tmp_path / "*.png"), "image")
    cv2.imwrite(str(tmp_path / "0.png"), picture(0))
    (tmp_path / "1.png").write_bytes(b"broken png")
    source = open_source(str(tmp_path), "image", options=DETERMINISTIC)
    with pytest.raises(SourceError, match="1.png cannot be decoded"):
        collect(source)
    assert source.stats["frames"] == 1


def test_missing_camera_index_and_device_name_themselves():
    devices = sorted(p for p in os.listdir("/dev") if p.startswith("video")) if os.path.isdir("/dev") else []
    if {"video7", "video9"} & set(devices):
        pytest.skip("this machine has a /dev/video7 or /dev/video9")
    with pytest.raises(SourceError, match="camera index 7 cannot be opened; cameras found"):
        open_source("7", "image")
    for uri in ("/dev/video9", "v4l2:///dev/video9"):
        with pytest.raises(SourceError, match="/dev/video9 does not exist; cameras found"):
            open_source(uri, "image")


def test_live_cameras_refuse_deterministic_replay():
    with pytest.raises(SourceError, match="live source"):
        open_source("0", "image", options=DETERMINISTIC)
    with pytest.raises(SourceError, match="live source"):
        open_source("rtsp://127.0.0.1:1/stream", "image", options=DETERMINISTIC)


def test_unreachable_stream_fails_fast_naming_it():
    start = time.monotonic()
    with pytest.raises(SourceError, match="rtsp://127.0.0.1:1/stream cannot be opened"):
        open_source("rtsp://127.0.0.1:1/stream", "image")
    assert time.monotonic() - start < 10


def test_gstreamer_detection_reads_the_build_information():
    assert gstreamer_available("  Video I/O:\n    GStreamer:                   YES (1.20.3)\n")
    assert not gstreamer_available("  Video I/O:\n    GStreamer:                   NO\n")
    assert not gstreamer_available("no such line")
    require_gstreamer("csi://0", "    GStreamer:   YES (1.20.3)")  # no error when present


def test_csi_pipeline_string():
    pipeline = csi_pipeline(1, width=1920, height=1080, fps=30)
    assert pipeline.startswith("nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=1920, height=1080,")
    assert "framerate=30/1" in pipeline and "nvvidconv" in pipeline
    assert pipeline.endswith("format=BGR ! appsink drop=true max-buffers=1")
    assert "framerate=2997/100" in csi_pipeline(0, width=640, height=480, fps=29.97)


@pytest.mark.skipif(gstreamer_available(), reason="this OpenCV has GStreamer; the missing-GStreamer error cannot occur")
@pytest.mark.parametrize("uri", ["csi://0", "gst:videotestsrc ! videoconvert ! appsink"])
def test_gstreamer_uris_explain_how_to_get_gstreamer(uri):
    with pytest.raises(SourceError, match="needs OpenCV built with GStreamer.*GStreamer: NO.*JetPack"):
        open_source(uri, "image")


def test_test_digits_camera_is_labelled_and_deterministic():
    options = SourceOptions(replay=Replay.DETERMINISTIC, duration_s=2.0, seed=3)
    runs = [collect(open_source("test://digits", "image", options=options)) for _ in range(2)]
    frames = runs[0]
    assert len(frames) == 60
    assert all(f.data.shape == (64, 64, 3) and f.data.dtype == np.uint8 for f in frames)
    labels = [f.label for f in frames]
    assert all(0 <= label <= 9 for label in labels)
    assert all(len(set(labels[i : i + 15])) == 1 for i in range(0, 60, 15))  # a digit holds 0.5 s
    assert labels == [scene_digit(i / 30, 3) for i in range(60)]  # the scene's digit at each frame time
    assert [(f.t_ns, f.label) for f in frames] == [(f.t_ns, f.label) for f in runs[1]]
    assert all(np.array_equal(a.data, b.data) for a, b in zip(*runs, strict=True))
    other_seed = SourceOptions(replay="deterministic", duration_s=2.0, seed=4)
    other = collect(open_source("test://digits", "image", options=other_seed))
    assert not all(np.array_equal(a.data, b.data) for a, b in zip(frames, other, strict=True))


def test_test_digits_camera_size_and_realtime_pace():
    options = SourceOptions(width=96, height=48, fps=20, duration_s=0.5)
    start = time.monotonic()
    frames = collect(open_source("test://digits", "image", options=options))
    assert len(frames) == 10 and frames[0].data.shape == (48, 96, 3)
    assert 0.9 * 9 / 20 <= time.monotonic() - start < 9 / 20 + 0.5


def test_close_from_another_thread_ends_an_endless_source():
    source = open_source("test://digits", "image")
    threading.Timer(0.3, source.close).start()
    frames = collect(source, timeout_s=5)
    assert 3 <= len(frames) <= 20
    with pytest.raises(SourceError, match="once"):
        source.frames()


def test_csi_raw_caps_copy_nv12_out_unconverted():
    raw = csi_pipeline(0, width=1920, height=1080, fps=30, raw=True)
    assert "nvvidconv ! video/x-raw, format=NV12 ! appsink" in raw and "videoconvert" not in raw
    assert "format=BGR !" in csi_pipeline(0, width=1920, height=1080, fps=30)


def test_raw_capture_buffers_are_shaped_for_the_kernel_and_short_ones_refused():
    from fusionrt.runtime.sources.camera import raw_frame

    flat = np.arange(48 * 64 * 2, dtype=np.uint8).reshape(1, -1)  # OpenCV hands raw V4L2 frames as 1xN
    assert raw_frame(flat, "yuyv", 48, 64).shape == (48, 64, 2)
    assert raw_frame(np.zeros((1, 48 * 64 * 3 // 2), np.uint8), "nv12", 48, 64).shape == (72, 64)
    with pytest.raises(SourceError, match="needs 6144 bytes"):
        raw_frame(flat[:, :100], "yuyv", 48, 64)
