"""`fusionrt eval --study`: is the multimodal model worth its cost? The effectiveness study.

On the built-in digits task, with one training budget (the config's data, epochs, optimizer and
modality drop-out) and several train seeds, it trains one model per kind:

- single modality, "text" / "image" / "audio": that modality's encoder and an MLP head (the
  early-fusion head over one embedding);
- fusion, "early" / "late" / "cross_attention": every modality of the config, that fusion head;

and measures, on the test split:

- accuracy, macro-F1 and per-class recall (PyTorch, FP32), mean ± sample std over seeds;
- a robustness grid: the noise level of one modality at a time (the others at the config's noise)
  x one modality missing at inference (presence 0 and a zero embedding, as the runtime fuses it);
- FP32 / FP16 / INT8 of the best fusion kind, through its exported ONNX files in ONNX Runtime;

then judges the three claims from those numbers (`claims`) and writes study.json, study.md and the
charts (`fusionrt.study_report`). Trained runs and bundles go to a separate work directory.

What is shared to save time changes nothing that is compared: the splits are generated and
tokenized once for every run; a single-modality model holds only its own encoder; the grid
computes each encoder's embeddings once per noise level and reruns only the fusion head per
(noise, missing) cell; only the best fusion kind is exported and quantized.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fusionrt.config import MODALITIES, Config, FusionKind, Task, config_to_dict
from fusionrt.data import LABELS, DigitsData, digits_from_config
from fusionrt.errors import ConfigError

FUSION_KINDS = tuple(kind.value for kind in FusionKind)
SINGLE_HEAD = FusionKind.EARLY  # the head a single-modality model gets: an MLP over its one embedding
NOISE_LEVELS = (0.0, 1.0, 2.0, 3.0)
NONE = "none"  # the robustness grid's "nothing missing" column
# "default": each component's default variant after `quantize --mode int8-static` (INT8 where it met the
# accuracy budget and was at least 1.1x faster, else FP32), the mix a deployment would run.
PRECISIONS = ("fp32", "fp16", "int8", "default")
CALIBRATION_ITEMS = 128
FUSION_MARGIN_PTS = 5.0
INT8_BUDGET_PTS = 0.5


# ------------------------------------------------------------------------------ kinds and seeds
def study_kinds(config: Config) -> tuple[str, ...]:
    """Every kind the study trains for `config`: one per configured modality, then each fusion head."""
    return (*config.model.modalities, *FUSION_KINDS)


def kind_label(kind: str) -> str:
    return f"{kind}-only" if kind in MODALITIES else f"{kind.replace('_', '-')} fusion"


def parse_seeds(spec: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2); ConfigError naming what was wrong."""
    parts = [p.strip() for p in spec.split(",")]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(
            f"--seeds {spec!r}: expected distinct comma-separated non-negative integers, such as 0,1,2"
        )
    return tuple(int(p) for p in parts)


def parse_kinds(spec: str, config: Config) -> tuple[str, ...]:
    """'text,early' -> ('text', 'early'), checked against the kinds `config` allows."""
    allowed = study_kinds(config)
    kinds = tuple(k.strip() for k in spec.split(","))
    unknown = [k for k in kinds if k not in allowed]
    if unknown or len(set(kinds)) != len(kinds):
        what = f"unknown kind {unknown[0]!r}" if unknown else "a kind is repeated"
        raise ConfigError(f"--kinds {spec!r}: {what}; expected distinct names from {', '.join(allowed)}")
    return kinds


def kind_config(config: Config, kind: str, seed: int) -> Config:
    """`config` with the modalities and fusion head of `kind`, trained with seed `seed`."""
    model = config.model
    if kind in FUSION_KINDS:
        model = dataclasses.replace(model, fusion=dataclasses.replace(model.fusion, kind=FusionKind(kind)))
    else:
        model = dataclasses.replace(
            model, modalities=(kind,), fusion=dataclasses.replace(model.fusion, kind=SINGLE_HEAD)
        )
    return dataclasses.replace(config, model=model, train=dataclasses.replace(config.train, seed=seed))


def aggregate(values: Sequence[float]) -> dict:
    """Mean and sample standard deviation (n - 1) over seeds; std is None for a single value."""
    array = np.asarray(values, dtype=np.float64)
    std = float(array.std(ddof=1)) if len(array) > 1 else None
    return {"mean": float(array.mean()), "std": std, "n": len(array), "values": [float(v) for v in array]}


def level_key(level: float) -> str:
    return f"{level:g}"


# ------------------------------------------------------------------------------------ the study
def run_study(
    config: Config,
    seeds: Sequence[int],
    out_dir: str | Path,
    *,
    kinds: Sequence[str] | None = None,
    work_dir: str | Path = "runs/study",
    noise_levels: Sequence[float] = NOISE_LEVELS,
    command: str = "",
    progress: Callable[[str], None] = print,
) -> dict:
    """Train every kind for every seed, evaluate, judge the claims; write study.json/.md/PNGs to out_dir."""
    from fusionrt.models.train import training_data
    from fusionrt.study_report import write_report

    started = time.perf_counter()
    kinds = tuple(kinds or study_kinds(config))
    _check(config, kinds, seeds, noise_levels)
    defaults = {getattr(config.data.noise, m) for m in config.model.modalities}
    noise_levels = sorted({*map(float, noise_levels), *defaults})  # the default level is every grid's reference
    work_dir, loads = Path(work_dir), [os.getloadavg()[0]]
    data = training_data(config, progress=progress)
    grid_inputs = noise_grid_inputs(config, data, noise_levels)
    timing = {"data_s": time.perf_counter() - started}

    runs: dict[str, dict[str, dict]] = {}
    checkpoints: dict[str, dict[int, Path]] = {}
    done, total = 0, len(kinds) * len(seeds)
    for kind in kinds:
        runs[kind], checkpoints[kind] = {}, {}
        for seed in seeds:
            done += 1
            step = f"[{done}/{total}] {kind_label(kind)}, seed {seed}"
            progress(f"{step}: training ({config.train.epochs} epochs)")
            run, checkpoint = _train_and_grid(config, kind, seed, data, grid_inputs, work_dir, progress)
            runs[kind][str(seed)], checkpoints[kind][seed] = run, checkpoint
            loads.append(os.getloadavg()[0])
            progress(
                f"{step}: test accuracy {run['test']['accuracy']:.3f}, {run['train_seconds']:.0f} s "
                f"(study so far {time.perf_counter() - started:.0f} s, 1-min load {loads[-1]:.1f})"
            )
    timing["train_and_grid_s"] = time.perf_counter() - started - timing["data_s"]

    summary = {kind: summarize(runs[kind]) for kind in kinds}
    best = best_kinds(summary)
    precision = None
    if best["fusion"] is not None:
        t0 = time.perf_counter()
        precision = precision_study(config, best["fusion"], checkpoints[best["fusion"]], data, progress)
        timing["precision_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - started

    results = {
        "command": command,
        "config": config_to_dict(config),
        "seeds": list(seeds),
        "kinds": list(kinds),
        "modalities": list(config.model.modalities),
        "noise_levels": [level_key(v) for v in noise_levels],
        "default_noise": {m: level_key(getattr(config.data.noise, m)) for m in config.model.modalities},
        "single_head": SINGLE_HEAD.value,
        "work_dir": str(work_dir),
        "machine": _machine(loads),
        "timing_s": {k: round(v, 1) for k, v in timing.items()},
        "runs": runs,
        "summary": summary,
        "best": best,
        "precision": precision,
    }
    results["claims"] = claims(results)
    for claim in results["claims"]:
        progress(f"claim {claim['id']} {claim['verdict']}: {claim['result']}")
    paths = write_report(results, out_dir)
    progress(f"wrote {', '.join(str(p) for p in paths)} ({timing['total_s']:.0f} s in all)")
    return results


def _check(config: Config, kinds: Sequence[str], seeds: Sequence[int], noise_levels: Sequence[float]) -> None:
    if config.model.task is not Task.CLASSIFICATION or config.model.num_outputs != len(LABELS):
        raise ConfigError(
            f"the study runs on the built-in digits task: model.task = {config.model.task.value}, model.num_outputs "
            f"= {config.model.num_outputs}; expected classification with {len(LABELS)} outputs"
        )
    parse_kinds(",".join(kinds), config)
    if not seeds:
        raise ConfigError("the study needs at least one seed, found none")
    if not noise_levels or any(not level >= 0 for level in noise_levels):
        raise ConfigError(f"noise levels {list(noise_levels)}: expected a non-empty list of values >= 0")


def noise_grid_inputs(config: Config, data, levels: Sequence[float]) -> dict[str, dict[str, object]]:
    """Test-split inputs of each modality at each noise level, the other modalities at the config's noise.

    The data generator draws each modality from its own random stream, so changing one modality's
    noise leaves the other modalities' samples and the labels bit-identical: one tensor per
    (modality, level) describes every test set of the grid.
    """
    from fusionrt.models.train import tensors_from_digits

    grid = {}
    for modality in config.model.modalities:
        grid[modality] = {}
        for level in levels:
            if level == getattr(config.data.noise, modality):
                grid[modality][level_key(level)] = data.inputs["test"][modality]
                continue
            noise = dataclasses.replace(config.data.noise, **{modality: float(level)})
            noisy = dataclasses.replace(
                config,
                data=dataclasses.replace(config.data, noise=noise),
                model=dataclasses.replace(config.model, modalities=(modality,)),
            )
            split = digits_from_config(noisy, "test")
            grid[modality][level_key(level)] = tensors_from_digits(split, noisy, data.tokenizer)[modality]
    return grid


def _train_and_grid(config, kind, seed, data, grid_inputs, work_dir: Path, progress) -> tuple[dict, Path]:
    from fusionrt.models import MultimodalModel
    from fusionrt.models.train import load_checkpoint, train

    cfg = kind_config(config, kind, seed)
    result = train(cfg, work_dir / kind / f"seed{seed}", data=data, progress=lambda line: progress(f"    {line}"))
    vocab_size = len(data.tokenizer) if "text" in cfg.model.modalities else 0
    model = MultimodalModel(cfg.model, vocab_size=vocab_size)
    load_checkpoint(model, result.checkpoint)
    default = {m: level_key(getattr(config.data.noise, m)) for m in config.model.modalities}
    test, grid = robustness_grid(model, grid_inputs, default, data.splits["test"].labels)
    some = next(iter(default))
    run = {
        "train_seconds": round(result.seconds, 2),
        "val_accuracy": result.metrics["val"]["accuracy"],
        "test": test,
        "missing": grid[some][default[some]],  # every modality at the default noise; one missing per column
        "grid": grid,
    }
    return run, result.checkpoint


def robustness_grid(model, grid_inputs: dict, default: dict[str, str], labels: np.ndarray) -> tuple[dict, dict]:
    """(full metrics at the default noise with nothing missing, accuracy[noisy modality][level][missing]).

    Each encoder runs once per noise level of its modality; every cell then runs only the fusion
    head on those embeddings, with the missing modality's presence set to 0 and its embedding zeroed.
    A modality the model lacks leaves its accuracy unchanged when "missing".
    """
    import torch

    from fusionrt.scoring import classification_metrics

    model.eval()
    with torch.no_grad():
        embedded = {
            (m, level): _embed(model.encoders[m], inputs)
            for m in model.modalities
            for level, inputs in grid_inputs[m].items()
        }
        grid, test = {}, None
        for noisy, levels in grid_inputs.items():
            grid[noisy] = {}
            for level in levels:
                embeddings = [embedded[(m, level if m == noisy else default[m])] for m in model.modalities]
                grid[noisy][level] = {}
                for missing in (NONE, *grid_inputs):
                    predicted = _fuse(model.fusion, embeddings, model.modalities, missing).argmax(dim=1).numpy()
                    metrics = classification_metrics(labels, predicted, LABELS)
                    grid[noisy][level][missing] = metrics["accuracy"]
                    if test is None and level == default[noisy] and missing == NONE:
                        test = metrics
    return test, grid


def _embed(encoder, inputs, batch: int = 250):
    import torch

    n = len(inputs[0] if isinstance(inputs, tuple) else inputs)
    chunks = []
    for start in range(0, n, batch):
        part = tuple(t[start : start + batch] for t in inputs) if isinstance(inputs, tuple) else inputs[start : start + batch]
        chunks.append(encoder(*part) if isinstance(part, tuple) else encoder(part))
    return torch.cat(chunks)


def _fuse(fusion, embeddings: list, modalities: tuple[str, ...], missing: str):
    import torch

    presence = torch.ones(len(embeddings[0]), len(modalities))
    if missing in modalities:
        k = modalities.index(missing)
        presence[:, k] = 0.0
        embeddings = [torch.zeros_like(e) if i == k else e for i, e in enumerate(embeddings)]
    return fusion(*embeddings, presence)


# ---------------------------------------------------------------------------------- aggregation
def summarize(seed_runs: dict[str, dict]) -> dict:
    """Mean ± std over seeds of accuracy, macro-F1, each class's recall and every grid cell."""
    runs = list(seed_runs.values())
    first = runs[0]
    return {
        "accuracy": aggregate([r["test"]["accuracy"] for r in runs]),
        "macro_f1": aggregate([r["test"]["macro_f1"] for r in runs]),
        "val_accuracy": aggregate([r["val_accuracy"] for r in runs]),
        "train_seconds": aggregate([r["train_seconds"] for r in runs]),
        "per_class_recall": {c: aggregate([r["test"]["per_class_recall"][c] for r in runs]) for c in LABELS},
        "missing": {missing: aggregate([r["missing"][missing] for r in runs]) for missing in first["missing"]},
        "grid": {
            noisy: {
                level: {missing: aggregate([r["grid"][noisy][level][missing] for r in runs]) for missing in cells}
                for level, cells in levels.items()
            }
            for noisy, levels in first["grid"].items()
        },
    }


def best_kinds(summary: dict) -> dict:
    """The fusion kind and the single-modality kind with the highest mean test accuracy (None if absent)."""

    def best(group: Sequence[str]) -> str | None:
        present = [k for k in summary if k in group]
        return max(present, key=lambda k: summary[k]["accuracy"]["mean"]) if present else None

    return {"fusion": best(FUSION_KINDS), "single": best(MODALITIES)}


# ------------------------------------------------------------------------------------ precision
def precision_study(config: Config, kind: str, checkpoints: dict[int, Path], data, progress) -> dict:
    """Export each seed's `kind` model, add INT8 (static QDQ, with sensitivity repair) and evaluate
    FP32 / FP16 / INT8 through the exported ONNX files on the test split.

    Calibration uses the first CALIBRATION_ITEMS items of the val split and the repair's accuracy
    judge the whole val split, so the test split stays unseen until the evaluation.
    """
    from fusionrt.bundle import load
    from fusionrt.calibration import CalibrationSet, evaluate, quantize_bundle
    from fusionrt.export.from_checkpoint import export_checkpoint

    def indented(text: str) -> None:
        for line in text.splitlines():
            progress(f"    {line}")

    val, test = data.splits["val"], data.splits["test"]
    calib_items = min(CALIBRATION_ITEMS, len(val))
    seeds = {}
    for seed, checkpoint in checkpoints.items():
        progress(f"precision: {kind_label(kind)}, seed {seed}: export, INT8, evaluate through ONNX Runtime")
        bundle_dir = checkpoint.parent / "bundle"
        export_checkpoint(kind_config(config, kind, seed), checkpoint, bundle_dir, force=True, progress=indented)
        bundle = load(bundle_dir)
        calib = CalibrationSet.from_data(bundle, _head(val, calib_items), source=f"val split, first {calib_items}")
        heldout = CalibrationSet.from_data(bundle, val, source=f"val split ({len(val)})")
        quantize_bundle(bundle_dir, calib, "int8-static", heldout=heldout, progress=indented)
        bundle = load(bundle_dir)
        report = evaluate(bundle, CalibrationSet.from_data(bundle, test, source=f"test split ({len(test)})"), PRECISIONS)
        seeds[str(seed)] = {
            "bundle": str(bundle_dir),
            "variants": {
                v: {"accuracy": r["accuracy"], "macro_f1": r["macro_f1"], "components": r["components"]}
                for v, r in report["variants"].items()
            },
            "int8_kept_float": {  # nodes left in float: ranges too wide for INT8 (attention masks) + the repair
                name: len(c.variants["int8"].info.get("kept_float", []))
                for name, c in bundle.components.items()
                if "int8" in c.variants
            },
        }
        accuracy = {v: f"{r['accuracy']:.3f}" for v, r in report["variants"].items()}
        progress(f"precision: {kind_label(kind)}, seed {seed}: accuracy {accuracy}")
    variants = {
        v: {
            "accuracy": aggregate([s["variants"][v]["accuracy"] for s in seeds.values()]),
            "macro_f1": aggregate([s["variants"][v]["macro_f1"] for s in seeds.values()]),
            "drop_pts": aggregate(
                [100.0 * (s["variants"]["fp32"]["accuracy"] - s["variants"][v]["accuracy"]) for s in seeds.values()]
            ),
        }
        for v in PRECISIONS
    }
    return {
        "kind": kind,
        "evaluated_on": f"test split ({len(test)} items), exported ONNX files in ONNX Runtime (CPU)",
        "int8_recipe": (
            f"fusionrt quantize --mode int8-static: QDQ, minmax calibration on {calib_items} val items, "
            f"sensitivity repair judged on the {len(val)} val items (budget 0.5 pts)"
        ),
        "seeds": seeds,
        "variants": variants,
    }


def _head(data: DigitsData, n: int) -> DigitsData:
    return DigitsData(images=data.images[:n], audio=data.audio[:n], texts=data.texts[:n], labels=data.labels[:n])


# --------------------------------------------------------------------------------------- claims
def claims(results: dict) -> list[dict]:
    """The three claims, each with its definition, the numbers and PASS / FAIL (or NOT EVALUATED)."""
    summary, best = results["summary"], results["best"]
    return [_fusion_gain(summary, best), _missing_modality(results, best), _int8(results["precision"])]


def _verdict(passed: bool | None) -> str:
    return {True: "PASS", False: "FAIL", None: "NOT EVALUATED"}[passed]


def _claim(cid: int, statement: str, definition: str, passed: bool | None, result: str, numbers: dict) -> dict:
    return {"id": cid, "statement": statement, "definition": definition, "passed": passed,
            "verdict": _verdict(passed), "result": result, "numbers": numbers}  # fmt: skip


def _fusion_gain(summary: dict, best: dict) -> dict:
    statement = f"the best fusion beats the best single modality by >= {FUSION_MARGIN_PTS:g} accuracy points at default noise"
    definition = (
        "best = highest mean test accuracy over seeds (default noise, nothing missing) among the fusion kinds and "
        "among the single-modality kinds; margin = difference of those means in points; PASS if margin >= "
        f"{FUSION_MARGIN_PTS:g}"
    )
    if best["fusion"] is None or best["single"] is None:
        return _claim(1, statement, definition, None, "needs at least one fusion and one single-modality kind", {})
    fusion, single = summary[best["fusion"]]["accuracy"], summary[best["single"]]["accuracy"]
    margin = 100.0 * (fusion["mean"] - single["mean"])
    result = (
        f"{kind_label(best['fusion'])} {fusion['mean']:.4f} vs {kind_label(best['single'])} {single['mean']:.4f}: "
        f"{margin:+.2f} pts (threshold {FUSION_MARGIN_PTS:g})"
    )
    numbers = {"best_fusion": best["fusion"], "best_fusion_accuracy": fusion["mean"], "best_single": best["single"],
               "best_single_accuracy": single["mean"], "margin_pts": margin, "threshold_pts": FUSION_MARGIN_PTS}  # fmt: skip
    return _claim(1, statement, definition, margin >= FUSION_MARGIN_PTS, result, numbers)


def _missing_modality(results: dict, best: dict) -> dict:
    summary = results["summary"]
    statement = "with one modality missing, the fused model stays above that modality's absence-free single-modality rivals"
    definition = (
        "for the best fusion kind (claim 1) and each modality X: mean test accuracy with X missing at inference "
        "(presence 0, default noise) against the best mean accuracy of the single-modality models that do not use X, "
        "given their complete input at default noise; PASS if the fused model is higher for every X"
    )
    fusion = best["fusion"]
    singles = [k for k in summary if k in MODALITIES]
    if fusion is None or len(singles) < 2:
        return _claim(2, statement, definition, None, "needs a fusion kind and at least two single-modality kinds", {})
    per_modality, parts = {}, []
    for x in results["modalities"]:
        rivals = [k for k in singles if k != x]
        if not rivals:
            continue
        rival = max(rivals, key=lambda k: summary[k]["accuracy"]["mean"])
        fused = summary[fusion]["missing"][x]["mean"]
        rival_acc = summary[rival]["accuracy"]["mean"]
        per_modality[x] = {"fused_accuracy": fused, "rival": rival, "rival_accuracy": rival_acc,
                           "margin_pts": 100.0 * (fused - rival_acc), "above": fused > rival_acc}  # fmt: skip
        parts.append(f"{x} missing {fused:.4f} vs {kind_label(rival)} {rival_acc:.4f} ({100.0 * (fused - rival_acc):+.2f} pts)")
    passed = all(v["above"] for v in per_modality.values())
    return _claim(2, statement, definition, passed, f"{kind_label(fusion)}: " + "; ".join(parts),
                  {"fusion": fusion, "per_missing_modality": per_modality})  # fmt: skip


def _int8(precision: dict | None) -> dict:
    statement = f"INT8 stays within {INT8_BUDGET_PTS:g} accuracy points of FP32"
    definition = (
        "the best fusion kind exported to ONNX, every component INT8 (`fusionrt quantize --mode int8-static`); drop = "
        "FP32 accuracy - INT8 accuracy on the test split, both through ONNX Runtime, per seed; PASS if the mean drop "
        f"over seeds is <= {INT8_BUDGET_PTS:g} points (a gain counts as no drop)"
    )
    if precision is None:
        return _claim(3, statement, definition, None, "needs a fusion kind", {})
    drop = precision["variants"]["int8"]["drop_pts"]
    fp32, int8 = precision["variants"]["fp32"]["accuracy"], precision["variants"]["int8"]["accuracy"]
    per_seed = ", ".join(f"{v:+.2f}" for v in drop["values"])
    result = (
        f"{kind_label(precision['kind'])}: FP32 {fp32['mean']:.4f}, INT8 {int8['mean']:.4f}, mean drop "
        f"{drop['mean']:+.2f} pts (per seed {per_seed}; budget {INT8_BUDGET_PTS:g})"
    )
    numbers = {"kind": precision["kind"], "fp32_accuracy": fp32["mean"], "int8_accuracy": int8["mean"],
               "mean_drop_pts": drop["mean"], "drop_pts_per_seed": drop["values"], "budget_pts": INT8_BUDGET_PTS}  # fmt: skip
    return _claim(3, statement, definition, drop["mean"] <= INT8_BUDGET_PTS, result, numbers)


def _machine(loads: list[float]) -> dict:
    import onnxruntime
    import torch

    from fusionrt.runtime.bench.machine import cpu_info

    return {
        "cpu": cpu_info()[0],
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_1min": {"min": min(loads), "mean": float(np.mean(loads)), "max": max(loads), "samples": len(loads)},
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
