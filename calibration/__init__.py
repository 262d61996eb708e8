"""Calibration datasets, quantizers (INT8 QDQ static/dynamic, FP16), sensitivity repair, accuracy
evaluation on the exported files, automatic precision choice, and TensorRT engine fingerprints.

Imports neither torch nor transformers: it runs the bundle's ONNX files through ONNX Runtime.
"""

from fusionrt.calibration.auto import candidates, default_heldout, format_table, quantize_bundle
from fusionrt.calibration.dataset import CalibrationSet, CalibrationWarning, Skipped
from fusionrt.runtime.engine_fingerprint import (
    EngineFingerprint,
    Profile,
    ProfileLimits,
    changed_fields,
    check_fingerprint,
    ort_tensorrt_options,
    profiles_from_manifest,
)
from fusionrt.calibration.evaluate import BundleRunner, evaluate, evaluate_bundle
from fusionrt.calibration.host import HostSpec, host_spec
from fusionrt.calibration.measure import Agreement, Latency, agreement, compare_outputs, measure_latency
from fusionrt.calibration.quantize import (
    Calibrator,
    Prepared,
    Preprocess,
    QuantConfig,
    QuantMode,
    QuantResult,
    convert_fp16,
    per_channel_scales,
    prepare_for_quantization,
    quantize_int8_dynamic,
    quantize_int8_static,
    quantize_onnx,
    quantized_nodes,
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
from fusionrt.calibration.tensorrt import engine_bundle
from fusionrt.runtime.tensorrt_engine import check_engine, import_tensorrt

__all__ = [
    "Agreement",
    "BundleRunner",
    "CalibrationSet",
    "CalibrationWarning",
    "Calibrator",
    "EngineFingerprint",
    "FeedsReader",
    "HostSpec",
    "Latency",
    "NodeError",
    "Prepared",
    "Preprocess",
    "Profile",
    "ProfileLimits",
    "QuantConfig",
    "QuantMode",
    "QuantResult",
    "RepairResult",
    "Skipped",
    "Verdict",
    "agreement",
    "candidates",
    "changed_fields",
    "check_engine",
    "check_fingerprint",
    "compare_outputs",
    "convert_fp16",
    "cosine_judge",
    "default_heldout",
    "engine_bundle",
    "evaluate",
    "evaluate_bundle",
    "format_table",
    "host_spec",
    "import_tensorrt",
    "measure_latency",
    "node_errors",
    "outlier_ratios",
    "ort_tensorrt_options",
    "per_channel_scales",
    "prepare_for_quantization",
    "profiles_from_manifest",
    "quantize_bundle",
    "quantize_int8_dynamic",
    "quantize_int8_static",
    "quantize_onnx",
    "quantized_nodes",
    "reader_for",
    "repair",
]
