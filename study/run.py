"""Train every kind for every seed on the same data, measure the robustness grid, aggregate over
seeds, run the precision study on the best fusion kind, judge the claims and write the report."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fusionrt.config import Config, Task, config_to_dict
from fusionrt.data import LABELS, digits_from_config
from fusionrt.errors import ConfigError
from fusionrt.frame import MODALITIES
from fusionrt.study.claims import claims
from fusionrt.study.kinds import (
    FUSION_KINDS,
    NOISE_LEVELS,
    NONE,
    SINGLE_HEAD,
    aggregate,
    kind_config,
    kind_label,
    level_key,
    parse_kinds,
    study_kinds,
)
from fusionrt.study.precision import precision_study
from fusionrt.study.report import write_report


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

    started = time.perf_counter()
    kinds = tuple(kinds or study_kinds(config))
    _check(config, kinds, seeds, noise_levels)
    defaults = {getattr(config.data.noise, m) for m in config.model.modalities}
    noise_levels = sorted({*map(float, noise_levels), *defaults})  # the default level is every grid's reference
    work_dir, loads = Path(work_dir), [os.getloadavg()[0]]
    data = training_data(config, progress=progress)
    grid_inputs = noise_grid_inputs(config, data, noise_levels)
    timing = {"data_s": time.perf_counter() - started}

    runs, checkpoints = _train_all(config, kinds, seeds, data, grid_inputs, work_dir, loads, started, progress)
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
    if config.model.task is Task.REGRESSION or (config.model.task is Task.CLASSIFICATION
                                                 and config.model.num_outputs != len(LABELS)):
        raise ConfigError(
            f"the study runs on the built-in digits task: model.task = {config.model.task.value}, model.num_outputs "
            f"= {config.model.num_outputs}; expected classification with {len(LABELS)} outputs, or binary with 1"
        )
    parse_kinds(",".join(kinds), config)
    if not seeds:
        raise ConfigError("the study needs at least one seed, found none")
    if not noise_levels or any(not level >= 0 for level in noise_levels):
        raise ConfigError(f"noise levels {list(noise_levels)}: expected a non-empty list of values >= 0")


def _train_all(config, kinds, seeds, data, grid_inputs, work_dir: Path, loads: list, started: float, progress):
    """({kind: {seed: run}}, {kind: {seed: checkpoint}}), reporting each run and the load as it goes."""
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
    return runs, checkpoints


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

    from fusionrt.data import task_labels
    from fusionrt.scoring import task_metrics

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
                    outputs = _fuse(model.fusion, embeddings, model.modalities, missing).numpy()
                    metrics = task_metrics(labels, outputs, model.cfg.task.value, task_labels(model.cfg.task))
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


def summarize(seed_runs: dict[str, dict]) -> dict:
    """Mean ± std over seeds of accuracy, macro-F1, each class's recall and every grid cell."""
    runs = list(seed_runs.values())
    first = runs[0]
    return {
        "accuracy": aggregate([r["test"]["accuracy"] for r in runs]),
        "macro_f1": aggregate([r["test"]["macro_f1"] for r in runs]),
        "val_accuracy": aggregate([r["val_accuracy"] for r in runs]),
        "train_seconds": aggregate([r["train_seconds"] for r in runs]),
        "per_class_recall": {c: aggregate([r["test"]["per_class_recall"][c] for r in runs])
                             for c in first["test"]["per_class_recall"]},
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
