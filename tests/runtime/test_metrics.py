"""Metrics: histogram quantiles against NumPy, thread safety, and the three renderings."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest

from fusionrt.runtime.metrics import QUANTILES, LatencyHistogram, Metrics, RunningStats


def test_quantiles_match_numpy_within_bucket_precision():
    samples = np.random.default_rng(0).lognormal(mean=1.0, sigma=1.2, size=20_000)
    histogram = LatencyHistogram()
    for x in samples:
        histogram.record(float(x))
    for q in QUANTILES:
        exact = np.percentile(samples, q * 100, method="inverted_cdf")
        assert histogram.quantile(q) == pytest.approx(exact, rel=0.006), q
    assert histogram.count == len(samples)
    assert histogram.max == samples.max() and histogram.min == samples.min()
    assert histogram.mean == pytest.approx(samples.mean(), rel=1e-9)
    assert histogram.quantile(1.0) == samples.max()


def test_p999_sees_a_rare_spike():
    histogram = LatencyHistogram()
    for _ in range(9_990):
        histogram.record(2.0)
    for _ in range(10):
        histogram.record(250.0)
    assert histogram.quantile(0.99) == pytest.approx(2.0, rel=0.006)
    assert histogram.quantile(0.999) == pytest.approx(2.0, rel=0.006)  # rank 9990 is still 2 ms
    histogram.record(250.0)
    assert histogram.quantile(0.999) == pytest.approx(250.0, rel=0.006)


def test_extreme_values_are_clamped_to_what_was_seen():
    histogram = LatencyHistogram()
    for x in (0.0, 1e-6, 5e7):
        histogram.record(x)
    assert histogram.quantile(0.0) == 0.0
    assert histogram.quantile(1.0) == 5e7
    assert LatencyHistogram().quantile(0.5) is None
    assert LatencyHistogram().to_dict() == {"count": 0}


def test_running_stats_std_matches_numpy():
    xs = np.random.default_rng(1).normal(10, 3, 1000)
    stats = RunningStats()
    for x in xs:
        stats.add(float(x))
    assert stats.std == pytest.approx(xs.std(), rel=1e-9)
    assert stats.mean == pytest.approx(xs.mean(), rel=1e-12)


def test_concurrent_recording_loses_nothing():
    metrics = Metrics()
    metrics.start()

    def hammer() -> None:
        for _ in range(2_000):
            metrics.stage("image.encode", 1.5)
            metrics.drop("image", "superseded")

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metrics.stages["image.encode"].count == 8_000
    assert metrics.drops_by_reason()["superseded"] == 8_000


def filled_metrics() -> Metrics:
    ticks = iter(range(0, 10**12, 10_000_000))  # a fake clock: 10 ms per call
    metrics = Metrics(clock=lambda: next(ticks))
    metrics.start()
    metrics.source("image", "test://digits")
    metrics.source("audio", "test://dtmf")
    for i in range(5):
        metrics.frame("image")
        metrics.stage("image", 2.0 + i)
        metrics.result(
            done_ns=1_000_000_000 + i * 30_000_000 + (i % 2) * 4_000_000,
            e2e_ms=10.0 + i,
            engine_ms=8.0,
            deadline_missed=i == 4,
            presence={"image": True, "audio": i < 2},
            staleness_ms={"image": 0.0, "audio": 40.0 if i < 2 else None},
            absent={} if i < 2 else {"audio": "stale"},
        )
    metrics.drop("image", "superseded", 3)
    metrics.drop("audio", "bad_input")
    metrics.overrun("image")
    metrics.action("image", "drop_oldest")
    metrics.source_failed("audio", "device unplugged")
    metrics.note("no text source")
    metrics.repair("audio", "nonfinite", 2)
    metrics.source("image", "rtsp://cam")
    assert metrics.source_stats("image", {"frames": 9, "reconnect_attempts": 3, "reconnects": 1, "loops": 2})
    assert not metrics.source_stats("image", {"frames": 10, "reconnect_attempts": 3, "reconnects": 1})  # unchanged
    metrics.handover("image", "audio", "image source failed")
    metrics.finish()
    return metrics


def test_to_dict_reports_every_figure():
    d = filled_metrics().to_dict()
    assert d["results"] == 5 and d["deadline_misses"] == 1
    assert d["e2e_ms"]["count"] == 5 and d["e2e_ms"]["max"] == 14.0
    assert d["overhead_ms"]["p50"] == pytest.approx(4.0, rel=0.006)
    intervals = np.diff([1_000 + i * 30 + (i % 2) * 4 for i in range(5)])
    assert d["jitter_ms"] == pytest.approx(intervals.std())
    assert d["drops"] == {"audio": {"bad_input": 1, "source_error": 1}, "image": {"superseded": 3}}
    assert d["drops_by_reason"] == {"superseded": 3, "stale": 0, "budget": 0, "source_error": 1, "bad_input": 1,
                                    "engine_error": 0}
    assert d["repairs"] == {"audio": {"nonfinite": 2}}
    assert d["source_events"] == {"image": {"reconnect_attempts": 3, "reconnects": 1}}  # anomalies only
    assert d["trigger_handovers"] == [{"from": "image", "to": "audio", "why": "image source failed",
                                       "after_results": 5}]
    assert d["presence"] == {"image": 5, "audio": 2}
    assert d["absence"] == {"audio": {"stale": 3}}
    assert d["staleness_ms"]["audio"]["count"] == 2
    assert d["actions"] == {"image": {"drop_oldest": 1}}
    assert d["source_failures"] == {"audio": "device unplugged"}
    assert d["source_rates_per_s"]["image"] == pytest.approx(5 / d["elapsed_s"])
    assert d["notes"] == ["no text source"]


def test_summary_table_has_a_row_per_stage_and_the_failures():
    table = filled_metrics().summary_table()
    assert re.search(r"^stage image\s+5\s", table, re.M)
    assert re.search(r"^end to end\s+5\s", table, re.M)
    assert "deadline misses 1 (20.0%)" in table
    assert "image superseded 3" in table
    assert "FAILED: device unplugged" in table
    assert "repairs: audio nonfinite 2" in table
    assert "source image rtsp://cam: 5 frames" in table and "reconnect_attempts 3, reconnects 1" in table
    assert "trigger handed over: image -> audio after 5 results (image source failed)" in table


def test_prometheus_text_is_well_formed():
    from prometheus_client.parser import text_string_to_metric_families

    from fusionrt.runtime.prometheus import HISTOGRAM_BUCKETS_S, prometheus_text

    text = prometheus_text(filled_metrics())
    families = {f.name: f for f in text_string_to_metric_families(text)}  # the client's own parser accepts it
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert families["fusionrt_e2e_seconds"].type == "histogram"
    assert values[("fusionrt_results_total", ())] == 5
    assert values[("fusionrt_drops_total", (("reason", "superseded"), ("where", "image")))] == 3
    assert values[("fusionrt_source_up", (("source", "audio"),))] == 0
    assert values[("fusionrt_source_up", (("source", "image"),))] == 1
    assert values[("fusionrt_e2e_seconds_count", ())] == 5
    assert values[("fusionrt_e2e_seconds_bucket", (("le", "+Inf"),))] == 5
    assert values[("fusionrt_repairs_total", (("kind", "nonfinite"), ("where", "audio")))] == 2
    assert values[("fusionrt_source_events_total", (("event", "reconnects"), ("source", "image")))] == 1
    assert values[("fusionrt_trigger_handovers_total", ())] == 1
    assert HISTOGRAM_BUCKETS_S[0] == 0.0005 and HISTOGRAM_BUCKETS_S[-1] == 1.0


def test_prometheus_buckets_are_exact_and_stage_and_step_never_share_a_metric():
    from prometheus_client.parser import text_string_to_metric_families

    from fusionrt.runtime.prometheus import prometheus_text

    m = Metrics()
    for ms in (0.4, 0.5, 0.6, 12.0, 2000.0):
        m.stage("audio", ms)
    m.stage("audio.encode", 3.0)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(prometheus_text(m)) for s in f.samples}
    bucket = lambda le: samples[("fusionrt_stage_seconds_bucket", (("le", le), ("stage", "audio")))]  # noqa: E731
    assert (bucket("0.0005"), bucket("0.001"), bucket("0.02"), bucket("1"), bucket("+Inf")) == (2, 3, 4, 4, 5)
    assert samples[("fusionrt_step_seconds_count", (("stage", "audio"), ("step", "encode")))] == 1
    stages = {dict(k[1]).get("stage") for k in samples if k[0] == "fusionrt_stage_seconds_count"}
    assert stages == {"audio"}  # "audio.encode" is a step, never a stage: sums over stages do not double-count


def test_unknown_drop_reason_is_a_programming_error():
    with pytest.raises(ValueError, match="drop reason 'lost'"):
        Metrics().drop("image", "lost")
