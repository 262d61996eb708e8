"""The effectiveness study's outputs: study.json (every number), study.md (tables) and PNG charts.

Everything here reads the results dict `fusionrt.study.run_study` builds, so a report can be
redrawn from a study.json without training again: `write_report(json.loads(...), out_dir)`.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from fusionrt.study.charts import accuracy_chart, missing_chart, noise_chart, pm
from fusionrt.study.kinds import NONE, kind_label

JSON_NAME = "study.json"
MARKDOWN_NAME = "study.md"
ACCURACY_PNG = "study_accuracy.png"
NOISE_PNG = "study_noise.png"
MISSING_PNG = "study_missing.png"


def write_report(results: dict, out_dir: str | Path) -> list[Path]:
    """Write study.json, the three PNG charts and study.md into out_dir; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results.setdefault("written_utc", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    paths = [out / JSON_NAME, out / ACCURACY_PNG, out / NOISE_PNG, out / MISSING_PNG, out / MARKDOWN_NAME]
    paths[0].write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    accuracy_chart(results, paths[1])
    noise_chart(results, paths[2])
    missing_chart(results, paths[3])
    paths[4].write_text(markdown(results), encoding="utf-8")
    return paths


def markdown(results: dict) -> str:
    """study.md: the setup, the claims, then the accuracy, missing-modality, noise and precision tables."""
    lines = _setup_lines(results) + _claim_lines(results) + _accuracy_lines(results)
    lines += _missing_lines(results) + _noise_lines(results) + precision_markdown(results["precision"])
    return "\n".join(lines).rstrip() + "\n"


def _setup_lines(results: dict) -> list[str]:
    config, machine, timing = results["config"], results["machine"], results["timing_s"]
    data, train = config["data"], config["train"]
    load = machine["load_1min"]
    n_seeds = len(results["seeds"])
    return [
        "# Effectiveness study",
        "",
        f"`{results['command']}` ({results['written_utc']})",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} ({machine['torch_threads']} threads), "
        f"onnxruntime {machine['onnxruntime']}. The machine is shared: 1-minute load average during the run "
        f"{load['min']:.1f}–{load['max']:.1f} (mean {load['mean']:.1f}, {load['samples']} samples).",
        f"Wall time: **{timing['total_s']:.0f} s** (data {timing['data_s']:.0f} s, training + robustness grid "
        f"{timing['train_and_grid_s']:.0f} s, precision {timing.get('precision_s', 0):.0f} s).",
        "",
        f"Task: the built-in trimodal digits data, train/val/test {data['train_size']}/{data['val_size']}/"
        f"{data['test_size']} items (data seed {data['seed']}), noise {data['noise']} (1 = default). Every model gets "
        f"the same budget: {train['epochs']} epochs, batch {train['batch_size']}, AdamW lr {train['lr']} with one-cycle "
        f"schedule, modality drop-out {train['modality_dropout']} (a no-op with one modality). Single-modality models: "
        f"that encoder and an MLP head (the {results['single_head']}-fusion head over one embedding). Train seeds "
        f"{', '.join(map(str, results['seeds']))}; every figure is the mean ± sample standard deviation over "
        f"the {n_seeds} seeds, on the test split, unless marked otherwise.",
        "",
    ]


def _claim_lines(results: dict) -> list[str]:
    lines = ["## Claims", "", "| # | claim | verdict | numbers |", "|---|---|---|---|"]
    lines += [f"| {c['id']} | {c['statement']} | **{c['verdict']}** | {c['result']} |" for c in results["claims"]]
    return lines + [""] + [f"{c['id']}. {c['definition']}." for c in results["claims"]]


def _accuracy_lines(results: dict) -> list[str]:
    summary, kinds = results["summary"], results["kinds"]
    lines = [
        "",
        "## Accuracy at default noise, nothing missing (PyTorch FP32)",
        "",
        "| model | accuracy | macro-F1 | val accuracy | train s |",
        "|---|---|---|---|---|",
    ]
    for k in kinds:
        s = summary[k]
        lines.append(f"| {kind_label(k)} | {pm(s['accuracy'])} | {pm(s['macro_f1'])} | {pm(s['val_accuracy'])} | "
                     f"{pm(s['train_seconds'], 0)} |")  # fmt: skip
    lines += ["", f"![accuracy per model]({ACCURACY_PNG})", "", "Per-class recall:", ""]
    labels = list(summary[kinds[0]]["per_class_recall"])
    lines += ["| model | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for k in kinds:
        recalls = summary[k]["per_class_recall"]
        lines.append(f"| {kind_label(k)} | " + " | ".join(pm(recalls[c], 2) for c in labels) + " |")
    return lines


def _missing_lines(results: dict) -> list[str]:
    modalities = results["modalities"]
    lines = [
        "",
        "## Missing modality (dropped at inference: presence 0, zero embedding; default noise)",
        "",
        "| model | nothing missing | " + " | ".join(f"{m} missing" for m in modalities) + " |",
        "|---|---|" + "---|" * len(modalities),
    ]
    for k in results["kinds"]:
        cells = results["summary"][k]["missing"]
        lines.append(f"| {kind_label(k)} | " + " | ".join(pm(cells[c]) for c in (NONE, *modalities)) + " |")
    return lines + ["", f"![accuracy with one modality missing]({MISSING_PNG})", ""]


def _noise_lines(results: dict) -> list[str]:
    summary, kinds, modalities, levels = results["summary"], results["kinds"], results["modalities"], results["noise_levels"]
    lines = [
        "## Noise (one modality's noise level changed, the others at default; nothing missing)",
        "",
        "Noise 0 is clean; at noise s each modality hides the digit in min(1, 0.25 s) of the samples "
        "(`fusionrt.data`).",
        "",
    ]
    header = "| model | " + " | ".join(f"{m} noise {lv}" for m in modalities for lv in levels) + " |"
    lines += [header, "|---|" + "---|" * (len(modalities) * len(levels))]
    for k in kinds:
        grid = summary[k]["grid"]
        lines.append(f"| {kind_label(k)} | " + " | ".join(pm(grid[m][lv][NONE]) for m in modalities for lv in levels) + " |")
    lines += ["", f"![accuracy against noise]({NOISE_PNG})", ""]
    fusions = [k for k in kinds if k not in modalities]
    if fusions:
        lines += ["Full grid of the fusion models (rows: which modality is noisier or cleaner; columns: which is missing):", ""]
    for k in fusions:
        grid = summary[k]["grid"]
        lines += [f"**{kind_label(k)}**", "",
                  "| noise | nothing missing | " + " | ".join(f"{m} missing" for m in modalities) + " |",
                  "|---|---|" + "---|" * len(modalities)]  # fmt: skip
        for m in modalities:
            for lv in levels:
                lines.append(f"| {m} {lv} | " + " | ".join(pm(grid[m][lv][c]) for c in (NONE, *modalities)) + " |")
        lines.append("")
    return lines


def precision_markdown(precision: dict | None) -> list[str]:
    if precision is None:
        return ["## Precision", "", "Not run: the study had no fusion kind."]
    lines = [
        f"## Precision ({kind_label(precision['kind'])}, through the exported ONNX files)",
        "",
        f"Evaluated on the {precision['evaluated_on']}. INT8: {precision['int8_recipe']}.",
        "",
        "| variant | accuracy | macro-F1 | drop vs FP32 (pts) |",
        "|---|---|---|---|",
    ]
    for v, row in precision["variants"].items():
        lines.append(f"| {v.upper()} | {pm(row['accuracy'], 4)} | {pm(row['macro_f1'], 4)} | {pm(row['drop_pts'], 2)} |")
    lines += [
        "",
        "INT8: every component INT8. DEFAULT: each component's default variant after the quantization (INT8 "
        "where it met the accuracy budget on val and was at least 1.1x faster, else FP32), what a deployment runs.",
        "",
        "| seed | FP32 | FP16 | INT8 | DEFAULT | DEFAULT runs | INT8 nodes kept float (mask ranges + repair) |",
        "|---|---|---|---|---|---|---|",
    ]
    for seed, s in precision["seeds"].items():
        v = s["variants"]
        default = ", ".join(f"{name} {variant}" for name, variant in v["default"]["components"].items())
        kept = ", ".join(f"{name} {n}" for name, n in s["int8_kept_float"].items() if n) or "none"
        lines.append(f"| {seed} | {v['fp32']['accuracy']:.4f} | {v['fp16']['accuracy']:.4f} | {v['int8']['accuracy']:.4f} | "
                     f"{v['default']['accuracy']:.4f} | {default} | {kept} |")  # fmt: skip
    return lines
