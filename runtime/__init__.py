"""The streaming runtime: engines (backends), sources, stages, budgets, pipeline, metrics, sinks.

Imports neither torch nor transformers: fusionrt's core plus onnxruntime/TensorRT runs a bundle.
"""

from fusionrt.runtime.budget import Budget, OverrunPolicy, StageBudget
from fusionrt.runtime.engine import OrtEngine, open_engine
from fusionrt.runtime.metrics import Metrics
from fusionrt.runtime.pipeline import Pipeline, Summary, Trigger
from fusionrt.runtime.sinks import CallbackSink, ConsoleSink, JsonlSink, PrometheusSink, TraceSink, VideoSink
from fusionrt.runtime.sources import Replay, Source, SourceOptions, open_source
from fusionrt.runtime.tensorrt_engine import TensorRTEngine
from fusionrt.runtime.torch_engine import TorchEngine

__all__ = [
    "Budget",
    "CallbackSink",
    "ConsoleSink",
    "JsonlSink",
    "Metrics",
    "OrtEngine",
    "OverrunPolicy",
    "Pipeline",
    "PrometheusSink",
    "Replay",
    "Source",
    "SourceOptions",
    "StageBudget",
    "Summary",
    "TensorRTEngine",
    "TorchEngine",
    "TraceSink",
    "Trigger",
    "VideoSink",
    "open_engine",
    "open_source",
]
