"""Calibration datasets, quantizers (INT8 QDQ static/dynamic, FP16), sensitivity repair, accuracy
evaluation on the exported files, automatic precision choice, and TensorRT engine builds.

Imports neither torch nor transformers: it runs the bundle's ONNX files through ONNX Runtime, and
feeds them through the runtime's own host preprocessors and fusion-feed builder. Engine
fingerprints and checks are the runtime's (fusionrt.runtime.engine_fingerprint, .tensorrt_engine).
"""

from fusionrt.calibration.auto import (
    BudgetJudge,
    candidate_label,
    candidates,
    default_heldout,
    latency_feed,
    quantize_bundle,
)
from fusionrt.calibration.dataset import CalibrationSet
from fusionrt.calibration.evaluate import BundleRunner, evaluate, evaluate_bundle
from fusionrt.calibration.files import CalibrationWarning, Skipped
from fusionrt.calibration.fp16 import fp16_from_onnx
from fusionrt.calibration.graphs import per_channel_scales, quantized_nodes
from fusionrt.calibration.measure import (
    Agreement,
    Latency,
    Speedup,
    agreement,
    compare_outputs,
    measure_latency,
)
from fusionrt.calibration.report import choose, format_table
from fusionrt.calibration.quantize import (
    Calibrator,
    Prepared,
    Preprocess,
    QuantConfig,
    QuantMode,
    QuantResult,
    convert_fp16,
    prepare_for_quantization,
    quantize_int8_dynamic,
    quantize_int8_static,
    quantize_onnx,
)
from fusionrt.calibration.reader import FeedsReader, reader_for
from fusionrt.calibration.sensitivity import (
    NodeError,
    RepairResult,
    Verdict,
    cosine_judge,
    node_errors,
    outlier_ratios,
    repair,
)
from fusionrt.calibration.target import TARGETS, Scheme, cpu_target, resolve_target, scheme_for
from fusionrt.calibration.tensorrt import engine_bundle

__all__ = [
    "Agreement",
    "BudgetJudge",
    "BundleRunner",
    "CalibrationSet",
    "CalibrationWarning",
    "Calibrator",
    "FeedsReader",
    "Latency",
    "Speedup",
    "NodeError",
    "Prepared",
    "Preprocess",
    "QuantConfig",
    "QuantMode",
    "QuantResult",
    "RepairResult",
    "Scheme",
    "Skipped",
    "TARGETS",
    "Verdict",
    "agreement",
    "candidate_label",
    "candidates",
    "compare_outputs",
    "convert_fp16",
    "cosine_judge",
    "choose",
    "cpu_target",
    "default_heldout",
    "engine_bundle",
    "evaluate",
    "evaluate_bundle",
    "format_table",
    "fp16_from_onnx",
    "latency_feed",
    "measure_latency",
    "node_errors",
    "outlier_ratios",
    "per_channel_scales",
    "prepare_for_quantization",
    "quantize_bundle",
    "quantize_int8_dynamic",
    "quantize_int8_static",
    "quantize_onnx",
    "quantized_nodes",
    "reader_for",
    "resolve_target",
    "repair",
    "scheme_for",
]
