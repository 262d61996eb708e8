"""`quantize_bundle`: make INT8/FP16 variants of a bundle's components, measure them, pick defaults.

Per component and candidate: cosine to the FP32 outputs, the whole model's task accuracy on a
held-out labelled set with only that component swapped in, and median/p99 latency in ONNX Runtime
(batch 1, interleaved with FP32). An INT8 candidate (static or dynamic) that misses the budget
goes through sensitivity repair. The fastest candidate inside the budget, if at least `min_speedup`
times faster than FP32, becomes the component's default variant. In auto mode only the chosen
variant's file is added to the bundle; an explicit mode adds its variant whatever the verdict.

The variant files, the manifest (each kept variant with its `scheme` and the CPU `target` its
accuracy was judged on) and reports/calibration.json go into the bundle in one edit transaction:
an error or a kill before it commits leaves the old bundle as it was.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fusionrt.bundle import FALLBACK, Bundle, Component, edit
from fusionrt.calibration.dataset import CalibrationSet, as_bundle
from fusionrt.calibration.evaluate import BundleRunner
from fusionrt.calibration.measure import agreement, measure_latency, run_batches
from fusionrt.calibration.quantize import (
    Calibrator,
    Prepared,
    QuantConfig,
    QuantMode,
    QuantResult,
    prepare_for_quantization,
    quantize_onnx,
)
from fusionrt.calibration.reader import FeedsReader
from fusionrt.calibration.sensitivity import Verdict, repair
from fusionrt.calibration.target import cpu_target
from fusionrt.errors import CalibrationError, EngineError

HELDOUT_SIZE = 300
# Below this a "faster" variant is timing noise: fp16 on the CPU provider (which casts back to fp32)
# measured 1.07-1.09x on the demo text encoder.
MIN_SPEEDUP = 1.10
CALIBRATION_REPORT = "reports/calibration.json"


@dataclass(frozen=True)
class Search:
    """How `quantize_bundle` searches: which candidates, the budget, and how they are timed."""

    mode: QuantMode
    calibrator: Calibrator = Calibrator.MINMAX
    accuracy_budget: float = 0.5
    min_cosine: float = 0.99
    latency_runs: int = 50
    min_speedup: float = MIN_SPEEDUP
    repair_nodes: bool = True


@dataclass(frozen=True)
class Made:
    """One candidate file worth keeping, how it was made and what the manifest records about it."""

    path: Path
    config: QuantConfig
    info: dict


def candidates(mode: QuantMode, calibrator: Calibrator = Calibrator.MINMAX) -> list[QuantConfig]:
    """The variants a mode tries for every component."""
    if mode is QuantMode.AUTO:
        static = [QuantConfig(QuantMode.INT8_STATIC, c) for c in Calibrator]
        return [*static, QuantConfig(QuantMode.INT8_DYNAMIC), QuantConfig(QuantMode.FP16)]
    return [QuantConfig(mode, calibrator)]


def candidate_label(config: QuantConfig) -> str:
    if config.mode is QuantMode.INT8_STATIC:
        return f"int8-{config.calibrator.value}"
    return config.variant


def default_heldout(bundle: Bundle, n: int = HELDOUT_SIZE) -> CalibrationSet | None:
    """The built-in digits test split when the bundle classifies digits; else None (no labels known)."""
    if bundle.task != "classification" or len(bundle.labels) != 10:
        return None
    from fusionrt.data import LABELS

    if tuple(bundle.labels) != tuple(LABELS):
        return None
    return CalibrationSet.from_digits(bundle, "test", n)


class BudgetJudge:
    """Decides whether one candidate file of one component is inside the budget: the whole model's
    accuracy on held-out data with that file swapped in (when `runner` is given) and the mean cosine
    of the component's outputs to FP32 (on held-out data, else on the first calibration batches)."""

    def __init__(self, component: str, runner: BundleRunner | None, calib: CalibrationSet, fp32: Path,
                 budget_pts: float, min_cosine: float) -> None:
        self.component, self.runner, self.fp32 = component, runner, fp32
        self.budget_pts, self.min_cosine = budget_pts, min_cosine
        self.feeds = None if runner else calib.feeds(component)[:8]
        if runner:
            self.base_accuracy = runner.metrics(runner.logits())["accuracy"]

    def outputs(self, path: Path) -> np.ndarray:
        if self.runner is None:
            return run_batches(path, self.feeds)
        if self.component == self.runner.bundle.fusion.name:
            return self.runner.logits({self.component: path})
        return self.runner.component_outputs(self.component, path)

    def __call__(self, path: Path) -> Verdict:
        cos = agreement(self.outputs(self.fp32), self.outputs(path))
        figures = {"cosine": round(cos.cosine_mean, 6), "cosine_min": round(cos.cosine_min, 6)}
        if self.runner is None:
            ok = cos.cosine_mean >= self.min_cosine
            return Verdict(ok, 1.0 - cos.cosine_mean, figures)
        accuracy = self.runner.metrics(self.runner.logits({self.component: path}))["accuracy"]
        delta = (self.base_accuracy - accuracy) * 100.0
        figures.update(accuracy=round(accuracy, 6), accuracy_delta_pts=round(delta, 4))
        ok = delta <= self.budget_pts + 1e-9 and cos.cosine_mean >= self.min_cosine
        return Verdict(ok, max(delta, 0.0) + (1.0 - cos.cosine_mean), figures)


def latency_feed(component: str, feeds: list[dict[str, np.ndarray]], runner: BundleRunner | None) -> dict:
    """One item of `component`'s inputs to time it on: the first calibration item, else the first held-out one."""
    if feeds:
        return {k: v[:1] for k, v in feeds[0].items()}
    return runner.inputs(component, 0, 1)


def quantize_bundle(
    bundle: Bundle | str | Path,
    calib: CalibrationSet,
    mode: QuantMode | str,
    *,
    accuracy_budget: float = 0.5,
    calibrator: Calibrator | str = Calibrator.MINMAX,
    strict: bool = False,
    progress: Callable[[str], None] = print,
    heldout: CalibrationSet | None = None,
    components: tuple[str, ...] | None = None,
    min_cosine: float = 0.99,
    latency_runs: int = 50,
    min_speedup: float = MIN_SPEEDUP,
    repair_nodes: bool = True,
) -> dict:
    """`fusionrt quantize`: add variants to the bundle, set defaults, write reports/calibration.json.

    The budget is in accuracy points on `heldout` (default: the built-in digits test split when the
    bundle classifies digits), and every variant must also keep a mean cosine of `min_cosine` to the
    FP32 outputs (an accuracy that cannot move, e.g. of an untrained model, proves nothing); without
    labelled held-out data the cosine alone decides.
    A component no candidate fits keeps FP32; with `strict` that raises CalibrationError once the
    report is written.
    """
    search = Search(QuantMode(mode), Calibrator(calibrator), accuracy_budget, min_cosine, latency_runs, min_speedup,
                    repair_nodes)
    bundle = as_bundle(bundle)
    heldout = heldout if heldout is not None else default_heldout(bundle)
    runner = BundleRunner(bundle, heldout) if heldout is not None and bundle.task == "classification" else None
    names = list(components or bundle.components)
    unknown = [n for n in names if n not in bundle.components]
    if unknown:
        raise CalibrationError(f"components {unknown} are not in {bundle.root}; it has {sorted(bundle.components)}")
    report = _report(search, calib, heldout, runner)
    if runner:
        progress(f"FP32 accuracy on {heldout.source}: {report['baseline']['accuracy']:.4f}")
    kept: dict[str, dict[str, Made]] = {}
    with tempfile.TemporaryDirectory(prefix="fusionrt-quantize-") as tmp:
        for name in names:
            progress(f"{name}:")
            report["components"][name], kept[name] = _component(bundle, name, calib, runner, search, Path(tmp),
                                                                progress)
        if runner:
            _final(report, runner, {n: kept[n][e["chosen"]].path for n, e in report["components"].items()
                                    if e["chosen"] != FALLBACK})
        report["table"] = format_table(report)
        progress(report["table"])
        _store(bundle, report, kept, progress)
    missed = [n for n, e in report["components"].items() if e.get("budget_missed")]
    if missed and strict:
        raise CalibrationError(
            f"no variant of {missed} meets the budget ({report['criterion']}, {accuracy_budget} pts); they keep fp32 "
            f"(see {bundle.root / CALIBRATION_REPORT}); raise the budget or improve the calibration data"
        )
    return report


def _report(search: Search, calib: CalibrationSet, heldout: CalibrationSet | None, runner) -> dict:
    return {
        "mode": search.mode.value,
        "accuracy_budget_pts": search.accuracy_budget,
        "criterion": (
            f"accuracy within the budget and cosine >= {search.min_cosine}"
            if runner
            else f"cosine >= {search.min_cosine} (no labelled held-out data)"
        ),
        "target": cpu_target(),
        "calibration": calib.summary(),
        "heldout": heldout.summary() if heldout is not None else None,
        "baseline": runner.metrics(runner.logits()) if runner else None,
        "components": {},
    }


def _final(report: dict, runner: BundleRunner, chosen_files: dict[str, Path]) -> None:
    """The whole model's accuracy with every chosen variant in place."""
    if not chosen_files:
        return
    final = runner.metrics(runner.logits(chosen_files))
    report["final"] = {
        "components": {n: e["chosen"] for n, e in report["components"].items()},
        "accuracy": final["accuracy"],
        "accuracy_delta_pts": round((report["baseline"]["accuracy"] - final["accuracy"]) * 100.0, 4),
    }


def _component(bundle: Bundle, name: str, calib: CalibrationSet, runner: BundleRunner | None, search: Search,
               tmp: Path, progress) -> tuple[dict, dict[str, Made]]:
    """Measure every candidate of one component; return its report entry and the files worth keeping."""
    component = bundle.components[name]
    fp32 = component.variant(FALLBACK).path
    can_calibrate = calib.has(name)
    if runner is None and not can_calibrate:
        return {"chosen": FALLBACK, "note": "no calibration or held-out inputs for it; left as is", "candidates": []}, {}
    judge = BudgetJudge(name, runner, calib, fp32, search.accuracy_budget, search.min_cosine)
    feeds = calib.feeds(name) if can_calibrate else []
    rows, made = _try_candidates(component, fp32, feeds, judge, search, tmp, progress)
    latency = measure_latency({FALLBACK: fp32, **{k: m.path for k, m in made.items()}},
                              latency_feed(name, feeds, runner), runs=search.latency_runs)
    for row in rows:
        if row["candidate"] in latency:
            lat = latency[row["candidate"]]
            row.update(median_ms=round(lat.median_ms, 4), p99_ms=round(lat.p99_ms, 4),
                       speedup=round(latency[FALLBACK].median_ms / lat.median_ms, 3))
    entry = {FALLBACK: latency[FALLBACK].as_dict(), "candidates": rows, **_choice(rows, search.min_speedup)}
    progress(f"  -> {entry['chosen']}: {entry['reason']}")
    keep = {r["variant"]: made[r["candidate"]] for r in rows if r["candidate"] in made}
    if search.mode is QuantMode.AUTO:
        keep = {v: m for v, m in keep.items() if v == entry["chosen"]}
    return entry, keep


def _try_candidates(component: Component, fp32: Path, feeds, judge: BudgetJudge, search: Search, tmp: Path,
                    progress) -> tuple[list[dict], dict[str, Made]]:
    """Make and judge each candidate of `search.mode`: report rows, and the files made by label."""
    name = component.name
    prepared: Prepared | None = None
    rows, made = [], {}
    for config in candidates(search.mode, search.calibrator):
        label = candidate_label(config)
        row = {"candidate": label, "variant": config.variant, "precision": config.precision}
        if config.mode is QuantMode.INT8_STATIC and not feeds:
            rows.append({**row, "skipped": f"no calibration items for {name}"})
            continue
        try:
            if config.mode is QuantMode.FP16 and "fp16" in component.variants:
                path, info = component.variants["fp16"].path, {"source": "bundle (made at export)"}
            else:
                if prepared is None and config.mode is not QuantMode.FP16:
                    prepared = prepare_for_quantization(fp32, tmp / f"{name}.prepared.onnx")
                result, verdict_info = _make(config, fp32, tmp / f"{name}.{label}.onnx", feeds, prepared, judge,
                                             search.repair_nodes, progress)
                path, info = result.path, {**result.info(), **verdict_info}
            verdict = judge(path)
        except (CalibrationError, EngineError) as e:
            rows.append({**row, "error": str(e)})
            progress(f"  {label}: failed: {e}")
            continue
        rows.append({**row, **verdict.figures, "within_budget": verdict.ok, **info})
        made[label] = Made(path, config, info)
        progress(f"  {label}: {verdict.figures} {'inside' if verdict.ok else 'outside'} the budget")
    return rows, made


def _choice(rows: list[dict], min_speedup: float) -> dict:
    """The chosen variant: the fastest inside the budget and at least `min_speedup` x fp32, else fp32."""
    fitting = [r for r in rows if r.get("within_budget") and r["speedup"] >= min_speedup]
    if fitting:
        best = min(fitting, key=lambda r: r["median_ms"])
        return {"chosen": best["variant"],
                "reason": f"{best['candidate']} is the fastest inside the budget ({best['speedup']}x fp32)"}
    inside = [r for r in rows if r.get("within_budget")]
    reason = ("no candidate meets the budget; fp32 kept" if not inside
              else f"no candidate inside the budget is at least {min_speedup}x faster than fp32; fp32 kept")
    return {"chosen": FALLBACK, "budget_missed": not inside, "reason": reason}


def _make(config: QuantConfig, fp32: Path, out: Path, feeds, prepared, judge, repair_nodes,
          progress) -> tuple[QuantResult, dict]:
    if config.mode is QuantMode.FP16:
        return quantize_onnx(fp32, out, config, prepared=prepared), {}
    if not repair_nodes or not feeds:  # static INT8 without feeds never gets here (skipped)
        return quantize_onnx(fp32, out, config, FeedsReader(feeds), prepared=prepared), {}
    fixed = repair(prepared, out, config, feeds, judge, progress=progress)
    return fixed.result, ({"repair": fixed.as_dict()} if len(fixed.rounds) > 1 else {})


def _store(bundle: Bundle, report: dict, kept: dict[str, dict[str, Made]], progress) -> None:
    """One edit transaction: the kept files, their manifest entries, the defaults, reports/calibration.json."""
    target = report["target"]
    with edit(bundle) as change:
        staged = []
        for name, keep in kept.items():
            entry = change.manifest["components"][name]
            for variant, made in keep.items():
                existing = bundle.components[name].variants.get(variant)
                if existing is None or Path(made.path).resolve() != existing.path.resolve():
                    relative = f"{name}.{variant}.onnx"
                    change.copy_in(made.path, relative)
                    staged.append(relative)
                    entry["variants"][variant] = _variant_entry(relative, made)
                entry["variants"][variant].update(scheme=made.config.scheme, target=target)
            entry["default_variant"] = report["components"][name]["chosen"]
        change.write_json(CALIBRATION_REPORT, report)
        progress(f"storing {', '.join(staged) or 'no new variant files'} and {CALIBRATION_REPORT} in {bundle.root}")


def _variant_entry(relative: str, made: Made) -> dict:
    recipe = {k: v for k, v in made.info.items() if k != "repair"}
    entry = {"file": relative, "precision": made.config.precision, **recipe}
    if "repair" in made.info:
        entry["kept_float"] = [k["node"] for k in made.info["repair"]["kept_float"]]
    return entry


def format_table(report: dict) -> str:
    """component x variant x cosine x accuracy delta x ms x speed-up, as printed by `fusionrt quantize`."""
    header = (f"{'component':<15} {'variant':<16} {'cosine':>9} {'acc Δ pts':>9} {'median ms':>10} {'p99 ms':>8} "
              f"{'speed-up':>8}  note")
    lines = [header, "-" * len(header)]
    for name, entry in report["components"].items():
        fp32 = entry.get("fp32")
        if fp32:
            lines.append(f"{name:<15} {'fp32':<16} {1.0:>9.5f} {0.0:>9.2f} {fp32['median_ms']:>10.3f} "
                         f"{fp32['p99_ms']:>8.3f} {1.0:>8.2f}")
        for row in entry["candidates"]:
            if "median_ms" not in row:
                lines.append(f"{name:<15} {row['candidate']:<16} {'':>9} {'':>9} {'':>10} {'':>8} {'':>8}  "
                             f"{row.get('skipped') or row.get('error', '')}")
                continue
            delta = row.get("accuracy_delta_pts")
            mark = "*" if row["variant"] == entry["chosen"] and row.get("within_budget") else ""
            lines.append(
                f"{name:<15} {row['candidate'] + mark:<16} {row['cosine']:>9.5f} "
                f"{'' if delta is None else f'{delta:.2f}':>9} {row['median_ms']:>10.3f} {row['p99_ms']:>8.3f} "
                f"{row['speedup']:>8.2f}  {'inside budget' if row['within_budget'] else 'outside budget'}"
            )
        lines.append(f"{'':<15} -> {entry['chosen']}: {entry.get('reason') or entry.get('note', '')}")
    return "\n".join(lines)
