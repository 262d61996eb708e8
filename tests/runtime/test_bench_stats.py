"""Benchmark statistics and perf_analyzer's stability rule on known sequences; the timing loop and
the grid around the main point."""

import math

import numpy as np
import pytest

from fusionrt.errors import ConfigError
from fusionrt.runtime.bench.run import grid, thread_sweep
from fusionrt.runtime.bench.timing import timed_window
from fusionrt.runtime.bench.stats import Window, cdf, is_stable, latency_stats, measure_until_stable


def test_latency_stats_of_one_to_hundred():
    stats = latency_stats(range(1, 101))
    assert stats.count == 100
    assert stats.p50 == pytest.approx(50.5)
    assert stats.p90 == pytest.approx(90.1)
    assert stats.p95 == pytest.approx(95.05)
    assert stats.p99 == pytest.approx(99.01)
    assert stats.max == 100
    assert stats.mean == pytest.approx(50.5)
    assert stats.std == pytest.approx(math.sqrt((100**2 - 1) / 12))


def test_latency_stats_needs_samples():
    with pytest.raises(ValueError):
        latency_stats([])


def test_cdf_runs_from_min_to_max_in_order():
    samples = np.random.default_rng(0).exponential(1.0, 500)
    points = cdf(samples)
    assert len(points) == 101
    assert points[0] == samples.min() and points[-1] == samples.max()
    assert points[50] == pytest.approx(np.median(samples))
    assert all(a <= b for a, b in zip(points, points[1:]))


@pytest.mark.parametrize(
    ("p50s", "stable"),
    [
        ([10.0, 10.5, 9.6], True),  # each within 10 % of the mean 10.03
        ([9.0, 10.0, 11.0], True),  # 9 and 11 sit exactly 10 % from the mean 10: inclusive
        ([10.0, 12.0, 9.0], False),  # 12 is 16 % above the mean 10.33
        ([10.0, 10.0], False),  # fewer than three windows
        ([50.0, 10.0, 10.2, 9.9], True),  # only the last three count
        ([10.0, 10.2, 9.9, 50.0], False),
    ],
)
def test_stability_rule(p50s, stable):
    assert is_stable(p50s) is stable


def windows_of(*p50s, copy=None):
    """Windows of three runs each, centred on the given p50s, 0.01 s of wall time each."""
    return [Window((p * 0.9, p, p * 1.2), copy, 0.01) for p in p50s]


def test_measurement_stops_at_the_first_stable_three():
    sequence = iter(windows_of(5.0, 1.0, 1.05, 0.98, 3.0, 3.0))
    measured = measure_until_stable(lambda: next(sequence), max_windows=10)
    assert measured.stable
    assert len(measured.windows) == 4
    assert [w.p50 for w in measured.used] == [1.0, 1.05, 0.98]
    summary = measured.summary(batch=4)
    assert summary["latency_ms"]["count"] == 9  # the warm-looking first window is left out
    assert summary["latency_ms"]["max"] == pytest.approx(1.05 * 1.2)
    assert summary["throughput_per_s"] == pytest.approx(4 * 9 / 0.03)
    assert summary["window_p50_ms"] == [5.0, 1.0, 1.05, 0.98]
    assert summary["copy_ms"] is None and summary["compute_ms"] is None


def test_measurement_is_flagged_unstable_at_the_cap():
    sequence = iter(windows_of(1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0))
    measured = measure_until_stable(lambda: next(sequence), max_windows=6)
    assert not measured.stable
    assert len(measured.windows) == 6
    assert measured.summary(batch=1)["stable"] is False


def test_copy_is_separated_from_compute_when_the_backend_reports_it():
    windows = [Window((2.0, 3.0, 4.0), (0.5, 0.5, 1.0), 0.01) for _ in range(3)]
    summary = measure_until_stable(iter(windows).__next__, max_windows=3).summary(batch=1)
    assert summary["copy_ms"]["p50"] == 0.5
    assert summary["compute_ms"]["p50"] == 2.5
    assert summary["compute_ms"]["max"] == 3.0


def test_stability_rule_needs_three_windows():
    with pytest.raises(ConfigError, match="at least 3"):
        measure_until_stable(lambda: windows_of(1.0)[0], max_windows=2)


def test_timed_window_runs_the_minimum_and_fills_the_window():
    calls = []
    window = timed_window(lambda: calls.append(1), window_ms=1.0, min_runs=5)
    assert len(window.latency_ms) == len(calls) >= 5
    assert window.copy_ms is None
    assert window.wall_s >= 1e-3
    assert all(ms >= 0 for ms in window.latency_ms)
    with_copy = timed_window(lambda: 0.25, window_ms=0.1, min_runs=3)
    assert with_copy.copy_ms == (0.25,) * len(with_copy.latency_ms)


def test_thread_sweep_and_grid():
    assert thread_sweep(1) == [1]
    assert thread_sweep(2) == [1, 2]
    assert thread_sweep(6) == [1, 2, 4, 6]
    assert thread_sweep(8) == [1, 2, 4, 8]
    # the thread sweep at the smallest batch, then the batch sweep at the most threads
    assert grid([1, 2], [1, 4, 16]) == [(1, 1), (2, 1), (2, 4), (2, 16)]


# -- the load rule: the reading function is injected; the thing under test is the rule -----------------


@pytest.mark.parametrize(("readings", "cores", "loaded"), [
    ([0.3, 1.9, 2.5], 2, False),  # a 2-thread point on 2 cores accounts for ~2 itself; 2.5 is the limit
    ([0.3, 2.6], 2, True),  # half a core more of other work than the free cores hold
    ([4.9, 4.9], 2, True),  # the run that printed a 772x speed-up
    ([4.9], 8, False),
    ([], 2, False),
])  # fmt: skip
def test_load_rule(readings, cores, loaded):
    from fusionrt.runtime.bench.stats import load_limit, overload

    assert (overload(readings, cores) is not None) is loaded
    assert load_limit(cores) == cores + 0.5


def test_a_loaded_point_is_never_stable_and_flags_the_report(tmp_path):
    import itertools

    from runtime_models import write_bundle

    from fusionrt.runtime.bench import BenchSettings, bench_bundle, format_table

    bundle = write_bundle(tmp_path / "b")
    quiet_then_busy = itertools.chain([0.2] * 5, itertools.repeat(4.9))  # the header, then the first point: 1 + 3 windows
    settings = BenchSettings(window_ms=5, warmup_ms=1, max_windows=3, gemm_size=64)
    report = bench_bundle(bundle, components=["image_encoder"], backends=["ort-cpu"], threads=[1], batches=[1, 4],
                          settings=settings, progress=lambda line: None, read_load=lambda: next(quiet_then_busy),
                          cores=2)  # fmt: skip
    first, second = report["rows"]
    assert first["loaded"] is None and first["load_1min"][0] == 0.2
    assert second["loaded"].startswith("1-min load 4.90 > 2.5") and second["stable"] is False
    assert report["load_average"]["flag"].startswith("1 of 2 point(s) ran at a 1-minute load average above 2.5")
    assert "load average" in report["settings"]["load_rule"]
    assert "NO (load)" in format_table(report)
