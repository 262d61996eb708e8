"""The backends a benchmark compares, whether each can run here (and if not, why), and one timed
`Step` per component variant on a backend: feeds -> (outputs, host copy ms or None)."""

from __future__ import annotations

import importlib.util
import time
from typing import Callable

from fusionrt.bundle import Bundle, Component
from fusionrt.errors import EngineError
from fusionrt.runtime.engine import CPU, CUDA, TENSORRT, OrtEngine

TORCH = "torch"
ORT_CPU = "ort-cpu"
ORT_CUDA = "ort-cuda"
ORT_TENSORRT = "ort-tensorrt"
TENSORRT_NATIVE = "tensorrt"
BACKENDS = (TORCH, ORT_CPU, ORT_CUDA, ORT_TENSORRT, TENSORRT_NATIVE)
ORT_PROVIDERS = {ORT_CPU: CPU, ORT_CUDA: CUDA, ORT_TENSORRT: TENSORRT}
CPU_BACKENDS = (TORCH, ORT_CPU)  # the ones the thread sweep and the CPU GEMM peak apply to
REFERENCE = "reference"  # the torch backend's one variant: the bundle's reference weights
MODEL = "model"  # the whole-model target: every encoder, then the fusion head, in sequence
# How each backend's host copy is reported when it is not measured apart from compute.
COPY_NOT_SEPARATED = {
    ORT_CPU: "n/a: runs on the host's arrays, no copy",
    ORT_CUDA: "included in compute: ONNX Runtime copies inside run()",
    ORT_TENSORRT: "included in compute: ONNX Runtime copies inside run()",
    TENSORRT_NATIVE: "included in compute: the engine copies inside run()",
}

Step = Callable[[dict], tuple[dict, float | None]]


def unavailable(bundle: Bundle, backend: str) -> str | None:
    """Why `backend` cannot run `bundle` here, or None when it can."""
    if backend == TORCH:
        if importlib.util.find_spec("torch") is None:
            return "PyTorch is not installed (pip install 'fusionrt[export]')"
        if bundle.reference is None:
            return (f"bundle {bundle.root} carries no reference PyTorch weights; re-export it with "
                    "`fusionrt export --config CONFIG --checkpoint CKPT` to get them")
        return None
    if backend in ORT_PROVIDERS:
        import onnxruntime as ort

        provider = ORT_PROVIDERS[backend]
        if provider not in ort.get_available_providers():
            available = ", ".join(ort.get_available_providers())
            return f"onnxruntime {ort.__version__} has no {provider} (providers: {available})"
        return None
    if not any(c.get("engines") for c in bundle.manifest["components"].values()):
        return (f"bundle {bundle.root} has no TensorRT engines; build them on the GPU with "
                f"`fusionrt engine {bundle.root} --precision fp16`")
    from fusionrt.runtime.tensorrt_engine import import_tensorrt

    try:
        import_tensorrt()
    except EngineError as e:
        return str(e)
    return None


def variants_on(bundle: Bundle, component: Component, backend: str) -> list[str]:
    """The variants `backend` can run of `component`: its ONNX variants, the precisions of its recorded
    TensorRT engines, or the reference model."""
    if backend == TORCH:
        return [REFERENCE]
    if backend == TENSORRT_NATIVE:
        return list(bundle.manifest["components"][component.name].get("engines") or {})
    return list(component.variants)


def model_variants(bundle: Bundle, backend: str) -> dict[str, dict[str, str]]:
    """Whole-model variant -> {component: variant it runs}: a component without the named ONNX
    variant runs fp32 (as `fusionrt eval` resolves it); TensorRT needs the precision everywhere."""
    components = list(bundle.components.values())
    if backend == TORCH:
        return {REFERENCE: {c.name: REFERENCE for c in components}}
    per_component = [variants_on(bundle, c, backend) for c in components]
    if backend == TENSORRT_NATIVE:
        names = [p for p in per_component[0] if all(p in names for names in per_component)]
        return {p: {c.name: p for c in components} for p in names}
    names = list(dict.fromkeys(v for names in per_component for v in names))
    return {v: {c.name: v if v in c.variants else "fp32" for c in components} for v in names}


def open_step(bundle: Bundle, component: Component, variant: str, backend: str, threads: int) -> tuple[Step, str]:
    """A timed step running `variant` of `component` on `backend`, and the device it really runs on."""
    if backend == TORCH:
        return _torch_step(bundle, component, threads)
    if backend == TENSORRT_NATIVE:
        from fusionrt.runtime.tensorrt_engine import TensorRTEngine, check_engine

        engine = TensorRTEngine(check_engine(bundle, component.name, variant), component=component)
        return (lambda feeds: (engine.run(feeds), None)), "tensorrt"
    engine = OrtEngine(component.variant(variant).path, providers=[ORT_PROVIDERS[backend]], threads=threads,
                       fail_on_fallback=True)
    return (lambda feeds: (engine.run(feeds), None)), engine.providers[0]


def _torch_step(bundle: Bundle, component: Component, threads: int) -> tuple[Step, str]:
    import torch

    from fusionrt.runtime.torch_engine import TorchEngine

    torch.set_num_threads(threads)
    engine = TorchEngine(bundle, component.name)

    def step(feeds: dict) -> tuple[dict, float]:
        t0 = time.perf_counter_ns()
        tensors = engine.to_tensors(feeds)
        t1 = time.perf_counter_ns()
        out = engine.forward(tensors)
        t2 = time.perf_counter_ns()
        outputs = engine.to_numpy(out)
        t3 = time.perf_counter_ns()
        return outputs, (t1 - t0 + t3 - t2) / 1e6

    return step, engine.providers[0]
