"""`Pipeline`: sources -> encoder stages -> embedding slots -> fusion on a trigger -> sinks.

Threads (realtime): one per source (pulls frames into its stage's bounded input), one worker per
encoder stage (preprocess + engine, then the embedding slot), and fusion inline in the worker of
the trigger modality, so the camera path has a single hand-off (source -> worker) and sinks run
after the result's end-to-end time is taken. A fixed-rate trigger adds one ticker thread. ONNX
Runtime and OpenCV release the GIL, so on 2 cores the camera and audio encoders overlap; a single
scheduler thread would serialise them and put a slow audio or text run in front of every frame.

Deterministic replay (every source replays with Replay.DETERMINISTIC) runs everything inline on
the caller's thread in capture-time order (ties: the trigger modality last): every input
processed, no drops, no budget actions, results bit-identical run to run for the same bundle,
variants, providers and thread count.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from fusionrt.bundle import Bundle, load
from fusionrt.errors import BundleError, ConfigError, DataError, EngineError, SourceError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.budget import Action, Budget, OverrunGuard, OverrunPolicy
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.metrics import Metrics
from fusionrt.runtime.preprocess import check_image, check_text, clean_audio
from fusionrt.runtime.sinks import CallbackSink, RunInfo, Sink
from fusionrt.runtime.sources.base import Replay, Source
from fusionrt.runtime.stages import (
    CLOSED,
    Embedding,
    EncoderStage,
    FifoQueue,
    FusionStage,
    LatestSlot,
    PcmInbox,
    Result,
    check_encoder_specs,
    faster_order,
    provider_kind,
)
from fusionrt.runtime.tensorrt_engine import PRECISIONS, TensorRTEngine, check_engine, recorded_engine
from fusionrt.runtime.torch_engine import TorchEngine

log = logging.getLogger("fusionrt.runtime")

POLL_S = 0.05  # how often waiting threads look at the stop flag
JOIN_S = 2.0  # how long stop waits for each thread
TEXT_QUEUE = 4
BACKENDS = ("ort", "torch", "tensorrt")
REFERENCE = "reference"  # the torch backend's only variant: the bundle's reference weights


@dataclass(frozen=True)
class Trigger:
    """When fusion runs: on every processed input of `modality`, or at `rate_hz`."""

    modality: Modality | None = Modality.IMAGE
    rate_hz: float | None = None

    def __post_init__(self) -> None:
        if (self.modality is None) == (self.rate_hz is None):
            raise ConfigError(
                f"Trigger needs exactly one of modality or rate_hz, found {self.modality!r} and {self.rate_hz!r}"
            )
        if self.modality is not None:
            object.__setattr__(self, "modality", Modality(self.modality))
        elif not self.rate_hz > 0:
            raise ConfigError(f"Trigger.rate_hz = {self.rate_hz!r}; expected a positive rate")

    @classmethod
    def on(cls, modality: Modality | str) -> Trigger:
        return cls(modality=Modality(modality))

    @classmethod
    def at_rate(cls, rate_hz: float) -> Trigger:
        return cls(modality=None, rate_hz=rate_hz)

    @property
    def name(self) -> str:
        return self.modality.value if self.modality is not None else "rate"


@dataclass(frozen=True)
class Summary:
    stopped_by: str  # "duration", "end_of_stream", "stop" or "interrupt"
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


def default_trigger(sources: Iterable[Modality]) -> Trigger:
    """Every camera frame when there is a camera, else every audio window, else every text message."""
    present = set(sources)
    for modality in (Modality.IMAGE, Modality.AUDIO, Modality.TEXT):
        if modality in present:
            return Trigger.on(modality)
    raise ConfigError("a pipeline needs at least one source")


def check_forward(source: Source, frame: Frame, last_t_ns: int | None) -> None:
    """A source's capture times never decrease (MediaPipe's rule); SourceError when they do."""
    if last_t_ns is not None and frame.t_ns < last_t_ns:
        raise SourceError(
            f"{getattr(source, 'uri', frame.modality.value)}: capture time went backwards at seq {frame.seq} "
            f"({frame.t_ns} ns after {last_t_ns} ns); a source's timestamps must never decrease"
        )


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
        self._guards = {m: OverrunGuard(budget.stage(m.value), budget.stage_ms(m.value), s.faster_variants)
                        for m, s in self.encoders.items()}
        self._fusion_guard = OverrunGuard(budget.fusion, budget.stage_ms("fusion"), fusion.faster_variants)
        self._latest: dict[Modality, Embedding] = {}
        self._slot_lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._failed: set[Modality] = set()
        self._stop = threading.Event()
        self._stop_reason: str | None = None
        self._error: BaseException | None = None
        self._results = 0
        self._started = False
        self._sinks_open: list[Sink] = []
        self._said: set[str] = set()
        for modality, source in self.sources.items():
            self.metrics.source(modality.value, getattr(source, "uri", type(source).__name__))
        for modality, stage in self.encoders.items():
            self.metrics.variant(modality.value, stage.variant)
        self.metrics.variant("fusion", fusion.variant)
        for modality in fusion.modalities:
            if modality not in self.sources:
                self._say(f"no {modality.value} source: the fusion head gets presence 0 for {modality.value}")

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
        threads: int | None = 1,
        sinks: Iterable[Sink] = (),
        replay: Replay | None = None,
        audio_hop_s: float | None = None,
        top_k: int = 5,
        backend: str = "ort",
        precision: str = "fp16",
    ) -> Pipeline:
        """A pipeline over a bundle's encoders (those with a source) and fusion head.

        `variant`: one name for every component that has it, or {component or modality: name}.
        Stages whose budget policy is DEGRADE also load their faster variants. `threads`: ONNX
        Runtime intra-op threads per session (1: the stages already run in parallel).
        `backend`: "ort" (ONNX Runtime over the bundle's variants) or "torch" (the reference PyTorch
        model the bundle carries; one variant, "reference", so variant choice and DEGRADE don't apply)
        or "tensorrt" (the `precision` engines `fusionrt engine` built and recorded in the manifest,
        each checked against this GPU, TensorRT version and bundle first; one per component).
        """
        if not isinstance(bundle, Bundle):
            bundle = load(bundle)
        sources = {Modality(m): s for m, s in sources.items()}
        unknown = [m.value for m in sources if m.value not in bundle.modalities]
        if unknown:
            raise ConfigError(
                f"sources given for {unknown} but bundle {bundle.root} fuses only {list(bundle.modalities)}; "
                f"drop those sources"
            )
        if backend not in BACKENDS:
            raise ConfigError(f"backend {backend!r}; expected one of {list(BACKENDS)}")
        if backend == "torch" and (variant is not None or providers):
            raise ConfigError("variant and providers choose ONNX Runtime sessions; the torch backend runs the "
                              "bundle's reference weights — drop them or use backend 'ort'")
        if backend == "tensorrt":
            if variant is not None or providers:
                raise ConfigError("variant and providers choose ONNX Runtime sessions; the tensorrt backend runs the "
                                  "bundle's TensorRT engines — drop them (choose the engines with precision)")
            if precision not in PRECISIONS:
                raise ConfigError(f"precision {precision!r}; expected one of {list(PRECISIONS)}")
            # every engine must be recorded before TensorRT is asked for: a missing one is said on any machine
            for component in [*(bundle.encoder(m.value) for m in sources), bundle.fusion]:
                recorded_engine(bundle, component.name, precision)
        chosen = _variant_choice(bundle, variant)
        notes = []

        def open_engines(component, stage_name: str):
            if backend in ("torch", "tensorrt"):
                only = REFERENCE if backend == "torch" else f"tensorrt-{precision}"
                if budget.stage(stage_name).policy is OverrunPolicy.DEGRADE and not notes:
                    notes.append(f"the {backend} backend has one variant ({only}): the DEGRADE budget policy "
                                 "cannot switch to a faster one")
                if backend == "torch":
                    return [(REFERENCE, TorchEngine(bundle, component.name))]
                plan = check_engine(bundle, component.name, precision)
                return [(only, TensorRTEngine(plan, component=component))]

            def engine(name: str):
                return name, OrtEngine(
                    component.variant(name).path, providers=providers, threads=threads, fail_on_fallback=fail_on_fallback
                )

            first = chosen.get(component.name, component.default_variant)
            engines = [engine(first)]
            if budget.stage(stage_name).policy is OverrunPolicy.DEGRADE:
                precisions = {name: v.precision for name, v in component.variants.items()}
                engines += [engine(n) for n in faster_order(first, precisions, provider_kind(engines[0][1]))]
            return engines

        encoders = {}
        for modality in sources:
            component = bundle.encoder(modality.value)
            stage = EncoderStage(
                modality,
                open_engines(component, modality.value),
                inputs=component.inputs,
                outputs=component.outputs,
                preprocessing=component.preprocessing,
                tokenizer_json=bundle.tokenizer_dir / "tokenizer.json" if bundle.tokenizer_dir else None,
                hop_s=audio_hop_s,
            )
            stage.warmup()
            encoders[modality] = stage
        head = bundle.fusion
        fusion = FusionStage(
            open_engines(head, "fusion"),
            modalities=bundle.modalities,
            inputs=head.inputs,
            outputs=head.outputs,
            task=bundle.task,
            labels=bundle.labels,
            top_k=top_k,
        )
        for modality in map(Modality, bundle.modalities):
            if modality not in encoders:  # not loaded, but its contract is checked all the same
                component = bundle.encoder(modality.value)
                width = check_encoder_specs(modality, component.inputs, component.outputs)
                if width is not None:
                    fusion.set_dim(modality, width)
        pipeline = cls(encoders, fusion, sources, budget=budget, trigger=trigger, sinks=sinks, replay=replay)
        for note in notes:
            pipeline._say(note)
        fusion.warmup()
        return pipeline

    # -- running ---------------------------------------------------------------------------

    def run(self, duration_s: float | None = None, on_result: Callable[[Result], None] | None = None) -> Summary:
        """Stream until `duration_s` (capture time in deterministic replay), the end of every
        source, `stop()` or Ctrl-C; return the summary. An error inside a stage or sink stops the
        pipeline and is raised here with its original type, after the sinks are closed."""
        if self._started:
            raise ConfigError("a Pipeline runs once (its sources are consumed); build a new one to run again")
        if duration_s is not None and not duration_s > 0:
            raise ConfigError(f"duration_s = {duration_s!r}; expected a positive number of seconds or None")
        self._started = True
        sinks = self.sinks + ([CallbackSink(on_result)] if on_result is not None else [])
        self.metrics.start()
        stopped_by = "end_of_stream"
        try:
            self._open_sinks(sinks)
            if self.deterministic:
                stopped_by = self._run_deterministic(duration_s)
            else:
                stopped_by = self._run_realtime(duration_s)
        except KeyboardInterrupt:
            stopped_by = "interrupt"
            self._stop.set()
        finally:
            self._stop.set()
            self._close_sources()
            self.metrics.finish()
            self._close_sinks()
        if self._error is not None:
            raise self._error
        return Summary(
            stopped_by=self._stop_reason or stopped_by,
            elapsed_s=self.metrics.elapsed_s,
            results=self._results,
            deterministic=self.deterministic,
            metrics=self.metrics.to_dict(),
            table=self.metrics.summary_table(),
        )

    def stop(self) -> None:
        """Ask a running pipeline to stop (from any thread, or from a sink or on_result)."""
        if not self._stop.is_set():
            self._stop_reason = self._stop_reason or "stop"
            self._stop.set()

    def _run_realtime(self, duration_s: float | None) -> str:
        self._inboxes = {m: self._new_inbox(m, newest_only=True) for m in self.encoders}
        workers = [threading.Thread(target=self._work, args=(m,), name=f"fusionrt-{m.value}", daemon=True)
                   for m in self.encoders]
        pumps = [threading.Thread(target=self._pump, args=(m, s), name=f"fusionrt-source-{m.value}", daemon=True)
                 for m, s in self.sources.items()]
        ticker = []
        if self.trigger.rate_hz is not None:
            ticker = [threading.Thread(target=self._tick, args=(workers,), name="fusionrt-fusion", daemon=True)]
        threads = workers + pumps + ticker
        end = None if duration_s is None else self.clock() + round(duration_s * 1e9)
        try:
            for thread in threads:
                thread.start()
            while True:
                if self._stop.wait(POLL_S):
                    return self._stop_reason or "stop"
                if end is not None and self.clock() >= end:
                    return "duration"
                if not any(w.is_alive() for w in workers):
                    return "end_of_stream"
        finally:
            self._stop.set()
            self._close_sources()
            for inbox in self._inboxes.values():
                inbox.close()
            for thread in threads:
                if thread.ident is not None:
                    thread.join(JOIN_S)
                    if thread.is_alive():
                        self._say(f"thread {thread.name} did not stop within {JOIN_S} s (blocked in a device read?)")

    def _run_deterministic(self, duration_s: float | None) -> str:
        self._inboxes = {m: self._new_inbox(m, newest_only=False) for m in self.encoders}
        iterators = {m: iter(s.frames()) for m, s in self.sources.items()}
        heads: dict[Modality, Frame] = {}
        last_t: dict[Modality, int] = {}

        def advance(modality: Modality) -> None:
            try:
                frame = next(iterators[modality])
            except StopIteration:
                heads.pop(modality, None)
                self._source_ended(modality)
                return
            except SourceError as e:
                heads.pop(modality, None)
                self._source_failed(modality, e)
                return
            heads[modality] = frame

        order = {m: i for i, m in enumerate(m for m in self.fusion.modalities if m != self.trigger.modality)}
        if self.trigger.modality is not None:
            order[self.trigger.modality] = len(order)
        for modality in iterators:
            advance(modality)
        t0 = min((f.t_ns for f in heads.values()), default=0)
        end = None if duration_s is None else t0 + round(duration_s * 1e9)
        period = None if self.trigger.rate_hz is None else round(1e9 / self.trigger.rate_hz)
        next_tick = t0 + period if period else None
        try:
            while heads:
                if self._stop.is_set():
                    return self._stop_reason or "stop"
                modality = min(heads, key=lambda m: (heads[m].t_ns, order[m], heads[m].seq))
                frame = heads[modality]
                if end is not None and frame.t_ns > end:
                    return "duration"
                while next_tick is not None and next_tick < frame.t_ns:
                    self._fuse_on_tick(next_tick, arrival_ns=self.clock())
                    next_tick += period
                arrival = self.clock()
                try:
                    check_forward(self.sources[modality], frame, last_t.get(modality))
                except SourceError as e:
                    heads.pop(modality)
                    self._source_failed(modality, e)
                    continue
                last_t[modality] = frame.t_ns
                checked = self._admit(modality, frame)
                if checked is not None:
                    inbox = self._inboxes[modality]
                    inbox.put(checked)
                    item = inbox.take()
                    while item is not None and item is not CLOSED:
                        self._handle(modality, item, realtime=False, arrival_ns=arrival)
                        item = inbox.take()
                advance(modality)
            return "end_of_stream"
        finally:
            for iterator in iterators.values():
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()

    # -- threads ----------------------------------------------------------------------------

    def _pump(self, modality: Modality, source: Source) -> None:
        """Source thread: frames into the stage's bounded input, checked and counted."""
        inbox = self._inboxes[modality]
        last_t = None
        try:
            for frame in source.frames():
                if self._stop.is_set():
                    break
                check_forward(source, frame, last_t)
                last_t = frame.t_ns
                checked = self._admit(modality, frame)
                if checked is not None:
                    self.metrics.drop(modality.value, "superseded", inbox.put(checked))
            if not self._stop.is_set():
                self._source_ended(modality)
        except SourceError as e:
            self._source_failed(modality, e)
        except BaseException as e:  # noqa: BLE001 - re-raised by run() with its type
            self._fail(e)
        finally:
            inbox.close()

    def _work(self, modality: Modality) -> None:
        """Encoder worker: newest input -> embedding slot (-> fusion when it is the trigger)."""
        inbox = self._inboxes[modality]
        try:
            while not self._stop.is_set():
                frame = inbox.take(POLL_S)
                if frame is CLOSED:
                    return
                if frame is not None:
                    self._handle(modality, frame, realtime=True, arrival_ns=self.clock())
        except BaseException as e:  # noqa: BLE001
            self._fail(e)

    def _tick(self, workers: list[threading.Thread]) -> None:
        """Fixed-rate trigger: fuse every 1/rate s; ticks missed while fusing are dropped and counted."""
        period = round(1e9 / self.trigger.rate_hz)
        next_tick = self.clock() + period
        try:
            while not self._stop.wait(max(0.0, (next_tick - self.clock()) / 1e9)):
                now = self.clock()
                missed = (now - next_tick) // period
                if missed > 0:
                    self.metrics.drop("fusion", "superseded", missed)
                    next_tick += missed * period
                self._fuse_on_tick(now, arrival_ns=now)
                next_tick += period
                if not any(w.is_alive() for w in workers):
                    return
        except BaseException as e:  # noqa: BLE001
            self._fail(e)

    # -- stages -----------------------------------------------------------------------------

    def _admit(self, modality: Modality, frame: Frame) -> Frame | None:
        """Count the frame; return it ready for its stage, or None when it is a bad input."""
        self.metrics.frame(modality.value)
        data = frame.data
        try:
            if frame.modality is not modality:
                raise DataError(f"a {modality.value} source yielded a {frame.modality} frame")
            if modality is Modality.AUDIO:
                data, repaired = clean_audio(data)
                if repaired:
                    self.metrics.drop(modality.value, "bad_input")
                    self._say_once("nonfinite", "audio chunks with NaN/Inf were replaced by silence (bad_input)")
            elif modality is Modality.TEXT:
                check_text(data)
            else:
                check_image(data)
        except DataError as e:
            self.metrics.drop(modality.value, "bad_input")
            self._say_once(f"bad-{modality.value}", f"bad {modality.value} input dropped (bad_input): {e}")
            return None
        return frame if data is frame.data else Frame(frame.modality, frame.t_ns, frame.seq, data, frame.label)

    def _handle(self, modality: Modality, frame: Frame, *, realtime: bool, arrival_ns: int) -> None:
        stage = self.encoders[modality]
        guard = self._guards[modality]
        limit = self.budget.staleness_ns(modality)
        if realtime and self.clock() - frame.t_ns > limit:
            self.metrics.drop(modality.value, "stale")
            return
        with self._slot_lock:
            last = self._latest.get(modality)
        fresh = None
        if realtime and last is not None and frame.t_ns - last.t_capture_ns <= limit and guard.take_skip():
            self.metrics.drop(modality.value, "budget")
            self.metrics.action(modality.value, "reuse")
        else:
            try:
                fresh = self._encode(stage, guard, frame)
            except DataError as e:
                self.metrics.drop(modality.value, "bad_input")
                self._say_once(f"bad-{modality.value}", f"bad {modality.value} input dropped (bad_input): {e}")
                return
            for span in fresh.spans:
                self.metrics.stage(span.name, span.ms)
            self.metrics.stage(modality.value, fresh.ms)
            with self._slot_lock:
                self._latest[modality] = fresh
            if realtime:
                self._apply(modality.value, guard.after_run(fresh.ms), stage)
        if modality is self.trigger.modality:
            self._fuse(
                ref_ns=frame.t_ns,
                start_ns=frame.t_ns if realtime else arrival_ns,
                trigger=modality.value,
                label=frame.label,
                image=frame.data if modality is Modality.IMAGE else None,
                fresh=fresh,
                reused=(modality.value,) if fresh is None else (),
            )

    def _encode(self, stage: EncoderStage, guard: OverrunGuard, frame: Frame):
        """Run the stage; under DEGRADE an engine error switches to the next variant and retries once."""
        try:
            return stage.encode(frame.data, t_ns=frame.t_ns, seq=frame.seq, label=frame.label)
        except EngineError as e:
            if guard.policy is not OverrunPolicy.DEGRADE or stage.faster_variants == 0:
                raise
            before, after = stage.variant, stage.degrade()
            guard.variant_used()
            self.metrics.action(stage.name, Action.DEGRADE.value)
            self.metrics.variant(stage.name, after)
            self._say(f"{stage.name} stage: variant {before} failed ({e}); switched to {after}")
            return stage.encode(frame.data, t_ns=frame.t_ns, seq=frame.seq, label=frame.label)

    def _fuse_on_tick(self, tick_ns: int, *, arrival_ns: int) -> None:
        self._fuse(ref_ns=tick_ns, start_ns=arrival_ns, trigger="rate", label=None, image=None, fresh=None, reused=())

    def _fuse(self, *, ref_ns, start_ns, trigger, label, image, fresh, reused) -> None:
        with self._slot_lock:
            latest = dict(self._latest)
        presence, vectors, input_t, staleness, absent, stage_ms, spans = {}, {}, {}, {}, {}, {}, []
        for modality in self.fusion.modalities:
            embedding = latest.get(modality)
            age = None if embedding is None else ref_ns - embedding.t_capture_ns
            if modality in self._failed:
                absent[modality.value] = "source_error"
            elif embedding is None:
                absent[modality.value] = "missing"
            elif age > self.budget.staleness_ns(modality):
                absent[modality.value] = "stale"
            present = modality.value not in absent
            presence[modality.value] = present
            input_t[modality.value] = embedding.t_capture_ns if present else None
            staleness[modality.value] = age / 1e6 if present else None
            if present:
                vectors[modality] = embedding.vector
                stage_ms[modality.value] = embedding.ms
                spans += embedding.spans
        if trigger == "rate":
            label = next((latest[m].label for m in self.fusion.modalities
                          if presence[m.value] and latest[m].label is not None), None)
        if image is None and Modality.IMAGE in latest:
            image = latest[Modality.IMAGE].source_frame
        outputs, span = self.fusion.run(vectors)
        done = self.clock()
        stage_ms["fusion"] = span.ms
        spans.append(span)
        e2e_ms = (done - start_ns) / 1e6
        engine_ms = span.ms + (fresh.engine_ms if fresh is not None else 0.0)
        missed = e2e_ms > self.budget.deadline_ms
        self.metrics.stage("fusion", span.ms)
        self.metrics.result(done_ns=done, e2e_ms=e2e_ms, engine_ms=engine_ms, deadline_missed=missed,
                            presence=presence, staleness_ms=staleness, absent=absent)
        if not self.deterministic:
            self._apply("fusion", self._fusion_guard.after_run(span.ms), self.fusion)
        with self._emit_lock:
            self._results += 1
            result = Result(
                seq=self._results - 1, t_capture_ns=ref_ns, trigger=trigger, task=self.fusion.task,
                top_k=self.fusion.top(outputs), outputs=outputs, presence=presence, input_t_ns=input_t,
                staleness_ms=staleness, reused=reused, stage_ms=stage_ms, e2e_ms=e2e_ms, engine_ms=engine_ms,
                deadline_missed=missed, label=label, spans=tuple(spans), start_ns=start_ns, done_ns=done, image=image,
            )  # fmt: skip
            for sink in self._sinks_open:
                sink.write(result)

    def _apply(self, stage_name: str, action: Action, stage) -> None:
        """Carry out and count what an overrun guard decided (fusion: only DEGRADE acts, since
        every trigger needs its result)."""
        if action is Action.NONE:
            return
        self.metrics.overrun(stage_name)
        budget_ms = self.budget.stage_ms(stage_name)
        if action is Action.DEGRADE:
            before, after = stage.variant, stage.degrade()
            self.metrics.action(stage_name, action.value)
            self.metrics.variant(stage_name, after)
            self._say(f"{stage_name} stage overran its {budget_ms:g} ms budget "
                      f"{self.budget.stage(stage_name).degrade_after} times in a row: switched {before} -> {after}")
        elif action is Action.NO_FASTER_VARIANT:
            self.metrics.action(stage_name, action.value)
            instead = "running it as it is" if stage_name == "fusion" else \
                "skipping inputs and reusing the last embedding instead (skip_reuse)"
            self._say(f"{stage_name} stage keeps overrunning its {budget_ms:g} ms budget and the bundle has no "
                      f"faster variant than {stage.variant}: {instead}")
        elif action is Action.DROP_OLDEST and stage_name != "fusion":
            self.metrics.action(stage_name, action.value)
            self.metrics.drop(stage_name, "superseded", self._inboxes[Modality(stage_name)].keep_newest())

    # -- bookkeeping --------------------------------------------------------------------------

    def _new_inbox(self, modality: Modality, *, newest_only: bool):
        if modality is Modality.AUDIO:
            windows = self.encoders[modality].new_windows(newest_only=newest_only)
            return PcmInbox(windows, lambda n: self.metrics.drop("audio", "superseded", n))
        return LatestSlot() if modality is Modality.IMAGE else FifoQueue(TEXT_QUEUE)

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
            stage = self.encoders[modality]
            options = getattr(source, "options", None)
            if modality is Modality.AUDIO and options is not None and options.sample_rate != stage.sample_rate:
                raise ConfigError(
                    f"audio source {source.uri!r} delivers {options.sample_rate} Hz but the audio encoder takes "
                    f"{stage.sample_rate} Hz; open it with SourceOptions(sample_rate={stage.sample_rate})"
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

    def _open_sinks(self, sinks: list[Sink]) -> None:
        info = RunInfo(
            labels=self.fusion.labels, modalities=tuple(m.value for m in self.fusion.modalities),
            deterministic=self.deterministic, metrics=self.metrics, start_ns=self.clock(),
            camera_rate_hz=getattr(self.sources.get(Modality.IMAGE), "rate_hz", None) or None,
            deadline_ms=self.budget.deadline_ms,
        )  # fmt: skip
        for sink in sinks:
            sink.open(info)
            self._sinks_open.append(sink)

    def _close_sinks(self) -> None:
        with self._emit_lock:
            sinks, self._sinks_open = self._sinks_open, []
        errors = []
        for sink in sinks:
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001 - every sink gets closed; the first error is raised
                errors.append(e)
        if errors and self._error is None:
            self._error = errors[0]

    def _close_sources(self) -> None:
        for source in self.sources.values():
            try:
                source.close()
            except Exception as e:  # noqa: BLE001 - closing is best effort; say what failed
                self._say_once(f"close-{id(source)}", f"closing source {getattr(source, 'uri', source)!r} failed: {e}")

    def _source_failed(self, modality: Modality, error: SourceError) -> None:
        self._failed.add(modality)
        self.metrics.source_failed(modality.value, str(error))
        self._say(f"{modality.value} source failed, fusing without it from now on: {error}")

    def _source_ended(self, modality: Modality) -> None:
        frames = self.metrics.frames.get(modality.value, 0)
        self._say(f"{modality.value} source {self.metrics.sources[modality.value]} ended after {frames} frames; its "
                  f"last embedding is fused until it is stale", logging.INFO)

    def _fail(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        self._stop.set()

    def _say(self, message: str, level: int = logging.WARNING) -> None:
        self.metrics.note(message)
        log.log(level, message)

    def _say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self._say(message)


def _variant_choice(bundle: Bundle, variant: str | Mapping[str, str] | None) -> dict[str, str]:
    """Component name -> chosen variant."""
    if variant is None:
        return {}
    if isinstance(variant, str):
        chosen = {name: variant for name, c in bundle.components.items() if variant in c.variants}
        if not chosen:
            raise BundleError(f"no component of bundle {bundle.root} has a variant {variant!r}")
        return chosen
    chosen = {}
    for key, name in variant.items():
        component = bundle.components.get(key) or (bundle.encoder(key) if key in bundle.modalities else None)
        if component is None:
            raise ConfigError(f"variant given for {key!r}, which is neither a component nor a modality of the bundle")
        component.variant(name)
        chosen[component.name] = name
    return chosen
