"""`Backend`: the one enumeration of backends (runtime, bench and both CLIs use it), the `Engine`
protocol every backend implements, and `open_engine`, the one factory that opens a component
variant on a backend. Heavy backends (torch, TensorRT) are imported inside `open_engine`. A remote
Triton server is a backend too: its `triton://HOST:PORT` address parses to a `TritonBackend`.
"""

from __future__ import annotations

import enum
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from fusionrt.bundle import Bundle, Component, TensorSpec
from fusionrt.errors import ConfigError
from fusionrt.runtime.engine import CPU, CUDA, TENSORRT, OrtEngine, resolve_providers
from fusionrt.runtime.ort_providers import tensorrt_config
from fusionrt.triton.address import GRAMMAR, TritonBackend, is_address, parse_address

REFERENCE = "reference"  # the torch backend's one variant: the bundle's reference weights


class Backend(str, enum.Enum):
    """ORT picks providers in priority order (TensorRT -> CUDA -> CPU, or --providers); ORT_* pin one."""

    ORT = "ort"
    ORT_CPU = "ort-cpu"
    ORT_CUDA = "ort-cuda"
    ORT_TENSORRT = "ort-tensorrt"
    TORCH = "torch"
    TENSORRT = "tensorrt"

    @classmethod
    def parse(cls, value: Backend | TritonBackend | str) -> Backend | TritonBackend:
        """A member from its value; a `triton://HOST:PORT` address (fusionrt/triton/address.py) gives a TritonBackend."""
        if isinstance(value, TritonBackend):
            return value
        if is_address(value):
            return parse_address(value)
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"backend {value!r}; expected one of {[b.value for b in cls]} or {GRAMMAR}") from None

    @property
    def is_ort(self) -> bool:
        return self in (Backend.ORT, Backend.ORT_CPU, Backend.ORT_CUDA, Backend.ORT_TENSORRT)

    @property
    def providers(self) -> tuple[str, ...] | None:
        """The one ONNX Runtime provider an ORT_* backend pins (None: ORT's priority order, or not ORT)."""
        return {Backend.ORT_CPU: (CPU,), Backend.ORT_CUDA: (CUDA,), Backend.ORT_TENSORRT: (TENSORRT,)}.get(self)

    def gpu_target(self, providers: Sequence[str] | None = None) -> str | None:
        """The GPU target ("cuda", "tensorrt") whose default variants the sessions run (a bundle keeps a
        default per GPU target), or None on a CPU: the pinned provider, else the first of `providers`
        or of those this onnxruntime build offers."""
        if not self.is_ort:
            return None
        first = (self.providers or resolve_providers(providers) or (CPU,))[0]
        return {TENSORRT: "tensorrt", CUDA: "cuda"}.get(first)

    @property
    def runs_variants(self) -> bool:
        """Whether the backend runs the bundle's ONNX variants (else: its reference weights or engines)."""
        return self.is_ort


@runtime_checkable
class Engine(Protocol):
    """One runnable component variant on one backend."""

    input_names: list[str]
    output_names: list[str]

    @property
    def providers(self) -> list[str]:
        """Where it really runs, first = the one that runs the model (e.g. CPUExecutionProvider, torch-cpu)."""
        ...

    def input_specs(self) -> Sequence[TensorSpec]:
        """The inputs as the loaded model declares them (dtype, shape), for contract checks."""
        ...

    def output_specs(self) -> Sequence[TensorSpec]:
        """The outputs as the loaded model declares them."""
        ...

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Outputs by name; EngineError when the feeds do not fit, the backend fails or the engine is closed."""
        ...

    def close(self) -> None:
        """Release what the engine holds (sessions, device buffers); run() refuses afterwards."""
        ...


def open_engine(
    bundle: Bundle,
    component: Component,
    variant: str,
    backend: Backend | str = Backend.ORT,
    *,
    threads: int | None = None,
    providers: Sequence[str] | None = None,
    fail_on_fallback: bool = False,
    io_binding: bool = False,
) -> Engine:
    """Open `variant` of `component` on `backend`: an ONNX variant name for ORT backends, "reference"
    for torch, a precision ("fp16", "int8", "fp32") for TensorRT engines. When ONNX Runtime's TensorRT
    provider is among the providers, it gets its caches, precision and shape profiles from the bundle
    (runtime/ort_providers.py); `io_binding` runs ORT sessions through an IO binding. A `triton://`
    address opens the component's model on that server (runtime/triton_engine.py), or, when its
    `?components=` leaves the component out, the variant in-process on ORT."""
    backend = Backend.parse(backend)
    if isinstance(backend, TritonBackend):
        if providers:
            raise ConfigError(f"providers choose ONNX Runtime sessions; the Triton server at {backend.url} runs the model")
        if backend.serves(component.name):
            from fusionrt.runtime.triton_engine import open_triton_engine  # needs tritonclient (the triton extra)

            return open_triton_engine(backend, component, variant)
        backend = Backend.ORT  # a component the address leaves out runs in-process
    if backend.is_ort:
        pinned = backend.providers
        if pinned and providers and tuple(providers) != pinned:
            raise ConfigError(f"backend {backend.value} runs on {pinned[0]}; drop providers={list(providers)} "
                              f"or use backend 'ort'")
        requested = list(pinned or providers or ()) or None
        trt = tensorrt_config(component, variant) if TENSORRT in resolve_providers(requested) else None
        return OrtEngine(component.variant(variant).path, providers=requested, threads=threads,
                         fail_on_fallback=fail_on_fallback or bool(pinned), tensorrt=trt, io_binding=io_binding)
    if providers:
        raise ConfigError(f"providers choose ONNX Runtime sessions; the {backend.value} backend does not use them")
    if backend is Backend.TORCH:
        from fusionrt.runtime.torch_engine import TorchEngine  # the named torch exception of the import table

        return TorchEngine(bundle, component.name, threads=threads)
    from fusionrt.runtime.tensorrt_engine import TensorRTEngine, check_engine

    return TensorRTEngine(check_engine(bundle, component.name, variant), component=component)
