"""`OrtEngine`: one ONNX file on ONNX Runtime, an `Engine` (runtime/backend.py) reporting the provider
that really ran.

ONNX Runtime picks execution providers in priority order (TensorRT -> CUDA -> CPU by default,
those this onnxruntime build offers). What is *requested* and what the session *really* uses can
differ (missing CUDA libraries, an onnxruntime-gpu shadowed by onnxruntime): the engine compares
the two after creating the session, warns loudly on a fallback, and with `fail_on_fallback`
refuses to run.

GPU providers: `tensorrt` (runtime/ort_providers.py's `OrtTensorrtConfig`, which `open_engine`
builds from the bundle) gives the TensorRT provider its engine/timing caches, precision flags and
shape profiles. `io_binding` runs through an ONNX Runtime IO binding: outputs named in
`host_outputs` (default: all) come back as NumPy arrays, the others stay where the provider put
them (an `onnxruntime.OrtValue` on the GPU for CUDA/TensorRT) and can be fed to another engine's
`run` without a round trip through host memory. `profile_prefix` turns on ONNX Runtime's profiler
(`end_profiling()` returns the JSON trace whose node events say which provider ran each node).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fusionrt.bundle import TensorSpec
from fusionrt.errors import EngineError
from fusionrt.runtime.ort_providers import CUDA, TENSORRT, OrtTensorrtConfig, prepare_cache, session_providers

log = logging.getLogger("fusionrt.runtime")

CPU = "CPUExecutionProvider"
PRIORITY = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = (TENSORRT, CUDA, "ROCMExecutionProvider", "DmlExecutionProvider")


def resolve_providers(requested: Sequence[str] | None) -> list[str]:
    """The providers to ask for: `requested` as given, or every provider of PRIORITY this build offers."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if requested:
        unknown = [p for p in requested if not p.endswith("ExecutionProvider")]
        if unknown:
            raise EngineError(f"execution provider {unknown[0]!r} is not a provider name; expected e.g. {list(PRIORITY)}")
        return list(requested)
    return [p for p in PRIORITY if p in available]


def fallback_reason(requested: Sequence[str], active: Sequence[str]) -> str | None:
    """Why the first requested provider is not the one running, or None when it is."""
    import onnxruntime as ort

    if not requested or (active and active[0] == requested[0]):
        return None
    wanted = requested[0]
    if wanted not in ort.get_available_providers():
        hint = "install onnxruntime-gpu (pip install 'fusionrt[gpu]')"
        if wanted == TENSORRT:
            hint = "install TensorRT and an onnxruntime-gpu built with it"
        return f"{wanted} is not in this onnxruntime build ({ort.get_device()}); {hint}"
    return f"{wanted} is in this build but the session did not register it (missing CUDA/cuDNN/TensorRT libraries?)"


@functools.lru_cache(maxsize=1)
def warn_install_traps() -> tuple[str, ...]:
    """Log the known broken installs once per process (`fusionrt doctor` explains them); returns them."""
    from fusionrt.runtime.doctor_env import install_traps
    from fusionrt.runtime.jetson import l4t_release

    traps = tuple(install_traps(on_jetson=l4t_release() is not None))
    for trap in traps:
        log.warning("INSTALL TRAP %s", trap)
    return traps


class OrtEngine:
    """An ONNX Runtime session over one ONNX file."""

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        optimization: str = "all",
        fail_on_fallback: bool = False,
        tensorrt: OrtTensorrtConfig | None = None,
        io_binding: bool = False,
        host_outputs: Sequence[str] | None = None,
        profile_prefix: str | None = None,
    ) -> None:
        import onnxruntime as ort

        warn_install_traps()
        self.path = Path(path)
        if not self.path.is_file():
            raise EngineError(f"ONNX file {self.path} does not exist")
        if optimization not in _ORT_LEVELS:
            raise EngineError(f"optimization {optimization!r}; expected one of {sorted(_ORT_LEVELS)}")
        options = ort.SessionOptions()
        options.graph_optimization_level = _ORT_LEVELS[optimization](ort)
        options.log_severity_level = 3  # ORT's own warnings (e.g. unused initializers) are not ours to show
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        self.requested = resolve_providers(providers)
        available = ort.get_available_providers()
        usable = [p for p in self.requested if p in available] or [CPU]
        self.notes: list[str] = []
        if tensorrt is not None and TENSORRT in usable:
            problem = prepare_cache(tensorrt)
            if problem:
                self.notes.append(problem + "; TensorRT rebuilds the engine at every start")
                log.warning("%s: %s", self.path.name, self.notes[-1])
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=session_providers(usable, tensorrt=tensorrt))
        except Exception as e:  # ORT raises its own exception types without a common base
            raise EngineError(f"onnxruntime could not load {self.path}: {e}") from e
        self._providers = tuple(self.session.get_providers())
        self._specs = tuple(_tensor_spec(i) for i in self.session.get_inputs())
        self._output_specs = tuple(_tensor_spec(o) for o in self.session.get_outputs())
        self.fallback = fallback_reason(self.requested, self.providers)
        if self.fallback:
            message = f"{self.path.name}: running on {self.providers[0]}, not {self.requested[0]}: {self.fallback}"
            if fail_on_fallback:
                raise EngineError(message + " (--fail-on-fallback)")
            log.warning("PROVIDER FALLBACK %s", message)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        unknown = sorted(set(host_outputs or ()) - set(self.output_names))
        if unknown:
            raise EngineError(f"{self.path.name}: host_outputs {unknown} are not outputs; expected among {self.output_names}")
        self.io_binding = io_binding
        self.host_outputs = frozenset(self.output_names if host_outputs is None else host_outputs)
        self.device = "cuda" if self._providers[0] in (TENSORRT, CUDA) else "cpu"
        self._expected = {
            i.name: (_NUMPY_OF_ORT.get(i.type), tuple(d if isinstance(d, int) else None for d in i.shape))
            for i in self.session.get_inputs()
        }

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses, in priority order."""
        return list(self._providers)

    def input_specs(self) -> tuple[TensorSpec, ...]:
        """The inputs as the ONNX file declares them (a dynamic or unnamed dimension is a str)."""
        return self._specs

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self._output_specs

    def close(self) -> None:
        """Release the session; run() refuses from now on."""
        self.session = None

    def end_profiling(self) -> Path:
        """Stop ONNX Runtime's profiler (profile_prefix) and return its JSON trace file."""
        if self.session is None:
            raise EngineError(f"{self.path.name}: the engine is closed")
        return Path(self.session.end_profiling())

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Outputs by name: NumPy arrays, except (with io_binding) the outputs kept on the device."""
        if self.session is None:
            raise EngineError(f"{self.path.name}: the engine is closed; open the bundle again to run it")
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EngineError(f"{self.path.name}: missing inputs {missing}; expected {self.input_names}")
        for name in self.input_names:
            self._check_input(name, feeds[name])
        try:
            if self.io_binding or any(not isinstance(feeds[n], np.ndarray) for n in self.input_names):
                return self._run_bound(feeds)
            outputs = self.session.run(self.output_names, {n: feeds[n] for n in self.input_names})
        except Exception as e:
            raise EngineError(f"{self.path.name}: onnxruntime failed to run: {e}") from e
        return dict(zip(self.output_names, outputs))

    def _run_bound(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """One run through an IO binding: host outputs copied back, the rest left on self.device."""
        binding = self.session.io_binding()
        for name in self.input_names:
            value = feeds[name]
            if isinstance(value, np.ndarray):
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
            else:  # an OrtValue, e.g. another engine's output kept on the device
                binding.bind_ortvalue_input(name, value)
        host = self.host_outputs if self.io_binding else frozenset(self.output_names)
        for name in self.output_names:
            if name in host:
                binding.bind_output(name, "cpu")
            else:
                binding.bind_output(name, self.device, 0)
        self.session.run_with_iobinding(binding)
        values = binding.get_outputs()
        return {n: (v.numpy() if n in host else v) for n, v in zip(self.output_names, values)}

    def _check_input(self, name: str, array: Any) -> None:
        dtype, shape = self._expected[name]
        if not isinstance(array, np.ndarray) and callable(getattr(array, "shape", None)):  # an OrtValue
            found, kind = tuple(array.shape()), _NUMPY_OF_ORT.get(array.data_type())
            if (dtype is not None and kind != dtype) or len(found) != len(shape) or any(
                e is not None and e != f for e, f in zip(shape, found)
            ):
                want = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
                raise EngineError(f"{self.path.name}: input {name!r} is an OrtValue {kind or array.data_type()} "
                                  f"{found}; the model expects {dtype} {want}")
            return
        found = getattr(array, "shape", None)
        # ORT reports an input without shape information as [] (rank unknown): only check known ranks.
        bad_shape = found is None or (
            bool(shape) and (len(found) != len(shape) or any(e is not None and e != f for e, f in zip(shape, found)))
        )
        if bad_shape or (dtype is not None and array.dtype != dtype):
            want = "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
            raise EngineError(
                f"{self.path.name}: input {name!r} is {getattr(array, 'dtype', type(array).__name__)} {found}; "
                f"the model expects {dtype} {want}"
            )


_NUMPY_OF_ORT = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(double)": np.dtype(np.float64),
}

_ORT_LEVELS = {
    "disable": lambda ort: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def _tensor_spec(arg) -> TensorSpec:
    """A session input/output as a TensorSpec: ORT's "tensor(float)" is "float32"; an unnamed dynamic dim is "?"."""
    dtype = _NUMPY_OF_ORT.get(arg.type)
    shape = tuple(d if isinstance(d, (int, str)) else "?" for d in arg.shape)
    return TensorSpec(arg.name, dtype.name if dtype is not None else arg.type, shape)
