"""`run_realtime`: stream sources opened from URIs through a bundle into the chosen sinks, print the
summary and the accuracy against the sources' ground truth, and return both. `realtime-infer`
(fusionrt/realtime_cli.py) parses its arguments into this call; `fusionrt demo` calls it too.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from fusionrt.bundle import Bundle, load
from fusionrt.errors import ConfigError, SourceError
from fusionrt.runtime.backend import Backend
from fusionrt.runtime.budget import Budget
from fusionrt.runtime.pipeline import Pipeline, Summary
from fusionrt.runtime.results import Result
from fusionrt.runtime.sinks import ConsoleSink, JsonlSink, PrometheusSink, Sink, TraceSink, VideoSink
from fusionrt.runtime.sources import Source, SourceOptions, open_source
from fusionrt.runtime.tegrastats import TegrastatsReader
from fusionrt.runtime.trigger import Trigger
from fusionrt.values import output_path, port

REQUESTED_STOPS = ("stop", "interrupt", "terminate")  # stop(), Ctrl-C, SIGTERM: never "no results" errors
SOURCE_NAMES = {"image": "camera", "audio": "mic", "text": "text"}  # modality -> run_realtime argument / CLI flag


@dataclass
class GroundTruth:
    """Accuracy of the fused answers against the labels the test:// sources know."""

    labels: tuple[str, ...]
    seen: int = 0
    right: int = 0

    def __call__(self, result: Result) -> None:
        if result.label is not None and result.top_k and 0 <= result.label < len(self.labels):
            self.seen += 1
            self.right += result.top_label == self.labels[result.label]

    @property
    def accuracy(self) -> float | None:
        return self.right / self.seen if self.seen else None

    def line(self) -> str | None:
        if not self.seen:
            return None
        return f"accuracy against the sources' ground truth: {self.right / self.seen:.3f} ({self.right}/{self.seen})"


class NoResultsError(SourceError):
    """A run ended (its sources ended or failed, or its duration passed) without a single result.
    The summary was printed and written first; `report` holds it."""

    def __init__(self, message: str, report: RealtimeReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class RealtimeReport:
    summary: Summary
    truth: GroundTruth
    power: dict = dataclasses.field(default_factory=dict)  # tegrastats summary on a Jetson, else {}

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy against the sources' ground truth; None when no source knows its labels."""
        return self.truth.accuracy

    def __str__(self) -> str:
        return "\n".join(filter(None, [self.summary.table, self.truth.line(), self._power_line()]))

    def _power_line(self) -> str | None:
        if not self.power.get("input_power_mean_mw"):
            return None
        temps = ", ".join(f"{name} {c:g} C" for name, c in sorted(self.power.get("temps_max_c", {}).items()))
        return (f"power (tegrastats, {self.power['samples']} samples): input mean {self.power['input_power_mean_mw']:g} "
                f"mW, max {self.power['input_power_max_mw']} mW; max temperatures: {temps or '-'}")


@dataclass(frozen=True)
class Outputs:
    """Where results go besides the returned report: files, the live status line, a metrics endpoint."""

    jsonl: str | Path | None = None  # one JSON line per fused result
    trace: str | Path | None = None  # Chrome trace events of each result's path
    video: str | Path | None = None  # the camera with the answer overlaid (mp4)
    metrics_port: int | None = None  # Prometheus metrics on METRICS_HOST:PORT/metrics (needs prometheus_client)
    metrics_host: str = "127.0.0.1"  # loopback by default; "0.0.0.0" exposes the metrics to the network
    summary_json: str | Path | None = None  # the final metrics (and accuracy) as JSON
    console: bool = True  # the live status line on stderr
    echo: bool = True  # print the summary table and the accuracy line on stdout


def run_realtime(
    bundle: Bundle | str | Path,
    *,
    camera: str | None = None,
    mic: str | None = None,
    text: str | None = None,
    duration_s: float | None = None,
    budget: Budget = Budget(),
    trigger: Trigger | str | None = None,
    options: SourceOptions = SourceOptions(),
    outputs: Outputs = Outputs(),
    backend: Backend | str = Backend.ORT,
    precision: str = "fp16",
    variant: str | Mapping[str, str] | None = None,
    providers: list[str] | None = None,
    fail_on_fallback: bool = False,
    threads: int | None = 1,
    audio_hop_s: float | None = None,
) -> RealtimeReport:
    """Open the camera, microphone and text URIs (see `open_source`), run them through `bundle` until
    `duration_s`, the end of the sources or Ctrl-C, and report.

    `options` configures the sources (its sample_rate is replaced by the bundle's audio rate); the
    engine options (backend ... audio_hop_s) are `Pipeline.from_bundle`'s. A run that produced no
    result at all (and was not stopped or interrupted) raises NoResultsError after reporting.

        run_realtime("bundles/demo", camera="test://digits", mic="test://dtmf", duration_s=10)
    """
    if not (camera or mic or text):
        raise ConfigError("no source: give at least one of camera, mic or text (realtime-infer --camera, --mic, "
                          "--text; e.g. --camera 0)")
    check_outputs(outputs)
    bundle = bundle if isinstance(bundle, Bundle) else load(bundle)
    trigger = Trigger.parse(trigger) if isinstance(trigger, str) else trigger
    if "audio" in bundle.modalities:
        options = dataclasses.replace(options, sample_rate=bundle.encoder("audio").input.sample_rate)
    sources = open_sources(bundle, {"image": camera, "audio": mic, "text": text}, options)
    try:
        sinks = open_sinks(outputs)
        pipeline = Pipeline.from_bundle(
            bundle, sources, budget=budget, trigger=trigger, sinks=sinks, backend=backend, precision=precision,
            variant=variant, providers=providers, fail_on_fallback=fail_on_fallback, threads=threads,
            audio_hop_s=audio_hop_s,
        )  # fmt: skip
    except BaseException:
        for source in sources.values():
            source.close()
        raise
    truth = GroundTruth(bundle.labels)
    with TegrastatsReader() as power:  # a Jetson's power and temperatures; nothing elsewhere
        report = RealtimeReport(pipeline.run(duration_s=duration_s, on_result=truth), truth, power.summary())
    if outputs.echo:
        print(report)
    if outputs.summary_json:
        summary = report.summary
        extra = {"accuracy": truth.accuracy} if truth.seen else {}
        extra.update({"power": report.power} if report.power else {})
        Path(outputs.summary_json).write_text(
            json.dumps({**summary.metrics, **extra, "stopped_by": summary.stopped_by}, indent=2)
        )
    if report.summary.results == 0 and report.summary.stopped_by not in REQUESTED_STOPS:
        raise NoResultsError(_nothing_produced(report.summary), report)
    return report


def _nothing_produced(summary: Summary) -> str:
    m = summary.metrics
    sources = "; ".join(
        f"{modality} {uri}: {m['frames'].get(modality, 0)} frames"
        + (f", failed: {m['source_failures'][modality]}" if modality in m["source_failures"] else "")
        for modality, uri in sorted(m["sources"].items())
    )
    return (f"no result was produced (stopped by {summary.stopped_by} after {summary.elapsed_s:.1f} s; {sources}); "
            f"check that the sources hold data (an empty file gives no frame) and that the trigger fires")


def open_sources(bundle: Bundle, uris: Mapping[str, str | None], options: SourceOptions) -> dict[str, Source]:
    """{modality: source} for each URI given; every source opened so far is closed when one fails."""
    sources: dict[str, Source] = {}
    try:
        for modality, uri in uris.items():
            if uri is None:
                continue
            if modality not in bundle.modalities:
                raise ConfigError(f"--{SOURCE_NAMES[modality]} given but bundle {bundle.root} has no {modality} "
                                  f"encoder (it fuses {list(bundle.modalities)})")
            sources[modality] = open_source(uri, modality, options=options)
    except BaseException:
        for source in sources.values():
            source.close()
        raise
    return sources


def check_outputs(outputs: Outputs) -> None:
    """Every output path writable and the port valid before anything opens, so no run is lost at its end."""
    for name in ("jsonl", "trace", "video", "summary_json"):
        if getattr(outputs, name) is not None:
            output_path(getattr(outputs, name), f"Outputs.{name}")
    if outputs.metrics_port is not None:
        port(outputs.metrics_port, "Outputs.metrics_port")


def open_sinks(outputs: Outputs) -> list[Sink]:
    sinks: list[Sink] = [ConsoleSink(stream=sys.stderr)] if outputs.console else []
    if outputs.jsonl:
        sinks.append(JsonlSink(outputs.jsonl))
    if outputs.trace:
        sinks.append(TraceSink(outputs.trace))
    if outputs.video:
        sinks.append(VideoSink(outputs.video))
    if outputs.metrics_port is not None:
        sinks.append(PrometheusSink(outputs.metrics_port, host=outputs.metrics_host))
    return sinks
