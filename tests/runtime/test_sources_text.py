"""Text sources: timed .txt files, stdin through a real subprocess, literals, test://digits."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from fusionrt import data
from fusionrt.errors import SourceError
from fusionrt.frame import Modality
from fusionrt.runtime.sources import Replay, SourceOptions, open_source

DETERMINISTIC = SourceOptions(replay=Replay.DETERMINISTIC)

STDIN_READER = """
import json, sys, threading
from fusionrt.runtime.sources import open_source
source = open_source("-", "text")
if len(sys.argv) > 1:
    threading.Timer(float(sys.argv[1]), source.close).start()
for frame in source.frames():
    record = {"seq": frame.seq, "t_ns": frame.t_ns, "text": frame.data, "modality": frame.modality.value}
    print(json.dumps(record), flush=True)
print(json.dumps({"stats": source.stats}), flush=True)
"""


def test_text_file_with_times_empty_lines_repeats_and_bad_bytes(tmp_path):
    path = tmp_path / "chat.txt"
    path.write_bytes(
        b"\xef\xbb\xbfhello\n"  # BOM, untimed: at 0
        b"250\tit is a seven\n"
        b"\n"
        b"   \n"
        b"400\tit is a seven\n"  # unchanged: skipped
        b"untimed \xff line\r\n"  # 1 s after the previous line (400 ms)
        b"2500.5\t  spaced out  \n"
        b"not\ta time\n"
    )
    source = open_source(str(path), "text", options=DETERMINISTIC)
    assert source.modality is Modality.TEXT and source.rate_hz == 0.0
    frames = list(source.frames())
    assert [f.data for f in frames] == ["hello", "it is a seven", "untimed \ufffd line", "spaced out", "not\ta time"]
    assert [f.t_ns for f in frames] == [0, 250_000_000, 1_400_000_000, 2_500_500_000, 3_500_500_000]
    assert [f.seq for f in frames] == list(range(5))
    assert source.stats == {"frames": 5, "empty_lines": 2, "decode_errors": 1, "unchanged": 1}


def test_text_file_replays_in_realtime_on_its_schedule(tmp_path):
    path = tmp_path / "timed.txt"
    path.write_text("0\tone\n100\ttwo\n300\tthree\n")
    start = time.monotonic_ns()
    frames = list(open_source(str(path), "text").frames())
    assert [f.data for f in frames] == ["one", "two", "three"]
    offsets_ms = np.array([(f.t_ns - start) / 1e6 for f in frames])
    scheduled_ms = np.array([0, 100, 300])
    assert np.all(offsets_ms >= scheduled_ms) and np.all(offsets_ms < scheduled_ms + 200)
    assert (time.monotonic_ns() - start) / 1e9 < 0.8


def test_untimed_file_paces_one_line_per_second(tmp_path):
    path = tmp_path / "plain.txt"
    path.write_text("a\nb\nc\n")
    source = open_source(str(path), "text", options=DETERMINISTIC)
    assert source.rate_hz == 1.0
    assert [f.t_ns for f in source.frames()] == [0, 1_000_000_000, 2_000_000_000]


def test_times_going_backwards_are_refused_at_open(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("100\tfirst\n50\tsecond\n")
    with pytest.raises(SourceError, match="bad.txt, line 2: release time 50 ms is before"):
        open_source(str(path), "text")


def test_file_or_literal(tmp_path, monkeypatch):
    with pytest.raises(SourceError, match="missing.txt does not exist"):
        open_source(str(tmp_path / "missing.txt"), "text")
    notes = tmp_path / "notes"  # an existing file without .txt is a file
    notes.write_text("from a file\n")
    assert [f.data for f in open_source(str(notes), "text").frames()] == ["from a file"]
    assert [f.data for f in open_source(notes.as_uri(), "text").frames()] == ["from a file"]
    monkeypatch.chdir(tmp_path)
    literal = open_source("it's a 7, I think", "text", options=DETERMINISTIC)
    frames = list(literal.frames())
    assert [(f.data, f.t_ns, f.seq, f.label) for f in frames] == [("it's a 7, I think", 0, 0, None)]
    live = list(open_source("hello", "text").frames())
    assert len(live) == 1 and live[0].t_ns > 0


def run_stdin_reader(payload: bytes, *args: str, timeout: float = 30) -> list[dict]:
    result = subprocess.run(
        [sys.executable, "-c", STDIN_READER, *args], input=payload, capture_output=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def test_stdin_lines_through_a_real_pipe():
    payload = b"first\n\n   \nsecond\nsecond\nbad \xff\xfe bytes\r\n\xe2\x82\xac euro\nlast without newline"
    *frames, summary = run_stdin_reader(payload)
    expected = ["first", "second", "bad \ufffd\ufffd bytes", "\u20ac euro", "last without newline"]
    assert [f["text"] for f in frames] == expected
    assert [f["seq"] for f in frames] == list(range(5)) and {f["modality"] for f in frames} == {"text"}
    assert np.all(np.diff([f["t_ns"] for f in frames]) >= 0)
    assert summary["stats"] == {"frames": 5, "empty_lines": 2, "decode_errors": 1, "unchanged": 1}


def test_close_ends_a_blocked_stdin_read():
    process = subprocess.Popen(
        [sys.executable, "-c", STDIN_READER, "1.0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    process.stdin.write(b"typed\n")
    process.stdin.flush()  # and then nothing more: the pipe stays open, the reader blocks
    try:
        returncode = process.wait(timeout=20)
    finally:
        process.kill()
        process.stdin.close()
    lines = [json.loads(line) for line in process.stdout.read().decode().splitlines()]
    process.stdout.close()
    assert returncode == 0
    assert lines[0]["text"] == "typed"
    assert lines[-1] == {"stats": {"frames": 1, "empty_lines": 0, "decode_errors": 0, "unchanged": 0}}


def test_stdin_refuses_deterministic_replay():
    with pytest.raises(SourceError, match="stdin.*deterministic"):
        open_source("-", "text", options=DETERMINISTIC)


def test_test_digits_text_is_the_data_generator_with_labels():
    options = SourceOptions(replay=Replay.DETERMINISTIC, duration_s=6, seed=2)
    source = open_source("test://digits", "text", options=options)
    assert source.rate_hz == 1.0
    frames = list(source.frames())
    rng = np.random.default_rng(2)
    expected = []
    for tick in range(6):
        label = data.scene_digit(tick, 2)
        expected.append((tick * 1_000_000_000, data.digit_text(label, rng), label))
    emitted = [(f.t_ns, f.data, f.label) for f in frames]
    kept = [e for i, e in enumerate(expected) if i == 0 or e[1] != expected[i - 1][1]]
    assert emitted == kept
    assert source.stats["frames"] + source.stats["unchanged"] == 6
    again = [(f.t_ns, f.data, f.label) for f in open_source("test://digits", "text", options=options).frames()]
    assert again == emitted
