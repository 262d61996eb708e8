"""On a Jetson, `run_realtime` and `fusionrt bench` sample tegrastats while they run. Here a
`tegrastats` executable on PATH replays two real Nano lines (tests/runtime/data/tegrastats.txt) at the
asked interval, a real subprocess read by the real reader: the run's report, its summary JSON and the
bench report carry the power and temperature summary. Off a Jetson (no binary) nothing is added."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from runtime_models import write_bundle

from fusionrt.runtime import Outputs, SourceOptions, run_realtime
from fusionrt.runtime.bench import BenchSettings, bench_bundle

NANO_LINES = (Path(__file__).parent / "data" / "tegrastats.txt").read_text().splitlines()[6:8]


def fake_tegrastats(directory: Path) -> None:
    script = directory / "tegrastats"
    lines = "\n".join(f"echo '{line}'" for line in NANO_LINES)
    script.write_text(f"#!/bin/sh\n# --interval MS\nwhile true; do\n{lines}\nsleep 0.05\ndone\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_a_realtime_run_reports_power_and_temperatures(tmp_path, monkeypatch):
    fake_tegrastats(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    bundle = write_bundle(tmp_path / "bundle", modalities=("image",))
    summary_json = tmp_path / "summary.json"
    report = run_realtime(bundle, camera="test://digits", duration_s=1.0, options=SourceOptions(fps=30.0),
                          outputs=Outputs(summary_json=summary_json, console=False, echo=False))
    assert report.power["samples"] >= 2
    assert report.power["input_power_max_mw"] == 2545  # POM_5V_IN of the second line
    assert report.power["temps_max_c"]["gpu"] == 31.5
    assert "power (tegrastats" in str(report)
    assert json.loads(summary_json.read_text())["power"]["input_power_mean_mw"] == report.power["input_power_mean_mw"]


def test_off_a_jetson_nothing_is_added(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tegrastats anywhere on it
    monkeypatch.setattr("fusionrt.runtime.tegrastats.tegrastats_path", lambda: None)
    bundle = write_bundle(tmp_path / "bundle", modalities=("image",))
    report = run_realtime(bundle, camera="test://digits", duration_s=0.5, options=SourceOptions(fps=30.0),
                          outputs=Outputs(console=False, echo=False))
    assert report.power == {} and "tegrastats" not in str(report)


def test_bench_reports_power_while_measuring(tmp_path, monkeypatch):
    fake_tegrastats(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    bundle = write_bundle(tmp_path / "bundle", modalities=("image",))
    report = bench_bundle(bundle, components=["fusion"], backends=["ort-cpu"], threads=[1], batches=[1],
                          settings=BenchSettings(window_ms=20, max_windows=4, warmup_ms=20, gemm_size=64),
                          progress=lambda line: None)
    assert report["power"]["samples"] >= 1 and report["power"]["input_power_max_mw"] in (2089, 2545, 1997)
