"""What `quantize_bundle` decides and prints from its measurements: the choice rule per component,
the test-split report of the chosen variants, and the table.

The choice: among the candidates inside the accuracy budget (judged on the validation split), those
interleaved timing shows faster than FP32 beyond noise (`measure.Speedup.beyond_noise`: over rounds
timed together, the median per-round speed-up at least `min_speedup` and faster in at least
n/2 + sqrt(n) of the n rounds); the fastest of them by median (the most accurate of those within
SAME_SPEED of it), else FP32. Then the whole model with every choice in place must stay inside the
budget on the validation split too (`auto._fit_whole_model`). The test split is measured once, for
the chosen variants, and only reported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from fusionrt.bundle import FALLBACK

SAME_SPEED = 0.05  # medians this close to the fastest count as equally fast (interleaved runs move ~5 % here)


def choose(rows: list[dict], min_speedup: float) -> dict:
    """The chosen variant of one component and the candidate that made it, and why (`rows`: candidate
    rows with timing and verdict). Candidates within SAME_SPEED of the fastest median count as equally
    fast, and the most accurate of them wins."""
    inside = [r for r in rows if r.get("within_budget")]
    fitting = [r for r in inside if r.get("faster_beyond_noise")]
    if fitting:
        fastest = min(r["median_ms"] for r in fitting)
        as_fast = [r for r in fitting if r["median_ms"] <= fastest * (1.0 + SAME_SPEED)]
        best = min(as_fast, key=_least_loss)
        return {"chosen": best["variant"], "candidate": best["candidate"],
                "reason": f"{best['candidate']} is the fastest inside the budget ({best['speedup']}x fp32, "
                          f"faster in {best['faster_rounds']} of {best['rounds']} rounds"
                          + (f"; the most accurate of {len(as_fast)} within {SAME_SPEED:.0%} of the fastest)"
                             if len(as_fast) > 1 else ")")}
    reason = ("no candidate meets the budget; fp32 kept" if not inside
              else f"no candidate inside the budget is faster than fp32 beyond noise (median per-round speed-up "
                   f">= {min_speedup}x and faster in n/2 + sqrt(n) of n rounds); fp32 kept")
    return {"chosen": FALLBACK, "budget_missed": not inside, "reason": reason}


def _least_loss(row: dict) -> tuple[float, float]:
    return row.get("accuracy_delta_pts", 0.0), -row.get("cosine", 0.0)


def choose_by_precision(rows: list[dict], target: str) -> dict:
    """A GPU target's choice: the lowest precision inside the budget, the most accurate of its
    candidates first (this CPU's timing says nothing about the GPU's)."""
    inside = [r for r in rows if r.get("within_budget")]
    for precision in ("int8", "fp16"):
        found = [r for r in inside if r["precision"] == precision]
        if found:
            best = min(found, key=_least_loss)
            return {"chosen": best["variant"], "candidate": best["candidate"],
                    "reason": f"{best['candidate']} is the lowest precision inside the budget "
                                                         f"that {target} runs (chosen by precision: CPU timings say "
                                                         "nothing about the GPU)"}
    return {"chosen": FALLBACK, "budget_missed": True, "reason": f"no candidate {target} runs meets the budget; fp32 kept"}


def split_report(test, bundle, chosen_files: Mapping[str, Path], progress) -> dict | None:
    """The whole model on the test split, FP32 and with every chosen variant in place: reported
    once, never used to choose. None without a labelled test split."""
    from fusionrt.calibration.evaluate import BundleRunner

    if test is None or bundle.task == "regression":
        return None
    runner = BundleRunner(bundle, test)
    fp32 = runner.metrics(runner.logits())["accuracy"]
    chosen = runner.metrics(runner.logits(chosen_files))["accuracy"] if chosen_files else fp32
    result = {"data": test.summary(), "fp32_accuracy": fp32, "chosen_accuracy": chosen,
              "components": {n: p.name for n, p in chosen_files.items()},
              "accuracy_delta_pts": round((fp32 - chosen) * 100.0, 4)}
    progress(f"test split (reported only, not used to choose), {test.source}: fp32 accuracy {fp32:.4f}, "
             f"with the chosen variants {chosen:.4f} ({result['accuracy_delta_pts']:+.2f} pts lost)")
    return result


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
            mark = "*" if row["candidate"] == entry.get("candidate") else ""
            lines.append(
                f"{name:<15} {row['candidate'] + mark:<16} {row['cosine']:>9.5f} "
                f"{'' if delta is None else f'{delta:.2f}':>9} {row['median_ms']:>10.3f} {row['p99_ms']:>8.3f} "
                f"{row['speedup']:>8.2f}  {_note(row)}"
            )
        lines.append(f"{'':<15} -> {entry['chosen']}: {entry.get('reason') or entry.get('note', '')}")
    return "\n".join(lines)


def _note(row: dict) -> str:
    if not row["within_budget"]:
        return "outside budget" + (f"; not repaired: {row['not_repaired']}" if "not_repaired" in row else "")
    return "inside budget" if row.get("faster_beyond_noise") else "inside budget; not faster beyond noise"
