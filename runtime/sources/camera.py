"""Live camera sources (modality image): camera indices, V4L2 devices, rtsp/http streams,
GStreamer pipelines, Jetson CSI cameras; and the synthetic test://digits camera.

Frames are uint8 HxWx3 BGR at the source's resolution (the pipeline resizes). With `raw` capture a
V4L2 device that offers YUYV, and a CSI camera (NV12 caps), deliver their native pixels instead,
tagged in `Frame.pixel_format`, so conversion happens once, at model size (runtime/native.py).
Video files and image sequences are in video_file.py.
"""

from __future__ import annotations

import glob
import math
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from fusionrt.errors import SourceError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.sources.base import (
    BaseSource,
    SourceOptions,
    require_live_replay,
    synthetic_offset_ns,
)

DEFAULT_FPS = 30.0
CSI_DEFAULT_SIZE = (1280, 720)
STREAM_TIMEOUT_MS = 5000
DIGIT_HOLD_S = 0.5
TEST_CAMERA_SIZE = 64
PROBED_INDICES = range(10)


def gstreamer_available(build_info: str | None = None) -> bool:
    """Whether OpenCV was built with GStreamer (`cv2.getBuildInformation()` says "GStreamer: YES")."""
    if build_info is None:
        import cv2

        build_info = cv2.getBuildInformation()
    match = re.search(r"^\s*GStreamer:\s*(\S+)", build_info, re.MULTILINE)
    return bool(match) and match.group(1).upper() == "YES"


def csi_pipeline(sensor_id: int, *, width: int, height: int, fps: float, raw: bool = False) -> str:
    """The GStreamer pipeline of a Jetson CSI camera, ending in an appsink that yields BGR frames, or
    with `raw` the ISP's NV12 copied out of NVMM unconverted."""
    rate = Fraction(fps).limit_denominator(1001)
    tail = "video/x-raw, format=NV12" if raw else "video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR"
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width={width}, height={height}, "
        f"framerate={rate.numerator}/{rate.denominator}, format=NV12 ! "
        f"nvvidconv ! {tail} ! appsink drop=true max-buffers=1"
    )


def video_devices() -> list[str]:
    """The /dev/video* entries of this machine, in natural order."""
    return sorted(glob.glob("/dev/video*"), key=lambda path: (len(path), path))


def describe_cameras() -> str:
    """What cameras exist: /dev/video* entries, else camera indices 0..9 that open."""
    devices = video_devices()
    if devices:
        return "cameras found: " + ", ".join(devices)
    indices = [str(i) for i in PROBED_INDICES if _index_opens(i)]
    if indices:
        return "cameras found: no /dev/video* devices, but indices " + ", ".join(indices) + " open"
    return "cameras found: none (no /dev/video* devices; indices 0..9 do not open)"


def open_camera_index(uri: str, index: int, options: SourceOptions) -> LiveCapture:
    import cv2

    require_live_replay(uri, options)
    with quiet_opencv():
        capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        raise SourceError(f"camera index {index} cannot be opened; {describe_cameras()}")
    return LiveCapture(uri, capture, f"camera index {index}", options, configure=True, raw=options.raw_capture)


def open_video_device(uri: str, path: str, options: SourceOptions) -> LiveCapture:
    import cv2

    require_live_replay(uri, options)
    if not os.path.exists(path):
        raise SourceError(f"video device {path} does not exist; {describe_cameras()}")
    with quiet_opencv():
        capture = cv2.VideoCapture(path, cv2.CAP_V4L2)
    if not capture.isOpened():
        raise SourceError(
            f"video device {path} exists but cannot be opened: is it busy, or is the user not in "
            f"the 'video' group? {describe_cameras()}"
        )
    return LiveCapture(uri, capture, f"video device {path}", options, configure=True, raw=options.raw_capture)


def open_stream(uri: str, options: SourceOptions) -> LiveCapture:
    """rtsp:// and http(s):// streams through OpenCV's FFmpeg backend, with open/read timeouts."""
    import cv2

    require_live_replay(uri, options)
    with quiet_opencv():
        capture = cv2.VideoCapture(uri, cv2.CAP_ANY, stream_timeouts())
    if not capture.isOpened():
        raise SourceError(
            f"stream {uri} cannot be opened within {STREAM_TIMEOUT_MS} ms: check the address, that "
            f"the server is up and reachable, and credentials"
        )
    return LiveCapture(uri, capture, f"stream {uri}", options, configure=False)


def stream_timeouts() -> list[int]:
    """VideoCapture parameters that bound how long opening and reading a network stream may block."""
    import cv2

    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_TIMEOUT_MS]


def open_gstreamer(uri: str, pipeline: str, options: SourceOptions, raw_format: str | None = None) -> LiveCapture:
    import cv2

    require_live_replay(uri, options)
    require_gstreamer(uri)
    if "appsink" not in pipeline:
        raise SourceError(
            f"GStreamer pipeline {pipeline!r} has no appsink; end it with "
            f"'! videoconvert ! video/x-raw, format=BGR ! appsink' so OpenCV can read frames"
        )
    capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        raise SourceError(
            f"GStreamer pipeline {pipeline!r} cannot be started; test it with "
            f"gst-launch-1.0 (replacing appsink by fakesink)"
        )
    return LiveCapture(uri, capture, f"GStreamer pipeline {pipeline!r}", options, configure=False,
                       raw_format=raw_format)


def open_csi(uri: str, sensor_id: int, options: SourceOptions) -> LiveCapture:
    require_live_replay(uri, options)
    require_gstreamer(uri)
    width = options.width or CSI_DEFAULT_SIZE[0]
    height = options.height or CSI_DEFAULT_SIZE[1]
    pipeline = csi_pipeline(sensor_id, width=width, height=height, fps=options.fps or DEFAULT_FPS,
                            raw=options.raw_capture)
    return open_gstreamer(uri, pipeline, options, raw_format="nv12" if options.raw_capture else None)


def require_gstreamer(uri: str, build_info: str | None = None) -> None:
    if not gstreamer_available(build_info):
        import cv2

        raise SourceError(
            f"{uri!r} needs OpenCV built with GStreamer, but cv2 {cv2.__version__} at "
            f"{Path(cv2.__file__).parent} reports 'GStreamer: NO'; on a Jetson use JetPack's OpenCV "
            f"(apt python3-opencv, venv with --system-site-packages) and pip uninstall "
            f"opencv-python opencv-python-headless from the venv"
        )


class LiveCapture(BaseSource):
    """A camera device or a network/GStreamer stream: stamped with `monotonic_ns()` at grab.

    A grab that fails mid-stream raises SourceError (unplugged camera, dropped stream).
    """

    def __init__(self, uri: str, capture, description: str, options: SourceOptions, *, configure: bool,
                 raw: bool = False, raw_format: str | None = None) -> None:
        import cv2

        if configure:
            _configure(capture, options)
        self.pixel_format = raw_format or (request_raw_yuyv(capture) if raw else "bgr")
        if raw_format:
            capture.set(cv2.CAP_PROP_CONVERT_RGB, 0)
        native = capture.get(cv2.CAP_PROP_FPS)
        super().__init__(Modality.IMAGE, uri, native if usable_rate(native) else options.fps or DEFAULT_FPS)
        self.description = description
        self._capture = capture
        if not capture.grab():
            capture.release()
            raise SourceError(f"{description} opened but delivered no frame; is another program using it?")

    def _generate(self) -> Iterator[Frame]:
        import cv2

        while not self._closed.is_set():
            try:
                grabbed = self._capture.grab()
                t_ns = time.monotonic_ns()
                image = self._capture.retrieve()[1] if grabbed else None
            except cv2.error as e:
                raise SourceError(f"{self.description} failed: {e}") from e
            if image is None:
                if self._closed.is_set():
                    return
                raise SourceError(
                    f"{self.description} stopped delivering frames after {self.stats['frames']} frames; "
                    f"was it unplugged or did the stream drop?"
                )
            yield self._deliver(image, t_ns)

    def _deliver(self, image: np.ndarray, t_ns: int) -> Frame:
        if self.pixel_format == "bgr":
            return self._frame(as_bgr(image), t_ns)
        frame = self._frame(raw_frame(image, self.pixel_format, *self._size()), t_ns)
        return replace(frame, pixel_format=self.pixel_format)

    def _size(self) -> tuple[int, int]:
        import cv2

        return int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))

    def _release(self) -> None:
        self._capture.release()


class TestDigitsCamera(BaseSource):
    """A synthetic camera looking at test-split digits (`fusionrt.data.render_digit_frame`): the
    scene's digit (`fusionrt.data.scene_digit`, shared with test://dtmf and the test://digits
    text), re-rendered every ~0.5 s; label = the digit shown."""

    __test__ = False  # not a pytest class

    def __init__(self, uri: str, options: SourceOptions) -> None:
        from fusionrt import data

        super().__init__(Modality.IMAGE, uri, options.fps or DEFAULT_FPS)
        self.options = options
        self._render = data.render_digit_frame
        self._scene = data.scene_digit
        side = options.width or options.height or TEST_CAMERA_SIZE
        self._size = (options.width or side, options.height or side)
        self._hold = max(1, round(DIGIT_HOLD_S * self.rate_hz))
        self._total = None if options.duration_s is None else round(options.duration_s * self.rate_hz)
        self._render(0, np.random.default_rng(0), size=16)  # load the digits now, not at the first frame

    def _generate(self) -> Iterator[Frame]:
        import cv2

        rng = np.random.default_rng(self.options.seed)
        width, height = self._size
        label = 0
        index = 0
        image = np.zeros((height, width, 3), np.uint8)
        while self._total is None or index < self._total:
            scene = self._scene(index / self.rate_hz, self.options.seed)
            if index % self._hold == 0 or scene != label:
                label = scene
                image = self._render(label, rng, size=max(width, height), split="test")
                if image.shape[:2] != (height, width):
                    image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            t_ns = self._due(synthetic_offset_ns(index, self.rate_hz), self.options.replay)
            if t_ns is None:
                return
            yield self._frame(image.copy(), t_ns, label)
            index += 1


def as_bgr(image: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 BGR from what OpenCV returned (gray or BGRA frames are converted)."""
    import cv2

    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def request_raw_yuyv(capture) -> str:
    """Ask a V4L2 capture for YUYV with OpenCV's conversion off: "yuyv" when the device took it, else
    conversion stays on and frames are "bgr" (MJPG-only cameras, other backends)."""
    import cv2

    yuyv = cv2.VideoWriter_fourcc(*"YUYV")
    if capture.set(cv2.CAP_PROP_FOURCC, yuyv) and int(capture.get(cv2.CAP_PROP_FOURCC)) == yuyv:
        if capture.set(cv2.CAP_PROP_CONVERT_RGB, 0) and not capture.get(cv2.CAP_PROP_CONVERT_RGB):
            return "yuyv"
    capture.set(cv2.CAP_PROP_CONVERT_RGB, 1)
    return "bgr"


def raw_frame(buffer: np.ndarray, pixel_format: str, height: int, width: int) -> np.ndarray:
    """A raw capture buffer (OpenCV returns it flat, 1xN) shaped as runtime/native.py expects it."""
    from fusionrt.runtime.native import expected_shape

    shape = expected_shape(pixel_format, height, width)
    if buffer.size < math.prod(shape):
        raise SourceError(f"a {pixel_format} frame of {width}x{height} needs {math.prod(shape)} bytes; the "
                          f"camera delivered {buffer.size}")
    return np.ascontiguousarray(buffer.reshape(-1)[: math.prod(shape)]).reshape(shape)


def _configure(capture, options: SourceOptions) -> None:
    import cv2

    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
    if options.width:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, options.width)
    if options.height:
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, options.height)
    if options.fps:
        capture.set(cv2.CAP_PROP_FPS, options.fps)


def usable_rate(fps: float) -> bool:
    return math.isfinite(fps) and 0 < fps < 1000


def _index_opens(index: int) -> bool:
    import cv2

    with quiet_opencv():
        capture = cv2.VideoCapture(index)
    opened = capture.isOpened()
    capture.release()
    return opened


@contextmanager
def quiet_opencv() -> Iterator[None]:
    """Silences OpenCV's own warnings while opening; our SourceError says what went wrong."""
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)
