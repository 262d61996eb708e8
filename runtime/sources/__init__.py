"""Input sources: `open_source(uri, modality)` gives a `Source` that yields timestamped `Frame`s.

uri.py: the URI grammar and the factory. camera.py: live cameras, streams, GStreamer/CSI and
test://digits; video_file.py: video files and image sequences; microphone.py: microphones, audio
files and test://dtmf (resample.py resamples their streams); text.py: literal, stdin, .txt and
test://digits text. base.py: `SourceOptions`, `Replay`, the `Source` protocol and the frame clock;
reconnect.py: `Reconnecting`, which reopens live cameras and streams with bounded backoff.
"""

from fusionrt.runtime.sources.base import Replay, Source, SourceOptions
from fusionrt.runtime.sources.uri import FORMS, accepted_forms, open_source

__all__ = ["FORMS", "Replay", "Source", "SourceOptions", "accepted_forms", "open_source"]
