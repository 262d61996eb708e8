"""`open_source`: the one factory from a URI and a modality to a `Source` (like jetson-utils'
videoSource::Create). `FORMS` is the grammar; the modality decides how a URI reads
("test://digits" is a camera for image and chat messages for text)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fusionrt.errors import SourceError
from fusionrt.frame import Modality
from fusionrt.runtime.sources.base import Source, SourceOptions

FORMS: dict[Modality, tuple[tuple[str, str], ...]] = {
    Modality.IMAGE: (
        ("N", "camera index (0, 1, ...)"),
        ("/dev/videoN | v4l2:///dev/videoN", "V4L2 camera device"),
        ("csi://N", "Jetson CSI camera N (OpenCV with GStreamer)"),
        ("gst:PIPELINE ! appsink", "GStreamer pipeline (OpenCV with GStreamer)"),
        ("rtsp://HOST/PATH | http(s)://HOST/PATH", "network stream (an http URL of a video file replays as a file)"),
        ("PATH.mp4|.avi|.mkv|.mov|.webm", "video file"),
        ("DIR | GLOB | PATH.jpg|.jpeg|.png|.bmp", "image directory, glob or single image, natural sort order"),
        ("file://PATH", "a file or directory as above"),
        ("test://digits", "synthetic camera of test-split digits, with labels"),
    ),
    Modality.AUDIO: (
        ("default", "the default microphone (needs fusionrt[audio])"),
        ("N", "microphone device index"),
        ("NAME", "microphone whose name contains NAME"),
        ("PATH.wav|.flac|.ogg|.mp3|.aiff", "audio file, downmixed and resampled"),
        ("file://PATH", "an audio file"),
        ("test://dtmf", "synthetic DTMF digits, with labels"),
    ),
    Modality.TEXT: (
        ("TEXT", "a literal message, emitted once"),
        ("-", "lines from stdin"),
        ("PATH.txt", "one message per line, optionally 't_ms<TAB>text'"),
        ("file://PATH", "a text file"),
        ("test://digits", "synthetic digit messages, with labels"),
    ),
}

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")  # two letters at least: C:\ stays a path
_STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https")
MAX_INDEX_DIGITS = 6  # a camera/microphone/sensor index; longer digit strings are not indices


def accepted_forms(modality: Modality | str) -> str:
    return "; ".join(form for form, _ in FORMS[Modality(modality)])


def open_source(uri: str, modality: Modality | str, *, options: SourceOptions = SourceOptions()) -> Source:
    """Open the source `uri` names for `modality`; raises SourceError for a malformed URI, a
    missing device or file, or a missing capability (GStreamer, sounddevice)."""
    try:
        modality = Modality(modality)
    except ValueError:
        raise SourceError(f"modality {modality!r} is not one of {', '.join(m.value for m in Modality)}") from None
    if not isinstance(options, SourceOptions):
        raise SourceError(f"options must be a SourceOptions, got {type(options).__name__}")
    if not isinstance(uri, str) or not uri.strip():
        raise _malformed(uri, modality, "it is empty")
    opener = {Modality.IMAGE: _open_image, Modality.AUDIO: _open_audio, Modality.TEXT: _open_text}[modality]
    return opener(uri, options)


def _open_image(uri: str, options: SourceOptions) -> Source:
    """Live cameras and streams come wrapped in `Reconnecting` (files and test:// never reconnect)."""
    from fusionrt.runtime.sources import camera, video_file
    from fusionrt.runtime.sources.reconnect import reconnecting

    scheme = _scheme(uri)
    if _is_index(uri):
        return reconnecting(lambda: camera.open_camera_index(uri, int(uri), options), options)
    if scheme == "v4l2":
        path = _after(uri, "v4l2://")
        if not path.startswith("/dev/"):
            raise _malformed(uri, Modality.IMAGE, "expected v4l2:///dev/videoN")
        return reconnecting(lambda: camera.open_video_device(uri, path, options), options)
    if scheme == "csi":
        sensor = _after(uri, "csi://")
        if not _is_index(sensor):
            raise _malformed(uri, Modality.IMAGE, "expected csi://N with a sensor number N")
        return reconnecting(lambda: camera.open_csi(uri, int(sensor), options), options)
    if scheme == "gst":
        pipeline = uri[len("gst:") :].strip()
        if not pipeline:
            raise _malformed(uri, Modality.IMAGE, "expected gst:PIPELINE")
        return reconnecting(lambda: camera.open_gstreamer(uri, pipeline, options), options)
    if scheme in _STREAM_SCHEMES:
        parts = urlsplit(uri)
        if not _after(uri, f"{scheme}://") or not parts.hostname:
            raise _malformed(uri, Modality.IMAGE, f"expected {scheme}://HOST[:PORT]/PATH")
        if scheme.startswith("http") and Path(parts.path).suffix.lower() in video_file.VIDEO_EXTENSIONS:
            return video_file.open_video_file(uri, uri, options)
        return reconnecting(lambda: camera.open_stream(uri, options), options)
    if scheme == "test":
        if uri != "test://digits":
            raise _malformed(uri, Modality.IMAGE, "unknown test source")
        return camera.TestDigitsCamera(uri, options)
    path = _file_path(uri, scheme, Modality.IMAGE)
    suffix = Path(path).suffix.lower()
    if path.startswith("/dev/video"):
        return reconnecting(lambda: camera.open_video_device(uri, path, options), options)
    if video_file.has_glob(path) or os.path.isdir(path) or suffix in video_file.IMAGE_EXTENSIONS:
        return video_file.open_image_sequence(uri, path, options)
    if suffix in video_file.VIDEO_EXTENSIONS or os.path.isfile(path):
        return video_file.open_video_file(uri, path, options)
    raise _malformed(uri, Modality.IMAGE, "no such camera index, device, stream, file or directory")


def _open_audio(uri: str, options: SourceOptions) -> Source:
    from fusionrt.runtime.sources import microphone

    scheme = _scheme(uri)
    if uri == "default":
        return microphone.open_microphone(uri, None, options)
    if _is_index(uri):
        return microphone.open_microphone(uri, int(uri), options)
    if scheme == "test":
        if uri != "test://dtmf":
            raise _malformed(uri, Modality.AUDIO, "unknown test source")
        return microphone.TestDtmfSource(uri, options)
    path = _file_path(uri, scheme, Modality.AUDIO)
    looks_like_file = path != uri or "/" in path or os.sep in path or os.path.isfile(path)
    if looks_like_file or Path(path).suffix.lower() in microphone.AUDIO_EXTENSIONS:
        return microphone.open_audio_file(uri, path, options)
    return microphone.open_microphone(uri, uri, options)  # part of a device name


def _open_text(uri: str, options: SourceOptions) -> Source:
    from fusionrt.runtime.sources import text

    scheme = _scheme(uri)
    if uri == "-":
        return text.StdinText(uri, options)
    if scheme == "test" and uri.startswith("test://"):
        if uri != "test://digits":
            raise _malformed(uri, Modality.TEXT, "unknown test source")
        return text.TestDigitsText(uri, options)
    if scheme == "file" and uri.startswith("file://"):
        return text.open_text_file(uri, _file_path(uri, scheme, Modality.TEXT), options)
    path = os.path.expanduser(uri)
    if uri.lower().endswith(".txt") or os.path.isfile(path):
        return text.open_text_file(uri, path, options)
    return text.LiteralText(uri, uri, options)


def _file_path(uri: str, scheme: str | None, modality: Modality) -> str:
    """The local path a URI names: file:// stripped, ~ expanded; an unknown scheme:// is malformed."""
    if scheme == "file":
        path = unquote(_after(uri, "file://"))
        if not path:
            raise _malformed(uri, modality, "expected file://PATH")
        return path
    if scheme and "://" in uri:
        raise _malformed(uri, modality, f"unknown scheme {scheme!r}")
    return os.path.expanduser(uri)


def _is_index(text: str) -> bool:
    """A device index: ASCII digits (str.isdigit() also takes '²'); SourceError when there are more than
    MAX_INDEX_DIGITS of them."""
    if not (text.isascii() and text.isdigit()):
        return False
    if len(text) > MAX_INDEX_DIGITS:
        raise SourceError(f"device index {text[:20]}... has {len(text)} digits; a camera, microphone or sensor "
                          f"index has at most {MAX_INDEX_DIGITS}")
    return True


def _scheme(uri: str) -> str | None:
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else None


def _after(uri: str, prefix: str) -> str:
    """What follows `prefix` (matched case-insensitively), or "" when the URI lacks the prefix."""
    return uri[len(prefix) :] if uri.lower().startswith(prefix) else ""


def _malformed(uri, modality: Modality, reason: str) -> SourceError:
    return SourceError(
        f"{modality.value} source {uri!r} is not valid ({reason}); accepted forms: {accepted_forms(modality)}"
    )
