"""The two ways a pipeline runs its `Flow`: realtime threads and the deterministic replay loop.

Realtime: one thread per source (pulls frames into its stage's bounded inbox), one worker per
encoder stage (preprocess + engine, then the embedding slot), and fusion inline in the worker of
the trigger modality, so the camera path has a single hand-off (source -> worker) and sinks run
after the result's end-to-end time is taken. A fixed-rate trigger adds one ticker thread. ONNX
Runtime and OpenCV release the GIL, so on 2 cores the camera and audio encoders overlap; a single
scheduler thread would serialise them and put a slow audio or text run in front of every frame.

Deterministic replay (every source replays with Replay.DETERMINISTIC) runs everything inline on
the caller's thread in capture-time order (ties: the trigger modality last): every input
processed, no drops, no budget actions, results bit-identical run to run for the same bundle,
variants, providers and thread count.

In both, the worker (or replay step) that finds its source gone calls `Flow.hand_over`, so a
trigger whose source fails or ends passes fusion to the next live modality.

Each returns why it stopped: "duration", "end_of_stream" or "stop".
"""

from __future__ import annotations

import threading

from fusionrt.errors import SourceError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.flow import Flow
from fusionrt.runtime.inboxes import CLOSED
from fusionrt.runtime.sources.base import Source

POLL_S = 0.05  # how often waiting threads look at the stop flag
JOIN_S = 2.0  # how long stop waits for each thread


def check_forward(source: Source, frame: Frame, last_t_ns: int | None) -> None:
    """A source's capture times never decrease (MediaPipe's rule); SourceError when they do."""
    if last_t_ns is not None and frame.t_ns < last_t_ns:
        raise SourceError(
            f"{getattr(source, 'uri', frame.modality.value)}: capture time went backwards at seq {frame.seq} "
            f"({frame.t_ns} ns after {last_t_ns} ns); a source's timestamps must never decrease"
        )


# -- realtime ---------------------------------------------------------------------------------------


def stream_threaded(flow: Flow, duration_s: float | None) -> str:
    flow.open_inboxes(newest_only=True)
    workers = [threading.Thread(target=_work, args=(flow, m), name=f"fusionrt-{m.value}", daemon=True)
               for m in flow.encoders]
    pumps = [threading.Thread(target=_pump, args=(flow, m, s), name=f"fusionrt-source-{m.value}", daemon=True)
             for m, s in flow.sources.items()]
    ticker = []
    if flow.trigger.rate_hz is not None:
        ticker = [threading.Thread(target=_tick, args=(flow, workers), name="fusionrt-fusion", daemon=True)]
    threads = workers + pumps + ticker
    end = None if duration_s is None else flow.clock() + round(duration_s * 1e9)
    try:
        for thread in threads:
            thread.start()
        while True:
            if flow.stop.wait(POLL_S):
                return flow.stop_reason or "stop"
            if end is not None and flow.clock() >= end:
                return "duration"
            if not any(w.is_alive() for w in workers):
                return "end_of_stream"
    finally:
        flow.stop.set()
        flow.close_sources()
        for inbox in flow.inboxes.values():
            inbox.close()
        for thread in threads:
            if thread.ident is not None:
                thread.join(JOIN_S)
                if thread.is_alive():
                    flow.lingering.append(thread.name)
                    flow.say(f"thread {thread.name} did not stop within {JOIN_S} s (blocked in a device read?)")


def _pump(flow: Flow, modality: Modality, source: Source) -> None:
    """Source thread: frames into the stage's bounded input, checked and counted."""
    inbox = flow.inboxes[modality]
    last_t = None
    try:
        for frame in source.frames():
            if flow.stop.is_set():
                break
            check_forward(source, frame, last_t)
            last_t = frame.t_ns
            checked = flow.admit(modality, frame)
            if checked is not None:
                flow.metrics.drop(modality.value, "superseded", inbox.put(checked))
        if not flow.stop.is_set():
            flow.source_ended(modality)
    except SourceError as e:
        flow.source_failed(modality, e)
    except Exception as e:  # noqa: BLE001 - a source raising anything else fails that source, not the run
        flow.source_failed(modality, as_source_error(source, e))
    except BaseException as e:  # noqa: BLE001 - re-raised by run() with its type
        flow.fail(e)
    finally:
        inbox.close()


def as_source_error(source: Source, error: Exception) -> SourceError:
    """What a source raised besides SourceError (an OSError of a device, a bug in a custom source)."""
    where = getattr(source, "uri", type(source).__name__)
    return SourceError(f"{where} raised {type(error).__name__}: {error}")


def _work(flow: Flow, modality: Modality) -> None:
    """Encoder worker: newest input -> embedding slot (-> fusion when it is the trigger)."""
    inbox = flow.inboxes[modality]
    try:
        while not flow.stop.is_set():
            frame = inbox.take(POLL_S)
            if frame is CLOSED:
                flow.hand_over(modality)  # its source ended or failed and every input is processed
                return
            if frame is not None:
                flow.handle(modality, frame, realtime=True, arrival_ns=flow.clock())
    except BaseException as e:  # noqa: BLE001
        flow.fail(e)


def _tick(flow: Flow, workers: list[threading.Thread]) -> None:
    """Fixed-rate trigger: fuse every 1/rate s; ticks missed while fusing are dropped and counted."""
    period = round(1e9 / flow.trigger.rate_hz)
    next_tick = flow.clock() + period
    try:
        while not flow.stop.wait(max(0.0, (next_tick - flow.clock()) / 1e9)):
            now = flow.clock()
            missed = (now - next_tick) // period
            if missed > 0:
                flow.metrics.drop("fusion", "superseded", missed)
                next_tick += missed * period
            flow.fuse_on_tick(now, arrival_ns=now)
            next_tick += period
            if not any(w.is_alive() for w in workers):
                return
    except BaseException as e:  # noqa: BLE001
        flow.fail(e)


# -- deterministic replay ------------------------------------------------------------------------------


class _Heads:
    """The next frame of every source (a source that ends or fails leaves)."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.iterators = {m: iter(s.frames()) for m, s in flow.sources.items()}
        self.frames: dict[Modality, Frame] = {}
        for modality in self.iterators:
            self.advance(modality)

    def advance(self, modality: Modality) -> None:
        try:
            self.frames[modality] = next(self.iterators[modality])
        except StopIteration:
            self.frames.pop(modality, None)
            self.flow.source_ended(modality)
            self.flow.hand_over(modality)
        except Exception as e:  # noqa: BLE001 - SourceError, or anything a source raises: that source failed
            self.frames.pop(modality, None)
            error = e if isinstance(e, SourceError) else as_source_error(self.flow.sources[modality], e)
            self.flow.source_failed(modality, error)
            self.flow.hand_over(modality)

    def close(self) -> None:
        for iterator in self.iterators.values():
            close = getattr(iterator, "close", None)
            if close is not None:
                close()


def replay_in_order(flow: Flow, duration_s: float | None) -> str:
    flow.open_inboxes(newest_only=False)
    heads = _Heads(flow)
    order = {m: i for i, m in enumerate(m for m in flow.fusion.modalities if m != flow.trigger.modality)}
    if flow.trigger.modality is not None:
        order[flow.trigger.modality] = len(order)
    last_t: dict[Modality, int] = {}
    t0 = min((f.t_ns for f in heads.frames.values()), default=0)
    end = None if duration_s is None else t0 + round(duration_s * 1e9)
    period = None if flow.trigger.rate_hz is None else round(1e9 / flow.trigger.rate_hz)
    next_tick = t0 + period if period else None
    try:
        while heads.frames:
            if flow.stop.is_set():
                return flow.stop_reason or "stop"
            frames = heads.frames
            modality = min(frames, key=lambda m: (frames[m].t_ns, order[m], frames[m].seq))
            frame = frames[modality]
            if end is not None and frame.t_ns > end:
                return "duration"
            while next_tick is not None and next_tick < frame.t_ns:
                flow.fuse_on_tick(next_tick, arrival_ns=flow.clock())
                next_tick += period
            arrival = flow.clock()
            try:
                check_forward(flow.sources[modality], frame, last_t.get(modality))
            except SourceError as e:
                frames.pop(modality)
                flow.source_failed(modality, e)
                flow.hand_over(modality)
                continue
            last_t[modality] = frame.t_ns
            _replay_one(flow, modality, frame, arrival)
            heads.advance(modality)
        return "end_of_stream"
    finally:
        heads.close()


def _replay_one(flow: Flow, modality: Modality, frame: Frame, arrival_ns: int) -> None:
    """One frame through its inbox and every input it completes (an audio chunk may complete several windows)."""
    checked = flow.admit(modality, frame)
    if checked is None:
        return
    inbox = flow.inboxes[modality]
    inbox.put(checked)
    item = inbox.take()
    while item is not None and item is not CLOSED:
        flow.handle(modality, item, realtime=False, arrival_ns=arrival_ns)
        item = inbox.take()
