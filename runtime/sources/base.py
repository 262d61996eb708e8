"""What every source shares: its options, the `Source` protocol and the clock that stamps frames."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Protocol, runtime_checkable

from fusionrt.errors import ConfigError, SourceError
from fusionrt.frame import Frame, Modality


MAX_RECONNECT_ATTEMPTS = 1000


class Replay(str, Enum):
    """How file and test:// sources release their frames (live sources are always live)."""

    REALTIME = "realtime"  # at native rate by the wall clock; t_ns = monotonic release time
    DETERMINISTIC = "deterministic"  # as fast as pulled; t_ns = synthetic clock from 0; identical runs


@dataclass(frozen=True)
class SourceOptions:
    width: int | None = None  # capture size for devices and CSI; render size of test://digits
    height: int | None = None
    fps: float | None = None  # device rate; replay rate of video files and image sequences
    loop: bool = False  # restart video, image-sequence and audio files at their end
    replay: Replay = Replay.REALTIME
    sample_rate: int = 16000  # audio output rate (the bundle's)
    chunk_ms: float = 20.0  # audio chunk length
    seed: int = 0  # test:// sources
    duration_s: float | None = None  # test:// sources; None = endless
    reconnect_attempts: int = 5  # live cameras and streams: reopen attempts per outage (0: never reconnect)
    reconnect_backoff_s: float = 0.5  # the first wait before reopening; doubles per attempt (capped)
    raw_capture: bool = False  # V4L2 cameras: YUYV, csi://: NV12, converted once at model size (runtime/native.py)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "replay", Replay(self.replay))
        except ValueError:
            raise ConfigError(
                f"SourceOptions.replay must be one of {[r.value for r in Replay]}, got {self.replay!r}"
            ) from None
        positive = {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "sample_rate": self.sample_rate,
            "chunk_ms": self.chunk_ms,
            "duration_s": self.duration_s,
        }
        for name, value in positive.items():
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ConfigError(f"SourceOptions.{name} must be a positive number, got {value!r}")
        if not (isinstance(self.reconnect_attempts, int) and 0 <= self.reconnect_attempts <= MAX_RECONNECT_ATTEMPTS):
            raise ConfigError(f"SourceOptions.reconnect_attempts must be an integer in [0, {MAX_RECONNECT_ATTEMPTS}], "
                              f"got {self.reconnect_attempts!r}")
        if not (isinstance(self.reconnect_backoff_s, (int, float)) and 0 < self.reconnect_backoff_s <= 60):
            raise ConfigError(f"SourceOptions.reconnect_backoff_s must be in (0, 60] seconds, "
                              f"got {self.reconnect_backoff_s!r}")
        if not isinstance(self.raw_capture, bool):
            raise ConfigError(f"SourceOptions.raw_capture must be True or False, got {self.raw_capture!r}")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ConfigError(f"SourceOptions.seed must be an integer >= 0, got {self.seed!r}")

    @property
    def chunk_samples(self) -> int:
        """Samples per audio chunk at `sample_rate`."""
        return max(1, round(self.sample_rate * self.chunk_ms / 1000))


@runtime_checkable
class Source(Protocol):
    """Opened from a URI by `open_source`; yields `Frame`s of one modality."""

    modality: Modality
    uri: str
    rate_hz: float  # nominal: camera fps, audio chunks per second, text lines per second or 0
    stats: dict[str, int]  # counters, always with "frames"

    def frames(self) -> Iterator[Frame]:
        """Blocking; ends at the end of the stream or after `close()`; raises SourceError on failure."""
        ...

    def close(self) -> None: ...


class BaseSource:
    """Shared mechanics: seq numbering, forward-only timestamps, pacing, close from any thread.

    A subclass implements `_generate()` (yielding frames made with `_frame`) and `_release()`
    (idempotent; frees devices and files; runs on the iterating thread, or in `close()` when
    nothing iterates).
    """

    counters: tuple[str, ...] = ()

    def __init__(self, modality: Modality, uri: str, rate_hz: float) -> None:
        self.modality = modality
        self.uri = uri
        self.rate_hz = float(rate_hz)
        self.stats: dict[str, int] = {"frames": 0, **{name: 0 for name in self.counters}}
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._iterating = False
        self._started = False
        self._next_seq = 0
        self._last_t_ns: int | None = None
        self._anchor_ns: int | None = None

    def frames(self) -> Iterator[Frame]:
        if self._started:
            raise SourceError(f"{self.uri}: frames() can be iterated once; open the source again to restart it")
        self._started = True
        return self._run()

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            if not self._iterating:
                self._release()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> Iterator[Frame]:
        with self._lock:
            if self._closed.is_set():
                self._release()
                return
            self._iterating = True
        try:
            for frame in self._generate():
                yield frame
                if self._closed.is_set():
                    return
        finally:
            with self._lock:
                self._iterating = False
                self._release()

    def _generate(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _release(self) -> None:
        pass

    def _frame(self, data, t_ns: int, label: int | None = None) -> Frame:
        if self._last_t_ns is not None and t_ns < self._last_t_ns:
            raise SourceError(
                f"{self.uri}: timestamp went backwards at seq {self._next_seq} ({t_ns} ns after "
                f"{self._last_t_ns} ns); a source's capture times must never decrease"
            )
        frame = Frame(self.modality, t_ns, self._next_seq, data, label)
        self._next_seq += 1
        self._last_t_ns = t_ns
        self.stats["frames"] += 1
        return frame

    def _due(self, offset_ns: int, replay: Replay) -> int | None:
        """Timestamp of an item due `offset_ns` after the stream start.

        DETERMINISTIC: the offset itself (a synthetic clock from 0). REALTIME: waits until the
        item is due by the monotonic clock (the first call anchors the start) and returns the
        release time; None when the source was closed while waiting.
        """
        if replay is Replay.DETERMINISTIC:
            return offset_ns
        now = time.monotonic_ns()
        if self._anchor_ns is None:
            self._anchor_ns = now
        wait_ns = self._anchor_ns + offset_ns - now
        if wait_ns > 0 and self._closed.wait(wait_ns / 1e9):
            return None
        return time.monotonic_ns()


def synthetic_offset_ns(index: int, rate_hz: float) -> int:
    """Offset of item `index` of a stream at `rate_hz` (the same value on every run)."""
    return round(index * 1e9 / rate_hz)


def require_live_replay(uri: str, options: SourceOptions) -> None:
    """Live devices and streams cannot be replayed deterministically: say so instead of pretending."""
    if options.replay is Replay.DETERMINISTIC:
        raise SourceError(
            f"{uri!r} is a live source and cannot run with replay=deterministic; use a file or a "
            f"test:// source for deterministic replay, or replay=realtime"
        )
