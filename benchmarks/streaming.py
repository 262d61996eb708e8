"""Streaming runtime under nominal load, under 2x overload, and against a naive sequential loop.

    .venv/bin/python benchmarks/streaming.py [--bundle bundles/demo] [--nominal-s 60] [--overload-s 300]
                                             [--throughput-s 20]

1. nominal: test://digits camera 30 fps + test://dtmf (audio hop 100 ms) + test://digits text (1 Hz),
   budget 33 ms: p99 end to end, deadline-miss rate, runtime overhead (end to end minus engine time).
2. overload: the same with the camera at 60 fps for --overload-s: p99 and RSS growth (after warm-up).
3. throughput: camera as fast as the source can render it, multi-rate pipeline vs a naive loop
   (for each camera frame: read everything, run every encoder, fuse), same inputs, same threads.
Results go to benchmarks/results/streaming.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import platform
import queue
import threading
import time
from pathlib import Path

import numpy as np

from fusionrt.bundle import load
from fusionrt.runtime import Budget, Pipeline, SourceOptions, open_source
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.preprocess import TextTokenizer, resize_image

RESULTS = Path(__file__).resolve().parent / "results"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def open_test_sources(fps: float, sample_rate: int) -> dict:
    options = SourceOptions(fps=fps, sample_rate=sample_rate)
    return {
        "image": open_source("test://digits", "image", options=options),
        "audio": open_source("test://dtmf", "audio", options=options),
        "text": open_source("test://digits", "text", options=options),
    }


def run_pipeline(bundle, fps: float, seconds: float, *, rss_after_s: float | None = None,
                 budget: Budget = Budget(deadline_ms=33.0), variant=None, threads=1) -> dict:
    rate = bundle.encoder("audio").preprocessing["sample_rate"]
    pipeline = Pipeline.from_bundle(bundle, open_test_sources(fps, rate), budget=budget, variant=variant,
                                    audio_hop_s=0.1, threads=threads)
    samples = {}

    def sample_rss():
        if rss_after_s is not None:
            time.sleep(rss_after_s)
            samples["start"] = rss_mb()

    sampler = threading.Thread(target=sample_rss, daemon=True)
    sampler.start()
    summary = pipeline.run(duration_s=seconds)
    m = summary.metrics
    row = {
        "camera_fps": fps,
        "seconds": round(summary.elapsed_s, 1),
        "results": m["results"],
        "results_per_s": m["results_per_s"],
        "e2e_p50_ms": m["e2e_ms"].get("p50"),
        "e2e_p99_ms": m["e2e_ms"].get("p99"),
        "e2e_max_ms": m["e2e_ms"].get("max"),
        "miss_rate": m["deadline_misses"] / max(1, m["results"]),
        "overhead_p50_ms": m["overhead_ms"].get("p50"),
        "overhead_p99_ms": m["overhead_ms"].get("p99"),
        "drops_by_reason": m["drops_by_reason"],
        "drops": m["drops"],
        "staleness_ms": {k: {q: h.get(q) for q in ("p50", "p99", "max")} for k, h in m["staleness_ms"].items()},
        "stages_ms": {k: {q: h.get(q) for q in ("p50", "p99")} for k, h in m["stages_ms"].items()},
        "stage_rates_per_s": m["stage_rates_per_s"],
        "actions": m["actions"],
        "action_times_s": m["action_times_s"],
        "variants": m["variants"],
    }
    if "start" in samples:
        row["rss_start_mb"] = samples["start"]
        row["rss_end_mb"] = rss_mb()
        row["rss_growth_mb"] = row["rss_end_mb"] - row["rss_start_mb"]
    return row


def run_naive(bundle, fps: float, seconds: float, *, newest: bool = False, threads: int = 1,
              deadline_ms: float | None = None) -> dict:
    """For each camera frame (every queued one, or with `newest` only the newest, the older ones dropped):
    take all audio so far and the latest text, run every encoder, fuse."""
    engines = {name: OrtEngine(c.variant().path, threads=threads) for name, c in bundle.components.items()}
    image_pre = bundle.encoder("image").preprocessing
    window = bundle.encoder("audio").preprocessing["window_samples"]
    rate = bundle.encoder("audio").preprocessing["sample_rate"]
    tokenizer = TextTokenizer(bundle.tokenizer_dir / "tokenizer.json", bundle.encoder("text").preprocessing["max_length"])
    sources = open_test_sources(fps, rate)
    inbox: dict[str, queue.Queue] = {m: queue.Queue() for m in sources}
    stop = threading.Event()

    def pump(modality):
        for frame in sources[modality].frames():
            inbox[modality].put(frame)
            if stop.is_set():
                return

    threads = [threading.Thread(target=pump, args=(m,), daemon=True) for m in sources]
    for t in threads:
        t.start()
    pcm = np.zeros(window, np.float32)
    text = "nothing yet"
    latencies, results = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            frame = inbox["image"].get(timeout=0.1)
        except queue.Empty:
            continue
        while newest and not inbox["image"].empty():
            frame = inbox["image"].get_nowait()
        while not inbox["audio"].empty():
            pcm = np.concatenate([pcm, inbox["audio"].get_nowait().data])[-window:]
        while not inbox["text"].empty():
            text = inbox["text"].get_nowait().data
        embeddings = {
            "image": engines["image_encoder"].run({"image": resize_image(frame.data, image_pre["height"], image_pre["width"])}),
            "audio": engines["audio_encoder"].run({"audio": pcm[None]}),
            "text": engines["text_encoder"].run(tokenizer(text)),
        }
        feeds = {m: embeddings[m]["embedding"] for m in bundle.modalities}
        feeds["presence"] = np.ones((1, len(bundle.modalities)), np.float32)
        engines["fusion"].run(feeds)
        latencies.append((time.monotonic_ns() - frame.t_ns) / 1e6)
        results += 1
    stop.set()
    for source in sources.values():
        source.close()
    lat = np.array(latencies)
    row = {
        "camera_fps": fps,
        "seconds": seconds,
        "results": results,
        "results_per_s": results / seconds,
        "e2e_p50_ms": float(np.percentile(lat, 50)),
        "e2e_p99_ms": float(np.percentile(lat, 99)),
        "e2e_max_ms": float(lat.max()),
    }
    if deadline_ms is not None:
        row["miss_rate"] = float(np.mean(lat > deadline_ms))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="bundles/demo")
    parser.add_argument("--nominal-s", type=float, default=60)
    parser.add_argument("--overload-s", type=float, default=300)
    parser.add_argument("--throughput-s", type=float, default=20)
    parser.add_argument("--throughput-fps", type=float, default=3000, help="camera rate for the throughput test")
    args = parser.parse_args()
    bundle = load(args.bundle)
    report = {"command": "python benchmarks/streaming.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()), "machine": platform.machine()}
    print("nominal: camera 30 fps, audio hop 100 ms, text 1 Hz, budget 33 ms", flush=True)
    report["nominal"] = run_pipeline(bundle, 30, args.nominal_s)
    print(json.dumps(report["nominal"], indent=1), flush=True)
    print(f"overload: camera 60 fps for {args.overload_s:g} s", flush=True)
    report["overload"] = run_pipeline(bundle, 60, args.overload_s, rss_after_s=min(20.0, args.overload_s / 5))
    print(json.dumps(report["overload"], indent=1), flush=True)
    print(f"throughput: camera at up to {args.throughput_fps:g} fps, pipeline then naive loop", flush=True)
    report["pipeline_max"] = run_pipeline(bundle, args.throughput_fps, args.throughput_s)
    report["naive_max"] = run_naive(bundle, args.throughput_fps, args.throughput_s)
    report["naive_nominal"] = run_naive(bundle, 30, min(args.nominal_s, 30))
    for key in ("pipeline_max", "naive_max", "naive_nominal"):
        print(key, json.dumps(report[key]), flush=True)
    report["multirate_speedup"] = report["pipeline_max"]["results_per_s"] / report["naive_max"]["results_per_s"]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "streaming.json").write_text(json.dumps(report, indent=2))
    rows = [("nominal 30 fps", report["nominal"]), ("overload 60 fps", report["overload"]),
            ("pipeline, max rate", report["pipeline_max"]), ("naive loop, max rate", report["naive_max"]),
            ("naive loop, 30 fps", report["naive_nominal"])]
    lines = [f"`{report['command']}`", "",
             "| run | results/s | e2e p50 ms | e2e p99 ms | miss rate | overhead p50 ms | RSS growth MB |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows:
        miss = f"{r['miss_rate']:.2%}" if "miss_rate" in r else "-"
        over = f"{r['overhead_p50_ms']:.3f}" if r.get("overhead_p50_ms") is not None else "-"
        rss = f"{r['rss_growth_mb']:.1f}" if "rss_growth_mb" in r else "-"
        lines.append(f"| {name} | {r['results_per_s']:.1f} | {r['e2e_p50_ms']:.2f} | {r['e2e_p99_ms']:.2f} | {miss} | {over} | {rss} |")
    lines.append(f"\nmulti-rate / naive fused results per second at max camera rate: {report['multirate_speedup']:.2f}x")
    (RESULTS / "streaming.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
