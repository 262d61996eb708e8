"""`Metrics`: what a pipeline run measured, thread-safe, in flat memory.

Latencies go into log-spaced histograms (1 µs to ~1000 s, buckets 1 % wide): a quantile is within
0.5 % of the exact value however long the run, where a bounded reservoir of raw samples would lose
p99.9 after a few hours. Rendered as a table (`summary_table`) and a dict (`to_dict`); each
histogram also counts samples in the fixed Prometheus buckets (PROMETHEUS_BUCKETS_MS) that
runtime/prometheus.py exposes.
"""

from __future__ import annotations

import math
from bisect import bisect_left
import threading
import time
from collections import defaultdict
from itertools import accumulate

QUANTILES = (0.5, 0.9, 0.99, 0.999)
DROP_REASONS = ("superseded", "stale", "budget", "source_error", "bad_input", "engine_error")
# Anomaly counters a source keeps in its `stats` (reported per source): what each means.
SOURCE_EVENTS = {
    "nonfinite_samples": "NaN/Inf samples replaced by 0 (repaired)",
    "decode_errors": "lines with invalid UTF-8, decoded with U+FFFD (repaired)",
    "empty_lines": "empty lines skipped (dropped)",
    "dropped_blocks": "audio blocks lost because the consumer fell behind (dropped)",
    "overflows": "device input overflows (samples lost)",
    "truncated": "the file is truncated: streamed up to the cut",
    "reconnect_attempts": "reconnection attempts",
    "reconnects": "reconnections that succeeded",
}
NOTES_KEPT = 50
# Prometheus histogram bounds (le), ms: 0.5 ms to 1 s, with 33.3 ms (a 30 Hz frame) as a bound.
PROMETHEUS_BUCKETS_MS = (0.5, 1, 2.5, 5, 10, 20, 33.3, 50, 100, 250, 500, 1000)


class LatencyHistogram:
    """Millisecond samples in log-spaced buckets: bucket i covers [LOW * G^(i-1), LOW * G^i)."""

    LOW_MS = 1e-3
    GROWTH = 1.01
    BUCKETS = math.ceil(math.log(1e6 / LOW_MS) / math.log(GROWTH)) + 2  # + underflow and overflow

    def __init__(self) -> None:
        self.counts = [0] * self.BUCKETS
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.le_counts = [0] * (len(PROMETHEUS_BUCKETS_MS) + 1)  # per Prometheus bucket (not cumulative), + Inf

    def record(self, ms: float) -> None:
        self.le_counts[bisect_left(PROMETHEUS_BUCKETS_MS, ms)] += 1
        if ms < self.LOW_MS:
            index = 0
        else:
            index = min(self.BUCKETS - 1, int(math.log(ms / self.LOW_MS) / _LOG_GROWTH) + 1)
        self.counts[index] += 1
        self.count += 1
        self.total += ms
        self.min = min(self.min, ms)
        self.max = max(self.max, ms)

    def quantile(self, q: float) -> float | None:
        """The q-quantile (nearest rank) to bucket precision, clamped to the observed min and max."""
        if not self.count:
            return None
        rank = max(1, math.ceil(q * self.count))
        if rank >= self.count:
            return self.max
        for index, cumulative in enumerate(accumulate(self.counts)):
            if cumulative >= rank:
                break
        if index == 0 or index == self.BUCKETS - 1:  # under- or overflow: no bucket edges to go by
            return self.min if index == 0 else self.max
        value = self.LOW_MS * self.GROWTH ** (index - 0.5)
        return min(self.max, max(self.min, value))

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def to_dict(self) -> dict:
        if not self.count:
            return {"count": 0}
        return {
            "count": self.count,
            "mean": self.mean,
            **{_quantile_key(q): self.quantile(q) for q in QUANTILES},
            "max": self.max,
        }


_LOG_GROWTH = math.log(LatencyHistogram.GROWTH)


class RunningStats:
    """Mean and standard deviation in one pass (Welford)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean = 0.0
        self._m2 = 0.0

    def add(self, x: float) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self._m2 += delta * (x - self.mean)

    @property
    def std(self) -> float | None:
        return math.sqrt(self._m2 / self.count) if self.count else None


class Metrics:
    """Counters and histograms of one pipeline run; every method may be called from any thread."""

    def __init__(self, clock=time.monotonic_ns) -> None:
        self._clock = clock
        self._lock = threading.RLock()
        self.stages: dict[str, LatencyHistogram] = defaultdict(LatencyHistogram)
        self.e2e = LatencyHistogram()
        self.overhead = LatencyHistogram()  # end to end minus engine time on the result's path
        self.staleness: dict[str, LatencyHistogram] = defaultdict(LatencyHistogram)
        self.intervals = RunningStats()
        self.results = 0
        self.deadline_misses = 0
        self.drops: dict[tuple[str, str], int] = defaultdict(int)  # (stage or source, reason)
        self.actions: dict[tuple[str, str], int] = defaultdict(int)  # (stage, action)
        self.action_times: dict[tuple[str, str], list[int]] = {}  # (stage, action): [first ns, last ns]
        self.overruns: dict[str, int] = defaultdict(int)
        self.frames: dict[str, int] = defaultdict(int)  # per source
        self.runs: dict[str, int] = defaultdict(int)  # per stage
        self.presence: dict[str, int] = defaultdict(int)  # results where the modality was present
        self.absence: dict[tuple[str, str], int] = defaultdict(int)  # (modality, why absent)
        self.source_failures: dict[str, str] = {}
        self.repairs: dict[tuple[str, str], int] = defaultdict(int)  # (stage or source, what was repaired)
        self.source_events: dict[tuple[str, str], int] = {}  # (modality, SOURCE_EVENTS key): the source's count
        self.handovers: list[dict] = []  # trigger handovers: from, to, why, after how many results
        self.sources: dict[str, str] = {}  # modality -> uri
        self.variants: dict[str, str] = {}  # stage -> variant in use
        self.notes: list[str] = []
        self._start_ns: int | None = None
        self._end_ns: int | None = None
        self._last_result_ns: int | None = None

    def start(self) -> None:
        with self._lock:
            self._start_ns = self._clock()
            self._end_ns = None

    def finish(self) -> None:
        with self._lock:
            self._end_ns = self._clock()

    @property
    def elapsed_s(self) -> float:
        if self._start_ns is None:
            return 0.0
        end = self._end_ns if self._end_ns is not None else self._clock()
        return (end - self._start_ns) / 1e9

    def _since_start_s(self, t_ns: int) -> float | None:
        return None if self._start_ns is None else round((t_ns - self._start_ns) / 1e9, 3)

    def frame(self, source: str) -> None:
        with self._lock:
            self.frames[source] += 1

    def stage(self, name: str, ms: float) -> None:
        with self._lock:
            self.stages[name].record(ms)
            self.runs[name] += 1

    def drop(self, where: str, reason: str, count: int = 1) -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"drop reason {reason!r} is not one of {DROP_REASONS}")
        if count:
            with self._lock:
                self.drops[(where, reason)] += count

    def overrun(self, stage: str) -> None:
        with self._lock:
            self.overruns[stage] += 1

    def action(self, stage: str, action: str) -> None:
        now = self._clock()
        with self._lock:
            self.actions[(stage, action)] += 1
            self.action_times.setdefault((stage, action), [now, now])[1] = now

    def variant(self, stage: str, name: str) -> None:
        with self._lock:
            self.variants[stage] = name

    def source(self, modality: str, uri: str) -> None:
        with self._lock:
            self.sources[modality] = uri

    def source_failed(self, modality: str, message: str) -> None:
        with self._lock:
            self.source_failures[modality] = message
            self.drops[(modality, "source_error")] += 1

    def repair(self, where: str, kind: str, count: int = 1) -> None:
        """Count an input that was repaired (and used) rather than dropped."""
        if count:
            with self._lock:
                self.repairs[(where, kind)] += count

    def source_stats(self, modality: str, stats: dict[str, int]) -> bool:
        """Take the anomaly counters (SOURCE_EVENTS) of a source's `stats`; True when one changed."""
        changed = False
        with self._lock:
            for name in SOURCE_EVENTS:
                count = stats.get(name, 0)
                if count and self.source_events.get((modality, name)) != count:
                    self.source_events[(modality, name)] = count
                    changed = True
        return changed

    def handover(self, before: str, after: str, why: str) -> None:
        with self._lock:
            self.handovers.append({"from": before, "to": after, "why": why, "after_results": self.results})

    def note(self, message: str) -> None:
        with self._lock:
            if len(self.notes) < NOTES_KEPT:
                self.notes.append(message)

    def result(
        self,
        *,
        done_ns: int,
        e2e_ms: float,
        engine_ms: float,
        deadline_missed: bool,
        presence: dict[str, bool],
        staleness_ms: dict[str, float | None],
        absent: dict[str, str],
    ) -> None:
        with self._lock:
            self.results += 1
            self.e2e.record(e2e_ms)
            self.overhead.record(max(0.0, e2e_ms - engine_ms))
            self.deadline_misses += deadline_missed
            if self._last_result_ns is not None:
                self.intervals.add((done_ns - self._last_result_ns) / 1e6)
            self._last_result_ns = done_ns
            for modality, present in presence.items():
                if present:
                    self.presence[modality] += 1
                    self.staleness[modality].record(max(0.0, staleness_ms[modality] or 0.0))
            for modality, why in absent.items():
                self.absence[(modality, why)] += 1

    def drops_by_reason(self) -> dict[str, int]:
        totals = {reason: 0 for reason in DROP_REASONS}
        for (_, reason), count in self.drops.items():
            totals[reason] += count
        return totals

    def to_dict(self) -> dict:
        with self._lock:
            elapsed = self.elapsed_s
            rate = (lambda n: n / elapsed) if elapsed > 0 else (lambda n: 0.0)
            return {
                "elapsed_s": elapsed,
                "results": self.results,
                "results_per_s": rate(self.results),
                "deadline_misses": self.deadline_misses,
                "jitter_ms": self.intervals.std,
                "e2e_ms": self.e2e.to_dict(),
                "overhead_ms": self.overhead.to_dict(),
                "stages_ms": {name: h.to_dict() for name, h in sorted(self.stages.items())},
                "stage_rates_per_s": {name: rate(n) for name, n in sorted(self.runs.items())},
                "source_rates_per_s": {name: rate(n) for name, n in sorted(self.frames.items())},
                "frames": dict(self.frames),
                "staleness_ms": {name: h.to_dict() for name, h in sorted(self.staleness.items())},
                "presence": dict(self.presence),
                "absence": _nested(self.absence),
                "drops": _nested(self.drops),
                "drops_by_reason": self.drops_by_reason(),
                "overruns": dict(self.overruns),
                "actions": _nested(self.actions),
                "action_times_s": _nested({key: [self._since_start_s(t) for t in times]
                                           for key, times in self.action_times.items()}),
                "variants": dict(self.variants),
                "sources": dict(self.sources),
                "source_failures": dict(self.source_failures),
                "repairs": _nested(self.repairs),
                "source_events": _nested(self.source_events),
                "trigger_handovers": [dict(h) for h in self.handovers],
                "notes": list(self.notes),
            }

    def summary_table(self) -> str:
        with self._lock:
            return self._summary_table()

    def _summary_table(self) -> str:
        d = self.to_dict()
        head = f"{'':<24}{'count':>8}{'rate/s':>9}{'p50':>9}{'p90':>9}{'p99':>9}{'p99.9':>9}{'max':>9}  ms"
        lines = [head]
        rows = [(f"stage {n}", h, d["stage_rates_per_s"].get(n)) for n, h in sorted(self.stages.items())]
        rows += [("end to end", self.e2e, d["results_per_s"]), ("overhead", self.overhead, None)]
        rows += [(f"staleness {n}", h, None) for n, h in sorted(self.staleness.items())]
        for name, histogram, per_s in rows:
            lines.append(_table_row(name, histogram, per_s))
        misses = d["deadline_misses"]
        share = f" ({misses / d['results']:.1%})" if d["results"] else ""
        jitter = f"{d['jitter_ms']:.2f} ms" if d["jitter_ms"] is not None else "-"
        lines.append(
            f"results {d['results']} in {d['elapsed_s']:.1f} s; deadline misses {misses}{share}; jitter {jitter}"
        )
        drops = ", ".join(f"{where} {reason} {n}" for (where, reason), n in sorted(self.drops.items()))
        lines.append(f"drops: {drops or 'none'}")
        actions = ", ".join(f"{stage} {action} {n}" for (stage, action), n in sorted(self.actions.items()))
        overruns = ", ".join(f"{stage} {n}" for stage, n in sorted(self.overruns.items()))
        lines.append(f"overruns: {overruns or 'none'}; actions: {actions or 'none'}")
        if self.repairs:
            lines.append("repairs: " + ", ".join(f"{w} {k} {n}" for (w, k), n in sorted(self.repairs.items())))
        for h in self.handovers:
            lines.append(f"trigger handed over: {h['from']} -> {h['to']} after {h['after_results']} results "
                         f"({h['why']})")
        for modality, uri in sorted(self.sources.items()):
            frames = self.frames.get(modality, 0)
            state = f"FAILED: {self.source_failures[modality]}" if modality in self.source_failures else "ok"
            per_s = d["source_rates_per_s"].get(modality, 0)
            events = ", ".join(f"{name} {n}" for (m, name), n in sorted(self.source_events.items()) if m == modality)
            lines.append(f"source {modality} {uri}: {frames} frames ({per_s:.1f}/s) {state}"
                         + (f"; {events}" if events else ""))
        if self.variants:
            lines.append("variants: " + ", ".join(f"{s} {v}" for s, v in sorted(self.variants.items())))
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


def _quantile_key(q: float) -> str:
    return "p" + f"{q * 100:g}"


def _nested(pairs: dict[tuple[str, str], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (outer, inner), value in sorted(pairs.items()):
        out.setdefault(outer, {})[inner] = value
    return out


def _table_row(name: str, h: LatencyHistogram, per_s: float | None) -> str:
    cells = [h.quantile(q) for q in QUANTILES] + [h.max if h.count else None]
    rate = f"{per_s:9.1f}" if per_s is not None else f"{'':9}"
    return f"{name:<24}{h.count:>8}{rate}" + "".join(f"{c:9.2f}" if c is not None else f"{'-':>9}" for c in cells)
