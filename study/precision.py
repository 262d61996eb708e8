"""The precision part of the study: each seed's best fusion model exported, quantized to INT8 and
evaluated as FP32 / FP16 / INT8 / default through its ONNX files in ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

from fusionrt.config import Config
from fusionrt.data import DigitsData
from fusionrt.study.kinds import CALIBRATION_ITEMS, STUDY_VARIANTS, aggregate, kind_config, kind_label


def precision_study(config: Config, kind: str, checkpoints: dict[int, Path], data, progress) -> dict:
    """Export each seed's `kind` model, add INT8 (static QDQ, with sensitivity repair) and evaluate
    every variant of STUDY_VARIANTS through the exported ONNX files on the test split.

    Calibration uses the first CALIBRATION_ITEMS items of the val split and the repair's accuracy
    judge the whole val split, so the test split stays unseen until the evaluation.
    """
    val, test = data.splits["val"], data.splits["test"]
    calib_items = min(CALIBRATION_ITEMS, len(val))
    seeds = {}
    for seed, checkpoint in checkpoints.items():
        progress(f"precision: {kind_label(kind)}, seed {seed}: export, INT8, evaluate through ONNX Runtime")
        seeds[str(seed)] = _precision_seed(kind_config(config, kind, seed), checkpoint, val, test, calib_items, progress)
        accuracy = {v: f"{r['accuracy']:.3f}" for v, r in seeds[str(seed)]["variants"].items()}
        progress(f"precision: {kind_label(kind)}, seed {seed}: accuracy {accuracy}")
    variants = {
        v: {
            "accuracy": aggregate([s["variants"][v]["accuracy"] for s in seeds.values()]),
            "macro_f1": aggregate([s["variants"][v]["macro_f1"] for s in seeds.values()]),
            "drop_pts": aggregate(
                [100.0 * (s["variants"]["fp32"]["accuracy"] - s["variants"][v]["accuracy"]) for s in seeds.values()]
            ),
        }
        for v in STUDY_VARIANTS
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


def _precision_seed(config: Config, checkpoint: Path, val: DigitsData, test: DigitsData, calib_items: int, progress) -> dict:
    """One seed: export next to its checkpoint, quantize, evaluate each variant on the test split."""
    from fusionrt.bundle import load
    from fusionrt.calibration import CalibrationSet, evaluate, quantize_bundle
    from fusionrt.export.from_checkpoint import export_checkpoint

    def indented(text: str) -> None:
        for line in text.splitlines():
            progress(f"    {line}")

    bundle_dir = checkpoint.parent / "bundle"
    export_checkpoint(config, checkpoint, bundle_dir, force=True, progress=indented)
    bundle = load(bundle_dir)
    calib = CalibrationSet.from_data(bundle, _head(val, calib_items), source=f"val split, first {calib_items}")
    heldout = CalibrationSet.from_data(bundle, val, source=f"val split ({len(val)})")
    quantize_bundle(bundle_dir, calib, "int8-static", heldout=heldout, progress=indented)
    bundle = load(bundle_dir)
    report = evaluate(bundle, CalibrationSet.from_data(bundle, test, source=f"test split ({len(test)})"), STUDY_VARIANTS)
    return {
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


def _head(data: DigitsData, n: int) -> DigitsData:
    return DigitsData(images=data.images[:n], audio=data.audio[:n], texts=data.texts[:n], labels=data.labels[:n])
