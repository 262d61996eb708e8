"""Prometheus exposition of a run's `Metrics`, with prometheus_client (imported only here, and only
when a metrics endpoint is asked for: `pip install 'fusionrt[metrics]'`).

One metric per concept, labels that never overlap (a sum over a metric never double-counts):

    fusionrt_stage_seconds{stage}            histogram  a whole stage run: audio, image, text, fusion
    fusionrt_step_seconds{stage,step}        histogram  a step inside a stage: preprocess, encode, ...
    fusionrt_e2e_seconds                     histogram  capture to result
    fusionrt_overhead_seconds                histogram  end to end minus engine time on the result's path
    fusionrt_staleness_seconds{modality}     histogram  age of a fused embedding at the trigger
    fusionrt_results_total, fusionrt_deadline_misses_total, fusionrt_trigger_handovers_total
    fusionrt_frames_total{source}, fusionrt_stage_runs_total{stage}, fusionrt_overruns_total{stage}
    fusionrt_drops_total{where,reason}, fusionrt_repairs_total{where,kind}, fusionrt_actions_total{stage,action}
    fusionrt_source_events_total{source,event}, fusionrt_presence_total{modality}
    fusionrt_source_up{source} (gauge), fusionrt_result_jitter_seconds (gauge)

Histogram buckets (HISTOGRAM_BUCKETS_S, 0.5 ms to 1 s, with 33 ms, a 30 Hz frame) are counted exactly
as samples arrive (`LatencyHistogram.le_counts`), so they aggregate across devices and stay live
however long the run; the summary table keeps its fine-grained quantiles.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from fusionrt.errors import ConfigError
from fusionrt.runtime.metrics import PROMETHEUS_BUCKETS_MS, LatencyHistogram

if TYPE_CHECKING:
    from fusionrt.runtime.metrics import Metrics

HISTOGRAM_BUCKETS_S = tuple(ms / 1e3 for ms in PROMETHEUS_BUCKETS_MS)
INSTALL_HINT = "pip install 'fusionrt[metrics]' (or prometheus_client)"


def require_client():
    """The prometheus_client module, or a ConfigError that says how to install it."""
    try:
        import prometheus_client
    except ImportError as e:
        raise ConfigError(f"--metrics-port needs prometheus_client, which is not installed: {INSTALL_HINT}") from e
    return prometheus_client


class MetricsCollector:
    """A prometheus_client collector that reads `metrics` at each scrape (under its lock)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self):
        return []  # nothing at registration: the families depend on what the run meets

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        m = self.metrics
        with m._lock:
            stages = {n: h for n, h in m.stages.items() if "." not in n}
            steps = {tuple(n.split(".", 1)): h for n, h in m.stages.items() if "." in n}
            yield _histogram("fusionrt_stage_seconds", "Stage run time (preprocess + engine)", ["stage"],
                             {(n,): h for n, h in stages.items()})
            yield _histogram("fusionrt_step_seconds", "Time of one step inside a stage", ["stage", "step"], steps)
            yield _histogram("fusionrt_e2e_seconds", "End to end latency from capture to result", [], {(): m.e2e})
            yield _histogram("fusionrt_overhead_seconds", "End to end minus engine time", [], {(): m.overhead})
            yield _histogram("fusionrt_staleness_seconds", "Age of a fused embedding at the trigger", ["modality"],
                             {(n,): h for n, h in m.staleness.items()})
            counters = (
                ("fusionrt_results", "Fused results", [], {(): m.results}),
                ("fusionrt_deadline_misses", "Results later than the deadline", [], {(): m.deadline_misses}),
                ("fusionrt_trigger_handovers", "Times fusion moved to another trigger", [], {(): len(m.handovers)}),
                ("fusionrt_frames", "Frames received per source", ["source"], _keyed(m.frames)),
                ("fusionrt_stage_runs", "Stage runs", ["stage"], {(n,): v for n, v in m.runs.items() if "." not in n}),
                ("fusionrt_overruns", "Stage runs over their budget", ["stage"], _keyed(m.overruns)),
                ("fusionrt_drops", "Inputs dropped, by where and why", ["where", "reason"], dict(m.drops)),
                ("fusionrt_repairs", "Inputs repaired and used, by kind", ["where", "kind"], dict(m.repairs)),
                ("fusionrt_actions", "Overrun policy actions", ["stage", "action"], dict(m.actions)),
                ("fusionrt_source_events", "Source anomalies (repairs, drops, truncation, reconnects)",
                 ["source", "event"], dict(m.source_events)),
                ("fusionrt_presence", "Results where the modality was present", ["modality"], _keyed(m.presence)),
            )  # fmt: skip
            for name, text, labels, series in counters:
                family = CounterMetricFamily(name, text, labels=labels)
                for key, value in sorted(series.items()):
                    family.add_metric(list(key), value)
                yield family
            up = GaugeMetricFamily("fusionrt_source_up", "1 while the source streams, 0 once it failed",
                                   labels=["source"])
            for name in sorted(m.sources):
                up.add_metric([name], 0 if name in m.source_failures else 1)
            yield up
            if m.intervals.std is not None:
                yield GaugeMetricFamily("fusionrt_result_jitter_seconds", "Std of the interval between results",
                                        value=m.intervals.std / 1e3)


def _keyed(counts: dict) -> dict:
    return {(k,): v for k, v in counts.items()}


def _histogram(name: str, text: str, labels: list[str], series: dict[tuple, LatencyHistogram]):
    from prometheus_client.core import HistogramMetricFamily

    family = HistogramMetricFamily(name, text, labels=labels)
    for key, h in sorted(series.items()):
        cumulative, buckets = 0, []
        for bound, n in zip([*(f"{b:g}" for b in HISTOGRAM_BUCKETS_S), "+Inf"], h.le_counts):
            cumulative += n
            buckets.append((bound, cumulative))
        family.add_metric(list(key), buckets, sum_value=h.total / 1e3)
    return family


def registry_for(metrics: Metrics):
    """A fresh CollectorRegistry holding only this run's metrics (no process/platform collectors)."""
    client = require_client()
    registry = client.CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(metrics))
    return registry


def prometheus_text(metrics: Metrics) -> str:
    """The text exposition format of `metrics`, as the endpoint serves it."""
    return require_client().generate_latest(registry_for(metrics)).decode()


class MetricsServer:
    """http://HOST:PORT/metrics served by prometheus_client from a daemon thread; port 0 picks a free one."""

    def __init__(self, metrics: Metrics, host: str, port: int) -> None:
        client = require_client()
        try:
            self._server, self._thread = client.start_http_server(port, addr=host, registry=registry_for(metrics))
        except OSError as e:
            raise ConfigError(f"cannot serve Prometheus metrics on {host}:{port} ({e}); choose another port or "
                              f"--metrics-host") from e
        self.port = self._server.server_address[1]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if isinstance(self._thread, threading.Thread):
            self._thread.join(timeout=5)
