"""Raw camera frames (YUYV, NV12) through the whole pipeline: admitted by their pixel format, converted
once at model size by the image stage, answered like the same picture in BGR, and drawn in BGR by the
video sink. Real ONNX bundle, real threads-free deterministic replay, real mp4 written and read back."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from native_scenes import encode, scene

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runtime"))
from runtime_models import write_bundle  # noqa: E402

from fusionrt.frame import Frame, Modality  # noqa: E402
from fusionrt.runtime import Pipeline, Replay, SourceOptions, VideoSink  # noqa: E402

HEIGHT, WIDTH = 96, 128


class RawCamera:
    """Frames of one scene sequence in a given pixel format, as a raw V4L2/CSI capture would tag them."""

    modality = Modality.IMAGE

    def __init__(self, pictures: list[np.ndarray], fmt: str) -> None:
        self.pictures, self.fmt = pictures, fmt
        self.uri = f"raw://{fmt}"
        self.options = SourceOptions(replay=Replay.DETERMINISTIC)
        self.rate_hz = 30.0

    def frames(self):
        for seq, bgr in enumerate(self.pictures):
            data = bgr if self.fmt == "bgr" else encode(bgr, self.fmt)
            yield Frame(Modality.IMAGE, seq * 33_333_333, seq, data, pixel_format=self.fmt)

    def close(self) -> None:
        pass


def run(bundle_dir: Path, fmt: str, pictures, video: Path | None = None):
    results = []
    sinks = [VideoSink(video, fps=30)] if video else []
    pipeline = Pipeline.from_bundle(bundle_dir, {"image": RawCamera(pictures, fmt)}, sinks=sinks)
    pipeline.run(on_result=results.append)
    return results


@pytest.mark.parametrize("fmt", ["yuyv", "nv12", "uyvy", "i420"])
def test_raw_frames_answer_like_bgr_and_the_overlay_is_bgr(tmp_path, fmt):
    bundle_dir = write_bundle(tmp_path / "bundle", modalities=("image",))
    pictures = [scene(HEIGHT, WIDTH, seed=k) for k in range(5)]
    expected = run(bundle_dir, "bgr", pictures)
    video = tmp_path / f"{fmt}.mp4"
    got = run(bundle_dir, fmt, pictures, video)
    assert len(got) == len(expected) == 5
    for a, b in zip(got, expected):
        assert a.image_format == fmt and b.image_format == "bgr"
        # the YUV round trip moves pixels by a level or two; the answer barely moves
        np.testing.assert_allclose(a.outputs, b.outputs, atol=0.05)
        assert a.top_label == b.top_label
    capture = cv2.VideoCapture(str(video))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape == (HEIGHT, WIDTH, 3)  # drawn on the BGR picture at source size


def test_a_raw_frame_of_the_wrong_size_is_a_counted_bad_input(tmp_path):
    bundle_dir = write_bundle(tmp_path / "bundle", modalities=("image",))
    camera = RawCamera([scene(HEIGHT, WIDTH)], "nv12")
    camera.frames = lambda: iter([Frame(Modality.IMAGE, 0, 0, np.zeros((HEIGHT, WIDTH, 3), np.uint8),
                                        pixel_format="nv12")])
    pipeline = Pipeline.from_bundle(bundle_dir, {"image": camera})
    summary = pipeline.run()
    assert summary.results == 0
    assert summary.metrics["drops"]["image"]["bad_input"] == 1
