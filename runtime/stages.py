"""Stages: an encoder per modality and the fusion head, each over one engine per variant.

An encoder stage is built from its bundle component: the typed input spec (`Component.input`)
gives the one host preprocessor, and every engine's IO is checked against the manifest when the
stage is built (the bundle loader checked the manifest itself; only the loaded model file is left
to check). An encoder turns one input into an `Embedding` kept with its capture time; the fusion
head turns the freshest embeddings (zeros and presence 0 for missing ones) into logits.
"""

from __future__ import annotations

import threading
from typing import Mapping, Sequence

import numpy as np

from fusionrt.bundle import EMBEDDING, LOGITS, AudioInput, Component, FusionInput, TensorSpec
from fusionrt.data import BINARY_LABELS, binary_labels
from fusionrt.errors import BundleError, ConfigError
from fusionrt.frame import Modality
from fusionrt.runtime.backend import Engine
from fusionrt.runtime.engine import GPU_PROVIDERS
from fusionrt.runtime.fusion_feeds import fusion_feeds
from fusionrt.runtime.preprocess import PcmWindows, host_preprocessor
from fusionrt.runtime.results import Embedding, Span, now_ns, sigmoid, softmax

# Which precision runs faster than which (higher is faster); fp16 on ONNX Runtime's CPU provider
# computes in fp32 behind Casts, so it is no faster there.
SPEED_RANK = {"cpu": {"fp16": 0, "fp32": 1, "int8": 2}, "gpu": {"fp32": 0, "fp16": 1, "int8": 2}}


def provider_kind(engine: Engine) -> str:
    providers = engine.providers
    return "gpu" if providers and providers[0] in GPU_PROVIDERS else "cpu"


def faster_order(current: str, precisions: Mapping[str, str], kind: str) -> list[str]:
    """Variant names faster than `current` on this kind of device, the next faster first."""
    rank = SPEED_RANK[kind]
    base = rank.get(precisions[current], rank["fp32"])
    faster = [(rank.get(p, rank["fp32"]), name) for name, p in precisions.items() if rank.get(p, rank["fp32"]) > base]
    return [name for _, name in sorted(faster)]


def check_engine_io(what: str, engine: Engine, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> None:
    """The loaded model must have the IO the manifest declares: names, dtypes and static dims as the
    backend reports them (`Engine.input_specs()` / `output_specs()`)."""
    for kind, declared, found_names in (
        ("inputs", inputs, engine.input_names),
        ("outputs", outputs, engine.output_names),
    ):
        if sorted(s.name for s in declared) != sorted(found_names):
            raise BundleError(
                f"{what}: the model file has {kind} {list(found_names)} but the manifest declares "
                f"{[s.name for s in declared]}; the bundle is inconsistent — re-export it"
            )
    manifest = {s.name: s for s in [*inputs, *outputs]}
    for found in [*engine.input_specs(), *engine.output_specs()]:
        spec = manifest[found.name]
        shape_ok = len(found.shape) == len(spec.shape) and all(
            not (isinstance(a, int) and isinstance(b, int)) or a == b for a, b in zip(found.shape, spec.shape)
        )
        if found.dtype != spec.dtype or not shape_ok:
            raise BundleError(
                f"{what}: {found.name} is {found.dtype} {list(found.shape)} in the model file but {spec.dtype} "
                f"{list(spec.shape)} in the manifest; the bundle is inconsistent — re-export it"
            )


class _Variants:
    """The engines of a stage, one per variant: the first is in use, the rest are the faster
    variants DEGRADE may switch to, in order. Every engine is kept for `close()`."""

    def __init__(self, what: str, component: Component, engines: Sequence[tuple[str, Engine]]) -> None:
        if not engines:
            raise ConfigError(f"the {what} stage needs at least one engine")
        for variant, engine in engines:
            check_engine_io(f"{component.name} ({variant})", engine, component.inputs, component.outputs)
        self.what = what
        self._engines = list(engines)
        self._all = [engine for _, engine in engines]

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
            raise ConfigError(f"the {self.what} stage has no faster variant than {self.variant}")
        self._engines.pop(0)
        return self.variant

    def remote_timings(self) -> list[dict]:
        """Remote engines' split of their round trips (runtime/triton_engine.py `timings`): server
        queue, server compute and the rest (network, client); empty for in-process engines."""
        return [engine.timings() for engine in self._all if callable(getattr(engine, "timings", None))]

    def close(self) -> None:
        """Close every engine the stage was given, the ones DEGRADE left behind included."""
        engines, self._all = self._all, []
        for engine in engines:
            engine.close()


class EncoderStage(_Variants):
    """One modality's encoder: the host preprocessor of its input spec + an engine per variant."""

    def __init__(
        self,
        component: Component,
        engines: Sequence[tuple[str, Engine]],
        *,
        hop_s: float | None = None,
        clock=now_ns,
    ) -> None:
        if component.role != "encoder" or component.input is None:
            raise ConfigError(f"component {component.name} is not an encoder (role {component.role!r})")
        self.modality = Modality(component.modality)
        self.name = self.modality.value
        super().__init__(self.name, component, engines)
        self.component = component
        self.spec = component.input
        self.embed_dim = component.embedding_dim
        self.prepare = host_preprocessor(self.spec)  # one input -> the engine's feeds
        self._clock = clock
        if isinstance(self.spec, AudioInput):
            hop = self.spec.hop_s if hop_s is None else hop_s
            if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not hop > 0:
                raise ConfigError(f"audio hop = {hop!r} s; expected a positive number of seconds")
            self.hop_samples = max(1, round(hop * self.spec.sample_rate))

    def warmup(self) -> None:
        """One run of every variant on a neutral input: allocations happen now, not on frame one,
        and the real output width is known."""
        example = self.prepare.example()
        for variant, engine in self._engines:
            vector = engine.run(self.prepare(example))[EMBEDDING]
            if vector.ndim != 2 or vector.shape[0] != 1 or (self.embed_dim and vector.shape[1] != self.embed_dim):
                raise BundleError(
                    f"{self.component.name} ({variant}) returned {EMBEDDING} of shape {list(vector.shape)}; "
                    f"expected [1, {self.embed_dim or 'E'}]"
                )
            self.embed_dim = int(vector.shape[1])

    def encode(self, data, *, t_ns: int, seq: int, label: int | None, pixel_format: str = "bgr") -> Embedding:
        """Preprocess and run one input (a camera frame in `pixel_format`); DataError when it is unusable."""
        thread = threading.current_thread().name
        t0 = self._clock()
        image = self.modality is Modality.IMAGE
        feeds = self.prepare(data, pixel_format) if image else self.prepare(data)
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
            source_frame=data if image else None,
            source_format=pixel_format,
        )

    def new_windows(self, *, newest_only: bool) -> PcmWindows:
        """The audio stage's PCM ring, cut into the encoder's windows every hop."""
        if not isinstance(self.spec, AudioInput):
            raise ConfigError(f"the {self.name} stage takes no PCM windows")
        return PcmWindows(self.spec.sample_rate, self.spec.window_samples, self.hop_samples, newest_only=newest_only)


class FusionStage(_Variants):
    """The fusion head: one float32 [1, E] input per modality (zeros when absent), then presence."""

    def __init__(
        self,
        component: Component,
        engines: Sequence[tuple[str, Engine]],
        *,
        contract: FusionInput,
        task: str = "classification",
        labels: Sequence[str] = (),
        top_k: int = 5,
        clock=now_ns,
    ) -> None:
        super().__init__("fusion", component, engines)
        self.component = component
        self.modalities = tuple(Modality(m) for m in contract.modalities)
        self.task = task
        self.labels = tuple(labels)
        self.top_k = top_k
        self._clock = clock
        self._names = tuple(m.value for m in self.modalities)
        self.dims: dict[Modality, int | None] = {m: contract.widths.get(m) for m in self.modalities}
        self._widths = {m.value: d for m, d in self.dims.items() if d is not None}

    def set_dim(self, modality: Modality, dim: int) -> None:
        """Fix the embedding width of a modality (from its encoder) when the fusion spec leaves it dynamic."""
        known = self.dims.get(modality)
        if known is not None and known != dim:
            raise BundleError(
                f"fusion input {modality.value!r} takes [batch, {known}] but the {modality.value} encoder gives "
                f"[batch, {dim}]; the bundle's components do not fit together — re-export it"
            )
        self.dims[modality] = dim
        self._widths[modality.value] = dim

    def warmup(self) -> None:
        for variant, engine in self._engines:
            out = engine.run(self._feeds({}))[LOGITS]
            if out.ndim != 2 or out.shape[0] != 1:
                raise BundleError(f"fusion ({variant}) returned logits of shape {list(out.shape)}; expected [1, K]")
            if self.task == "classification" and self.labels and out.shape[1] != len(self.labels):
                raise BundleError(
                    f"fusion ({variant}) returns {out.shape[1]} logits but the bundle has {len(self.labels)} labels"
                )
            if self.task == "binary" and out.shape[1] != 1:
                raise BundleError(f"fusion ({variant}) returns {out.shape[1]} logits; a binary bundle returns 1")

    def run(self, vectors: Mapping[str, np.ndarray]) -> tuple[np.ndarray, Span]:
        """Logits [K] of the present embeddings ({modality: float32 [E]}); the others are fed as absent."""
        t0 = self._clock()
        feeds = self._feeds(vectors)
        out = self._engines[0][1].run(feeds)[LOGITS][0]
        return out, Span("fusion", t0, self._clock(), threading.current_thread().name)

    def top(self, outputs: np.ndarray) -> tuple[tuple[str, float], ...]:
        if self.task == "binary":
            negative, positive = self.labels or ("0", "1")
            p = sigmoid(float(outputs[0]))
            return ((positive, p), (negative, 1.0 - p)) if p >= 0.5 else ((negative, 1.0 - p), (positive, p))
        if self.task != "classification":
            return ()
        probabilities = softmax(outputs)
        k = min(self.top_k, len(probabilities))
        best = np.argsort(-probabilities, kind="stable")[:k]
        names = self.labels or tuple(str(i) for i in range(len(probabilities)))
        return tuple((names[i], float(probabilities[i])) for i in best)

    def ground_truth(self, label: int | None) -> int | None:
        """A test:// source's digit label in this bundle's label space (the binary digits task maps it)."""
        if label is None or self.task != "binary" or self.labels != BINARY_LABELS:
            return label
        return int(binary_labels(np.array([label]))[0])

    def _feeds(self, vectors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        given = {getattr(m, "value", m): v for m, v in vectors.items() if v is not None}
        for name in self._names:
            if name not in given and name not in self._widths:
                raise BundleError(
                    f"the width of fusion input {name!r} is dynamic and no {name} encoder is loaded to tell it; "
                    f"give the bundle a static embedding size"
                )
        return fusion_feeds(self._names, self._widths, given, count=1)
