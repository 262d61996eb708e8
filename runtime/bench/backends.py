"""Which `Backend`s a benchmark compares, whether each can run here (and if not, why), the variants
each runs, and one timed `Step` per component variant opened on a backend through `open_engine`.

Bench pins one ONNX Runtime provider per backend (ort-cpu, ort-cuda, ort-tensorrt) so that every
row says what really ran; the plain `ort` backend (ORT's provider priority order) is refused.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from fusionrt.bundle import Bundle, Component, resolve_variants
from fusionrt.errors import ConfigError, EngineError
from fusionrt.runtime.backend import REFERENCE, Backend, Engine, open_engine

# The backends bench compares, in report order: the torch reference first (the baseline of the speed-ups).
BENCHED = tuple(sorted((b for b in Backend if b is not Backend.ORT), key=lambda b: b is not Backend.TORCH))
CPU_BACKENDS = (Backend.TORCH, Backend.ORT_CPU)  # the ones the thread sweep and the CPU GEMM peak apply to
MODEL = "model"  # the whole-model target: every encoder, then the fusion head, in sequence
# How each backend's host copy is reported when it is not measured apart from compute.
COPY_NOT_SEPARATED = {
    Backend.ORT_CPU: "n/a: runs on the host's arrays, no copy",
    Backend.ORT_CUDA: "included in compute: ONNX Runtime copies inside run()",
    Backend.ORT_TENSORRT: "included in compute: ONNX Runtime copies inside run()",
    Backend.TENSORRT: "included in compute: the engine copies inside run()",
}


def parse_backends(names: Sequence[Backend | str] | None) -> list[Backend]:
    """The backends to compare, in BENCHED order (all of them when `names` is empty)."""
    chosen = set()
    for name in names or ():
        try:
            backend = Backend.parse(name)
        except ConfigError:
            raise ConfigError(f"bench --backends {name!r}; expected some of {[b.value for b in BENCHED]}") from None
        if backend not in BENCHED:
            raise ConfigError(f"bench --backends {name!r}: bench pins one ONNX Runtime provider per backend so each "
                              f"row says what ran; use {[b.value for b in BENCHED if b.is_ort]}")
        chosen.add(backend)
    return [b for b in BENCHED if not chosen or b in chosen]


def unavailable(bundle: Bundle, backend: Backend) -> str | None:
    """Why `backend` cannot run `bundle` here, or None when it can."""
    if backend is Backend.TORCH:
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed (pip install 'fusionrt[export]')"
        if bundle.reference is None:
            return (f"bundle {bundle.root} carries no reference PyTorch weights; re-export it with "
                    "`fusionrt export --config CONFIG --checkpoint CKPT` to get them")
        return None
    if backend.providers:
        import onnxruntime as ort

        provider = backend.providers[0]
        if provider not in ort.get_available_providers():
            available = ", ".join(ort.get_available_providers())
            return f"onnxruntime {ort.__version__} has no {provider} (providers: {available})"
        return None
    if backend is not Backend.TENSORRT:
        return f"bench does not measure the {backend.value} backend"
    if not any(c.engines for c in bundle.components.values()):
        return (f"bundle {bundle.root} has no TensorRT engines; build them on the GPU with "
                f"`fusionrt engine {bundle.root} --precision fp16`")
    from fusionrt.runtime.tensorrt_engine import import_tensorrt

    try:
        import_tensorrt()
    except EngineError as e:
        return str(e)
    return None


def variants_on(component: Component, backend: Backend) -> list[str]:
    """The variants `backend` can run of `component`: its ONNX variants, the precisions of its recorded
    TensorRT engines, or the reference model."""
    if backend is Backend.TORCH:
        return [REFERENCE]
    if backend is Backend.TENSORRT:
        return list(component.engines)
    return list(component.variants)


def model_variants(bundle: Bundle, backend: Backend) -> dict[str, dict[str, str]]:
    """Whole-model variant -> {component: variant it runs}: ONNX variants by the bundle's one rule
    (`resolve_variants`: a component without the named variant runs fp32); TensorRT needs an engine
    of the precision in every component, as the pipeline does."""
    components = list(bundle.components.values())
    if backend is Backend.TORCH:
        return {REFERENCE: {c.name: REFERENCE for c in components}}
    if backend is Backend.TENSORRT:
        names = [p for p in components[0].engines if all(p in c.engines for c in components)]
        return {p: {c.name: p for c in components} for p in names}
    names = list(dict.fromkeys(v for c in components for v in c.variants))
    return {v: resolve_variants(bundle, v, target=backend.gpu_target()) for v in names}


@dataclass
class Step:
    """One component variant opened on a backend: `run(feeds) -> (outputs, host copy ms or None)`."""

    engine: Engine
    run: Callable[[dict], tuple[dict, float | None]]

    @property
    def device(self) -> str:
        """Where it really runs (the engine's first provider, e.g. CPUExecutionProvider, torch-cpu, tensorrt)."""
        return self.engine.providers[0]

    def close(self) -> None:
        self.engine.close()


def open_step(bundle: Bundle, component: Component, variant: str, backend: Backend, threads: int) -> Step:
    """A timed step running `variant` of `component` on `backend` (pinned providers: no silent fallback)."""
    engine = open_engine(bundle, component, variant, backend, threads=threads, fail_on_fallback=True)
    if backend is Backend.TORCH:
        return Step(engine, _copy_apart(engine))
    return Step(engine, lambda feeds: (engine.run(feeds), None))


def _copy_apart(engine) -> Callable[[dict], tuple[dict, float]]:
    """The torch engine's run() in its three steps, the host copies (to_tensors, to_numpy) timed apart."""

    def step(feeds: dict) -> tuple[dict, float]:
        t0 = time.perf_counter_ns()
        tensors = engine.to_tensors(feeds)
        t1 = time.perf_counter_ns()
        out = engine.forward(tensors)
        t2 = time.perf_counter_ns()
        outputs = engine.to_numpy(out)
        t3 = time.perf_counter_ns()
        return outputs, (t1 - t0 + t3 - t2) / 1e6

    return step
