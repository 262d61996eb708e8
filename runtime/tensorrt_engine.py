"""`TensorRTEngine`: a bundle component run from its TensorRT engine (`realtime-infer --backend tensorrt`).

Engines are built by `fusionrt engine BUNDLE --precision P` and recorded in the manifest with an
`EngineFingerprint`; `check_engine` compares that fingerprint with this machine and bundle before
an engine is opened. TensorRT and cuda-python are imported only inside the functions that need
them, so `import fusionrt.runtime` works on any machine and a CPU one gets
EngineError("TensorRT is not available: <reason>").
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from fusionrt.bundle import PRECISIONS, Bundle, Component, EnginePlan, TensorSpec
from fusionrt.errors import ConfigError, EngineError
from fusionrt.runtime.engine_fingerprint import (
    EngineFingerprint,
    ProfileLimits,
    check_fingerprint,
    profiles_from_manifest,
)


def import_tensorrt():
    """The tensorrt module, or EngineError saying why it cannot be used here."""
    try:
        import tensorrt
    except ImportError as e:
        raise EngineError(
            f"TensorRT is not available: {e}; install fusionrt[tensorrt] on a CUDA machine, or on Jetson use "
            "JetPack's python3-libnvinfer from a venv created with --system-site-packages"
        ) from e
    return tensorrt


def import_cudart():
    """cuda-python's CUDA runtime bindings (cuda.bindings.runtime in 12.6+/13, cuda.cudart before)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # ImportError propagates: the callers say what it means for them
    return cudart


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of device 0, from the CUDA runtime or nvidia-smi."""
    try:
        cudart = import_cudart()
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            return name.strip("\x00 "), f"{props.major}.{props.minor}"
    except ImportError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        raise EngineError(f"TensorRT is not available: no CUDA GPU found (cuda-python missing, nvidia-smi: {e})") from e
    if not out:
        raise EngineError("TensorRT is not available: nvidia-smi lists no GPU")
    name, capability = (part.strip() for part in out[0].split(","))
    return name, capability


def current_fingerprint(onnx_path: Path, sha256: str, precision: str, profiles) -> EngineFingerprint:
    trt = import_tensorrt()
    name, capability = gpu_identity()
    return EngineFingerprint(sha256, precision, tuple(profiles), trt.__version__, name, capability)


def recorded_engine(bundle: Bundle, component: str, precision: str) -> EnginePlan:
    """A component's recorded engine plan (pure: no TensorRT needed to say one is missing)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}; expected one of {list(PRECISIONS)}")
    plan = bundle.components[component].engines.get(precision)
    if plan is None:
        raise EngineError(
            f"bundle {bundle.root} has no {precision} TensorRT engine for {component}; build it on this device "
            f"with `fusionrt engine {bundle.root} --precision {precision}`"
        )
    if not plan.path.is_file():
        raise EngineError(
            f"bundle {bundle.root}: the {precision} TensorRT engine of {component} "
            f"({plan.path.relative_to(bundle.root).as_posix()}) is missing; "
            f"rebuild it with `fusionrt engine {bundle.root} --precision {precision}`"
        )
    return plan


def check_engine(bundle: Bundle, component: str, precision: str, limits: ProfileLimits = ProfileLimits()) -> Path:
    """The recorded engine file of a component, after checking its fingerprint against this machine
    and the bundle; EngineError names the fields that changed when it must be rebuilt."""
    plan = recorded_engine(bundle, component, precision)
    recorded = EngineFingerprint.from_dict(plan.fingerprint)
    variant = bundle.components[component].variants[plan.source_variant]
    profiles = profiles_from_manifest(bundle.components[component], limits)
    current = current_fingerprint(variant.path, variant.sha256, precision, profiles)
    check_fingerprint(recorded, current, str(plan.path))
    return plan.path


class TensorRTEngine:
    """One deserialized TensorRT engine with its execution context, CUDA stream and device buffers."""

    fallback = None  # TensorRT runs on the GPU it was built for, or not at all

    def __init__(self, plan_path: str | Path, *, component: Component) -> None:
        trt = import_tensorrt()
        try:
            self._cudart = import_cudart()
        except ImportError as e:
            raise EngineError(
                "TensorRT is not available: the TensorRT backend needs cuda-python (pip install cuda-python)"
            ) from e
        self._trt = trt
        self.path = Path(plan_path)
        self.name = component.name
        self.input_names = [s.name for s in component.inputs]
        self.output_names = [s.name for s in component.outputs]
        self._buffers: dict[str, tuple[int, int]] = {}  # tensor name -> (device pointer, bytes)
        self._stream = None
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise EngineError(
                f"TensorRT could not deserialize {self.path}; rebuild it with `fusionrt engine` on this device"
            )
        self._inputs = tuple(self._tensor_spec(n) for n in self.input_names)
        self._outputs = tuple(self._tensor_spec(n) for n in self.output_names)
        self._dtypes = {s.name: np.dtype(s.dtype) for s in self._inputs}
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise EngineError(f"{self.name} (tensorrt): could not create an execution context for {self.path.name}")
        self._stream = self._cuda("cudaStreamCreate", self._cudart.cudaStreamCreate())

    @property
    def providers(self) -> list[str]:
        return ["tensorrt"]

    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The inputs as the engine reports them (a dynamic dimension, -1 to TensorRT, is "?")."""
        return self._inputs

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart, context = self._cudart, self._context
        what = f"{self.name} (tensorrt)"
        if self._stream is None:
            raise EngineError(f"{what}: the engine is closed; open the bundle again to run it")
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EngineError(f"{what}: missing inputs {missing}; expected {self.input_names}")
        staged = []  # host arrays stay alive until the stream is synchronized
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name])
            if array.dtype != self._dtypes[name]:
                raise EngineError(f"{what}: input {name!r} is {array.dtype}; the engine expects {self._dtypes[name]}")
            if not context.set_input_shape(name, array.shape):
                raise EngineError(f"{what}: input {name!r} shape {array.shape} is outside the engine's profile")
            pointer = self._buffer(name, array.nbytes)
            self._cuda("cudaMemcpyAsync", cudart.cudaMemcpyAsync(
                pointer, array.ctypes.data, array.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream))
            context.set_tensor_address(name, pointer)
            staged.append(array)
        outputs = {}
        for name in self.output_names:
            shape = tuple(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EngineError(f"{what}: output {name!r} shape {shape} is unresolved")
            outputs[name] = np.empty(shape, np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name))))
            context.set_tensor_address(name, self._buffer(name, outputs[name].nbytes))
        if not context.execute_async_v3(self._stream):
            raise EngineError(f"{what}: execute_async_v3 failed; see TensorRT's log above")
        for name, host in outputs.items():
            self._cuda("cudaMemcpyAsync", cudart.cudaMemcpyAsync(
                host.ctypes.data, self._buffers[name][0], host.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost,
                self._stream))  # fmt: skip
        self._cuda("cudaStreamSynchronize", cudart.cudaStreamSynchronize(self._stream))
        return outputs

    def close(self) -> None:
        """Free the device buffers, the stream, the execution context and the engine; run() refuses afterwards."""
        for pointer, _ in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers.clear()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = self._engine = None

    def _tensor_spec(self, name: str) -> TensorSpec:
        """One IO tensor as the deserialized engine declares it."""
        dtype = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name)))
        shape = tuple(d if d >= 0 else "?" for d in self._engine.get_tensor_shape(name))
        return TensorSpec(name, dtype.name, shape)

    def __del__(self) -> None:
        if getattr(self, "_stream", None) is not None:
            self.close()

    def _buffer(self, name: str, nbytes: int) -> int:
        """A device buffer of at least `nbytes` for tensor `name`, reused across runs and grown when needed."""
        pointer, size = self._buffers.get(name, (0, -1))
        if size < nbytes:
            if size >= 0:
                self._cuda("cudaFree", self._cudart.cudaFree(pointer))
            pointer = int(self._cuda("cudaMalloc", self._cudart.cudaMalloc(max(nbytes, 1))))
            self._buffers[name] = (pointer, nbytes)
        return pointer

    def _cuda(self, call: str, result):
        """The value of a cuda-python call returning (error, *values); EngineError naming the call on failure."""
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise EngineError(f"{self.name} (tensorrt): {call} failed: {err}")
        return values[0] if values else None
