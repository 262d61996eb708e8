"""The streaming runtime: backends and engines, sources, stages, budgets, the pipeline and its two
schedulers, metrics, sinks, and `run_realtime` (what `realtime-infer` and `fusionrt demo` call).

Imports neither torch nor transformers: fusionrt's core plus onnxruntime/TensorRT runs a bundle.
"""

from fusionrt.runtime.backend import Backend, Engine, open_engine
from fusionrt.runtime.budget import Budget, OverrunPolicy, StageBudget
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.metrics import Metrics
from fusionrt.runtime.pipeline import Pipeline, Summary
from fusionrt.runtime.realtime import GroundTruth, NoResultsError, Outputs, RealtimeReport, run_realtime
from fusionrt.runtime.results import Embedding, Result, Span
from fusionrt.runtime.sinks import CallbackSink, ConsoleSink, JsonlSink, PrometheusSink, TraceSink, VideoSink
from fusionrt.runtime.sources import Replay, Source, SourceOptions, open_source
from fusionrt.runtime.stages import EncoderStage, FusionStage
from fusionrt.runtime.tensorrt_engine import TensorRTEngine
from fusionrt.runtime.torch_engine import TorchEngine
from fusionrt.runtime.trigger import Trigger

__all__ = [
    "Backend",
    "Budget",
    "CallbackSink",
    "ConsoleSink",
    "Embedding",
    "EncoderStage",
    "Engine",
    "FusionStage",
    "GroundTruth",
    "JsonlSink",
    "Metrics",
    "OrtEngine",
    "NoResultsError",
    "Outputs",
    "OverrunPolicy",
    "Pipeline",
    "PrometheusSink",
    "RealtimeReport",
    "Replay",
    "Result",
    "Source",
    "SourceOptions",
    "Span",
    "StageBudget",
    "Summary",
    "TensorRTEngine",
    "TorchEngine",
    "TraceSink",
    "Trigger",
    "VideoSink",
    "open_engine",
    "open_source",
    "run_realtime",
]
