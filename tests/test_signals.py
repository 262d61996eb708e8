"""Clean stops of real processes: SIGTERM like Ctrl-C in realtime-infer (exit 0, summary printed and
written, trace valid) and in a long fusionrt verb (exit 143, one line, no traceback), and quiet exits
when the reader of stdout has gone (`fusionrt inspect | head`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent / "runtime"))
from runtime_models import write_bundle  # noqa: E402

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    bundle = write_bundle(root / "bundle")
    video = root / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 24))
    for i in range(30):
        writer.write(np.full((24, 32, 3), (i * 5) % 255, np.uint8))
    writer.release()
    wav = root / "clip.wav"
    sf.write(wav, np.zeros(8000, np.float32), 8000)
    return bundle, video, wav


def wait_for(predicate, timeout_s: float, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"not ready after {timeout_s} s: {proc.communicate()}")


def test_sigterm_stops_realtime_infer_like_ctrl_c(media, tmp_path):
    bundle, video, wav = media
    out, trace, summary = tmp_path / "r.jsonl", tmp_path / "t.json", tmp_path / "s.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusionrt.realtime_cli", "--bundle", bundle, "--camera", video, "--mic", wav, "--loop",
         "--jsonl", out, "--trace", trace, "--summary-json", summary],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for(lambda: out.exists() and len(out.read_text().splitlines()) >= 5, 120, proc)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr  # a requested stop of an open-ended run
    assert "end to end" in stdout and "Traceback" not in stderr
    written = json.loads(summary.read_text())
    assert written["stopped_by"] == "terminate" and written["results"] >= 5
    events = json.loads(trace.read_text())  # the trace array was closed
    assert isinstance(events, list) and any(e.get("name") == "fusion" for e in events)
    lines = out.read_text().splitlines()
    assert all(json.loads(line)["seq"] >= 0 for line in lines)  # every JSONL line complete


def test_sigterm_cuts_a_long_verb_short_with_143_and_one_line(media, tmp_path):
    bundle, _, _ = media
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusionrt.cli", "bench", bundle, "--window-ms", "3000", "--threads", "1",
         "--json", tmp_path / "bench.json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(4)  # imports, the GEMM peak, then the first point's windows
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "fusionrt bench: terminated (SIGTERM)" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("program", [["fusionrt.cli", "inspect", "--no-check"], ["fusionrt.cli", "--help"],
                                     ["fusionrt.realtime_cli", "--help"]])
def test_a_closed_pipe_ends_the_output_quietly(media, program):
    bundle, _, _ = media
    args = [sys.executable, "-m", *program] + ([str(bundle)] if "inspect" in program else [])
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()  # the reader is gone before anything is written: `| head -0`
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert "BrokenPipe" not in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert proc.returncode == 0
