"""Live sources reconnect with bounded backoff: a real HTTP MJPEG stream served on 127.0.0.1 (multipart
JPEG frames from cv2.imencode, read by OpenCV's FFmpeg backend) that the tests stop and restart."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time

import cv2
import numpy as np
import pytest
from runtime_models import ListSource, audio_items, write_bundle

from fusionrt.errors import SourceError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.pipeline import Pipeline
from fusionrt.runtime.sources import SourceOptions, open_source
from fusionrt.runtime.sources.reconnect import RECONNECT_MAX_BACKOFF_S, Reconnecting, backoff_s

FPS = 30


class MjpegServer:
    """multipart/x-mixed-replace JPEG frames at FPS on 127.0.0.1:port until stop(); start() again
    reopens the same port (a camera server restarting)."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.served = 0
        self._server = None
        self._halt = threading.Event()

    def start(self) -> MjpegServer:
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while not owner._halt.is_set():
                        image = np.full((48, 64, 3), (owner.served * 7) % 256, np.uint8)
                        jpeg = cv2.imencode(".jpg", image)[1].tobytes()
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n"
                                         % (len(jpeg), jpeg))
                        owner.served += 1
                        time.sleep(1 / FPS)
                except OSError:  # the client went away
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._halt.clear()
        self._server = Server(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        self._halt.set()  # open responses end: the client sees the stream drop
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"


@pytest.fixture
def server():
    server = MjpegServer().start()
    yield server
    if not server._halt.is_set():
        server.stop()


def take(iterator, count: int, timeout_s: float = 10.0) -> list:
    """`count` frames from `iterator`, failing (not hanging) after `timeout_s`."""
    out, end = [], time.monotonic() + timeout_s
    for frame in iterator:
        out.append(frame)
        if len(out) == count:
            return out
        assert time.monotonic() < end, f"only {len(out)} frames within {timeout_s} s"
    return out


def test_backoff_doubles_and_is_capped():
    assert [backoff_s(k, 0.5) for k in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0, RECONNECT_MAX_BACKOFF_S]


def test_a_stream_that_stops_and_restarts_is_reconnected(server):
    options = SourceOptions(reconnect_attempts=20, reconnect_backoff_s=0.05)
    source = open_source(server.url, "image", options=options)
    assert isinstance(source, Reconnecting)
    frames = iter(source.frames())
    before = take(frames, 5)
    server.stop()
    threading.Timer(0.6, server.start).start()  # the server comes back on the same port
    after = take(frames, 5)
    source.close()
    seqs = [f.seq for f in before + after]
    assert seqs == list(range(10))  # one numbering across the reconnection
    times = [f.t_ns for f in before + after]
    assert times == sorted(times) and after[0].t_ns - before[-1].t_ns > 0.5e9
    assert source.stats["reconnects"] == 1 and 1 <= source.stats["reconnect_attempts"] <= 20
    assert before[0].data.shape == (48, 64, 3)


def test_reconnection_gives_up_after_its_attempts(server):
    source = open_source(server.url, "image", options=SourceOptions(reconnect_attempts=2, reconnect_backoff_s=0.05))
    frames = iter(source.frames())
    take(frames, 2)
    server.stop()
    start = time.monotonic()
    with pytest.raises(SourceError, match="gave up after 2 reconnection attempts"):
        take(frames, 1000)
    assert time.monotonic() - start < 15  # bounded: backoffs 0.05 + 0.1 s and two refused connections
    assert source.stats == {**source.stats, "reconnect_attempts": 2, "reconnects": 0}


def test_files_and_reconnect_attempts_0_never_reconnect(server, tmp_path):
    assert not isinstance(open_source(server.url, "image", options=SourceOptions(reconnect_attempts=0)), Reconnecting)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (16, 16))
    writer.write(np.zeros((16, 16, 3), np.uint8))
    writer.release()
    assert not isinstance(open_source(str(path), "image"), Reconnecting)


def test_a_pipeline_rides_out_a_camera_stream_restart_and_reports_it(server, tmp_path):
    bundle = write_bundle(tmp_path / "b")
    camera = open_source(server.url, "image", options=SourceOptions(reconnect_attempts=20, reconnect_backoff_s=0.05))
    pipeline = Pipeline.from_bundle(bundle, {"image": camera, "audio": ListSource("audio", audio_items(3.0))})
    threading.Timer(0.8, server.stop).start()
    threading.Timer(1.4, server.start).start()
    results = []
    summary = pipeline.run(duration_s=2.6, on_result=results.append)
    events = summary.metrics["source_events"]["image"]
    assert events["reconnects"] == 1 and events["reconnect_attempts"] >= 1
    assert summary.metrics["source_failures"] == {}
    gap = max(b.t_capture_ns - a.t_capture_ns for a, b in zip(results, results[1:]))
    assert gap > 0.5e9  # no camera while the server was down...
    assert results[-1].trigger == "image" and results[-1].presence["image"]  # ...and back after it
    assert results[-1].t_capture_ns - results[0].t_capture_ns > 1.7e9
    assert any("reconnected after" in n for n in summary.metrics["notes"])
    assert "reconnects 1" in summary.table


def test_reconnection_keeps_a_raw_frames_pixel_format():
    class RawYuyv:  # a live camera handing raw YUYV frames (realtime-infer --camera-raw)
        modality, uri, rate_hz = Modality.IMAGE, "v4l2:///dev/video9", 30.0

        def frames(self):
            yield Frame(Modality.IMAGE, 5, 0, np.zeros((4, 8, 2), np.uint8), pixel_format="yuyv")

        def close(self):
            pass

    source = Reconnecting(RawYuyv, SourceOptions(reconnect_attempts=0))
    frame = next(iter(source.frames()))
    source.close()
    assert frame.pixel_format == "yuyv" and frame.data.shape == (4, 8, 2)
