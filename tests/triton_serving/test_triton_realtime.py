"""`realtime-infer --backend triton://…` and `triton+grpc://…` on the test sources, a pipeline that
keeps running through a server restart, and a clean stop that leaves no process behind."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from runtime_models import ListSource, camera_items
from tools.triton_ci.server import TritonServer

from fusionrt.frame import Modality
from fusionrt.runtime import Pipeline

REALTIME_INFER = Path(sys.executable).with_name("realtime-infer")


@pytest.mark.parametrize("scheme", ["triton", "triton+grpc"])
def test_realtime_infer_streams_the_test_sources_through_the_server(triton_server, triton_bundle, tmp_path, scheme):
    where = triton_server.http if scheme == "triton" else triton_server.grpc
    summary = tmp_path / "summary.json"
    run = subprocess.run(
        [str(REALTIME_INFER), "--bundle", str(triton_bundle.root), "--camera", "test://digits", "--text", "test://digits",
         "--duration", "2", "--backend", f"{scheme}://{where}", "--variant", "fp32", "--summary-json", str(summary),
         "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    metrics = json.loads(summary.read_text())
    assert metrics["results"] > 20, metrics
    protocol = "http" if scheme == "triton" else "grpc"
    for model in ("image_encoder", "text_encoder", "fusion"):  # each remote stage's time, split
        assert f"{model} on the Triton server {protocol}://{where}: " in run.stderr
    assert "= server queue " in run.stderr and " + network/client " in run.stderr
    remote = {t["model"]: t for t in metrics["remote"]}  # the same split in the run's summary
    assert set(remote) == {"image_encoder", "text_encoder", "fusion"}
    for t in remote.values():
        assert t["requests"] > 0 and t["server_requests"] >= t["requests"]
        assert 0 < t["server_compute_ms"] <= t["round_trip_ms"]["mean"] and t["other_ms"] >= 0


def test_a_running_pipeline_rides_out_a_server_restart_and_the_server_stops_cleanly(
    triton_venv, triton_repository, triton_bundle, caplog
):
    server = TritonServer(triton_repository.root, models=("image_encoder", "fusion"), venv=triton_venv).start()
    try:
        source = ListSource("image", camera_items(200, 0.05))  # 10 s of camera at 20 Hz
        pipeline = Pipeline.from_bundle(triton_bundle, {Modality.IMAGE: source}, backend=f"triton://{server.http}",
                                        variant="fp32")  # fmt: skip
        done_at: list[float] = []
        outcome: dict = {}

        def stream() -> None:
            try:
                outcome["summary"] = pipeline.run(duration_s=8, on_result=lambda r: done_at.append(time.monotonic()))
            except BaseException as e:  # noqa: BLE001 - the test asserts there is none
                outcome["error"] = e

        runner = threading.Thread(target=stream)
        with caplog.at_level(logging.WARNING, logger="fusionrt.triton"):
            runner.start()
            time.sleep(1.5)
            server.kill()  # the server crashes mid-run, with the pipeline's connections open
            assert server.leftover_processes() == []
            restarted = time.monotonic()
            server.start()
            runner.join(30)
        assert "error" not in outcome, outcome.get("error")
        assert any(t > restarted for t in done_at), "no result after the restart"
        assert outcome["summary"].results == len(done_at) > 20
        messages = [r.getMessage() for r in caplog.records]
        assert any(f"stage failed: the Triton server http://{server.http} is unreachable" in m for m in messages)
        assert any(f"Triton server http://{server.http} is back after" in m for m in messages)
    finally:
        code = server.stop()
        server.cleanup()
    assert code == 0 and server.left_behind == [] and server.leftover_processes() == []
