"""Numbers that decide between variants: output agreement with FP32 and latency in ONNX Runtime."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

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
    median_ms: float
    p99_ms: float
    runs: int
    p25_ms: float = float("nan")
    p75_ms: float = float("nan")

    def as_dict(self) -> dict:
        return {"median_ms": self.median_ms, "p25_ms": self.p25_ms, "p75_ms": self.p75_ms, "p99_ms": self.p99_ms,
                "runs": self.runs}

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Latency:
        p25, p50, p75, p99 = (float(v) for v in np.percentile(np.asarray(samples_ms, np.float64), (25, 50, 75, 99)))
        return cls(p50, p99, len(samples_ms), p25, p75)


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


def measure_latency(
    paths: Mapping[str, str | Path],
    feed: Mapping[str, np.ndarray],
    *,
    runs: int = 100,
    warmup: int = 10,
    threads: int | None = None,
) -> dict[str, Latency]:
    """Latency quartiles and p99 of each model on one feed, measured interleaved (round robin) so
    that load from other processes hits every variant alike (see `faster_beyond_noise`)."""
    engines = {name: OrtEngine(path, threads=threads) for name, path in paths.items()}
    for engine in engines.values():
        for _ in range(warmup):
            engine.run(dict(feed))
    samples = {name: [] for name in engines}
    for _ in range(runs):
        for name, engine in engines.items():
            start = time.perf_counter_ns()
            engine.run(dict(feed))
            samples[name].append((time.perf_counter_ns() - start) / 1e6)
    return {name: Latency.of(ms) for name, ms in samples.items()}


def faster_beyond_noise(candidate: Latency, baseline: Latency, min_speedup: float) -> bool:
    """Whether interleaved timing shows `candidate` faster than `baseline` beyond noise: its median
    at least `min_speedup` times faster AND its 75th percentile below the baseline's 25th, i.e. the
    two middle halves of the samples do not overlap. (A variant that computes the same ops as FP32
    measured 1.16x on its median alone on a loaded 2-core machine.)"""
    return baseline.median_ms >= min_speedup * candidate.median_ms and candidate.p75_ms < baseline.p25_ms
