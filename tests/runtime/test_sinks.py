"""Sinks on real pipeline runs: JSONL, Chrome trace, mp4 overlay (read back with OpenCV), the
Prometheus endpoint on a real socket, and the console line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from runtime_models import LABELS, ListSource, audio_items, camera_items, ctrl_c_after, write_bundle

from fusionrt.errors import ConfigError
from fusionrt.runtime.budget import Budget, OverrunPolicy, StageBudget
from fusionrt.runtime.pipeline import Pipeline
from fusionrt.runtime.sinks import ConsoleSink, JsonlSink, PrometheusSink, TraceSink, VideoSink
from fusionrt.runtime.sources import Replay

DET = Replay.DETERMINISTIC


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("bundle") / "b", heavy_image=4)


def sources(replay=DET, frames=20, size=48):
    return {
        "image": ListSource("image", camera_items(frames, 0.02, size=size), replay=replay),
        # the audio ends with the camera (no window completes after the last frame, so no trigger handover)
        "audio": ListSource("audio", audio_items((frames - 1) * 0.02), replay=replay),
        "text": ListSource("text", [(0.0, "red cat", None)], replay=replay),
    }


def test_jsonl_has_one_parsable_line_per_result_with_ground_truth(bundle_dir, tmp_path):
    path = tmp_path / "out" / "results.jsonl"
    summary = Pipeline.from_bundle(bundle_dir, sources(Replay.REALTIME), sinks=[JsonlSink(path)]).run()
    records = [json.loads(line) for line in path.read_text().splitlines()]
    superseded = summary.metrics["drops"].get("image", {}).get("superseded", 0)
    assert len(records) == summary.results == 20 - superseded  # a busy machine may supersede a frame
    first = records[0]
    assert set(first) >= {"t_capture_ns", "t_wall_ns", "top_k", "presence", "stage_ms", "e2e_ms", "ground_truth",
                          "deadline_missed"}
    assert "label" not in first  # the sources' answer is `ground_truth`, never read as the prediction
    assert first["ground_truth"] == LABELS[0] and all(r["ground_truth"] in LABELS for r in records)
    assert list(first)[:3] == ["seq", "t_capture_ns", "t_wall_ns"]
    assert abs(first["t_wall_ns"] - time.time_ns()) < 60e9  # capture time on the wall clock, Unix ns
    assert [k["label"] for k in first["top_k"]][:1] and sum(k["score"] for k in first["top_k"]) == pytest.approx(1.0)
    assert set(first["presence"]) == {"text", "image", "audio"}
    assert first["stage_ms"]["image"] > 0 and first["e2e_ms"] >= first["stage_ms"]["fusion"]
    assert [r["t_capture_ns"] for r in records] == sorted(r["t_capture_ns"] for r in records)


def test_deterministic_jsonl_can_keep_timings_when_asked(bundle_dir, tmp_path):
    path = tmp_path / "timed.jsonl"
    Pipeline.from_bundle(bundle_dir, sources(), sinks=[JsonlSink(path, timings=True)]).run()
    assert {"e2e_ms", "t_wall_ns"} <= set(json.loads(path.read_text().splitlines()[0]))


def test_deterministic_jsonl_has_no_wall_clock_and_is_byte_identical(bundle_dir, tmp_path):
    paths = [tmp_path / f"det{k}.jsonl" for k in range(2)]
    for path in paths:
        Pipeline.from_bundle(bundle_dir, sources(), sinks=[JsonlSink(path)]).run()
    assert paths[0].read_bytes() == paths[1].read_bytes()
    first = json.loads(paths[0].read_text().splitlines()[0])
    assert "t_wall_ns" not in first and "e2e_ms" not in first and first["ground_truth"] == LABELS[0]


def load_trace(path) -> list[dict]:
    events = json.loads(path.read_text())
    assert isinstance(events, list)
    return events


def test_trace_is_valid_chrome_json_with_each_stage_of_each_result(bundle_dir, tmp_path):
    path = tmp_path / "trace.json"
    summary = Pipeline.from_bundle(bundle_dir, sources(), sinks=[TraceSink(path)]).run()
    events = load_trace(path)
    complete = [e for e in events if e["ph"] == "X"]
    assert all(isinstance(e["ts"], float) and e["dur"] >= 0 and isinstance(e["tid"], int) for e in complete)
    names = [e["name"] for e in complete]
    assert names.count("image.encode") == names.count("fusion") == summary.results == 20
    assert names.count("text.encode") == 1  # the text embedding is fused 20 times but ran once
    assert sum(n.startswith("result ") for n in names) == 20
    threads = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert "results" in threads
    fusion = [e for e in complete if e["name"] == "fusion"]
    results = [e for e in complete if e["name"].startswith("result ")]
    for f, r in zip(fusion, results):  # fusion lies inside its result's end-to-end span
        assert r["ts"] <= f["ts"] and f["ts"] + f["dur"] <= r["ts"] + r["dur"] + 1e-3


def test_reused_embeddings_are_written_to_the_trace_once(bundle_dir, tmp_path):
    path = tmp_path / "trace.json"
    budget = Budget(image=StageBudget(ms=0.5, policy=OverrunPolicy.SKIP_REUSE), image_staleness_s=1.0)
    stream = {"image": ListSource("image", camera_items(40, 0.005))}
    results = []
    Pipeline.from_bundle(bundle_dir, stream, budget=budget, sinks=[TraceSink(path)]).run(on_result=results.append)
    encodes = [e for e in load_trace(path) if e.get("name") == "image.encode"]
    assert any(r.reused for r in results)
    assert len(encodes) == sum(not r.reused for r in results)


def test_video_overlay_is_playable_with_a_frame_per_camera_frame(bundle_dir, tmp_path):
    path = tmp_path / "overlay.mp4"
    sink = VideoSink(path)
    Pipeline.from_bundle(bundle_dir, sources(size=96), sinks=[sink]).run()
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    assert len(frames) == sink.frames_written == 20
    assert frames[0].shape == (96, 96, 3)
    original = camera_items(20, 0.02, size=96)[0][1]
    assert np.abs(frames[0].astype(int) - original).max() > 100  # the label is drawn on it


def test_video_and_trace_survive_ctrl_c(bundle_dir, tmp_path):
    video, trace = tmp_path / "live.mp4", tmp_path / "live.json"
    stream = {"image": ListSource("image", camera_items(10_000, 0.01, size=64))}
    pipeline = Pipeline.from_bundle(bundle_dir, stream, sinks=[VideoSink(video, fps=100), TraceSink(trace)])
    with ctrl_c_after(0.4):
        summary = pipeline.run()
    assert summary.stopped_by == "interrupt"
    assert sum(e["name"] == "fusion" for e in load_trace(trace)) == summary.results
    capture = cv2.VideoCapture(str(video))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert count >= summary.results > 0  # paced by capture time: a skipped frame repeats the last


def test_prometheus_endpoint_serves_text_on_a_real_socket(bundle_dir):
    sink = PrometheusSink(port=0)
    fetched = {}

    def scrape(result):
        if result.seq == 5:
            with urllib.request.urlopen(sink.url, timeout=5) as response:
                fetched["type"] = response.headers["Content-Type"]
                fetched["body"] = response.read().decode()

    Pipeline.from_bundle(bundle_dir, sources(), sinks=[sink]).run(on_result=scrape)
    assert sink.port > 0 and fetched["type"].startswith("text/plain; version=0.0.4")
    assert "fusionrt_results_total 6.0" in fetched["body"]  # result 5 is counted before its sinks run
    assert 'fusionrt_step_seconds_count{stage="image",step="encode"}' in fetched["body"]
    assert 'fusionrt_stage_seconds_bucket{le="0.0333",stage="image"}' in fetched["body"]
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(sink.url, timeout=2)  # closed with the run


def test_prometheus_sink_says_how_to_install_the_client(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'fusionrt\[metrics\]'"):
        PrometheusSink(port=0)


def test_prometheus_client_is_imported_only_for_a_metrics_endpoint():
    code = ("import sys, fusionrt.runtime, fusionrt.runtime.sinks, fusionrt.realtime_cli; "
            "print('prometheus_client' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_console_rewrites_one_line_on_a_terminal_and_logs_lines_otherwise(bundle_dir):
    tty = FakeTty()
    Pipeline.from_bundle(bundle_dir, sources(), sinks=[ConsoleSink(tty, interval_s=0)]).run()
    text = tty.getvalue()
    assert text.count("\r") == 21 and text.endswith("\n") and text.count("\n") == 1
    assert "results" in text and "e2e" in text and "text image audio" in text

    log = io.StringIO()
    Pipeline.from_bundle(bundle_dir, sources(), sinks=[ConsoleSink(log)]).run()
    lines = log.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and "\r" not in log.getvalue()  # every 5 s, plus the final line
    assert lines[-1].split()[1] == "20"  # the final line counts every result


def test_sinks_are_closed_when_the_run_fails(bundle_dir, tmp_path):
    path, trace = tmp_path / "partial.jsonl", tmp_path / "partial.json"

    def fail(result):
        if result.seq == 2:
            raise KeyError("downstream broke")

    pipeline = Pipeline.from_bundle(bundle_dir, sources(), sinks=[JsonlSink(path), TraceSink(trace)])
    with pytest.raises(KeyError, match="downstream broke"):
        pipeline.run(on_result=fail)
    assert len(path.read_text().splitlines()) == 3  # the JSONL sink wrote result 2 before the callback raised
    assert sum(e["name"] == "fusion" for e in load_trace(trace)) == 3


def test_an_unwritable_output_fails_before_the_first_frame(bundle_dir, tmp_path):
    from fusionrt.errors import ConfigError

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot write the jsonl output"):
        Pipeline.from_bundle(bundle_dir, sources(), sinks=[JsonlSink(blocker / "x.jsonl")]).run()
