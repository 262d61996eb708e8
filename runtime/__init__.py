"""The streaming runtime: engines (backends), sources, stages, budgets, pipeline, metrics, sinks.

Imports neither torch nor transformers: fusionrt's core plus onnxruntime/TensorRT runs a bundle.
"""

from fusionrt.runtime.engine import OrtEngine, open_engine

__all__ = ["OrtEngine", "open_engine"]
