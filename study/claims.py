"""The study's three claims, each judged PASS / FAIL (or NOT EVALUATED) from the results' numbers."""

from __future__ import annotations

from fusionrt.frame import MODALITIES
from fusionrt.study.kinds import FUSION_MARGIN_PTS, INT8_BUDGET_PTS, kind_label


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
