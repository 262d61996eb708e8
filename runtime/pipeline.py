"""`Pipeline`: sources -> encoder stages -> embedding slots -> fusion on a trigger -> sinks.

The pipeline checks its wiring when it is built (sources against stages, replay modes, the audio
rate, embedding widths), runs once on one of the two schedulers (runtime/schedulers.py: realtime
threads, or deterministic replay when every source replays deterministically), and on every exit
path closes its sources, its sinks and the engines `from_bundle` opened. What each input goes
through is `Flow` (runtime/flow.py); how a bundle becomes stages is runtime/assembly.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from fusionrt.bundle import Bundle, load
from fusionrt.errors import ConfigError, FusionRTError
from fusionrt.frame import Modality
from fusionrt.runtime.assembly import (
    StageEngines,
    bundle_sources,
    check_backend_request,
    encoder_stages,
    fusion_stage,
)
from fusionrt.runtime.backend import Backend
from fusionrt.runtime.budget import Budget
from fusionrt.runtime.flow import Flow
from fusionrt.runtime.metrics import Metrics
from fusionrt.runtime.results import Result
from fusionrt.runtime.schedulers import replay_in_order, stream_threaded
from fusionrt.runtime.sinks import CallbackSink, RunInfo, Sink
from fusionrt.runtime.sources.base import Replay, Source
from fusionrt.runtime.stages import EncoderStage, FusionStage
from fusionrt.runtime.trigger import Trigger, default_trigger
from fusionrt.stopping import Terminated
from fusionrt.values import duration


@dataclass(frozen=True)
class Summary:
    stopped_by: str  # "duration", "end_of_stream", "stop", "interrupt" (Ctrl-C) or "terminate" (SIGTERM)
    elapsed_s: float
    results: int
    deterministic: bool
    metrics: dict  # Metrics.to_dict()
    table: str

    def __str__(self) -> str:
        return self.table


def replay_of(source: Source) -> Replay:
    """How a source releases frames (sources without options are live, i.e. realtime)."""
    return Replay(getattr(getattr(source, "options", None), "replay", Replay.REALTIME))


class Pipeline:
    """Wires sources to stages to sinks; owns the threads, the clock and the `Metrics`. Runs once."""

    def __init__(
        self,
        encoders: Mapping[Modality | str, EncoderStage],
        fusion: FusionStage,
        sources: Mapping[Modality | str, Source],
        *,
        budget: Budget = Budget(),
        trigger: Trigger | None = None,
        sinks: Iterable[Sink] = (),
        replay: Replay | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.encoders = {Modality(m): stage for m, stage in encoders.items()}
        self.fusion = fusion
        self.sources = {Modality(m): source for m, source in sources.items()}
        self.budget = budget
        self.sinks = list(sinks)
        self.clock = clock
        self.metrics = Metrics(clock)
        self._check_wiring()
        self.trigger = trigger or default_trigger(self.sources)
        if self.trigger.modality is not None and self.trigger.modality not in self.sources:
            raise ConfigError(
                f"trigger on {self.trigger.modality.value} needs a {self.trigger.modality.value} source; sources are "
                f"{[m.value for m in self.sources]} — trigger on one of them or at a fixed rate (Trigger.at_rate)"
            )
        self.deterministic = self._resolve_replay(replay) is Replay.DETERMINISTIC
        self._flow = Flow(self.encoders, fusion, self.sources, budget=budget, trigger=self.trigger,
                          metrics=self.metrics, clock=clock, deterministic=self.deterministic)  # fmt: skip
        self._started = False
        self._owns_engines = False  # from_bundle opened the stages' engines, so the pipeline closes them
        self._remote: list[dict] = []  # remote engines' timing splits, taken as they close
        for modality, source in self.sources.items():
            self.metrics.source(modality.value, getattr(source, "uri", type(source).__name__))
            if "notify" in getattr(source, "__dict__", {}):  # a source that reports events (reconnections) as they happen
                source.notify = self._flow.say
        for modality, stage in self.encoders.items():
            self.metrics.variant(modality.value, stage.variant)
        self.metrics.variant("fusion", fusion.variant)
        for modality in fusion.modalities:
            if modality not in self.sources:
                self._flow.say(f"no {modality.value} source: the fusion head gets presence 0 for {modality.value}")

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle | str | Path,
        sources: Mapping[Modality | str, Source],
        *,
        budget: Budget = Budget(),
        trigger: Trigger | None = None,
        variant: str | Mapping[str, str] | None = None,
        providers: list[str] | None = None,
        fail_on_fallback: bool = False,
        threads: int | Mapping[str, int] | None = 1,
        sinks: Iterable[Sink] = (),
        replay: Replay | None = None,
        audio_hop_s: float | None = None,
        top_k: int = 5,
        backend: Backend | str = Backend.ORT,
        precision: str = "fp16",
    ) -> Pipeline:
        """A pipeline over a bundle's encoders (those with a source) and fusion head.

        `variant`: None (each component's default), one name (`resolve_variants`: that variant where a
        component has it, fp32 elsewhere), or {component or modality: name}. Stages whose budget policy
        is DEGRADE also load their faster variants. `threads`: intra-op threads per engine (1: the
        stages already run in parallel), or per stage ({"image": 2}: the camera's encoder on two cores;
        stages not named get 1). `backend` (a `Backend` or its value): "ort" (ONNX Runtime over
        the bundle's variants, providers in priority order), "ort-cpu"/"ort-cuda"/"ort-tensorrt" (one
        pinned provider, no fallback), "torch" (the reference PyTorch model the bundle carries; one
        variant, "reference") or "tensorrt" (the `precision` engines `fusionrt engine` built, each
        checked against this GPU, TensorRT version and bundle first; one per component).
        """
        bundle = bundle if isinstance(bundle, Bundle) else load(bundle)
        sources = bundle_sources(bundle, sources)
        backend = check_backend_request(bundle, sources, backend, variant=variant, providers=providers,
                                        precision=precision)  # fmt: skip
        engines = StageEngines(bundle, backend, variant=variant, precision=precision, providers=providers,
                               threads=threads, fail_on_fallback=fail_on_fallback)  # fmt: skip
        try:
            encoders = encoder_stages(bundle, sources, engines, budget, audio_hop_s)
            fusion = fusion_stage(bundle, engines, budget, top_k)
            pipeline = cls(encoders, fusion, sources, budget=budget, trigger=trigger, sinks=sinks, replay=replay)
            for note in engines.notes:
                pipeline._flow.say(note)
            fusion.warmup()
        except BaseException:
            engines.close()
            raise
        pipeline._owns_engines = True
        return pipeline

    # -- running ---------------------------------------------------------------------------

    def run(self, duration_s: float | None = None, on_result: Callable[[Result], None] | None = None) -> Summary:
        """Stream until `duration_s` (capture time in deterministic replay), the end of every
        source, `stop()` or Ctrl-C; return the summary. An error inside a stage or sink stops the
        pipeline and is raised here with its original type, after the sources, sinks and engines
        are closed."""
        if self._started:
            raise ConfigError("a Pipeline runs once (its sources are consumed); build a new one to run again")
        if duration_s is not None:
            duration_s = duration(duration_s, "duration_s")
        self._started = True
        flow = self._flow
        sinks = self.sinks + ([CallbackSink(on_result)] if on_result is not None else [])
        self.metrics.start()
        stopped_by = "end_of_stream"
        try:
            flow.open_sinks(sinks, self._run_info())
            stopped_by = (replay_in_order if self.deterministic else stream_threaded)(flow, duration_s)
        except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM turned into fusionrt.stopping.Terminated
            stopped_by = "terminate" if isinstance(e, Terminated) else "interrupt"
        finally:
            flow.stop.set()
            flow.close_sources()
            self.metrics.finish()
            flow.close_sinks()
            self._close_engines()
        if flow.error is not None:
            raise flow.error
        return Summary(
            stopped_by=flow.stop_reason or stopped_by,
            elapsed_s=self.metrics.elapsed_s,
            results=flow.results,
            deterministic=self.deterministic,
            metrics={**self.metrics.to_dict(), **({"remote": self._remote} if self._remote else {})},
            table=self.metrics.summary_table(),
        )

    def stop(self) -> None:
        """Ask a running pipeline to stop (from any thread, or from a sink or on_result)."""
        if not self._flow.stop.is_set():
            self._flow.stop_reason = self._flow.stop_reason or "stop"
            self._flow.stop.set()

    def close(self) -> None:
        """Release a pipeline that will not run: close its sources and the engines from_bundle opened
        (run() does this itself when it ends)."""
        self._started = True
        self._flow.close_sources()
        self._close_engines()

    # -- bookkeeping --------------------------------------------------------------------------

    def _close_engines(self) -> None:
        """Close the engines from_bundle opened, unless a thread that may still run one did not stop."""
        if not self._owns_engines:
            return
        if self._flow.lingering:
            self._flow.say(f"engines left open: threads {self._flow.lingering} may still be running them")
            return
        self._owns_engines = False
        for stage in [*self.encoders.values(), self.fusion]:
            try:
                self._remote += stage.remote_timings()
            except FusionRTError as e:  # the server's statistics are gone with the server: keep the run's result
                self._flow.say(f"remote timings of the {stage.what} stage unavailable: {e}")
            stage.close()

    def _run_info(self) -> RunInfo:
        return RunInfo(
            labels=self.fusion.labels, modalities=tuple(m.value for m in self.fusion.modalities),
            deterministic=self.deterministic, metrics=self.metrics, start_ns=self.clock(),
            camera_rate_hz=getattr(self.sources.get(Modality.IMAGE), "rate_hz", None) or None,
            deadline_ms=self.budget.deadline_ms,
        )  # fmt: skip

    def _check_wiring(self) -> None:
        for modality, source in self.sources.items():
            found = getattr(source, "modality", None)
            if found not in tuple(Modality) or Modality(found) is not modality:
                raise ConfigError(f"the source given for {modality.value} ({getattr(source, 'uri', source)!r}) "
                                  f"has modality {getattr(found, 'value', found)!r}; pass it under its own modality")
            if modality not in self.encoders:
                raise ConfigError(f"a {modality.value} source is given but there is no {modality.value} encoder stage")
            if modality not in self.fusion.modalities:
                raise ConfigError(f"a {modality.value} source is given but the fusion head does not take "
                                  f"{modality.value} (it takes {[m.value for m in self.fusion.modalities]})")
            rate = getattr(self.encoders[modality].spec, "sample_rate", None)
            options = getattr(source, "options", None)
            if modality is Modality.AUDIO and options is not None and options.sample_rate != rate:
                raise ConfigError(
                    f"audio source {source.uri!r} delivers {options.sample_rate} Hz but the audio encoder takes "
                    f"{rate} Hz; open it with SourceOptions(sample_rate={rate})"
                )
        for modality, stage in self.encoders.items():
            if stage.embed_dim is not None:
                self.fusion.set_dim(modality, stage.embed_dim)

    def _resolve_replay(self, replay: Replay | None) -> Replay:
        modes = {m: replay_of(s) for m, s in self.sources.items()}
        if replay is None:
            if len(set(modes.values())) > 1:
                raise ConfigError(
                    f"sources mix replay modes {({m.value: r.value for m, r in modes.items()})}; deterministic "
                    f"replay needs every source deterministic — open them all with the same replay"
                )
            return next(iter(modes.values()), Replay.REALTIME)
        replay = Replay(replay)
        wrong = [m.value for m, r in modes.items() if r is not replay]
        if wrong:
            raise ConfigError(f"replay={replay.value} but the {wrong} sources were opened with another replay mode; "
                              f"open them with SourceOptions(replay=Replay.{replay.name})")
        return replay
