"""`realtime-infer` as a user runs it: a real process over a real bundle, video, WAV and text."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent / "runtime"))
from runtime_models import write_bundle  # noqa: E402

EXE = [sys.executable, "-m", "fusionrt.realtime_cli"]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    bundle = write_bundle(root / "bundle")
    video = root / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (32, 24))
    for i in range(45):
        writer.write(np.full((24, 32, 3), (i * 5) % 255, np.uint8))
    writer.release()
    wav = root / "clip.wav"
    t = np.arange(int(1.5 * 44100)) / 44100
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100)  # resampled to 1 kHz
    text = root / "chat.txt"
    text.write_text("0\tred cat\n500\tgreen dog\n1000\tblue cat\n")
    return root, bundle, video, wav, text


def run(args, **kwargs):
    return subprocess.run(EXE + [str(a) for a in args], capture_output=True, timeout=120, **kwargs)


def test_deterministic_replay_of_files_is_bit_identical(media, tmp_path):
    root, bundle, video, wav, text = media
    outputs = []
    for k in range(2):
        out, trace, summary = tmp_path / f"r{k}.jsonl", tmp_path / f"t{k}.json", tmp_path / f"s{k}.json"
        proc = run(["--bundle", bundle, "--camera", video, "--mic", wav, "--text", text, "--replay", "deterministic",
                    "--jsonl", out, "--trace", trace, "--summary-json", summary, "--save-video", tmp_path / f"v{k}.mp4"])
        assert proc.returncode == 0, proc.stderr.decode()
        assert b"end to end" in proc.stdout
        outputs.append(out.read_bytes())
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(lines) == 45  # one fused result per camera frame, none dropped
        assert all(set(r["presence"]) == {"text", "image", "audio"} for r in lines)
        assert lines[-1]["presence"] == {"text": True, "image": True, "audio": True}
        assert isinstance(json.loads(trace.read_text()), list)
        assert json.loads(summary.read_text())["results"] == 45
        capture = cv2.VideoCapture(str(tmp_path / f"v{k}.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) >= 45
    assert outputs[0] == outputs[1]


def test_stdin_text_with_bad_bytes_is_handled(media, tmp_path):
    root, bundle, video, wav, text = media
    out = tmp_path / "stdin.jsonl"
    proc = run(["--bundle", bundle, "--text", "-", "--jsonl", out, "--quiet"], input=b"red cat\n\n\xff\xfe dog\nblue\n")
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 3 and all(r["presence"]["text"] for r in lines)


def test_bad_input_is_one_line_naming_the_thing(media, tmp_path):
    root, bundle, video, wav, text = media
    cases = [
        ([], "no source"),
        (["--camera", "7"], "camera index 7"),
        (["--camera", "rtsp:/"], "rtsp:/"),
        (["--mic", tmp_path / "missing.wav"], "missing.wav"),
    ]
    for args, needle in cases:
        proc = run(["--bundle", bundle, *args, "--quiet"])
        err = proc.stderr.decode().strip()
        assert proc.returncode == 1, (args, err)
        assert needle in err, (args, err)
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
    # a value refused at parse time: argparse's usage line, then one error line naming the flag; exit 2
    proc = run(["--bundle", bundle, "--camera", video, "--trigger", "sideways", "--quiet"])
    err = proc.stderr.decode().strip()
    assert proc.returncode == 2 and err.splitlines()[-1].startswith("realtime-infer: error: argument --trigger: "
                                                                    "'sideways'"), err
    assert "Traceback" not in err
    proc = run(["--bundle", tmp_path / "nowhere", "--camera", video])
    assert proc.returncode == 1 and b"nowhere" in proc.stderr


def test_truncated_video_degrades_instead_of_crashing(media, tmp_path):
    root, bundle, video, wav, text = media
    broken = tmp_path / "broken.avi"
    data = video.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    out = tmp_path / "broken.jsonl"
    proc = run(["--bundle", bundle, "--camera", broken, "--mic", wav, "--replay", "deterministic", "--jsonl", out,
                "--trigger", "audio", "--quiet"])
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"FAILED" in proc.stdout  # the summary reports the camera's failure
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines and not lines[-1]["presence"]["image"] and lines[-1]["presence"]["audio"]


def test_run_realtime_is_the_api_under_the_cli(media, tmp_path, capsys):
    from fusionrt.errors import ConfigError
    from fusionrt.runtime import Outputs, SourceOptions, run_realtime

    root, bundle, video, wav, text = media
    cli_out, api_out = tmp_path / "cli.jsonl", tmp_path / "api.jsonl"
    proc = run(["--bundle", bundle, "--camera", video, "--mic", wav, "--text", text, "--replay", "deterministic",
                "--trigger", "audio", "--jsonl", cli_out, "--quiet"])
    assert proc.returncode == 0, proc.stderr.decode()
    report = run_realtime(bundle, camera=str(video), mic=str(wav), text=str(text), trigger="audio",
                          options=SourceOptions(replay="deterministic"), outputs=Outputs(jsonl=api_out, console=False))
    assert api_out.read_bytes() == cli_out.read_bytes()
    assert report.summary.results == len(api_out.read_text().splitlines()) > 0 and report.summary.deterministic
    assert report.accuracy is None  # files know no ground truth
    printed = capsys.readouterr().out
    assert "end to end" in printed and printed.rstrip("\n") == str(report)
    with pytest.raises(ConfigError, match="no source"):
        run_realtime(bundle)
    with pytest.raises(ConfigError, match="trigger 'sideways'"):
        run_realtime(bundle, camera=str(video), trigger="sideways")


def test_ground_truth_counts_only_labels_the_bundle_has():
    from types import SimpleNamespace

    from fusionrt.runtime import GroundTruth

    truth = GroundTruth(("zero", "one", "two"))
    for label, top in ((0, "zero"), (1, "two"), (7, "zero"), (None, "one")):  # 7: a test:// label beyond the bundle's
        truth(SimpleNamespace(label=label, top_k=((top, 1.0),), top_label=top))
    assert (truth.seen, truth.right, truth.accuracy) == (2, 1, 0.5)
