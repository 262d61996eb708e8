"""Replayed camera sources (modality image): video files and image sequences (directories, globs).

Released at their own rate (or `options.fps`) in REALTIME replay, as fast as pulled with synthetic
timestamps in DETERMINISTIC replay; `options.loop` restarts them. A video file that stops decoding
before the frame count its container declares (truncated or corrupt, beyond 1 % or one frame)
raises SourceError naming the file; one that cannot be opened or decoded at all fails in
`open_source`.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from fusionrt.errors import SourceError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.sources.base import BaseSource, SourceOptions, synthetic_offset_ns
from fusionrt.runtime.sources.camera import DEFAULT_FPS, as_bgr, quiet_opencv, stream_timeouts, usable_rate

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def open_video_file(uri: str, path: str, options: SourceOptions) -> VideoFileSource:
    if "://" not in path and not os.path.isfile(path):
        raise SourceError(f"video file {path} does not exist")
    return VideoFileSource(uri, path, options)


def open_image_sequence(uri: str, pattern: str, options: SourceOptions) -> ImageSequenceSource:
    """An image directory, a glob, or one image file (jpg/png/bmp, natural sort order)."""
    if os.path.isdir(pattern):
        candidates = [os.path.join(pattern, name) for name in os.listdir(pattern)]
        what = f"image directory {pattern}"
    elif has_glob(pattern):
        candidates = glob.glob(pattern)
        what = f"glob {pattern!r}"
    elif os.path.isfile(pattern):
        candidates = [pattern]
        what = f"image file {pattern}"
    else:
        raise SourceError(f"image file {pattern} does not exist")
    paths = sorted((p for p in candidates if Path(p).suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
    if not paths:
        raise SourceError(f"{what} holds no images; expected files ending in {', '.join(IMAGE_EXTENSIONS)}")
    return ImageSequenceSource(uri, paths, options)


def has_glob(pattern: str) -> bool:
    return re.search(r"[*?[]", pattern) is not None


def natural_key(name: str) -> list:
    """Sort key that puts frame2 before frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


class VideoFileSource(BaseSource):
    """A video file (or a video URL) replayed at its own rate (or `options.fps`), optionally looped.
    A truncated file is streamed up to the cut, counted in `stats["truncated"]`, then fails."""

    counters = ("loops", "truncated")

    def __init__(self, uri: str, path: str, options: SourceOptions) -> None:
        import cv2

        self.path = path
        self.options = options
        self._capture, first = self._open()
        native = self._capture.get(cv2.CAP_PROP_FPS)
        super().__init__(Modality.IMAGE, uri, options.fps or (native if usable_rate(native) else DEFAULT_FPS))
        self.shape = first.shape
        self._first = first

    def _open(self):
        import cv2

        with quiet_opencv():
            if "://" in self.path:  # a video over http(s)
                capture = cv2.VideoCapture(self.path, cv2.CAP_ANY, stream_timeouts())
            else:
                capture = cv2.VideoCapture(self.path)
        if not capture.isOpened():
            raise SourceError(
                f"video file {self.path} cannot be opened: not a video, truncated, or a codec this "
                f"OpenCV build lacks (its backends: {_video_backends()})"
            )
        ok, first = capture.read()
        if not ok or first is None:
            capture.release()
            raise SourceError(f"video file {self.path} opened but no frame could be decoded; is it corrupt?")
        return capture, as_bgr(first)

    def _generate(self) -> Iterator[Frame]:
        import cv2

        image = self._first
        self._first = None
        while True:
            declared = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
            decoded = 0
            while image is not None:
                t_ns = self._due(synthetic_offset_ns(self._next_seq, self.rate_hz), self.options.replay)
                if t_ns is None:
                    return
                yield self._frame(image, t_ns)
                decoded += 1
                image = self._read()
            if not _complete(decoded, declared):
                self.stats["truncated"] = 1
                raise SourceError(
                    f"video file {self.path} stopped decoding after {decoded} of the {declared} frames its "
                    f"container declares; the file is truncated or corrupt"
                )
            if not self.options.loop or self._closed.is_set():
                return
            self._capture.release()
            self._capture, image = self._open()
            self.stats["loops"] += 1

    def _read(self) -> np.ndarray | None:
        import cv2

        try:
            ok, image = self._capture.read()
        except cv2.error as e:
            raise SourceError(f"video file {self.path}: decoding failed at frame {self._next_seq}: {e}") from e
        return as_bgr(image) if ok and image is not None else None

    def _release(self) -> None:
        self._capture.release()


class ImageSequenceSource(BaseSource):
    """Image files replayed as a video at `options.fps` (default 30), optionally looped."""

    counters = ("loops",)

    def __init__(self, uri: str, paths: Sequence[str], options: SourceOptions) -> None:
        super().__init__(Modality.IMAGE, uri, options.fps or DEFAULT_FPS)
        self.paths = tuple(paths)
        self.options = options
        self.shape = _read_image(self.paths[0]).shape

    def _generate(self) -> Iterator[Frame]:
        while True:
            for path in self.paths:
                image = _read_image(path)
                t_ns = self._due(synthetic_offset_ns(self._next_seq, self.rate_hz), self.options.replay)
                if t_ns is None:
                    return
                yield self._frame(image, t_ns)
            if not self.options.loop or self._closed.is_set():
                return
            self.stats["loops"] += 1


def _complete(decoded: int, declared: int) -> bool:
    """False when a file ended well before the frame count its container declares (truncated or corrupt)."""
    return not (declared > 0 and declared - decoded > max(1, declared // 100))


def _read_image(path: str) -> np.ndarray:
    import cv2

    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise SourceError(f"image file {path} cannot be decoded; is it a valid jpg/png/bmp?")
    return image


def _video_backends() -> str:
    import cv2

    return ", ".join(cv2.videoio_registry.getBackendName(b) for b in cv2.videoio_registry.getStreamBackends())
