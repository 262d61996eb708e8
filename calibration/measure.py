"""Numbers that decide between variants: output agreement with FP32 and latency in ONNX Runtime."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from fusionrt.runtime.engine import OrtEngine


@dataclass(frozen=True)
class Agreement:
    """How close a variant's outputs are to FP32 on the same inputs (rows = samples)."""

    cosine_mean: float
    cosine_min: float
    max_abs_error: float

    def as_dict(self) -> dict:
        return {"cosine": self.cosine_mean, "cosine_min": self.cosine_min, "max_abs_error": self.max_abs_error}


@dataclass(frozen=True)
class Latency:
    """Quartiles and p99 of one variant's latency, and its samples in round order (the samples of
    variants timed in the same `measure_latency` call pair up by round)."""

    median_ms: float
    p99_ms: float
    runs: int
    p25_ms: float = float("nan")
    p75_ms: float = float("nan")
    samples_ms: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def as_dict(self) -> dict:
        return {"median_ms": self.median_ms, "p25_ms": self.p25_ms, "p75_ms": self.p75_ms, "p99_ms": self.p99_ms,
                "runs": self.runs}

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        p25, p50, p75, p99 = (float(v) for v in np.percentile(np.asarray(samples_ms, np.float64), (25, 50, 75, 99)))
        return cls(p50, p99, len(samples_ms), p25, p75, tuple(float(v) for v in samples_ms))


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity per sample between two [N, ...] arrays (1.0 where both rows are zero)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    norms = na * nb
    cos = np.sum(a * b, axis=1) / np.where(norms == 0, 1.0, norms)
    return np.where((na == 0) & (nb == 0), 1.0, cos)


def agreement(reference: np.ndarray, candidate: np.ndarray) -> Agreement:
    cos = row_cosines(reference, candidate)
    return Agreement(float(cos.mean()), float(cos.min()), float(np.max(np.abs(reference - candidate))))


def run_batches(path: str | Path, feeds: Sequence[Mapping[str, np.ndarray]], output: str | None = None) -> np.ndarray:
    """One output of a model over a list of batches, concatenated along the batch axis."""
    engine = OrtEngine(path)
    name = output or engine.output_names[0]
    return np.concatenate([engine.run(dict(f))[name] for f in feeds])


def compare_outputs(reference_path, candidate_path, feeds: Sequence[Mapping[str, np.ndarray]]) -> Agreement:
    """Agreement of the first output of two models over the same batches."""
    return agreement(run_batches(reference_path, feeds), run_batches(candidate_path, feeds))


BLOCK_RUNS = 50  # runs in a row per callable where thread pools would time each other (`time_rounds`)


def time_rounds(fns: Mapping[str, Callable[[], object]], runs: int, warmup: int = 10,
                block: int = 1) -> dict[str, list[float]]:
    """Milliseconds of each callable over `runs` runs in rounds: every round runs each callable
    (`block` timed runs in a row), starting one further along each round (none always runs first
    or after the same one), so load from other processes hits them alike and the i-th samples of
    two callables pair up (`Speedup`). With `block` > 1 each callable's block starts with one
    untimed run. Blocks are for multi-threaded callables of different runtimes: after each run
    ONNX Runtime's workers and PyTorch's OpenMP team spin for milliseconds, so strict alternation
    on a machine with no spare core times each one against the other's spinning threads."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples = {name: [] for name in names}
    for round_ in range(-(-runs // block)):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            if block > 1:
                fns[name]()
            for _ in range(block):
                start = time.perf_counter_ns()
                fns[name]()
                samples[name].append((time.perf_counter_ns() - start) / 1e6)
    return samples


def measure_latency(
    paths: Mapping[str, str | Path],
    feed: Mapping[str, np.ndarray],
    *,
    runs: int = 100,
    warmup: int = 10,
    threads: int | None = None,
) -> dict[str, Latency]:
    """Latency of each model on one feed, timed in rounds (`time_rounds`): run by run at 1 thread, in
    blocks of BLOCK_RUNS runs with more (each session's workers spin for milliseconds after its runs)."""
    engines = {name: OrtEngine(path, threads=threads) for name, path in paths.items()}
    samples = time_rounds({name: lambda e=engine: e.run(dict(feed)) for name, engine in engines.items()}, runs, warmup,
                          block=1 if threads == 1 else BLOCK_RUNS)
    return {name: Latency.of(ms) for name, ms in samples.items()}


@dataclass(frozen=True)
class Speedup:
    """`candidate` against `baseline` over rounds timed together: the median of the per-round
    ratios baseline / candidate, and in how many of the rounds the candidate was faster.

    Judging rounds pairwise cancels load that comes and goes: on a loaded 2-core machine the
    quartiles of two variants overlap even at 2x, while each round's ratio stays put. (A variant
    that computes the same ops as FP32 measured 1.16x on its median alone on a loaded machine.)"""

    paired: float
    faster_rounds: int
    rounds: int

    @classmethod
    def of(cls, candidate: Latency, baseline: Latency) -> Speedup:
        if not candidate.samples_ms or len(candidate.samples_ms) != len(baseline.samples_ms):
            raise ValueError("Speedup needs the samples of two variants timed in the same measure_latency call")
        ratios = np.asarray(baseline.samples_ms) / np.asarray(candidate.samples_ms)
        return cls(float(np.median(ratios)), int((ratios > 1.0).sum()), len(ratios))

    def beyond_noise(self, min_speedup: float) -> bool:
        """The median per-round ratio is at least `min_speedup`, and the candidate won at least
        n/2 + sqrt(n) of the n rounds: a sign test two standard deviations above a coin toss (two
        variants running the same ops pass the sign test alone in about 2 % of measurements)."""
        return self.paired >= min_speedup and self.faster_rounds >= self.rounds / 2 + math.sqrt(self.rounds)
