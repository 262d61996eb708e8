"""`Engine`: one runnable component variant on one backend, reporting the provider that really ran."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fusionrt.errors import EngineError

CPU = "CPUExecutionProvider"


class OrtEngine:
    """An ONNX Runtime session over one ONNX file."""

    def __init__(
        self,
        path: str | Path,
        *,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        optimization: str = "all",
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise EngineError(f"ONNX file {self.path} does not exist")
        options = ort.SessionOptions()
        options.graph_optimization_level = _ORT_LEVELS[optimization](ort)
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        requested = list(providers) if providers else [CPU]
        missing = [p for p in requested if p not in available]
        if missing and len(missing) == len(requested):
            raise EngineError(
                f"none of the requested execution providers {requested} is available in this onnxruntime "
                f"(available: {available})"
            )
        try:
            self.session = ort.InferenceSession(
                str(self.path), options, providers=[p for p in requested if p in available]
            )
        except Exception as e:  # ORT raises its own exception types without a common base
            raise EngineError(f"onnxruntime could not load {self.path}: {e}") from e
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    @property
    def providers(self) -> list[str]:
        """The providers the session really uses, in priority order."""
        return self.session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EngineError(f"{self.path.name}: missing inputs {missing}; expected {self.input_names}")
        try:
            outputs = self.session.run(self.output_names, {n: feeds[n] for n in self.input_names})
        except Exception as e:
            raise EngineError(f"{self.path.name}: onnxruntime failed to run: {e}") from e
        return dict(zip(self.output_names, outputs))


_ORT_LEVELS = {
    "disable": lambda ort: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def open_engine(path: str | Path, *, backend: str = "ort", **options) -> OrtEngine:
    """Open one ONNX file on a backend (only ONNX Runtime until the runtime issue adds more)."""
    if backend != "ort":
        raise EngineError(f"backend {backend!r} is not available; expected 'ort'")
    return OrtEngine(path, **options)
