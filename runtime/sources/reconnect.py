"""`Reconnecting`: a live source (camera index, V4L2 device, rtsp/http stream, GStreamer/CSI) that
reopens itself with bounded exponential backoff when it fails mid-stream.

The first open happens in `open_source` (a wrong address fails there, at once). When the stream
drops, the wrapper closes it, waits `backoff` (doubling up to RECONNECT_MAX_BACKOFF_S), and reopens
it, at most `options.reconnect_attempts` times per outage; every attempt and every success is
counted in `stats` ("reconnect_attempts", "reconnects") and said through `notify` when the pipeline
set it. When the attempts of one outage are spent, the last error is raised (the pipeline then
fuses without the source). Frames keep one seq numbering and forward-only monotonic timestamps
across reconnections. File sources never reconnect (they are not wrapped).
"""

from __future__ import annotations

import dataclasses

import threading
from collections.abc import Callable, Iterator

from fusionrt.errors import SourceError
from fusionrt.frame import Frame
from fusionrt.runtime.sources.base import Source, SourceOptions

RECONNECT_MAX_BACKOFF_S = 8.0


def backoff_s(attempt: int, first_s: float) -> float:
    """The wait before reconnection attempt `attempt` (1-based): first_s, 2*first_s, ... capped."""
    return min(RECONNECT_MAX_BACKOFF_S, first_s * 2 ** (attempt - 1))


class Reconnecting:
    """Wraps the live source `open()` returns; reopens it after a mid-stream failure (see module doc)."""

    def __init__(self, open: Callable[[], Source], options: SourceOptions) -> None:
        self._open = open
        self.attempts = options.reconnect_attempts
        self.first_backoff_s = options.reconnect_backoff_s
        self._source = open()
        self.modality, self.uri, self.rate_hz = self._source.modality, self._source.uri, self._source.rate_hz
        self.stats: dict[str, int] = {"frames": 0, "reconnect_attempts": 0, "reconnects": 0}
        self.notify: Callable[[str], None] | None = None  # set by the pipeline: says a message once counted
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._started = False
        self._base: dict[str, int] = {}  # counters of the connections already closed

    def __getattr__(self, name: str):  # description, shape... of the source now open
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._source, name)

    def frames(self) -> Iterator[Frame]:
        if self._started:
            raise SourceError(f"{self.uri}: frames() can be iterated once; open the source again to restart it")
        self._started = True
        return self._run()

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            source = self._source
        if source is not None:
            source.close()

    def _run(self) -> Iterator[Frame]:
        seq, last_t = 0, None
        while not self._closed.is_set():
            try:
                for frame in self._source.frames():
                    t_ns = frame.t_ns if last_t is None else max(frame.t_ns, last_t)
                    yield dataclasses.replace(frame, t_ns=t_ns, seq=seq)  # keeps pixel_format
                    seq, last_t = seq + 1, t_ns
                    self.stats["frames"] += 1
                    self._merge_stats()
                if self._closed.is_set():
                    return
                error = SourceError(f"{self.uri}: the stream ended")
            except SourceError as e:
                error = e
            if self._closed.is_set():
                return
            self._merge_stats()
            self._reconnect(error)

    def _reconnect(self, error: SourceError) -> None:
        """Reopen with backoff; raises the last error once `attempts` are spent."""
        self._merge_stats()
        self._base = {name: count for name, count in self.stats.items() if name not in self._OWN}
        self._source.close()
        self._say(f"{self.uri} dropped ({error}); reconnecting (at most {self.attempts} attempts)")
        last = error
        for attempt in range(1, self.attempts + 1):
            if self._closed.wait(backoff_s(attempt, self.first_backoff_s)):
                return
            self.stats["reconnect_attempts"] += 1
            try:
                source = self._open()
            except SourceError as e:
                last = e
                continue
            with self._lock:
                if self._closed.is_set():
                    source.close()
                    return
                self._source = source
            self.stats["reconnects"] += 1
            self._say(f"{self.uri} reconnected after {attempt} attempt(s)")
            return
        raise SourceError(f"{self.uri}: gave up after {self.attempts} reconnection attempts; last error: {last}")

    _OWN = ("frames", "reconnect_attempts", "reconnects")

    def _merge_stats(self) -> None:
        """The counters of every connection so far: those closed plus the one now open."""
        for name, count in self._source.stats.items():
            if name not in self._OWN:
                self.stats[name] = self._base.get(name, 0) + count

    def _say(self, message: str) -> None:
        if self.notify is not None:
            self.notify(message)


def reconnecting(open: Callable[[], Source], options: SourceOptions) -> Source:
    """`open()`'s source, reconnecting when `options.reconnect_attempts` > 0."""
    return Reconnecting(open, options) if options.reconnect_attempts > 0 else open()
