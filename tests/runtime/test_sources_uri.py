"""The URI grammar of `open_source`, its options, and the Source protocol."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from fusionrt.errors import ConfigError, SourceError
from fusionrt.frame import Modality
from fusionrt.runtime.sources import FORMS, Replay, Source, SourceOptions, accepted_forms, open_source
from fusionrt.runtime.sources.base import BaseSource


@pytest.mark.parametrize(
    "uri,modality",
    [
        ("rtsp:/", "image"),
        ("rtsp://", "image"),
        ("http://", "image"),
        ("test://nope", "image"),
        ("v4l2://", "image"),
        ("v4l2://video0", "image"),
        ("csi://x", "image"),
        ("csi://", "image"),
        ("gst:", "image"),
        ("ftp://host/x.mp4", "image"),
        ("file://", "image"),
        ("no-such-thing-here", "image"),
        ("", "image"),
        ("   ", "image"),
        ("", "audio"),
        ("test://nope", "audio"),
        ("foo://bar", "audio"),
        ("", "text"),
        ("test://nope", "text"),
    ],
)
def test_malformed_uris_name_themselves_and_the_accepted_forms(uri, modality):
    with pytest.raises(SourceError) as caught:
        open_source(uri, modality)
    message = str(caught.value)
    assert repr(uri) in message and "accepted forms: " + accepted_forms(modality) in message
    assert "\n" not in message


def test_every_modality_has_its_grammar():
    assert set(FORMS) == set(Modality)
    assert "test://digits" in accepted_forms("image") and "test://dtmf" in accepted_forms(Modality.AUDIO)
    assert "t_ms<TAB>text" in dict(FORMS[Modality.TEXT])["PATH.txt"]


def test_unknown_modality():
    with pytest.raises(SourceError, match="modality 'video' is not one of text, image, audio"):
        open_source("test://digits", "video")


def test_options_are_validated_once():
    assert SourceOptions(replay="deterministic").replay is Replay.DETERMINISTIC
    assert SourceOptions(sample_rate=8000, chunk_ms=25).chunk_samples == 200
    for bad in ({"fps": 0}, {"sample_rate": -16000}, {"chunk_ms": float("nan")}, {"duration_s": -1}, {"width": 0}):
        with pytest.raises(ConfigError, match=f"SourceOptions.{next(iter(bad))} must be a positive number"):
            SourceOptions(**bad)
    with pytest.raises(ConfigError, match="SourceOptions.seed must be an integer >= 0"):
        SourceOptions(seed=-1)
    with pytest.raises(ConfigError, match="SourceOptions.replay must be one of"):
        SourceOptions(replay="fast")


def test_test_sources_follow_the_protocol():
    options = SourceOptions(replay=Replay.DETERMINISTIC, duration_s=1)
    for uri, modality in (("test://digits", "image"), ("test://dtmf", "audio"), ("test://digits", "text")):
        with open_source(uri, modality, options=options) as source:
            assert isinstance(source, Source)
            assert source.modality is Modality(modality) and source.uri == uri and source.rate_hz > 0
            frames = list(source.frames())
        assert frames and all(f.modality is Modality(modality) and f.label is not None for f in frames)
        assert source.stats["frames"] == len(frames)


class ClockedText(BaseSource):
    """The smallest source: yields the given capture times."""

    def __init__(self, times_ns):
        super().__init__(Modality.TEXT, "clocked", 0.0)
        self.times_ns = times_ns

    def _generate(self):
        for t_ns in self.times_ns:
            yield self._frame(f"at {t_ns}", t_ns)


def test_timestamps_going_backwards_are_an_error():
    frames = []
    with pytest.raises(SourceError, match="clocked: timestamp went backwards at seq 3"):
        for frame in ClockedText([5, 7, 7, 6, 9]).frames():
            frames.append(frame)
    assert [f.t_ns for f in frames] == [5, 7, 7]


def test_a_source_closed_before_iterating_yields_nothing():
    source = open_source("test://digits", "image")
    source.close()
    assert list(source.frames()) == []


def test_file_uri_of_an_image_directory(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((8, 8, 3), np.uint8))
    source = open_source(tmp_path.as_uri(), "image", options=SourceOptions(replay="deterministic"))
    assert len(list(source.frames())) == 1


def test_sources_import_neither_torch_nor_transformers():
    code = (
        "import sys\n"
        "from fusionrt.runtime.sources import open_source, SourceOptions\n"
        "o = SourceOptions(replay='deterministic', duration_s=0.1)\n"
        "for uri, m in (('test://digits', 'image'), ('test://dtmf', 'audio'), ('test://digits', 'text')):\n"
        "    list(open_source(uri, m, options=o).frames())\n"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_test_sources_agree_on_the_digit_of_each_second():
    from fusionrt.data import scene_digit

    options = SourceOptions(replay=Replay.DETERMINISTIC, duration_s=4.0, seed=3)
    per_second = {}
    for uri, modality in (("test://digits", "image"), ("test://dtmf", "audio"), ("test://digits", "text")):
        for frame in open_source(uri, modality, options=options).frames():
            second = (frame.t_ns - 1) // 1_000_000_000 if modality == "audio" else frame.t_ns // 1_000_000_000
            per_second.setdefault(second, set()).add(frame.label)
    assert sorted(per_second) == [0, 1, 2, 3]
    assert all(labels == {scene_digit(s, 3)} for s, labels in per_second.items())
