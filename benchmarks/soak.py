"""Soak: the realtime pipeline at nominal rate for a long time with every output on.

    .venv/bin/python benchmarks/soak.py [--bundle bundles/demo] [--minutes 30] [--sample-s 60]

test://digits camera at 30 fps + test://dtmf + test://digits text through the bundle, with JSONL,
Chrome trace and the Prometheus endpoint (127.0.0.1, scraped every sample) all on. Every
`--sample-s` seconds it records RSS, the interval's end-to-end p50/p99, results, deadline misses
and drops. Targets: RSS growth after the first interval <= 10 MB, p99 drift (median p99 of the
last third of the intervals against the first third) <= 10 %. Results go to
benchmarks/results/soak.{json,md} (or --out-dir) with the machine and the command.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from fusionrt.bundle import load
from fusionrt.runtime import Budget, Pipeline, SourceOptions, open_source
from fusionrt.runtime.bench.machine import fingerprint
from fusionrt.runtime.metrics import LatencyHistogram
from fusionrt.runtime.sinks import JsonlSink, PrometheusSink, TraceSink

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "bundles" / "demo"
RSS_TARGET_MB = 10.0
P99_DRIFT_TARGET = 0.10


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Sampler:
    """Per-interval end-to-end histogram (fed by on_result) and a row per interval (a thread)."""

    def __init__(self, pipeline: Pipeline, prometheus: PrometheusSink, sample_s: float, total_s: float) -> None:
        self.pipeline, self.prometheus, self.sample_s, self.total_s = pipeline, prometheus, sample_s, total_s
        self.rows: list[dict] = []
        self._lock = threading.Lock()
        self._histogram = LatencyHistogram()
        self._done = threading.Event()
        self._last = {"results": 0, "misses": 0, "drops": 0}
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="soak-sampler", daemon=True)

    def __call__(self, result) -> None:
        with self._lock:
            self._histogram.record(result.e2e_ms)

    def start(self) -> None:
        self._start = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)

    def _loop(self) -> None:
        """One sample per interval; after the last full interval, stop the pipeline (every sample is
        taken while every output is still on)."""
        intervals = max(1, round(self.total_s / self.sample_s))
        while not self._done.wait(self.sample_s - (time.monotonic() - self._start) % self.sample_s):
            self.sample()
            if len(self.rows) >= intervals:
                self.pipeline.stop()
                return

    def sample(self) -> None:
        with self._lock:
            histogram, self._histogram = self._histogram, LatencyHistogram()
        metrics = self.pipeline.metrics
        now = {"results": metrics.results, "misses": metrics.deadline_misses,
               "drops": sum(metrics.drops_by_reason().values())}  # fmt: skip
        delta = {k: now[k] - self._last[k] for k in now}
        self._last = now
        row = {"t_s": round(time.monotonic() - self._start, 1), "rss_mb": round(rss_mb(), 2),
               "results": delta["results"], "deadline_misses": delta["misses"], "drops": delta["drops"],
               "e2e_p50_ms": histogram.quantile(0.5), "e2e_p99_ms": histogram.quantile(0.99),
               "metrics_endpoint_bytes": scrape(self.prometheus.url)}  # fmt: skip
        self.rows.append(row)
        left = max(0.0, self.total_s - row["t_s"])
        p99 = f"{row['e2e_p99_ms']:.2f}" if row["e2e_p99_ms"] is not None else "-"
        print(f"soak {row['t_s']:7.0f} s: RSS {row['rss_mb']:.1f} MB, p99 {p99} ms, {row['results']} results, "
              f"{row['drops']} drops; ETA {left / 60:.1f} min", file=sys.stderr, flush=True)


def scrape(url: str) -> int:
    """Bytes of one scrape of the metrics endpoint (0 when it did not answer)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return len(response.read())
    except OSError:
        return 0


def verdict(rows: list[dict]) -> dict:
    """RSS growth and p99 drift over the intervals (the first interval is warm-up for RSS)."""
    p99s = [r["e2e_p99_ms"] for r in rows if r["e2e_p99_ms"] is not None]
    third = max(1, len(p99s) // 3)
    first, last = (statistics.median(p99s[:third]), statistics.median(p99s[-third:])) if p99s else (None, None)
    drift = (last - first) / first if first else None
    growth = rows[-1]["rss_mb"] - rows[0]["rss_mb"] if rows else None
    return {
        "rss_growth_mb": growth, "rss_target_mb": RSS_TARGET_MB,
        "rss_ok": growth is not None and growth <= RSS_TARGET_MB,
        "p99_first_third_ms": first, "p99_last_third_ms": last, "p99_drift": drift,
        "p99_drift_target": P99_DRIFT_TARGET, "p99_ok": drift is not None and drift <= P99_DRIFT_TARGET,
        "intervals": len(rows), "enough_intervals": len(rows) >= 3,
    }  # fmt: skip


def soak(bundle_path: Path, minutes: float, sample_s: float, work: Path) -> dict:
    bundle = load(bundle_path)
    rate = bundle.encoder("audio").input.sample_rate if "audio" in bundle.modalities else 16000
    options = SourceOptions(fps=30, sample_rate=rate)
    uris = {"image": "test://digits", "audio": "test://dtmf", "text": "test://digits"}
    sources = {m: open_source(uri, m, options=options) for m, uri in uris.items() if m in bundle.modalities}
    prometheus = PrometheusSink(0)
    sinks = [JsonlSink(work / "soak.jsonl"), TraceSink(work / "soak.trace.json"), prometheus]
    pipeline = Pipeline.from_bundle(bundle, sources, budget=Budget(), sinks=sinks)
    sampler = Sampler(pipeline, prometheus, sample_s, minutes * 60)
    threading.Timer(0.5, sampler.start).start()  # after the pipeline opened its sinks
    try:
        summary = pipeline.run(duration_s=minutes * 60 + 30, on_result=sampler)  # the sampler stops it
    finally:
        sampler.stop()
    return {
        "bundle": str(bundle_path), "minutes": minutes, "sample_s": sample_s,
        "sources": {m: uris[m] for m in sources}, "outputs": ["jsonl", "trace", "prometheus 127.0.0.1"],
        "stopped_by": summary.stopped_by, "results": summary.results,
        "drops_by_reason": summary.metrics["drops_by_reason"], "deadline_misses": summary.metrics["deadline_misses"],
        "e2e_ms": summary.metrics["e2e_ms"], "output_bytes": {p.name: p.stat().st_size for p in work.iterdir()},
        "samples": sampler.rows, "verdict": verdict(sampler.rows),
    }  # fmt: skip


def markdown(report: dict) -> str:
    v, m = report["verdict"], report["machine"]
    vnni = "yes" if any("VNNI" in f for f in m["cpu_flags"]) else "no"
    lines = [
        "# Soak", "", f"`{report['command']}`", "",
        f"Machine: {m['cpu']} ({m['cores']} cores, VNNI: {vnni}), {m['platform']}, onnxruntime "
        f"{m['versions'].get('onnxruntime', '?')}.", "",
        f"{report['minutes']} min at nominal rate ({', '.join(f'{k} {u}' for k, u in report['sources'].items())}), "
        f"outputs: {', '.join(report['outputs'])}; {report['results']} results, stopped by {report['stopped_by']}, "
        f"deadline misses {report['deadline_misses']}, drops {report['drops_by_reason']}.", "",
        "| target | measured | ok |", "|---|---|---|",
        f"| RSS growth <= {v['rss_target_mb']:g} MB (after the first interval) | "
        f"{_num(v['rss_growth_mb'], '+.2f')} MB | {'yes' if v['rss_ok'] else 'NO'} |",
        f"| p99 drift <= {v['p99_drift_target']:.0%} (last third vs first third) | "
        f"{_num(v['p99_first_third_ms'], '.2f')} -> {_num(v['p99_last_third_ms'], '.2f')} ms "
        f"({_num(v['p99_drift'] and v['p99_drift'] * 100, '+.1f')} %) | {'yes' if v['p99_ok'] else 'NO'} |", "",
        "| t (s) | RSS (MB) | results | drops | misses | p50 (ms) | p99 (ms) | /metrics bytes |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in report["samples"]:
        lines.append(f"| {r['t_s']:.0f} | {r['rss_mb']:.1f} | {r['results']} | {r['drops']} | {r['deadline_misses']} "
                     f"| {_num(r['e2e_p50_ms'], '.2f')} | {_num(r['e2e_p99_ms'], '.2f')} "
                     f"| {r['metrics_endpoint_bytes']} |")
    if not v["enough_intervals"]:
        lines += ["", "Fewer than 3 intervals: the drift and growth numbers are not meaningful."]
    return "\n".join(lines) + "\n"


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE, help="bundle to run")
    p.add_argument("--minutes", type=float, default=30.0, help="how long to run")
    p.add_argument("--sample-s", type=float, default=60.0, help="seconds per sample interval")
    p.add_argument("--out-dir", type=Path, default=RESULTS, help="where soak.json and soak.md go")
    args = p.parse_args(argv)
    if not (args.minutes > 0 and args.sample_s > 0 and args.minutes * 60 <= 7 * 24 * 3600):
        p.error("--minutes and --sample-s must be positive (and at most a week)")
    if not (args.bundle / "manifest.json").is_file():
        p.error(f"no bundle at {args.bundle}: run `fusionrt demo` first or pass --bundle")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fusionrt-soak-") as work:
        report = soak(args.bundle, args.minutes, args.sample_s, Path(work))
    args_given = argv if argv is not None else sys.argv[1:]
    report["command"] = " ".join(shlex.quote(a) for a in ["benchmarks/soak.py", *args_given])
    report["machine"] = fingerprint()
    (args.out_dir / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out_dir / "soak.md").write_text(markdown(report))
    print(markdown(report))
    return 0 if report["verdict"]["rss_ok"] and report["verdict"]["p99_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
