"""Local engine vs a Triton server over HTTP vs gRPC: N concurrent `realtime-infer` streams (the fleet
case: many cameras, one server) on the demo bundle.

    .venv/bin/python benchmarks/triton_serving.py [--bundle bundles/demo] [--seconds 8] [--streams 1,4,8]
                                          [--delay-us 2000] [--max-batch 8]

Each stream is its own `realtime-infer` process (test://digits camera 30 fps, test://dtmf, test://digits
text, budget 33 ms, --summary-json). Backends: `ort` (each process runs its engines in-process, 1
thread per stage), `triton://` and `triton+grpc://` against ONE server started here on 127.0.0.1: the
CI stand-in of tools/triton_ci (the wheel's tritonserver 2.51 with the python-backend onnxruntime
stand-in), serving `fusionrt triton-export --variant auto` with dynamic batching. Reported per point:
p50/p99 end to end per result (all streams' results pooled), results/s summed over the streams, and
for Triton the average server batch of the image encoder. Results: benchmarks/results/triton.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tritonclient.http as triton_http

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.triton_ci.server import TritonServer  # noqa: E402

from fusionrt.bundle import load  # noqa: E402
from fusionrt.runtime.bench.machine import cpu_summary  # noqa: E402
from fusionrt.triton import Serving, write_repository  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
REALTIME_INFER = Path(sys.executable).with_name("realtime-infer")


def run_streams(bundle: Path, backend: str, streams: int, seconds: float, work: Path) -> dict:
    """`streams` realtime-infer processes at once; their summaries pooled."""
    runs = []
    for i in range(streams):
        summary = work / f"{backend.split(':')[0]}-{streams}-{i}.json"
        command = [str(REALTIME_INFER), "--bundle", str(bundle), "--camera", "test://digits", "--mic", "test://dtmf",
                   "--text", "test://digits", "--duration", str(seconds), "--backend", backend, "--seed", str(i),
                   "--summary-json", str(summary), "--quiet"]  # fmt: skip
        runs.append((summary, subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    metrics = []
    for summary, process in runs:
        _, err = process.communicate(timeout=seconds + 120)
        if process.returncode != 0:
            raise RuntimeError(f"realtime-infer --backend {backend} failed ({process.returncode}): {err[-2000:]}")
        metrics.append(json.loads(summary.read_text()))
    return pooled(metrics)


def pooled(metrics: list[dict]) -> dict:
    """p50/p99 of every stream's results (from each run's histogram quantiles, weighted by its count)."""
    counts = np.array([m["results"] for m in metrics], float)
    weights = counts / counts.sum()
    e2e = [m["e2e_ms"] for m in metrics]
    return {
        "results": int(counts.sum()),
        "results_per_s": sum(m["results_per_s"] for m in metrics),
        "e2e_p50_ms": float(sum(w * h["p50"] for w, h in zip(weights, e2e))),
        "e2e_p99_ms": float(max(h["p99"] for h in e2e)),
        "deadline_misses": sum(m["deadline_misses"] for m in metrics),
        "image_encode_p50_ms": float(sum(w * m["stages_ms"]["image.encode"]["p50"] for w, m in zip(weights, metrics))),
    }


def image_batches(server: TritonServer) -> tuple[int, int]:
    client = triton_http.InferenceServerClient(server.http)
    try:
        stats = client.get_inference_statistics("image_encoder")["model_stats"][0]
    finally:
        client.close()
    return int(stats["inference_count"]), int(stats["execution_count"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default="bundles/demo")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--delay-us", type=int, default=2000)
    parser.add_argument("--max-batch", type=int, default=8)
    args = parser.parse_args()
    bundle = load(args.bundle)
    streams = [int(n) for n in args.streams.split(",")]
    points = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        repo = write_repository(bundle, work / "repo", serving=Serving(max_batch=args.max_batch, delay_us=args.delay_us))
        with TritonServer(repo.root, models=(*repo.variants, repo.ensemble)) as server:
            backends = {"ort (local)": "ort", "triton HTTP": f"triton://{server.http}",
                        "triton gRPC": f"triton+grpc://{server.grpc}"}  # fmt: skip
            for n in streams:
                for name, backend in backends.items():
                    before = image_batches(server)
                    started = time.perf_counter()
                    point = run_streams(bundle.root, backend, n, args.seconds, work)
                    after = image_batches(server)
                    requests, batches = after[0] - before[0], after[1] - before[1]
                    point.update(backend=name, streams=n, wall_s=time.perf_counter() - started,
                                 image_server_batch=requests / batches if batches else None)  # fmt: skip
                    points.append(point)
                    print(f"{name:<12} streams {n}: {point['results_per_s']:.1f} results/s, e2e p50 "
                          f"{point['e2e_p50_ms']:.2f} ms p99 {point['e2e_p99_ms']:.2f} ms", flush=True)
    report = {
        "conditions": {
            "cpu": cpu_summary(), "cores": os.cpu_count(), "machine": platform.machine(), "network": "loopback (127.0.0.1)",
            "server": "tritonserver 2.51 (nvidia-pytriton 0.7.0 wheel) with the python-backend onnxruntime stand-in "
                      "of tools/triton_ci: absolute server numbers are not those of Triton's native onnxruntime backend",
            "bundle": str(bundle.root), "variants": repo.variants, "seconds_per_point": args.seconds,
            "dynamic_batching": {"max_batch_size": args.max_batch, "max_queue_delay_us": args.delay_us},
            "sources": "test://digits camera 30 fps, test://dtmf, test://digits text; budget 33 ms",
            "command": "python benchmarks/triton_serving.py " + " ".join(sys.argv[1:]),
        },  # fmt: skip
        "points": points,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "triton.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "triton.md").write_text(markdown(report))
    print(f"wrote {RESULTS / 'triton.md'} and triton.json")


def markdown(report: dict) -> str:
    c = report["conditions"]
    lines = [
        "# Local engine vs Triton (HTTP, gRPC): concurrent realtime-infer streams, one server", "",
        f"CPU {c['cpu']}, {c['cores']} cores shared by the server and every stream; {c['network']}; {c['server']}.",
        f"Bundle {c['bundle']} ({', '.join(f'{k} {v}' for k, v in c['variants'].items())}); {c['sources']}; "
        f"{c['seconds_per_point']:g} s per point; dynamic batching max {c['dynamic_batching']['max_batch_size']}, "
        f"delay {c['dynamic_batching']['max_queue_delay_us']} µs. `{c['command']}`", "",
        "| backend | streams | results/s (all streams) | e2e p50 ms | e2e p99 ms | image encode p50 ms | "
        "deadline misses | image server batch |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for p in report["points"]:
        batch = "—" if p["image_server_batch"] is None else f"{p['image_server_batch']:.2f}"
        lines.append(f"| {p['backend']} | {p['streams']} | {p['results_per_s']:.1f} | {p['e2e_p50_ms']:.2f} | "
                     f"{p['e2e_p99_ms']:.2f} | {p['image_encode_p50_ms']:.2f} | {p['deadline_misses']} | {batch} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
