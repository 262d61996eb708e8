"""`quantize_bundle`: make INT8/FP16 variants of a bundle's components, measure them, pick defaults.

Per component and candidate: cosine to the FP32 outputs, the whole model's task accuracy on the
labelled validation split with only that component swapped in, and latency quartiles in ONNX
Runtime (batch 1, 1 intra-op thread as `realtime-infer` runs each stage, interleaved with FP32).
An INT8 candidate (static or dynamic) that misses the budget goes through sensitivity repair, for
fewer rounds than the nodes a candidate of the same variant inside the budget keeps float (none
when it keeps none: repair only keeps nodes float, so the repaired file could not be faster than
that one); an INT8 file in which no operator runs in INT8 is no INT8 variant and is dropped. An
audio encoder's spectral front-end stays float in every INT8 candidate
(fusionrt.calibration.frontend, found from the graph). The fastest
candidate inside the budget and faster than FP32 beyond noise (fusionrt.calibration.report.choose)
becomes the component's default variant. The test split is measured once, for the chosen variants, and only reported. In auto mode only the chosen variant's
file is added to the bundle; an explicit mode adds its variant whatever the verdict, and fails
(after storing what it made) when a component's variant could not be made or none was made at all.

Every INT8 candidate is made in the scheme of the `target` (fusionrt.calibration.target: this CPU
by default). The variant files, the manifest (each kept variant with its `scheme`, `target` and
the CPU its accuracy was judged on) and reports/calibration.json go into the bundle in one edit
transaction: an error or a kill before it commits leaves the old bundle as it was.
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
from fusionrt.calibration.frontend import spectral_frontend
from fusionrt.calibration.graphs import int8_nodes, load_onnx
from fusionrt.calibration.measure import Speedup, agreement, measure_latency, run_batches
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
from fusionrt.calibration.report import choose, choose_by_precision, format_table, split_report
from fusionrt.calibration.sensitivity import MAX_REPAIR_ROUNDS, Verdict, repair
from fusionrt.calibration.target import AUTO, cpu_target, resolve_target, scheme_for
from fusionrt.errors import CalibrationError, EngineError
from fusionrt.progress import progress as eta

HELDOUT_SIZE = 300
HELDOUT_SEED = 1  # the built-in calibration items are the validation split's seed-0 draws: judge on others
# Below this a "faster" variant is timing noise: fp16 on the CPU provider (which casts back to fp32)
# measured 1.07-1.09x on the demo text encoder, and an int8-dynamic file with no quantized operator
# 1.16x; so the paired sign test of measure.Speedup.beyond_noise applies as well.
MIN_SPEEDUP = 1.10
LATENCY_THREADS = 1  # as realtime-infer runs each stage; more threads per session also spin against each other
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
    target: str = AUTO  # resolved: an INT8 kernel family (fusionrt.calibration.target)


@dataclass(frozen=True)
class Made:
    """One candidate file worth keeping, how it was made and what the manifest records about it."""

    path: Path
    config: QuantConfig
    info: dict


def candidates(mode: QuantMode, calibrator: Calibrator = Calibrator.MINMAX, target: str = AUTO) -> list[QuantConfig]:
    """The variants a mode tries for every component, in the scheme `target` needs (TensorRT: static
    QDQ INT8 and FP16, dynamic INT8 being a CPU-only choice; CUDA: FP16 only)."""
    mode, scheme = QuantMode(mode), scheme_for(target)
    if mode is QuantMode.AUTO:
        static = [QuantConfig.for_target(QuantMode.INT8_STATIC, target, c) for c in Calibrator] if scheme.int8 else []
        dynamic = [] if scheme.static_only else [QuantConfig.for_target(QuantMode.INT8_DYNAMIC, target)]
        return [*static, *dynamic, QuantConfig.for_target(QuantMode.FP16, target)]
    return [QuantConfig.for_target(mode, target, Calibrator(calibrator))]


def candidate_label(config: QuantConfig) -> str:
    if config.mode is QuantMode.INT8_STATIC:
        return f"int8-{config.calibrator.value}"
    return config.variant


def default_heldout(bundle: Bundle, n: int = HELDOUT_SIZE, *, split: str = "val",
                    seed: int = HELDOUT_SEED) -> CalibrationSet | None:
    """Labelled built-in digits when the bundle classifies digits (else None: no labels known): the
    validation split, which budgets are judged on, by default; `split="test"` for the test report."""
    from fusionrt.data import BINARY_LABELS, LABELS

    if (bundle.task, tuple(bundle.labels)) not in (("classification", LABELS), ("binary", BINARY_LABELS)):
        return None
    return CalibrationSet.from_digits(bundle, split, n, seed=seed if split == "val" else 0)


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
    test: CalibrationSet | None = None,
    components: tuple[str, ...] | None = None,
    min_cosine: float = 0.99,
    latency_runs: int = 50,
    min_speedup: float = MIN_SPEEDUP,
    repair_nodes: bool = True,
    target: str = AUTO,
) -> dict:
    """`fusionrt quantize`: add variants to the bundle, set defaults, write reports/calibration.json.

    The budget is in accuracy points on `heldout`, the validation split (default: built-in digits
    validation items other than the calibration ones, when the bundle classifies digits), and every
    variant must also keep a mean cosine of `min_cosine` to the FP32 outputs (an accuracy that cannot
    move, e.g. of an untrained model, proves nothing); without labelled held-out data the cosine
    alone decides. `test` (default: the digits test split when `heldout` is defaulted) is only
    reported, once, for the chosen variants. `target`: "auto" (this CPU), "x86-vnni", "x86-avx2",
    "aarch64", "tensorrt" or "cuda" (fusionrt.calibration.target); a GPU target's choice becomes its
    entry in the component's `defaults_by_target`, and the CPU default stays as it was.
    A component no candidate fits keeps FP32; with `strict` that raises CalibrationError once the
    report is written. An explicit mode that could not make its variant raises as well.
    """
    search = Search(QuantMode(mode), Calibrator(calibrator), accuracy_budget, min_cosine, latency_runs, min_speedup,
                    repair_nodes, resolve_target(target))
    candidates(search.mode, search.calibrator, search.target)  # a mode the target cannot run fails here
    bundle = as_bundle(bundle)
    if heldout is None:
        heldout, test = default_heldout(bundle), test if test is not None else default_heldout(bundle, split="test")
    runner = BundleRunner(bundle, heldout) if heldout is not None and bundle.task != "regression" else None
    names = list(components or bundle.components)
    unknown = [n for n in names if n not in bundle.components]
    if unknown:
        raise CalibrationError(f"components {unknown} are not in {bundle.root}; it has {sorted(bundle.components)}")
    report = _report(search, calib, heldout, runner)
    if runner:
        progress(f"FP32 accuracy on the validation split, {heldout.source}: {report['baseline']['accuracy']:.4f}")
    kept: dict[str, dict[str, Made]] = {}
    with tempfile.TemporaryDirectory(prefix="fusionrt-quantize-") as tmp, eta(len(names), "quantize") as bar:
        for name in names:
            progress(f"{name}:")
            report["components"][name], kept[name] = _component(bundle, name, calib, runner, search, Path(tmp),
                                                                progress)
            bar.advance()
        if runner:
            _fit_whole_model(report, runner, kept, search, progress)
        chosen = _chosen_files(report, kept)
        report["table"] = format_table(report)
        progress(report["table"])
        report["test"] = split_report(test, bundle, chosen, progress)
        _store(bundle, report, kept, progress)
    _check_outcome(report, search, strict, bundle.root)
    return report


def _check_outcome(report: dict, search: Search, strict: bool, root: Path) -> None:
    """Raise, once the report is stored, when an explicit mode made no variant or failed on a
    component, or (with `strict`) when a component misses the budget."""
    where = f"see {root / CALIBRATION_REPORT}"
    if search.mode is not QuantMode.AUTO:
        rows = {n: r for n, e in report["components"].items() for r in e["candidates"]}
        failed = {n: r["error"] for n, r in rows.items() if "error" in r}
        if failed:
            reasons = "; ".join(f"{n}: {why}" for n, why in failed.items())
            raise CalibrationError(f"--mode {search.mode.value} could not make the variant of {sorted(failed)} "
                                   f"({reasons}); {where}")
        if not any("median_ms" in r for r in rows.values()):
            reasons = "; ".join(f"{n}: {r.get('skipped') or e.get('note')}" for n, e in report["components"].items()
                                for r in (e["candidates"] or [{}]))
            raise CalibrationError(f"--mode {search.mode.value} made no variant ({reasons}); {where}")
    missed = [n for n, e in report["components"].items() if e.get("budget_missed")]
    if missed and strict:
        raise CalibrationError(
            f"no variant of {missed} meets the budget ({report['criterion']}, {search.accuracy_budget} pts); they keep "
            f"fp32 ({where}); raise the budget or improve the calibration data"
        )


def _report(search: Search, calib: CalibrationSet, heldout: CalibrationSet | None, runner) -> dict:
    return {
        "mode": search.mode.value,
        "accuracy_budget_pts": search.accuracy_budget,
        "criterion": (
            f"accuracy within the budget and cosine >= {search.min_cosine}"
            if runner
            else f"cosine >= {search.min_cosine} (no labelled held-out data)"
        ),
        "target": search.target,
        "judged_on": cpu_target(),
        "latency": {"threads": LATENCY_THREADS, "runs": search.latency_runs, "batch": 1},
        "calibration": calib.summary(),
        "heldout": heldout.summary() if heldout is not None else None,
        "heldout_split": "validation (budgets are judged here; the test split is only reported)",
        "baseline": runner.metrics(runner.logits()) if runner else None,
        "components": {},
    }


def _chosen_files(report: dict, kept: dict[str, dict[str, Made]]) -> dict[str, Path]:
    return {n: kept[n][e["chosen"]].path for n, e in report["components"].items() if e["chosen"] != FALLBACK}


def _fit_whole_model(report: dict, runner: BundleRunner, kept: dict[str, dict[str, Made]], search: Search,
                     progress) -> None:
    """The budget holds for the whole model too: with every chosen variant in place, the validation
    accuracy may drop by at most the budget (each component alone met it, but their losses add up).
    While it drops more, the component whose choice lost the most on its own (then: gained the least
    speed) goes back to fp32. report["final"]: the whole model's accuracy and what went back."""
    reverted = []
    while chosen := _chosen_files(report, kept):
        accuracy = runner.metrics(runner.logits(chosen))["accuracy"]
        lost = round((report["baseline"]["accuracy"] - accuracy) * 100.0, 4)
        report["final"] = {"components": {n: e["chosen"] for n, e in report["components"].items()},
                           "accuracy": accuracy, "accuracy_delta_pts": lost, "reverted": reverted}
        if lost <= search.accuracy_budget + 1e-9:
            return
        rows = {n: _chosen_row(report["components"][n]) for n in chosen}
        name = max(rows, key=lambda n: (rows[n].get("accuracy_delta_pts", 0.0), -rows[n].get("speedup", 1.0)))
        entry = report["components"][name]
        entry["reason"] = (f"{entry['chosen']} went back to fp32: the chosen variants together lost {lost:.2f} pts "
                           f"on the validation split (budget {search.accuracy_budget}), and its own loss was the "
                           f"largest ({entry['reason']})")
        entry["chosen"] = FALLBACK
        entry.pop("candidate", None)
        if search.mode is QuantMode.AUTO:
            kept[name] = {}
        reverted.append(name)
        progress(f"whole model: {lost:.2f} pts lost on the validation split with every choice in place, over the "
                 f"{search.accuracy_budget} pt budget; {name} goes back to fp32")


def _chosen_row(entry: dict) -> dict:
    return next(r for r in entry["candidates"] if r["candidate"] == entry.get("candidate"))


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
                              latency_feed(name, feeds, runner), runs=search.latency_runs, threads=LATENCY_THREADS)
    base = latency[FALLBACK]
    for row in rows:
        if row["candidate"] in latency:
            lat = latency[row["candidate"]]
            speedup = Speedup.of(lat, base)
            row.update(median_ms=round(lat.median_ms, 4), p25_ms=round(lat.p25_ms, 4), p75_ms=round(lat.p75_ms, 4),
                       p99_ms=round(lat.p99_ms, 4), speedup=round(speedup.paired, 3),
                       faster_rounds=speedup.faster_rounds, rounds=speedup.rounds,
                       faster_beyond_noise=speedup.beyond_noise(search.min_speedup))
    gpu = scheme_for(search.target).gpu
    choice = choose_by_precision(rows, search.target) if gpu else choose(rows, search.min_speedup)
    entry = {FALLBACK: base.as_dict(), "candidates": rows, **choice}
    progress(f"  -> {entry['chosen']}: {entry['reason']}")
    if search.mode is QuantMode.AUTO:  # several candidates make the variant "int8": keep the chosen one's file
        keep = {entry["chosen"]: made[entry["candidate"]]} if entry.get("candidate") in made else {}
    else:
        keep = {r["variant"]: made[r["candidate"]] for r in rows if r["candidate"] in made}
    return entry, keep


def _try_candidates(component: Component, fp32: Path, feeds, judge: BudgetJudge, search: Search, tmp: Path,
                    progress) -> tuple[list[dict], dict[str, Made]]:
    """Make and judge each candidate of `search.mode`: report rows, and the files made by label."""
    name = component.name
    prepared: Prepared | None = None
    frontend: tuple[str, ...] = ()
    rows, made = [], {}
    inside: dict[str, tuple[int, str]] = {}  # variant -> (nodes kept float, candidate): its best inside the budget
    for config in candidates(search.mode, search.calibrator, search.target):
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
                    if component.modality == "audio":
                        frontend = spectral_frontend(load_onnx(prepared.path))
                        progress(f"  the spectral front-end stays float ({len(frontend)} nodes up to its Log)")
                if config.precision == "int8":
                    config = config.excluding(frontend)
                rounds = inside[config.variant][0] - 1 if config.variant in inside else MAX_REPAIR_ROUNDS
                result, verdict_info = _make(config, fp32, tmp / f"{name}.{label}.onnx", feeds, prepared, judge,
                                             rounds if search.repair_nodes else 0, progress)
                path, info = result.path, {**result.info(), **verdict_info}
            if config.precision == "int8" and not int8_nodes(load_onnx(path)):
                rows.append({**row, "skipped": f"no operator of {name} runs in int8 in this file (nothing "
                                               f"{config.variant} quantizes, or all kept float): not an int8 variant"})
                progress(f"  {label}: {rows[-1]['skipped']}")
                continue
            verdict = judge(path)
        except (CalibrationError, EngineError) as e:
            rows.append({**row, "error": str(e)})
            progress(f"  {label}: failed: {e}")
            continue
        note = {}
        if verdict.ok:
            kept_float = len(info.get("repair", {}).get("kept_float", ()))
            if config.variant not in inside or kept_float < inside[config.variant][0]:
                inside[config.variant] = (kept_float, label)
        elif search.repair_nodes and config.precision == "int8" and config.variant in inside and "repair" not in info:
            note["not_repaired"] = f"{inside[config.variant][1]} is inside the budget already"
        rows.append({**row, **verdict.figures, "within_budget": verdict.ok, **info, **note})
        made[label] = Made(path, config, info)
        progress(f"  {label}: {verdict.figures} {'inside' if verdict.ok else 'outside'} the budget"
                 + (f" (not repaired: {note['not_repaired']})" if note else ""))
    return rows, made


def _make(config: QuantConfig, fp32: Path, out: Path, feeds, prepared, judge, repair_rounds: int,
          progress) -> tuple[QuantResult, dict]:
    if config.mode is QuantMode.FP16:
        return quantize_onnx(fp32, out, config, prepared=prepared), {}
    if repair_rounds <= 0 or not feeds:  # static INT8 without feeds never gets here (skipped)
        return quantize_onnx(fp32, out, config, FeedsReader(feeds), prepared=prepared), {}
    fixed = repair(prepared, out, config, feeds, judge, max_rounds=repair_rounds, progress=progress)
    return fixed.result, ({"repair": fixed.as_dict()} if len(fixed.rounds) > 1 else {})


def _store(bundle: Bundle, report: dict, kept: dict[str, dict[str, Made]], progress) -> None:
    """One edit transaction: the kept files, their manifest entries, the defaults, reports/calibration.json."""
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
                entry["variants"][variant].update(scheme=made.config.scheme, target=made.config.target,
                                                  judged_on=report["judged_on"])
            chosen = report["components"][name]["chosen"]
            if scheme_for(report["target"]).gpu:
                entry.setdefault("defaults_by_target", {})[report["target"]] = chosen
            else:
                entry["default_variant"] = chosen
        change.write_json(CALIBRATION_REPORT, report)
        progress(f"storing {', '.join(staged) or 'no new variant files'} and {CALIBRATION_REPORT} in {bundle.root}")


def _variant_entry(relative: str, made: Made) -> dict:
    recipe = {k: v for k, v in made.info.items() if k != "repair"}
    entry = {"file": relative, "precision": made.config.precision, **recipe}
    if "repair" in made.info:
        entry["kept_float"] = [k["node"] for k in made.info["repair"]["kept_float"]]
    return entry
