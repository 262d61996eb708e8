"""The streaming runtime: engines (backends), sources, stages, budgets, pipeline, metrics, sinks.

Imports neither torch nor transformers: fusionrt's core plus onnxruntime/TensorRT runs a bundle.
"""

from fusionrt.runtime.engine import OrtEngine, open_engine
from fusionrt.runtime.sources import Replay, Source, SourceOptions, open_source

__all__ = ["OrtEngine", "Replay", "Source", "SourceOptions", "open_engine", "open_source"]
