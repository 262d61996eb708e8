"""Measuring one benchmark point: a target (a component, or the whole model in sequence) opened on a
backend, warmed up, then timed in windows until stable; a failure becomes the row's error. Also the
MACs a row's GFLOP/s come from."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fusionrt.bundle import EMBEDDING, Bundle, Component, resolve_variants
from fusionrt.errors import BundleError, ConfigError, FusionRTError
from fusionrt.runtime.backend import Backend
from fusionrt.runtime.bench.backends import COPY_NOT_SEPARATED, CPU_BACKENDS, MODEL, Step, model_variants, open_step
from fusionrt.runtime.bench.inputs import BenchInputs
from fusionrt.runtime.bench.peak import GEMM_SIZE
from fusionrt.runtime.bench.stats import STABLE_WINDOWS, Window, measure_until_stable, overload
from fusionrt.runtime.fusion_feeds import bundle_fusion_feeds


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


@dataclass
class OpenTarget:
    """A target opened on a backend: `make_run(batch) -> run_once`, where run_once() -> host copy ms or None."""

    make_run: Callable[[int], Callable[[], float | None]]
    device: str
    components: dict[str, str]  # component -> the variant it runs
    steps: list[Step]

    def close(self) -> None:
        for step in self.steps:
            step.close()


def open_target(bundle: Bundle, inputs: BenchInputs, target: str, backend: Backend, variant: str,
                threads: int) -> OpenTarget:
    """`target` (a component or MODEL) opened on `backend`; close() it when its rows are measured."""
    if target != MODEL:
        mapping = {target: variant}
    else:
        mapping = model_variants(bundle, backend).get(variant) or resolve_variants(bundle, variant)
    for name in mapping:
        if name in inputs.errors:
            raise BundleError(inputs.errors[name])
    steps: dict[str, Step] = {}
    try:
        for name, v in mapping.items():
            steps[name] = open_step(bundle, bundle.components[name], v, backend, threads)
    except BaseException:
        for step in steps.values():
            step.close()
        raise
    if target != MODEL:
        step = steps[target]

        def make_one(batch: int):
            feeds = itertools.cycle(_batches(inputs, target, batch))
            return lambda: step.run(next(feeds))[1]

        return OpenTarget(make_one, step.device, mapping, list(steps.values()))
    return OpenTarget(_model_runs(bundle, inputs, steps), steps[bundle.fusion.name].device, mapping,
                      list(steps.values()))


def _model_runs(bundle: Bundle, inputs: BenchInputs, steps: dict[str, Step]):
    """make_run(batch) for the whole model: every encoder, then the fusion head on their embeddings."""
    encoders = {c.modality: c.name for c in bundle.encoders}
    fusion = steps[bundle.fusion.name]

    def make_run(batch: int):
        feeds = itertools.cycle(list(zip(*(_batches(inputs, name, batch) for name in encoders.values()))))

        def run_once() -> float | None:
            copies, embeddings = [], {}
            for (modality, name), encoder_feeds in zip(encoders.items(), next(feeds)):
                outputs, copied = steps[name].run(encoder_feeds)
                embeddings[modality] = outputs[EMBEDDING]
                copies.append(copied)
            copies.append(fusion.run(bundle_fusion_feeds(bundle, embeddings, count=batch))[1])
            return None if None in copies else sum(copies)

        return run_once

    return make_run


def _batches(inputs: BenchInputs, component: str, batch: int) -> list[dict]:
    count = len(next(iter(inputs.feeds[component].values())))
    return [inputs.batch(component, start, batch) for start in range(0, count - batch + 1, batch)]


@dataclass(frozen=True)
class LoadWatch:
    """Where the 1-minute load average comes from (a parameter, so tests inject readings) and the cores
    the load rule (stats.overload) measures it against."""

    read: Callable[[], float]
    cores: int


def measure_group(bundle, inputs, target, backend, variant, threads, batches, settings, macs, peak, say,
                  load: LoadWatch) -> list[dict]:
    """Rows for one target x backend x variant x thread count over its batch sizes; the engines are
    closed when they are measured."""
    base = {"target": target, "backend": backend.value, "variant": variant, "threads": threads}
    try:
        opened = open_target(bundle, inputs, target, backend, variant, threads)
    except FusionRTError as e:
        error = " ".join(str(e).split())  # one line: library messages may carry newlines
        for batch in batches:
            say(f"{target} {variant} {backend.value} t{threads} b{batch}: ERROR {error}")
        return [{**base, "batch": b, "status": "error", "error": error} for b in batches]
    rows = []
    try:
        for batch in batches:
            row = {**base, "batch": batch, "device": opened.device, "components": opened.components}
            rows.append(_measure_point(opened, row, backend, settings, macs, peak, say, load))
    finally:
        opened.close()
    return rows


def _measure_point(opened: OpenTarget, row: dict, backend: Backend, settings: BenchSettings, macs, peak, say,
                   load: LoadWatch) -> dict:
    """`row` completed with the figures of one batch size, or with its error; a point measured on a
    machine busier than the load rule allows is flagged `loaded` and never stable."""
    point = f"{row['target']} {row['variant']} {backend.value} t{row['threads']} b{row['batch']}"
    readings = [load.read()]

    def window() -> Window:
        timed = timed_window(run_once, settings.window_ms, settings.min_runs)
        readings.append(load.read())
        return timed

    try:
        run_once = opened.make_run(row["batch"])
        timed_window(run_once, settings.warmup_ms, 2)
        measured = measure_until_stable(window, max_windows=settings.max_windows)
    except FusionRTError as e:
        error = " ".join(str(e).split())
        say(f"{point}: ERROR {error}")
        return {**row, "status": "error", "error": error}
    row.update(status="ok", error=None, **measured.summary(row["batch"]))
    row["load_1min"] = [round(x, 2) for x in readings]
    row["loaded"] = overload(readings, load.cores)
    row["stable"] = row["stable"] and row["loaded"] is None
    if row["copy_ms"] is None:
        row["copy_ms"] = COPY_NOT_SEPARATED[backend]
    row.update(macs.row_figures(backend, opened.components, row["batch"], row, peak))
    flag = "" if row["stable"] else f" (UNSTABLE: {row['loaded']})" if row["loaded"] else " (UNSTABLE)"
    say(f"{point}: p50 {row['latency_ms']['p50']:.3f} ms, {row['windows']} windows{flag}")
    return row


class MacCounter:
    """MACs per (file, batch), and the GFLOP/s and peak fraction they give a row."""

    def __init__(self, bundle: Bundle, inputs: BenchInputs, *, counting: bool) -> None:
        self.bundle, self.inputs, self.counting = bundle, inputs, counting
        self._cache: dict[tuple[Path, int], tuple[int, tuple[str, ...]]] = {}

    def row_figures(self, backend: Backend, mapping: dict[str, str], batch: int, row: dict, peak: dict) -> dict:
        if not self.counting:
            return {"macs": None, "gflops": None, "peak_fraction": None}
        total, unresolved = 0, []
        for name, variant in mapping.items():
            path = source_file(self.bundle.components[name], backend, variant)
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


def source_file(component: Component, backend: Backend, variant: str) -> Path:
    """The ONNX file whose graph a row's MACs are counted from (the torch reference computes what fp32 does;
    a TensorRT engine what its source variant does)."""
    if backend is Backend.TORCH:
        return component.variant("fp32").path
    if backend is Backend.TENSORRT:
        return component.variant(component.engine(variant).source_variant).path
    return component.variant(variant).path
