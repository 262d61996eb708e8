"""Measuring one benchmark point: a target (a component, or the whole model in sequence) opened on a
backend, warmed up, then timed in windows until stable; a failure becomes the row's error. Also the
MACs a row's GFLOP/s come from."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fusionrt.bundle import Bundle, Component
from fusionrt.errors import BundleError, ConfigError, FusionRTError
from fusionrt.runtime.bench.backends import (
    COPY_NOT_SEPARATED,
    CPU_BACKENDS,
    MODEL,
    TENSORRT_NATIVE,
    TORCH,
    model_variants,
    open_step,
)
from fusionrt.runtime.bench.inputs import BenchInputs, fusion_feeds
from fusionrt.runtime.bench.peak import GEMM_SIZE
from fusionrt.runtime.bench.stats import STABLE_WINDOWS, Window, measure_until_stable
from fusionrt.runtime.stages import EMBEDDING


@dataclass(frozen=True)
class BenchSettings:
    window_ms: float = 200.0  # one measurement window
    max_windows: int = 10  # cap; a point that is not stable by then is flagged unstable
    warmup_ms: float = 200.0
    min_runs: int = 5  # per window, however long a run takes
    gemm_size: int = GEMM_SIZE  # N of the N x N x N peak GEMM

    def __post_init__(self) -> None:
        for name in ("window_ms", "warmup_ms", "min_runs", "gemm_size"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"bench {name} = {getattr(self, name)!r}; expected a positive number")
        if self.max_windows < STABLE_WINDOWS:
            raise ConfigError(
                f"bench max_windows = {self.max_windows}; the stability rule needs at least {STABLE_WINDOWS}"
            )


def timed_window(run_once: Callable[[], float | None], window_ms: float, min_runs: int) -> Window:
    """Run until `window_ms` has passed and at least `min_runs` runs were made."""
    latency, copy = [], []
    start = time.perf_counter_ns()
    end = start + window_ms * 1e6
    while len(latency) < min_runs or time.perf_counter_ns() < end:
        t0 = time.perf_counter_ns()
        copied = run_once()
        latency.append((time.perf_counter_ns() - t0) / 1e6)
        copy.append(copied)
    separated = all(c is not None for c in copy)
    return Window(tuple(latency), tuple(copy) if separated else None, (time.perf_counter_ns() - start) / 1e9)


def open_target(bundle: Bundle, inputs: BenchInputs, target: str, backend: str, variant: str, threads: int):
    """(make_run(batch) -> run_once, device, {component: variant}); run_once() -> host copy ms or None."""
    if target != MODEL:
        if target in inputs.errors:
            raise BundleError(inputs.errors[target])
        step, device = open_step(bundle, bundle.components[target], variant, backend, threads)

        def make_run(batch: int):
            feeds = itertools.cycle(_batches(inputs, target, batch))
            return lambda: step(next(feeds))[1]

        return make_run, device, {target: variant}
    mapping = model_variants(bundle, backend)[variant]
    for name in mapping:
        if name in inputs.errors:
            raise BundleError(inputs.errors[name])
    steps = {name: open_step(bundle, bundle.components[name], v, backend, threads) for name, v in mapping.items()}
    encoders = {c.modality: c.name for c in bundle.components.values() if c.role == "encoder"}
    fusion = bundle.fusion.name

    def make_run(batch: int):
        feeds = itertools.cycle(list(zip(*(_batches(inputs, name, batch) for name in encoders.values()))))

        def run_once() -> float | None:
            copies, embeddings = [], {}
            for (modality, name), encoder_feeds in zip(encoders.items(), next(feeds)):
                outputs, copied = steps[name][0](encoder_feeds)
                embeddings[modality] = outputs[EMBEDDING]
                copies.append(copied)
            copies.append(steps[fusion][0](fusion_feeds(bundle, embeddings, batch))[1])
            return None if None in copies else sum(copies)

        return run_once

    return make_run, steps[fusion][1], mapping


def _batches(inputs: BenchInputs, component: str, batch: int) -> list[dict]:
    count = len(next(iter(inputs.feeds[component].values())))
    return [inputs.batch(component, start, batch) for start in range(0, count - batch + 1, batch)]


def measure_group(bundle, inputs, target, backend, variant, threads, batches, settings, macs, peak, say) -> list[dict]:
    """Rows for one target x backend x variant x thread count over its batch sizes."""
    base = {"target": target, "backend": backend, "variant": variant, "threads": threads}
    try:
        make_run, device, mapping = open_target(bundle, inputs, target, backend, variant, threads)
    except FusionRTError as e:
        error = " ".join(str(e).split())  # one line: library messages may carry newlines
        for batch in batches:
            say(f"{target} {variant} {backend} t{threads} b{batch}: ERROR {error}")
        return [{**base, "batch": b, "status": "error", "error": error} for b in batches]
    rows = []
    for batch in batches:
        row = {**base, "batch": batch, "device": device, "components": mapping}
        try:
            run_once = make_run(batch)
            timed_window(run_once, settings.warmup_ms, 2)
            measured = measure_until_stable(
                lambda: timed_window(run_once, settings.window_ms, settings.min_runs), max_windows=settings.max_windows
            )
        except FusionRTError as e:
            error = " ".join(str(e).split())
            say(f"{target} {variant} {backend} t{threads} b{batch}: ERROR {error}")
            rows.append({**row, "status": "error", "error": error})
            continue
        row.update(status="ok", error=None, **measured.summary(batch))
        if row["copy_ms"] is None:
            row["copy_ms"] = COPY_NOT_SEPARATED[backend]
        row.update(macs.row_figures(backend, mapping, batch, row, peak))
        say(f"{target} {variant} {backend} t{threads} b{batch}: p50 {row['latency_ms']['p50']:.3f} ms, "
            f"{row['windows']} windows{'' if row['stable'] else ' (UNSTABLE)'}")
        rows.append(row)
    return rows


class MacCounter:
    """MACs per (file, batch), and the GFLOP/s and peak fraction they give a row."""

    def __init__(self, bundle: Bundle, inputs: BenchInputs, *, counting: bool) -> None:
        self.bundle, self.inputs, self.counting = bundle, inputs, counting
        self._cache: dict[tuple[Path, int], tuple[int, tuple[str, ...]]] = {}

    def row_figures(self, backend: str, mapping: dict[str, str], batch: int, row: dict, peak: dict) -> dict:
        if not self.counting:
            return {"macs": None, "gflops": None, "peak_fraction": None}
        total, unresolved = 0, []
        for name, variant in mapping.items():
            path = source_file(self.bundle, self.bundle.components[name], backend, variant)
            count, missing = self._count(path, name, batch)
            total += count
            unresolved += missing
        if not total:  # no counted op (e.g. an embedding lookup and pooling): no rate to speak of
            return {"macs": 0, "macs_unresolved": unresolved, "gflops": None, "peak_fraction": None}
        compute = row["compute_ms"] or row["latency_ms"]
        gflops = 2 * total / (compute["p50"] / 1e3) / 1e9
        cpu_peak = peak.get("ort_gflops", {}).get(str(row["threads"]))
        on_cpu = backend in CPU_BACKENDS and not row["device"].endswith("cuda")
        return {
            "macs": total,
            "macs_unresolved": unresolved,
            "gflops": gflops,
            "peak_fraction": gflops / cpu_peak if on_cpu and cpu_peak else None,
        }

    def _count(self, path: Path, component: str, batch: int) -> tuple[int, tuple[str, ...]]:
        from fusionrt.runtime.bench.macs import count_macs

        if (path, batch) not in self._cache:
            counted = count_macs(path, self.inputs.batch(component, 0, batch))
            self._cache[(path, batch)] = (counted.total, counted.unresolved)
        return self._cache[(path, batch)]


def source_file(bundle: Bundle, component: Component, backend: str, variant: str) -> Path:
    """The ONNX file whose graph a row's MACs are counted from (the torch reference computes what fp32 does;
    a TensorRT engine what its source variant does)."""
    if backend == TORCH:
        return component.variant("fp32").path
    if backend == TENSORRT_NATIVE:
        engine = bundle.manifest["components"][component.name]["engines"][variant]
        return component.variant(engine["source_variant"]).path
    return component.variant(variant).path
