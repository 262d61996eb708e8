"""Sinks: where fused results go. A sink is `open(info)`, `write(result)`, `close()`; the pipeline
opens them before the first frame, writes from the one thread that fuses, and closes them on every
exit path (end, duration, stop, Ctrl-C, error), so what the user asked to save is complete.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Protocol, TextIO

import numpy as np

from fusionrt.errors import ConfigError
from fusionrt.runtime.native import to_bgr

if TYPE_CHECKING:
    from fusionrt.runtime.metrics import Metrics
    from fusionrt.runtime.results import Result

TTY_INTERVAL_S = 0.1
LOG_INTERVAL_S = 5.0
DEFAULT_VIDEO_FPS = 30.0


@dataclass(frozen=True)
class RunInfo:
    labels: tuple[str, ...]
    modalities: tuple[str, ...]  # fusion order
    deterministic: bool
    metrics: Metrics
    start_ns: int  # pipeline clock at the start of the run
    camera_rate_hz: float | None
    deadline_ms: float


class Sink(Protocol):
    def open(self, info: RunInfo) -> None: ...

    def write(self, result: Result) -> None: ...

    def close(self) -> None: ...


class CallbackSink:
    """Calls `fn(result)` for every result (the `on_result` of `Pipeline.run`)."""

    def __init__(self, fn: Callable[[Result], None]) -> None:
        self.fn = fn

    def open(self, info: RunInfo) -> None:
        pass

    def write(self, result: Result) -> None:
        self.fn(result)

    def close(self) -> None:
        pass


class ConsoleSink:
    """One status line: rewritten in place with \\r on a terminal, else a new line every few seconds."""

    def __init__(self, stream: TextIO | None = None, interval_s: float | None = None) -> None:
        self.stream = stream
        self.interval_s = interval_s
        self._last = -float("inf")
        self._width = 0

    def open(self, info: RunInfo) -> None:
        self.stream = self.stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        if self.interval_s is None:
            self.interval_s = TTY_INTERVAL_S if self.tty else LOG_INTERVAL_S
        self.info = info
        self._latest: Result | None = None

    def write(self, result: Result) -> None:
        self._latest = result
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            self._show(result)

    def close(self) -> None:
        if self._latest is not None:
            self._show(self._latest)
        if self.tty and self._width:
            self.stream.write("\n")
        self.stream.flush()

    def line(self, result: Result) -> str:
        m = self.info.metrics
        p99 = m.e2e.quantile(0.99)
        answer = f"{result.top_label} {result.top_score:.2f}" if result.top_k else \
            " ".join(f"{v:.3g}" for v in result.outputs[:3])
        present = " ".join(name if on else "-" for name, on in result.presence.items())
        drops = sum(m.drops.values())
        return (f"{m.elapsed_s:7.1f}s {m.results:6d} results {m.results / max(m.elapsed_s, 1e-9):5.1f}/s | {answer} | "
                f"e2e {result.e2e_ms:6.1f} ms p99 {p99 or 0:6.1f} | {present} | drops {drops} "
                f"misses {m.deadline_misses}")

    def _show(self, result: Result) -> None:
        text = self.line(result)
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))
            self._width = max(self._width, len(text))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


class JsonlSink:
    """One JSON line per result. `timings=None`: timings except in deterministic replay, whose
    file is then identical run to run. With timings a record also carries `t_wall_ns`: the capture
    time on the wall clock (Unix ns, for joining with other logs) beside the monotonic `t_capture_ns`;
    deterministic replay leaves it out with the other timings, so its file stays byte-identical."""

    def __init__(self, path: str | Path, *, timings: bool | None = None) -> None:
        self.path = Path(path)
        self.timings = timings

    def open(self, info: RunInfo) -> None:
        self.labels = info.labels
        if self.timings is None:
            self.timings = not info.deterministic
        self._file = _open_output(self.path, "jsonl")
        self._wall_offset_ns = time.time_ns() - time.monotonic_ns()  # sources stamp with monotonic_ns

    def write(self, result: Result) -> None:
        record = result.to_json(self.labels, timings=self.timings)
        if self.timings:
            seq, t_capture = record.pop("seq"), record.pop("t_capture_ns")
            record = {"seq": seq, "t_capture_ns": t_capture, "t_wall_ns": t_capture + self._wall_offset_ns, **record}
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self._file.close()


class TraceSink:
    """Chrome trace events (chrome://tracing, Perfetto): every stage run on a result's path as a
    complete event ("ph": "X") on its thread, plus each result's end-to-end span. Events stream
    to the file (flat memory); the JSON array is closed on close()."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def open(self, info: RunInfo) -> None:
        self.start_ns = info.start_ns
        self._file = _open_output(self.path, "trace")
        self._file.write("[\n")
        self._first = True
        self._tids: dict[str, int] = {}
        self._written: dict[str, int] = {}  # span name -> start of the newest span written
        self._event({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "fusionrt"}})

    def write(self, result: Result) -> None:
        for span in result.spans:
            if self._written.get(span.name, -1) >= span.start_ns:
                continue  # a reused embedding: its run is already in the trace
            self._written[span.name] = span.start_ns
            self._complete(span.name, span.name.split(".")[0], span.start_ns, span.end_ns, span.thread,
                           {"result": result.seq})
        self._complete(f"result {result.seq}", "result", result.start_ns, result.done_ns, "results", {
            "top": result.top_label, "e2e_ms": round(result.e2e_ms, 3), "presence": result.presence,
            "deadline_missed": result.deadline_missed,
        })  # fmt: skip

    def close(self) -> None:
        self._file.write("\n]\n")
        self._file.close()

    def _complete(self, name, category, start_ns, end_ns, thread, args) -> None:
        self._event({"name": name, "cat": category, "ph": "X", "ts": (start_ns - self.start_ns) / 1e3,
                     "dur": (end_ns - start_ns) / 1e3, "pid": 1, "tid": self._tid(thread), "args": args})

    def _tid(self, thread: str) -> int:
        if thread not in self._tids:
            self._tids[thread] = len(self._tids) + 1
            self._event({"name": "thread_name", "ph": "M", "pid": 1, "tid": self._tids[thread],
                         "args": {"name": thread}})
        return self._tids[thread]

    def _event(self, event: dict) -> None:
        self._file.write(("" if self._first else ",\n") + json.dumps(event))
        self._first = False


class VideoSink:
    """The camera frames with the answer, its score and the latency drawn on them (mp4v).

    Frames are written at the camera's rate by capture time: a result that comes after a gap
    repeats its frame to fill it, so the video keeps real time even when frames were dropped.
    """

    def __init__(self, path: str | Path, *, fps: float | None = None) -> None:
        self.path = Path(path)
        self.fps = fps
        self._writer = None

    def open(self, info: RunInfo) -> None:
        self.fps = self.fps or info.camera_rate_hz or DEFAULT_VIDEO_FPS
        self.info = info
        self._first_ns: int | None = None
        self.frames_written = 0
        _open_output(self.path, "video").close()  # fail now, not on the first frame, if it cannot be written

    def write(self, result: Result) -> None:
        import cv2

        if result.image is None:
            return
        image = to_bgr(result.image, result.image_format)
        if self._writer is None:
            self._size = (image.shape[1], image.shape[0])
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise ConfigError(f"cannot write video {self.path} with OpenCV's mp4v encoder; choose another path")
            self._first_ns = result.t_capture_ns
        due = round((result.t_capture_ns - self._first_ns) * self.fps / 1e9) + 1
        if due <= self.frames_written:
            return
        frame = self._overlay(result, image)
        for _ in range(due - self.frames_written):
            self._writer.write(frame)
        self.frames_written = due

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        elif self.frames_written == 0:
            self.path.unlink(missing_ok=True)
            self.info.metrics.note(f"video {self.path}: no camera frames came, nothing written")

    def _overlay(self, result: Result, image: np.ndarray):
        import cv2

        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        else:
            image = image.copy()
        scale = max(0.25, image.shape[1] / 640)
        thickness = max(1, round(scale * 2))
        answer = f"{result.top_label} {result.top_score:.2f}" if result.top_k else f"{float(result.outputs[0]):.3g}"
        color = (0, 0, 255) if result.deadline_missed else (0, 255, 0)
        for row, text in enumerate((answer, f"{result.e2e_ms:.1f} ms")):
            origin = (4, round((row + 1) * 24 * scale) + 2)
            cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA)
            cv2.putText(image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness, cv2.LINE_AA)
        return image


class PrometheusSink:
    """Serves the run's metrics at http://HOST:PORT/metrics with prometheus_client (runtime/prometheus.py:
    histograms, one metric per concept). HOST defaults to loopback; port=0 picks a free port, and
    `port` holds the real one once open. Fails at construction when prometheus_client is missing."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        from fusionrt.runtime.prometheus import require_client

        require_client()  # before any engine loads: a missing package is said at once
        self.host = host
        self.port = port
        self._server = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def open(self, info: RunInfo) -> None:
        from fusionrt.runtime.prometheus import MetricsServer

        self._server = MetricsServer(info.metrics, self.host, self.port)
        self.port = self._server.port

    def write(self, result: Result) -> None:
        pass

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


def _open_output(path: Path, what: str) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", buffering=1 if what == "jsonl" else -1)
    except OSError as e:
        raise ConfigError(f"cannot write the {what} output {path}: {e}; choose a writable path") from e
