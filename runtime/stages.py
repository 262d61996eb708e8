"""Stages: an encoder per modality and the fusion head, their bounded inputs, and the contracts
(names, dtypes, shapes) checked when a pipeline is built rather than on the first frame.

An encoder turns one input into an `Embedding` kept with its capture time; the fusion head turns
the freshest embeddings (zeros and presence 0 for missing ones) into a `Result`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np

from fusionrt.bundle import TensorSpec
from fusionrt.errors import BundleError, ConfigError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.engine import GPU_PROVIDERS
from fusionrt.runtime.preprocess import PcmWindows, TextTokenizer, resize_image

# What each encoder is fed, per the bundle contract: (name, dtype, rank).
ENCODER_INPUTS = {
    Modality.IMAGE: (("image", "uint8", 4),),
    Modality.AUDIO: (("audio", "float32", 2),),
    Modality.TEXT: (("input_ids", "int64", 2), ("attention_mask", "int64", 2)),
}
EMBEDDING = "embedding"
PRESENCE = "presence"
LOGITS = "logits"
DEFAULT_HOP_S = 0.1
# Which precision runs faster than which (higher is faster); fp16 on ONNX Runtime's CPU provider
# computes in fp32 behind Casts, so it is no faster there.
SPEED_RANK = {"cpu": {"fp16": 0, "fp32": 1, "int8": 2}, "gpu": {"fp32": 0, "fp16": 1, "int8": 2}}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
               "tensor(uint8)": "uint8", "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


class Engine(Protocol):
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class Span:
    """One step of a result's path, in pipeline-clock nanoseconds."""

    name: str
    start_ns: int
    end_ns: int
    thread: str

    @property
    def ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True)
class Embedding:
    modality: Modality
    vector: np.ndarray  # float32 [E]
    t_capture_ns: int  # capture time of the newest input it was computed from
    seq: int  # that input's seq (the window index for audio)
    label: int | None
    spans: tuple[Span, ...]  # preprocess, encode
    engine_ms: float
    source_frame: np.ndarray | None = None  # the camera frame at source resolution (image only)

    @property
    def ms(self) -> float:
        return (self.spans[-1].end_ns - self.spans[0].start_ns) / 1e6


@dataclass(frozen=True)
class Result:
    """One fused answer. Times in ns on the pipeline clock; `t_capture_ns` is the triggering input's."""

    seq: int
    t_capture_ns: int
    trigger: str  # the modality whose input triggered it, or "rate"
    task: str
    top_k: tuple[tuple[str, float], ...]  # (label, probability), best first; empty for regression
    outputs: np.ndarray  # raw logits or regression values [num_outputs]
    presence: dict[str, bool]  # per fusion modality, in fusion order
    input_t_ns: dict[str, int | None]  # capture time of each fused embedding
    staleness_ms: dict[str, float | None]  # trigger capture time minus embedding capture time
    reused: tuple[str, ...]  # modalities whose stage was skipped under SKIP_REUSE
    stage_ms: dict[str, float]  # per stage on the path: each fused embedding's stage, and fusion
    e2e_ms: float  # from capture (deterministic replay: from arrival) to the result
    engine_ms: float  # engine time on the critical path (the triggering stage and fusion)
    deadline_missed: bool
    label: int | None  # ground truth of the triggering input, when the source knows it
    spans: tuple[Span, ...]
    start_ns: int  # what e2e is measured from
    done_ns: int
    image: np.ndarray | None = field(default=None, repr=False)  # camera frame for overlays

    @property
    def top_label(self) -> str | None:
        return self.top_k[0][0] if self.top_k else None

    @property
    def top_score(self) -> float | None:
        return self.top_k[0][1] if self.top_k else None

    def to_json(self, labels: Sequence[str] = (), *, timings: bool = True) -> dict:
        """The JSONL record; without timings it is identical across deterministic replays."""
        record: dict = {"seq": self.seq, "t_capture_ns": self.t_capture_ns, "trigger": self.trigger}
        if self.task == "classification":
            record["top_k"] = [{"label": name, "score": score} for name, score in self.top_k]
        else:
            record["outputs"] = [float(v) for v in self.outputs]
        record["presence"] = dict(self.presence)
        record["input_t_ns"] = dict(self.input_t_ns)
        if self.reused:
            record["reused"] = list(self.reused)
        if self.label is not None:
            record["label"] = labels[self.label] if 0 <= self.label < len(labels) else self.label
        if timings:
            record["stage_ms"] = {k: round(v, 4) for k, v in self.stage_ms.items()}
            record["e2e_ms"] = round(self.e2e_ms, 4)
            record["deadline_missed"] = self.deadline_missed
        return record


def now_ns() -> int:
    return time.monotonic_ns()


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, np.float64) - np.max(logits)
    e = np.exp(shifted)
    return e / e.sum()


def provider_kind(engine: Engine) -> str:
    providers = getattr(engine, "providers", None) or []
    return "gpu" if providers and providers[0] in GPU_PROVIDERS else "cpu"


def faster_order(current: str, precisions: Mapping[str, str], kind: str) -> list[str]:
    """Variant names faster than `current` on this kind of device, the next faster first."""
    rank = SPEED_RANK[kind]
    base = rank.get(precisions[current], rank["fp32"])
    faster = [(rank.get(p, rank["fp32"]), name) for name, p in precisions.items() if rank.get(p, rank["fp32"]) > base]
    return [name for _, name in sorted(faster)]


class EncoderStage:
    """One modality's encoder: host preprocessing + an engine per variant (the first is in use,
    the rest are the faster variants DEGRADE may switch to, in order)."""

    def __init__(
        self,
        modality: Modality | str,
        engines: Sequence[tuple[str, Engine]],
        *,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        preprocessing: Mapping,
        tokenizer_json: str | Path | None = None,
        hop_s: float | None = None,
        clock=now_ns,
    ) -> None:
        self.modality = Modality(modality)
        if not engines:
            raise ConfigError(f"the {self.modality.value} stage needs at least one engine")
        self.name = self.modality.value
        self._engines = list(engines)
        self._clock = clock
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.preprocessing = dict(preprocessing)
        self.embed_dim = check_encoder_specs(self.modality, self.inputs, self.outputs)
        for variant, engine in self._engines:
            check_engine_specs(f"{self.name}_encoder ({variant})", engine, self.inputs, self.outputs)
        self.prepare = self._preprocessor(tokenizer_json, hop_s)  # one input -> the engine's feeds

    @property
    def variant(self) -> str:
        return self._engines[0][0]

    @property
    def engine(self) -> Engine:
        return self._engines[0][1]

    @property
    def faster_variants(self) -> int:
        return len(self._engines) - 1

    def degrade(self) -> str:
        """Switch to the next faster variant and return its name."""
        if len(self._engines) < 2:
            raise ConfigError(f"the {self.name} stage has no faster variant than {self.variant}")
        self._engines.pop(0)
        return self.variant

    def warmup(self) -> None:
        """One run of every variant on a neutral input: allocations happen now, not on frame one,
        and the real output width is known."""
        example = self.example_input()
        for variant, engine in self._engines:
            out = engine.run(self.prepare(example))
            vector = out[EMBEDDING]
            if vector.ndim != 2 or vector.shape[0] != 1 or (self.embed_dim and vector.shape[1] != self.embed_dim):
                raise BundleError(
                    f"{self.name}_encoder ({variant}) returned {EMBEDDING} of shape {list(vector.shape)}; "
                    f"expected [1, {self.embed_dim or 'E'}]"
                )
            self.embed_dim = int(vector.shape[1])

    def example_input(self) -> np.ndarray | str:
        if self.modality is Modality.IMAGE:
            return np.zeros((self.height, self.width, 3), np.uint8)
        if self.modality is Modality.AUDIO:
            return np.zeros(self.window_samples, np.float32)
        return "hello"

    def encode(self, data, *, t_ns: int, seq: int, label: int | None) -> Embedding:
        """Preprocess and run one input; DataError when the input is unusable."""
        thread = threading.current_thread().name
        t0 = self._clock()
        feeds = self.prepare(data)
        t1 = self._clock()
        out = self.engine.run(feeds)
        t2 = self._clock()
        return Embedding(
            modality=self.modality,
            vector=out[EMBEDDING][0],
            t_capture_ns=t_ns,
            seq=seq,
            label=label,
            spans=(Span(f"{self.name}.preprocess", t0, t1, thread), Span(f"{self.name}.encode", t1, t2, thread)),
            engine_ms=(t2 - t1) / 1e6,
            source_frame=data if self.modality is Modality.IMAGE else None,
        )

    def _preprocessor(self, tokenizer_json, hop_s):
        p, specs = self.preprocessing, {s.name: s for s in self.inputs}
        if self.modality is Modality.IMAGE:
            shape = specs["image"].shape
            self.height = _size(p.get("height"), shape[1], "image height", "height")
            self.width = _size(p.get("width"), shape[2], "image width", "width")
            order = p.get("channel_order", "bgr")
            if order not in ("bgr", "rgb"):
                raise BundleError(f"image_encoder preprocessing channel_order = {order!r}; expected 'bgr' or 'rgb'")
            return lambda frame: {"image": resize_image(frame, self.height, self.width, order)}
        if self.modality is Modality.AUDIO:
            samples = specs["audio"].shape[1]
            self.window_samples = _size(p.get("window_samples"), samples, "audio window", "window_samples")
            if "sample_rate" not in p:
                raise BundleError("audio_encoder preprocessing has no sample_rate; re-export the bundle")
            self.sample_rate = int(p["sample_rate"])
            hop = hop_s if hop_s is not None else float(p.get("hop_s", DEFAULT_HOP_S))
            if not hop > 0:
                raise ConfigError(f"audio hop = {hop!r} s; expected a positive number of seconds")
            self.hop_samples = max(1, round(hop * self.sample_rate))
            return lambda window: {"audio": window[None]}
        self.max_length = _size(p.get("max_length"), specs["input_ids"].shape[1], "text length", "max_length")
        if tokenizer_json is None:
            raise BundleError("the text encoder needs a tokenizer.json; the bundle has no tokenizer directory")
        tokenizer = TextTokenizer(tokenizer_json, self.max_length, p.get("padding", "max_length"))
        return tokenizer

    def new_windows(self, *, newest_only: bool) -> PcmWindows:
        return PcmWindows(self.sample_rate, self.window_samples, self.hop_samples, newest_only=newest_only)


class FusionStage:
    """The fusion head: one float32 [1, E] input per modality (zeros when absent), then presence."""

    def __init__(
        self,
        engines: Sequence[tuple[str, Engine]],
        *,
        modalities: Sequence[str],
        inputs: Sequence[TensorSpec],
        outputs: Sequence[TensorSpec],
        task: str = "classification",
        labels: Sequence[str] = (),
        top_k: int = 5,
        clock=now_ns,
    ) -> None:
        self.modalities = tuple(Modality(m) for m in modalities)
        self.task = task
        self.labels = tuple(labels)
        self.top_k = top_k
        self._engines = list(engines)
        self._clock = clock
        self.inputs = tuple(inputs)
        self.outputs = tuple(outputs)
        self.dims = check_fusion_specs(self.modalities, self.inputs, self.outputs, task, self.labels)
        for variant, engine in self._engines:
            check_engine_specs(f"fusion ({variant})", engine, self.inputs, self.outputs)
        self._zeros: dict[Modality, np.ndarray] = {}

    @property
    def variant(self) -> str:
        return self._engines[0][0]

    @property
    def faster_variants(self) -> int:
        return len(self._engines) - 1

    def degrade(self) -> str:
        if len(self._engines) < 2:
            raise ConfigError(f"the fusion stage has no faster variant than {self.variant}")
        self._engines.pop(0)
        return self.variant

    def set_dim(self, modality: Modality, dim: int) -> None:
        """Fix the embedding width of a modality (from its encoder) when the fusion spec leaves it dynamic."""
        known = self.dims.get(modality)
        if known is not None and known != dim:
            raise BundleError(
                f"fusion input {modality.value!r} takes [batch, {known}] but the {modality.value} encoder gives "
                f"[batch, {dim}]; the bundle's components do not fit together — re-export it"
            )
        self.dims[modality] = dim

    def warmup(self) -> None:
        for variant, engine in self._engines:
            out = engine.run(self._feeds({}))[LOGITS]
            if out.ndim != 2 or out.shape[0] != 1:
                raise BundleError(f"fusion ({variant}) returned logits of shape {list(out.shape)}; expected [1, K]")
            if self.task == "classification" and self.labels and out.shape[1] != len(self.labels):
                raise BundleError(
                    f"fusion ({variant}) returns {out.shape[1]} logits but the bundle has {len(self.labels)} labels"
                )

    def run(self, vectors: Mapping[Modality, np.ndarray]) -> tuple[np.ndarray, Span]:
        t0 = self._clock()
        feeds = self._feeds(vectors)
        out = self._engines[0][1].run(feeds)[LOGITS][0]
        return out, Span("fusion", t0, self._clock(), threading.current_thread().name)

    def top(self, outputs: np.ndarray) -> tuple[tuple[str, float], ...]:
        if self.task != "classification":
            return ()
        probabilities = softmax(outputs)
        k = min(self.top_k, len(probabilities))
        best = np.argsort(-probabilities, kind="stable")[:k]
        names = self.labels or tuple(str(i) for i in range(len(probabilities)))
        return tuple((names[i], float(probabilities[i])) for i in best)

    def _feeds(self, vectors: Mapping[Modality, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {}
        presence = np.zeros((1, len(self.modalities)), np.float32)
        for i, modality in enumerate(self.modalities):
            vector = vectors.get(modality)
            if vector is None:
                feeds[modality.value] = self._zero(modality)
            else:
                feeds[modality.value] = vector.reshape(1, -1).astype(np.float32, copy=False)
                presence[0, i] = 1.0
        feeds[PRESENCE] = presence
        return feeds

    def _zero(self, modality: Modality) -> np.ndarray:
        if modality not in self._zeros:
            dim = self.dims.get(modality)
            if dim is None:
                raise BundleError(
                    f"the width of fusion input {modality.value!r} is dynamic and no {modality.value} encoder "
                    f"is loaded to tell it; give the bundle a static embedding size"
                )
            self._zeros[modality] = np.zeros((1, dim), np.float32)
        return self._zeros[modality]


# Bounded inputs of the encoder stages. `put` returns how many queued inputs it superseded; `take`
# returns a Frame, None on timeout, or CLOSED once the source ended and nothing is left.
CLOSED = object()


class LatestSlot:
    """Size-1 slot: the newest frame wins (camera)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._closed = False

    def put(self, frame: Frame) -> int:
        with self._cond:
            superseded = self._frame is not None
            self._frame = frame
            self._cond.notify()
            return int(superseded)

    def take(self, timeout: float | None = None):
        with self._cond:
            if self._frame is None and not self._closed and timeout:
                self._cond.wait(timeout)
            frame, self._frame = self._frame, None
            if frame is None and self._closed:
                return CLOSED
            return frame

    def keep_newest(self) -> int:
        return 0

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class FifoQueue(LatestSlot):
    """Small FIFO (text): when full, the oldest message is dropped."""

    def __init__(self, size: int = 4) -> None:
        super().__init__()
        self._items: deque[Frame] = deque()
        self._size = size

    def put(self, frame: Frame) -> int:
        with self._cond:
            dropped = 0
            if len(self._items) >= self._size:
                self._items.popleft()
                dropped = 1
            self._items.append(frame)
            self._cond.notify()
            return dropped

    def take(self, timeout: float | None = None):
        with self._cond:
            if not self._items and not self._closed and timeout:
                self._cond.wait(timeout)
            if self._items:
                return self._items.popleft()
            return CLOSED if self._closed else None

    def keep_newest(self) -> int:
        with self._cond:
            dropped = max(0, len(self._items) - 1)
            while len(self._items) > 1:
                self._items.popleft()
            return dropped


class PcmInbox(LatestSlot):
    """The audio stage's input: chunks go into a `PcmWindows` ring; `take` returns a window as a Frame."""

    def __init__(self, windows: PcmWindows, on_superseded) -> None:
        super().__init__()
        self._windows = windows
        self._on_superseded = on_superseded

    def put(self, frame: Frame) -> int:
        with self._cond:
            self._windows.append(frame.data, frame.t_ns, frame.label)
            if self._windows.ready():
                self._cond.notify()
            return 0

    def take(self, timeout: float | None = None):
        with self._cond:
            if not self._windows.ready() and not self._closed and timeout:
                self._cond.wait(timeout)
            if not self._windows.ready():
                return CLOSED if self._closed else None
            samples, t_ns, index, label, superseded = self._windows.take()
        if superseded:
            self._on_superseded(superseded)
        return Frame(Modality.AUDIO, t_ns, index, samples, label)


def check_encoder_specs(modality: Modality, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> int | None:
    """Check an encoder's declared IO against what its stage feeds; return the embedding width (None if dynamic)."""
    component = f"{modality.value}_encoder"
    expected = ENCODER_INPUTS[modality]
    names = [s.name for s in inputs]
    if sorted(names) != sorted(n for n, _, _ in expected):
        raise BundleError(
            f"{component} inputs are {names}; the {modality.value} stage feeds {[n for n, _, _ in expected]} — "
            f"re-export the component with those input names"
        )
    specs = {s.name: s for s in inputs}
    for name, dtype, rank in expected:
        _check_spec(component, specs[name], dtype, rank)
    if [s.name for s in outputs] != [EMBEDDING]:
        raise BundleError(f"{component} outputs are {[s.name for s in outputs]}; expected ['{EMBEDDING}']")
    _check_spec(component, outputs[0], "float32", 2)
    if modality is Modality.IMAGE and specs["image"].shape[3] != 3:
        raise BundleError(f"{component} input image has shape {list(specs['image'].shape)}; expected [batch, H, W, 3]")
    if modality is Modality.TEXT and specs["input_ids"].shape[1] != specs["attention_mask"].shape[1]:
        raise BundleError(f"{component}: input_ids and attention_mask disagree on the sequence length")
    width = outputs[0].shape[1]
    return width if isinstance(width, int) else None


def check_fusion_specs(
    modalities: Sequence[Modality],
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    task: str,
    labels: Sequence[str],
) -> dict[Modality, int | None]:
    """Check the fusion head's IO (one [batch, E] per modality in order, then presence); return the widths."""
    expected = [m.value for m in modalities] + [PRESENCE]
    names = [s.name for s in inputs]
    if names != expected:
        raise BundleError(f"fusion inputs are {names}; expected {expected} (the modalities in order, then presence)")
    dims = {}
    for modality, spec in zip(modalities, inputs):
        _check_spec("fusion", spec, "float32", 2)
        dims[modality] = spec.shape[1] if isinstance(spec.shape[1], int) else None
    presence = inputs[-1]
    _check_spec("fusion", presence, "float32", 2)
    if isinstance(presence.shape[1], int) and presence.shape[1] != len(modalities):
        raise BundleError(
            f"fusion presence has width {presence.shape[1]}; expected {len(modalities)} (one per modality)"
        )
    if [s.name for s in outputs] != [LOGITS]:
        raise BundleError(f"fusion outputs are {[s.name for s in outputs]}; expected ['{LOGITS}']")
    _check_spec("fusion", outputs[0], "float32", 2)
    classes = outputs[0].shape[1]
    if task == "classification" and labels and isinstance(classes, int) and classes != len(labels):
        raise BundleError(f"fusion returns {classes} logits but the bundle has {len(labels)} labels")
    return dims


def check_engine_specs(what: str, engine: Engine, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    """The loaded file must have the IO the manifest declares (names always; dtypes and static
    dims where the backend reports them)."""
    for kind, declared, found_names in (
        ("inputs", inputs, engine.input_names),
        ("outputs", outputs, engine.output_names),
    ):
        if sorted(s.name for s in declared) != sorted(found_names):
            raise BundleError(
                f"{what}: the model file has {kind} {list(found_names)} but the manifest declares "
                f"{[s.name for s in declared]}; the bundle is inconsistent — re-export it"
            )
    session = getattr(engine, "session", None)
    if session is None:
        return
    declared = {s.name: s for s in [*inputs, *outputs]}
    for arg in [*session.get_inputs(), *session.get_outputs()]:
        spec = declared[arg.name]
        dtype = _ORT_DTYPES.get(arg.type, arg.type)
        shape_ok = len(arg.shape) == len(spec.shape) and all(
            not (isinstance(a, int) and isinstance(b, int)) or a == b for a, b in zip(arg.shape, spec.shape)
        )
        if dtype != spec.dtype or not shape_ok:
            raise BundleError(
                f"{what}: {arg.name} is {dtype} {list(arg.shape)} in the model file but {spec.dtype} "
                f"{list(spec.shape)} in the manifest; the bundle is inconsistent — re-export it"
            )


def _check_spec(component: str, spec: TensorSpec, dtype: str, rank: int) -> None:
    if spec.dtype != dtype or len(spec.shape) != rank:
        raise BundleError(
            f"{component} {spec.name} is {spec.dtype} {list(spec.shape)}; the runtime feeds/reads {dtype} with "
            f"{rank} dimensions — re-export the component"
        )


def _size(configured, declared, what: str, key: str) -> int:
    """A static size the host must feed: from preprocessing, checked against the declared dim."""
    if configured is not None:
        value = int(configured)
        if isinstance(declared, int) and declared != value:
            raise BundleError(
                f"{what}: preprocessing {key} = {value} but the model input takes {declared}; re-export the bundle"
            )
        return value
    if isinstance(declared, int):
        return declared
    raise BundleError(f"{what} is dynamic in the model and preprocessing has no {key}; so the runtime cannot size it")
