"""Bounded inputs of the encoder stages: the camera's newest-wins slot, the text FIFO, and the
audio stage's PCM ring. `put` returns how many queued inputs it superseded; `take` returns a
Frame, None on timeout, or CLOSED once the source ended and nothing is left."""

from __future__ import annotations

import threading
from collections import deque

from fusionrt.frame import Frame, Modality
from fusionrt.runtime.preprocess import PcmWindows

CLOSED = object()


class LatestSlot:
    """Size-1 slot: the newest frame wins (camera)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False

    def put(self, frame: Frame) -> int:
        with self._cond:
            superseded = self._frame is not None
            self._frame = frame
            self._cond.notify()
            return int(superseded)

    def take(self, timeout: float | None = None):
        with self._cond:
            if self._frame is None and not self._closed and timeout:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is None and self._closed:
                return CLOSED
            return frame

    def keep_newest(self) -> int:
        return 0

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FifoQueue(LatestSlot):
    """Small FIFO (text): when full, the oldest message is dropped."""

    def __init__(self, size: int = 4) -> None:
        super().__init__()
        self._items: deque[Frame] = deque()
        self._size = size

    def put(self, frame: Frame) -> int:
        with self._cond:
            dropped = 0
            if len(self._items) >= self._size:
                self._items.popleft()
                dropped = 1
            self._items.append(frame)
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None):
        with self._cond:
            if not self._items and not self._closed and timeout:
                self._cond.wait(timeout)
            if self._items:
                return self._items.popleft()
            return CLOSED if self._closed else None

    def keep_newest(self) -> int:
        with self._cond:
            dropped = max(0, len(self._items) - 1)
            while len(self._items) > 1:
                self._items.popleft()
            return dropped


class PcmInbox(LatestSlot):
    """The audio stage's input: chunks go into a `PcmWindows` ring; `take` returns a window as a Frame."""

    def __init__(self, windows: PcmWindows, on_superseded) -> None:
        super().__init__()
        self._windows = windows
        self._on_superseded = on_superseded

    def put(self, frame: Frame) -> int:
        with self._cond:
            self._windows.append(frame.data, frame.t_ns, frame.label)
            if self._windows.ready():
                self._cond.notify()
            return 0

    def take(self, timeout: float | None = None):
        with self._cond:
            if not self._windows.ready() and not self._closed and timeout:
                self._cond.wait(timeout)
            if not self._windows.ready():
                return CLOSED if self._closed else None
            samples, t_ns, index, label, superseded = self._windows.take()
        if superseded:
            self._on_superseded(superseded)
        return Frame(Modality.AUDIO, t_ns, index, samples, label)
