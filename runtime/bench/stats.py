"""Latency statistics of a benchmark, and perf_analyzer's stability rule.

A measurement is a series of timed windows; it stops once the last three windows' p50 latencies
each lie within 10 % of their mean (stable), or at a window cap (flagged unstable). Its statistics
come from the stable windows only.

The load rule: a point is never called stable when the machine was busier than the measurement
tolerates. The 1-minute load average is read before the point's warm-up and after each of its
windows; the point itself accounts for `threads` of it. The rest (other processes) must fit in the
cores the point leaves free, with LOAD_SLACK of margin:

    max(readings) - threads  >  (cores - threads) + LOAD_SLACK   =>   loaded, not stable

which is `max(readings) > cores + LOAD_SLACK` (2.5 on 2 cores). The 1-minute average lags, so the
rule can miss a burst shorter than a minute; it never flags a quiet machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from fusionrt.errors import ConfigError

STABLE_WINDOWS = 3
TOLERANCE = 0.10
PERCENTILES = (50, 90, 95, 99)
CDF_POINTS = 101  # the CDF is stored as the 0th, 1st, ... 100th percentile
LOAD_SLACK = 0.5  # runnable threads of other work, beyond the free cores, that a point tolerates


def load_limit(cores: int) -> float:
    """The highest 1-minute load average at which a point may still be called stable."""
    return cores + LOAD_SLACK


def overload(readings: Sequence[float], cores: int) -> str | None:
    """None when every reading is within load_limit(cores); else why the point is not stable."""
    if not readings:
        return None
    peak = max(readings)
    if peak <= load_limit(cores):
        return None
    return f"1-min load {peak:.2f} > {load_limit(cores):g} ({cores} cores + {LOAD_SLACK:g})"


@dataclass(frozen=True)
class LatencyStats:
    count: int
    p50: float
    p90: float
    p95: float
    p99: float
    max: float
    mean: float
    std: float

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("count", "p50", "p90", "p95", "p99", "max", "mean", "std")}


def latency_stats(samples_ms: Sequence[float]) -> LatencyStats:
    """Percentiles (linear interpolation, as numpy.percentile), max, mean and std of latency samples."""
    a = np.asarray(samples_ms, np.float64)
    if a.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    p50, p90, p95, p99 = (float(v) for v in np.percentile(a, PERCENTILES))
    return LatencyStats(int(a.size), p50, p90, p95, p99, float(a.max()), float(a.mean()), float(a.std()))


def cdf(samples_ms: Sequence[float]) -> list[float]:
    """The empirical CDF as CDF_POINTS percentiles (0 %, 1 %, ... 100 %)."""
    return [float(v) for v in np.percentile(np.asarray(samples_ms, np.float64), np.linspace(0, 100, CDF_POINTS))]


@dataclass(frozen=True)
class Window:
    """One measurement window: per-run latency, the host copy part of each run where the backend
    separates it (None where it does not), and the window's wall-clock time."""

    latency_ms: tuple[float, ...]
    copy_ms: tuple[float, ...] | None
    wall_s: float

    @property
    def p50(self) -> float:
        return float(np.median(self.latency_ms))


def is_stable(p50s: Sequence[float]) -> bool:
    """Whether the last STABLE_WINDOWS p50s each lie within TOLERANCE of their mean."""
    if len(p50s) < STABLE_WINDOWS:
        return False
    last = p50s[-STABLE_WINDOWS:]
    mean = sum(last) / STABLE_WINDOWS
    return all(abs(p - mean) <= TOLERANCE * mean for p in last)


@dataclass(frozen=True)
class Measurement:
    windows: tuple[Window, ...]
    stable: bool

    @property
    def used(self) -> tuple[Window, ...]:
        """The windows the statistics come from: the last STABLE_WINDOWS (all of them if fewer)."""
        return self.windows[-STABLE_WINDOWS:]

    def summary(self, batch: int) -> dict:
        """Latency statistics, throughput (items/s over the windows' wall time), copy and compute
        parts where separated, the CDF, and the stability verdict."""
        latency = [x for w in self.used for x in w.latency_ms]
        wall = sum(w.wall_s for w in self.used)
        out = {
            "latency_ms": latency_stats(latency).as_dict(),
            "throughput_per_s": batch * len(latency) / wall if wall > 0 else None,
            "copy_ms": None,
            "compute_ms": None,
            "cdf_ms": cdf(latency),
            "stable": self.stable,
            "windows": len(self.windows),
            "window_p50_ms": [w.p50 for w in self.windows],
        }
        if all(w.copy_ms is not None for w in self.used):
            copy = [x for w in self.used for x in w.copy_ms]
            out["copy_ms"] = latency_stats(copy).as_dict()
            out["compute_ms"] = latency_stats([t - c for t, c in zip(latency, copy)]).as_dict()
        return out


def measure_until_stable(next_window: Callable[[], Window], *, max_windows: int) -> Measurement:
    """Take windows until the last STABLE_WINDOWS are stable (is_stable) or `max_windows` were taken."""
    if max_windows < STABLE_WINDOWS:
        raise ConfigError(f"max_windows = {max_windows}; the stability rule needs at least {STABLE_WINDOWS} windows")
    taken: list[Window] = []
    while len(taken) < max_windows:
        taken.append(next_window())
        if is_stable([w.p50 for w in taken]):
            return Measurement(tuple(taken), True)
    return Measurement(tuple(taken), False)
