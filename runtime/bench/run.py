"""`bench_bundle`: latency of each component and of the whole model, per variant, backend, thread
count and batch size, set against this machine's FP32 GEMM peak — the API under `fusionrt bench`.

The grid varies one axis at a time around the main point (batch 1 and every core): a thread sweep
at that batch and a batch sweep at that thread count, for every target x backend x variant. Each
point gets a warm-up, then timed windows until three consecutive p50s agree (stats.py). A target
that cannot be opened or run on a backend becomes rows carrying the error; the rest goes on.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.util
import itertools
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from fusionrt.bundle import PRECISIONS, Bundle, load, variant_named
from fusionrt.errors import ConfigError
from fusionrt.progress import eta_text
from fusionrt.runtime.backend import REFERENCE, Backend
from fusionrt.runtime.bench.backends import (
    CPU_BACKENDS,
    MODEL,
    model_variants,
    parse_backends,
    unavailable,
    variants_on,
)
from fusionrt.runtime.bench.inputs import BenchInputs
from fusionrt.runtime.bench.machine import fingerprint
from fusionrt.runtime.bench.peak import measure_peak
from fusionrt.runtime.bench.stats import LOAD_SLACK, STABLE_WINDOWS, TOLERANCE, load_limit
from fusionrt.runtime.bench.timing import BenchSettings, LoadWatch, MacCounter, measure_group
from fusionrt.runtime.tegrastats import TegrastatsReader

DEFAULT_BATCHES = (1, 4, 16)
MIN_ITEMS = 16  # distinct input items cycled through at batch 1


def thread_sweep(cores: int) -> list[int]:
    """1, 2, 4, ... below `cores`, then `cores`."""
    return sorted({*(2**k for k in range(cores.bit_length()) if 2**k < cores), cores})


def grid(threads: Sequence[int], batches: Sequence[int]) -> list[tuple[int, int]]:
    """(threads, batch) points: the thread sweep at the smallest batch, then the batch sweep at the most threads."""
    main_threads, main_batch = max(threads), min(batches)
    return [(t, main_batch) for t in threads] + [(main_threads, b) for b in batches if b != main_batch]


def bench_bundle(
    bundle: Bundle | str | Path,
    *,
    components: Sequence[str] | None = None,
    variants: Sequence[str] | None = None,
    backends: Sequence[Backend | str] | None = None,
    threads: Sequence[int] | None = None,
    batches: Sequence[int] | None = None,
    settings: BenchSettings = BenchSettings(),
    progress: Callable[[str], None] | None = None,
    read_load: Callable[[], float] = lambda: os.getloadavg()[0],
    cores: int | None = None,
) -> dict:
    """Benchmark a bundle; return the report (see report.py for its renderings).

    components: component names and/or "model" (default: all of them and the whole model);
    variants: ONNX variant / TensorRT precision names (default: all; the torch backend always runs
    its reference weights); backends: `Backend`s or their names, of backends.BENCHED (default: all;
    those that cannot run here are listed as skipped with the reason; plain "ort" is refused);
    threads: the thread sweep (default 1, 2, 4, ... cores); batches: the batch sweep (default
    DEFAULT_BATCHES). read_load: the 1-minute load average reader and `cores` (default os.cpu_count())
    what the load rule (stats.overload) holds it against: a point measured above it is flagged
    `loaded` and not stable, and the report's `load_average.flag` says how many.
    """
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    bundle = bundle if isinstance(bundle, Bundle) else load(bundle)
    targets = _targets(bundle, components)
    threads = _positive(threads or thread_sweep(os.cpu_count() or 1), "threads")
    batches = _positive(batches or DEFAULT_BATCHES, "batches")
    chosen = parse_backends(backends)
    wanted_variants = _variants(bundle, variants)
    status = {b: unavailable(bundle, b) for b in chosen}
    for backend, reason in status.items():
        if reason:
            say(f"skipping backend {backend.value}: {reason}")
    runnable = [b for b in chosen if status[b] is None]
    watch = LoadWatch(read_load, cores or os.cpu_count() or 1)
    report = _header(bundle, settings, threads, batches, status, watch)
    cpu_threads = threads if any(b in CPU_BACKENDS for b in runnable) else []
    report["peak"] = _peak(cpu_threads, settings.gemm_size, say)
    inputs = BenchInputs(bundle, max(*batches, MIN_ITEMS))
    plan = _plan(bundle, targets, runnable, wanted_variants, grid(threads, batches))
    names = ", ".join(b.value for b in runnable)
    say(f"benchmarking {len(plan)} points of {bundle.root} ({', '.join(targets)}; backends {names})")
    counter, started = itertools.count(1), time.monotonic()

    def point_line(line: str) -> None:
        done = next(counter)
        say(f"[{done}/{len(plan)}] {line} ({eta_text(time.monotonic() - started, done, len(plan))})")

    macs = MacCounter(bundle, inputs, counting=report["peak"].get("skipped") is None)
    rows = []
    with TegrastatsReader() as power:  # a Jetson's power and temperatures while measuring; nothing elsewhere
        for (target, backend, variant, t), points in itertools.groupby(plan, key=lambda p: p[:4]):
            group = [b for *_, b in points]
            rows += measure_group(bundle, inputs, target, backend, variant, t, group, settings, macs,
                                  report["peak"], point_line, watch)
    report["rows"] = rows
    report["power"] = power.summary() or None
    main = (max(threads), min(batches))
    report["ratios"] = speedups(rows, min(batches))
    report["load_average"]["end"] = watch.read()
    report["load_average"]["flag"] = _load_flag(rows, watch)
    if report["load_average"]["flag"]:
        say(f"warning: {report['load_average']['flag']}")
    report["accuracy_latency"] = accuracy_points(bundle, rows, main)
    if report["accuracy_latency"]["skipped"]:
        say(f"accuracy-vs-latency scatter skipped: {report['accuracy_latency']['skipped']}")
    return report


def _load_flag(rows: list[dict], load: LoadWatch) -> str | None:
    """The report-wide flag: how many points ran above the load rule's limit, or None."""
    loaded = [r for r in rows if r.get("loaded")]
    if not loaded:
        return None
    return (f"{len(loaded)} of {len(rows)} point(s) ran at a 1-minute load average above {load_limit(load.cores):g} "
            f"({load.cores} cores + {LOAD_SLACK:g}); they are not stable and this report's comparisons are not "
            f"trustworthy: rerun on a quiet machine")


def _header(bundle: Bundle, settings: BenchSettings, threads: list[int], batches: list[int],
            status: dict[Backend, str | None], load: LoadWatch) -> dict:
    """The report's first fields: what was measured, where, how, and which backends were skipped."""
    return {
        "bundle": str(bundle.root),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": fingerprint(),
        "settings": {
            **dataclasses.asdict(settings), "threads": threads, "batches": batches,
            "main": {"threads": max(threads), "batch": min(batches)},
            "stability": f"{STABLE_WINDOWS} consecutive windows whose p50 lie within {TOLERANCE:.0%} of their mean",
            "load_rule": f"1-min load average, read before and after each window, <= {load_limit(load.cores):g} "
                         f"(cores + {LOAD_SLACK:g})",
        },
        "backends": {b.value: {"status": "skipped", "reason": r} if r else {"status": "ok"} for b, r in status.items()},
        "load_average": {"start": load.read()},  # 1 minute: how much else ran on this machine
    }  # fmt: skip


# ------------------------------------------------------------------------------------ choices
def _targets(bundle: Bundle, components: Sequence[str] | None) -> list[str]:
    known = [*bundle.components, MODEL]
    unknown = [c for c in components or () if c not in known]
    if unknown:
        raise ConfigError(f"bench --component {unknown[0]!r}: bundle {bundle.root} has {known}")
    return [c for c in known if not components or c in components]


def _positive(values: Sequence[int], what: str) -> list[int]:
    if any(not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(f"bench --{what} {list(values)}; expected positive whole numbers")
    return sorted(set(values))


def _variants(bundle: Bundle, names: Sequence[str] | None) -> set[str] | None:
    if not names:
        return None
    known = {v for c in bundle.components.values() for v in c.variants}
    known |= {p for c in bundle.components.values() for p in c.engines}
    known |= {p for p in PRECISIONS if any(variant_named(c, p) for c in bundle.components.values())}
    unknown = [v for v in names if v not in known]
    if unknown:
        raise ConfigError(
            f"bench --variants {unknown[0]!r}: no component of {bundle.root} has it; available: {sorted(known)}"
        )
    return set(names)


def _plan(bundle, targets, backends, wanted, points) -> list[tuple[str, Backend, str, int, int]]:
    """(target, backend, variant, threads, batch) in measuring order; GPU backends only at the most threads."""
    most_threads = max(t for t, _ in points)
    plan = []
    for target in targets:
        for backend in backends:
            if target == MODEL:
                names = list(model_variants(bundle, backend))
            else:
                names = variants_on(bundle.components[target], backend)
            if backend is not Backend.TORCH and wanted is not None:
                names = _wanted(bundle, target, backend, names, wanted)
            for variant in names:
                for t, b in points:
                    if backend in CPU_BACKENDS or t == most_threads:
                        plan.append((target, backend, variant, t, b))
    return plan


def _wanted(bundle: Bundle, target: str, backend: Backend, names: list[str], wanted: set[str]) -> list[str]:
    """The asked-for variants among `names`; a precision name ("int8") asks for the variant of that
    precision (`variant_named`: "int8-minmax", "int8-dynamic"...), as --variant does everywhere."""
    if backend is Backend.TENSORRT:
        return [v for v in names if v in wanted]
    if target != MODEL:
        component = bundle.components[target]
        picked = {variant_named(component, w) for w in wanted}
        return [v for v in names if v in wanted or v in picked]
    extra = [w for w in sorted(wanted) if w in PRECISIONS and w not in names
             and any(variant_named(c, w) for c in bundle.components.values())]
    return [v for v in names if v in wanted] + extra


def _peak(threads: list[int], size: int, say) -> dict:
    if importlib.util.find_spec("onnx") is None:
        return {"skipped": "onnx is not installed (pip install 'fusionrt[quantize]'): no GEMM peak, no MAC counts"}
    if not threads:
        return {"size": size, "ort_gflops": {}, "numpy_gflops": {}, "note": "no CPU backend ran: no CPU peak"}
    return measure_peak(threads, size, say)


# ------------------------------------------------------------------------------------ summary
def speedups(rows: list[dict], batch: int) -> list[dict]:
    """At `batch`, per target and thread count: ORT CPU fp32 against the torch reference, then every
    other backend x variant against ORT CPU fp32 (speed-up = baseline p50 / candidate p50)."""
    p50 = {(r["target"], r["threads"], r["backend"], r["variant"]): r["latency_ms"]["p50"]
           for r in rows if r["status"] == "ok" and r["batch"] == batch}  # fmt: skip
    out = []
    for target, threads in dict.fromkeys((r["target"], r["threads"]) for r in rows if r["batch"] == batch):
        fp32 = (target, threads, Backend.ORT_CPU.value, "fp32")
        reference = (target, threads, Backend.TORCH.value, REFERENCE)
        others = [key for key in p50 if key[:2] == (target, threads) and key not in (fp32, reference)]
        pairs = [(reference, fp32)] + [(fp32, key) for key in others]
        for baseline, candidate in pairs:
            if baseline in p50 and candidate in p50:
                out.append({"target": target, "threads": threads, "batch": batch, "baseline": " ".join(baseline[2:]),
                            "candidate": " ".join(candidate[2:]), "speedup": p50[baseline] / p50[candidate]})
    return out


def accuracy_points(bundle: Bundle, rows: list[dict], main: tuple[int, int]) -> dict:
    """(accuracy from reports/eval.json, whole-model p50 on ORT CPU at the main point) per evaluated
    variant, matched by which variant each component ran; or why there are none."""
    evaluation = bundle.report("eval")
    if evaluation is None:
        return {"points": [], "skipped": f"{bundle.root / 'reports' / 'eval.json'} is absent: run "
                                         f"`fusionrt eval {bundle.root} --variants fp32,fp16,...` first"}
    measured = [r for r in rows if r["target"] == MODEL and r["backend"] == Backend.ORT_CPU.value
                and r["status"] == "ok" and (r["threads"], r["batch"]) == main]  # fmt: skip
    if not measured:
        return {"points": [], "skipped": "the whole model was not benchmarked on ort-cpu at the main point"}
    points = []
    for name, result in (evaluation.get("variants") or {}).items():
        for row in measured:
            if result.get("components") == row["components"] and "accuracy" in result:
                points.append({"variant": name, "accuracy": result["accuracy"], "p50_ms": row["latency_ms"]["p50"]})
    if not points:
        return {"points": [], "skipped": f"reports/eval.json evaluated {sorted(evaluation.get('variants') or {})}, "
                                         "none of which ran the components of a benchmarked whole-model variant"}
    return {"points": points, "skipped": None}
