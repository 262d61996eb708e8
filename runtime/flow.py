"""`Flow`: the state of one pipeline run and the steps each input goes through, which both schedulers
(runtime/schedulers.py) drive: admit (check and count) -> the stage's bounded inbox -> encode
under its overrun guard -> the embedding slot -> fuse on the trigger -> the sinks.

Every drop is counted with its reason, every repair (NaN audio, broken text) with its kind, every
budget action is carried out and counted here, and the first error raised in any thread is kept
for `Pipeline.run()` to raise with its original type. When the trigger's source fails or ends,
fusion hands over to the next live modality (image, audio, text), said once and counted.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Callable, Mapping

from fusionrt.errors import DataError, EngineError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.budget import Action, Budget, OverrunGuard, OverrunPolicy
from fusionrt.runtime.inboxes import FifoQueue, LatestSlot, PcmInbox
from fusionrt.runtime.metrics import SOURCE_EVENTS, Metrics
from fusionrt.runtime.preprocess import check_image, check_text, clean_audio
from fusionrt.runtime.results import Embedding, Result
from fusionrt.runtime.sinks import RunInfo, Sink
from fusionrt.runtime.sources.base import Source
from fusionrt.runtime.sources.text import repair_text
from fusionrt.runtime.stages import EncoderStage, FusionStage
from fusionrt.runtime.trigger import Trigger

log = logging.getLogger("fusionrt.runtime")

TEXT_QUEUE = 4
HANDOVER_ORDER = (Modality.IMAGE, Modality.AUDIO, Modality.TEXT)
ENGINE_ERRORS_IN_A_ROW = 3  # a stage whose engine fails this many runs in a row stops the run with the error
EXPECTED_MS_WEIGHT = 0.2  # weight of the newest run in the running estimate of a stage's time


class Flow:
    """One run's state (embedding slots, inboxes, guards, open sinks, stop flag, first error) and its steps."""

    def __init__(
        self,
        encoders: Mapping[Modality, EncoderStage],
        fusion: FusionStage,
        sources: Mapping[Modality, Source],
        *,
        budget: Budget,
        trigger: Trigger,
        metrics: Metrics,
        clock: Callable[[], int],
        deterministic: bool,
    ) -> None:
        self.encoders, self.fusion, self.sources = encoders, fusion, sources
        self.budget, self.trigger, self.metrics, self.clock = budget, trigger, metrics, clock
        self.deterministic = deterministic
        self.trigger_modality = trigger.modality  # the modality fusion runs on now (None: the fixed rate)
        self.guards = {m: OverrunGuard(budget.stage(m.value), budget.stage_ms(m.value), s.faster_variants)
                       for m, s in encoders.items()}
        self.fusion_guard = OverrunGuard(budget.fusion, budget.stage_ms("fusion"), fusion.faster_variants)
        self.inboxes: dict[Modality, LatestSlot] = {}
        self.stop = threading.Event()
        self.stop_reason: str | None = None
        self.error: BaseException | None = None
        self.lingering: list[str] = []  # threads that did not stop in time (their engines stay open)
        self.results = 0
        self._latest: dict[Modality, Embedding] = {}
        self._slot_lock = threading.Lock()
        self._emit_lock = threading.Lock()
        self._failed: set[Modality] = set()
        self._gone: set[Modality] = set()  # sources that failed or ended
        self._sinks: list[Sink] = []
        self._said: set[str] = set()
        self._engine_errors: dict[str, int] = {}  # consecutive engine errors per stage
        self._engine_errors_ok: set[str] = set()  # stages whose engine ran at least once
        self._expected_ms: dict[str, float] = {}  # running estimate of each stage's run time (and fusion's)

    # -- inputs -------------------------------------------------------------------------------

    def open_inboxes(self, *, newest_only: bool) -> None:
        """One bounded inbox per encoder stage: the camera's newest-wins slot, the audio ring, the text FIFO."""
        self.inboxes = {m: self._new_inbox(m, newest_only=newest_only) for m in self.encoders}

    def admit(self, modality: Modality, frame: Frame) -> Frame | None:
        """Count the frame; return it ready for its stage, or None when it is a bad input."""
        self.metrics.frame(modality.value)
        self._take_source_stats(modality)
        data = frame.data
        try:
            if frame.modality is not modality:
                raise DataError(f"a {modality.value} source yielded a {frame.modality} frame")
            if modality is Modality.AUDIO:
                data, repaired = clean_audio(data)
                if repaired:
                    self.metrics.repair(modality.value, "nonfinite")
                    self.say_once("nonfinite", "audio chunks with NaN/Inf: those samples were replaced by 0 (repaired)")
            elif modality is Modality.TEXT:
                data = self._repair_text(data)
                check_text(data)
            else:
                check_image(data, frame.pixel_format)
        except DataError as e:
            self.metrics.drop(modality.value, "bad_input")
            self.say_once(f"bad-{modality.value}", f"bad {modality.value} input dropped (bad_input): {e}")
            return None
        return frame if data is frame.data else dataclasses.replace(frame, data=data)

    def handle(self, modality: Modality, frame: Frame, *, realtime: bool, arrival_ns: int) -> None:
        """Encode one input (or reuse the last embedding under SKIP_REUSE), then fuse when it is the trigger."""
        stage = self.encoders[modality]
        guard = self.guards[modality]
        limit = self.budget.staleness_ns(modality)
        if realtime and self.clock() - frame.t_ns > limit:
            self.metrics.drop(modality.value, "stale")
            return
        if realtime and self.budget.skip_late and modality is self.trigger_modality and \
                self._cannot_make_deadline(modality, frame):
            self.metrics.drop(modality.value, "budget")
            self.metrics.action(modality.value, "skip_late")
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
                self.say_once(f"bad-{modality.value}", f"bad {modality.value} input dropped (bad_input): {e}")
                return
            except EngineError as e:
                self.engine_failed(modality.value, e)
                return
            self._engine_errors[modality.value] = 0
            self._engine_errors_ok.add(modality.value)
            for span in fresh.spans:
                self.metrics.stage(span.name, span.ms)
            self.metrics.stage(modality.value, fresh.ms)
            self._expect(modality.value, fresh.ms)
            with self._slot_lock:
                self._latest[modality] = fresh
            if realtime:
                self._apply(modality.value, guard.after_run(fresh.ms), stage)
        if modality is self.trigger_modality:
            self._fuse(
                ref_ns=frame.t_ns,
                start_ns=frame.t_ns if realtime else arrival_ns,
                trigger=modality.value,
                label=frame.label,
                image=frame.data if modality is Modality.IMAGE else None,
                image_format=frame.pixel_format,
                fresh=fresh,
                reused=(modality.value,) if fresh is None else (),
            )

    def fuse_on_tick(self, tick_ns: int, *, arrival_ns: int) -> None:
        self._fuse(ref_ns=tick_ns, start_ns=arrival_ns, trigger="rate", label=None, image=None, fresh=None, reused=())

    # -- the stages -------------------------------------------------------------------------------

    def _cannot_make_deadline(self, modality: Modality, frame: Frame) -> bool:
        """Whether a trigger input is already too old to give its result within the deadline, judged by
        the running estimate of its stage + fusion. Such an input is skipped (the next one, fresher, can
        still make it) unless the stage alone takes longer than the deadline: then the overrun policy acts."""
        expected = self._expected_ms.get(modality.value)
        if expected is None:
            return False
        expected += self._expected_ms.get("fusion", 0.0)
        age_ms = (self.clock() - frame.t_ns) / 1e6
        return expected <= self.budget.deadline_ms < age_ms + expected

    def _expect(self, stage_name: str, ms: float) -> None:
        old = self._expected_ms.get(stage_name)
        self._expected_ms[stage_name] = ms if old is None else old + EXPECTED_MS_WEIGHT * (ms - old)

    def _encode(self, stage: EncoderStage, guard: OverrunGuard, frame: Frame) -> Embedding:
        """Run the stage; under DEGRADE an engine error switches to the next variant and retries once."""
        try:
            return stage.encode(frame.data, t_ns=frame.t_ns, seq=frame.seq, label=frame.label,
                                pixel_format=frame.pixel_format)
        except EngineError as e:
            if guard.policy is not OverrunPolicy.DEGRADE or stage.faster_variants == 0:
                raise
            before, after = stage.variant, stage.degrade()
            guard.variant_used()
            self.metrics.action(stage.name, Action.DEGRADE.value)
            self.metrics.variant(stage.name, after)
            self.say(f"{stage.name} stage: variant {before} failed ({e}); switched to {after}")
            return stage.encode(frame.data, t_ns=frame.t_ns, seq=frame.seq, label=frame.label,
                                pixel_format=frame.pixel_format)

    def _gather(self, ref_ns: int, latest: dict[Modality, Embedding]):
        """What fusion takes at `ref_ns`: per modality presence, capture time, staleness and why it is absent."""
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
                vectors[modality.value] = embedding.vector
                stage_ms[modality.value] = embedding.ms
                spans += embedding.spans
        return presence, vectors, input_t, staleness, absent, stage_ms, spans

    def _fuse(self, *, ref_ns, start_ns, trigger, label, image, fresh, reused, image_format="bgr") -> None:
        with self._slot_lock:
            latest = dict(self._latest)
        presence, vectors, input_t, staleness, absent, stage_ms, spans = self._gather(ref_ns, latest)
        if trigger == "rate":
            label = next((latest[m].label for m in self.fusion.modalities
                          if presence[m.value] and latest[m].label is not None), None)
        if image is None and Modality.IMAGE in latest:
            image, image_format = latest[Modality.IMAGE].source_frame, latest[Modality.IMAGE].source_format
        try:
            outputs, span = self.fusion.run(vectors)
        except EngineError as e:
            self.engine_failed("fusion", e)
            return
        self._engine_errors["fusion"] = 0
        self._engine_errors_ok.add("fusion")
        done = self.clock()
        stage_ms["fusion"] = span.ms
        self._expect("fusion", span.ms)
        spans.append(span)
        e2e_ms = (done - start_ns) / 1e6
        engine_ms = span.ms + (fresh.engine_ms if fresh is not None else 0.0)
        missed = e2e_ms > self.budget.deadline_ms
        self.metrics.stage("fusion", span.ms)
        self.metrics.result(done_ns=done, e2e_ms=e2e_ms, engine_ms=engine_ms, deadline_missed=missed,
                            presence=presence, staleness_ms=staleness, absent=absent)
        if not self.deterministic:
            self._apply("fusion", self.fusion_guard.after_run(span.ms), self.fusion)
        with self._emit_lock:
            self.results += 1
            result = Result(
                seq=self.results - 1, t_capture_ns=ref_ns, trigger=trigger, task=self.fusion.task,
                top_k=self.fusion.top(outputs), outputs=outputs, presence=presence, input_t_ns=input_t,
                staleness_ms=staleness, reused=reused, stage_ms=stage_ms, e2e_ms=e2e_ms, engine_ms=engine_ms,
                deadline_missed=missed, label=self.fusion.ground_truth(label), spans=tuple(spans), start_ns=start_ns,
                done_ns=done, image=image, image_format=image_format,
            )  # fmt: skip
            for sink in self._sinks:
                sink.write(result)

    def engine_failed(self, stage_name: str, error: EngineError) -> None:
        """A failed engine run of a stage that has worked drops its input (counted, said once). A stage
        that never worked, or fails ENGINE_ERRORS_IN_A_ROW runs in a row, is broken: the error stops the
        run (raised by run() with its type)."""
        count = self._engine_errors.get(stage_name, 0) + 1
        self._engine_errors[stage_name] = count
        if count >= ENGINE_ERRORS_IN_A_ROW or stage_name not in self._engine_errors_ok:
            raise error
        self.metrics.drop(stage_name, "engine_error")
        self.say_once(f"engine-{stage_name}", f"{stage_name} stage: an engine run failed, its input was dropped "
                      f"(engine_error; {ENGINE_ERRORS_IN_A_ROW} in a row stop the run): {error}")

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
            self.say(f"{stage_name} stage overran its {budget_ms:g} ms budget "
                     f"{self.budget.stage(stage_name).degrade_after} times in a row: switched {before} -> {after}")
        elif action is Action.NO_FASTER_VARIANT:
            self.metrics.action(stage_name, action.value)
            instead = "running it as it is" if stage_name == "fusion" else \
                "skipping inputs and reusing the last embedding instead (skip_reuse)"
            self.say(f"{stage_name} stage keeps overrunning its {budget_ms:g} ms budget and the bundle has no "
                     f"faster variant than {stage.variant}: {instead}")
        elif action is Action.DROP_OLDEST and stage_name != "fusion":
            self.metrics.action(stage_name, action.value)
            self.metrics.drop(stage_name, "superseded", self.inboxes[Modality(stage_name)].keep_newest())

    def _new_inbox(self, modality: Modality, *, newest_only: bool) -> LatestSlot:
        if modality is Modality.AUDIO:
            windows = self.encoders[modality].new_windows(newest_only=newest_only)
            return PcmInbox(windows, lambda n: self.metrics.drop("audio", "superseded", n))
        return LatestSlot() if modality is Modality.IMAGE else FifoQueue(TEXT_QUEUE)

    # -- sinks, sources and what is said ----------------------------------------------------------------

    def open_sinks(self, sinks: list[Sink], info: RunInfo) -> None:
        for sink in sinks:
            sink.open(info)
            self._sinks.append(sink)

    def close_sinks(self) -> None:
        """Close every opened sink; the first error is kept (unless one is already) and the rest are closed."""
        with self._emit_lock:
            sinks, self._sinks = self._sinks, []
        errors = []
        for sink in sinks:
            try:
                sink.close()
            except Exception as e:  # noqa: BLE001 - every sink gets closed; the first error is raised
                errors.append(e)
        if errors and self.error is None:
            self.error = errors[0]

    def close_sources(self) -> None:
        self.collect_source_stats()
        for source in self.sources.values():
            try:
                source.close()
            except Exception as e:  # noqa: BLE001 - closing is best effort; say what failed
                self.say_once(f"close-{id(source)}", f"closing source {getattr(source, 'uri', source)!r} failed: {e}")

    def source_failed(self, modality: Modality, error: Exception) -> None:
        self._failed.add(modality)
        self._gone.add(modality)
        self._take_source_stats(modality)
        self.metrics.source_failed(modality.value, str(error))
        self.say(f"{modality.value} source failed, fusing without it from now on: {error}")

    def source_ended(self, modality: Modality) -> None:
        self._gone.add(modality)
        self._take_source_stats(modality)
        frames = self.metrics.frames.get(modality.value, 0)
        uri = self.metrics.sources[modality.value]
        if frames == 0:
            self.say(f"{modality.value} source {uri} ended without a single frame (an empty file?): nothing came "
                     f"from it")
        else:
            self.say(f"{modality.value} source {uri} ended after {frames} frames; its last embedding is fused "
                     f"until it is stale", logging.INFO)

    def hand_over(self, modality: Modality) -> None:
        """The stage of `modality` has nothing more to process: when it was the trigger, fusion moves to
        the next modality whose source still streams (image, audio, text), said once and counted.

        A failed trigger always hands over. One that ended normally hands over in realtime (the other
        sources go on in time, e.g. a live microphone after a video file); in deterministic replay the
        end of the trigger's file ends fusion, so replays of complete recordings stay as they were."""
        if modality is not self.trigger_modality or modality not in self._gone or self.stop.is_set():
            return
        if self.deterministic and modality not in self._failed:
            return
        why = f"{modality.value} source {'failed' if modality in self._failed else 'ended'}"
        after = next((m for m in HANDOVER_ORDER if m in self.sources and m not in self._gone), None)
        if after is None:  # every source is gone: the run is ending anyway
            return
        self.trigger_modality = after
        self.metrics.handover(modality.value, after.value, why)
        self.say(f"the trigger's {why}: fusing on every {after.value} input from now on, {modality.value} at "
                 f"presence 0 once {'failed' if modality in self._failed else 'stale'}")

    def collect_source_stats(self) -> None:
        for modality in self.sources:
            self._take_source_stats(modality)

    def _take_source_stats(self, modality: Modality) -> None:
        """Publish the source's anomaly counters (metrics.SOURCE_EVENTS); each kind is said once."""
        stats = getattr(self.sources.get(modality), "stats", None)
        if isinstance(stats, dict) and self.metrics.source_stats(modality.value, stats):
            uri = self.metrics.sources.get(modality.value, modality.value)
            for name, text in SOURCE_EVENTS.items():
                if stats.get(name):
                    self.say_once(f"event-{modality.value}-{name}", f"{modality.value} source {uri}: {text}")

    def _repair_text(self, data):
        """Text with lone surrogates replaced by U+FFFD and NUL/control characters removed, counted as repairs."""
        if not isinstance(data, str):
            return data
        text, repairs = repair_text(data)
        for kind, count in repairs.items():
            self.metrics.repair("text", kind, count)
            self.say_once(f"repair-text-{kind}", f"text with {kind.replace('_', ' ')}: repaired ("
                          f"{'replaced by U+FFFD' if kind == 'lone_surrogates' else 'removed'}) before tokenizing")
        return text

    def fail(self, error: BaseException) -> None:
        """Keep the first error (raised by Pipeline.run with its type) and stop the run."""
        if self.error is None:
            self.error = error
        self.stop.set()

    def say(self, message: str, level: int = logging.WARNING) -> None:
        self.metrics.note(message)
        log.log(level, message)

    def say_once(self, key: str, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            self.say(message)
