"""ONNX -> INT8 (QDQ, static or dynamic) and ONNX -> FP16 conversions of one component file.

Static INT8 is the QDQ format with per-channel weights; the input graph is first pre-processed
(symbolic shape inference, ORT basic optimization, ONNX shape inference). Symbolic shape inference
fails on some graphs (BERT exports): the pre-processing then retries without it, then runs on the
raw graph, and the result records which path ran. Node names in exclusion lists and reports are
those of the pre-processed graph (its optimizer may fuse nodes, e.g. MatMul + Add into Gemm).

Two defaults of static INT8 come from real pretrained CNNs (benchmarks/real_cnn_int8.md): each
quantized Conv/Gemm's bias absorbs the mean shift its rounded weights cause
(fusionrt.calibration.bias_correction; it needs the calibration batches, so a variant made from a
range cache alone has none), and a Conv that reads the raw input over a few channels, an image
stem, stays float (graphs.input_layers). A third: the small layer that writes a graph output (a
classifier's last Gemm, at most 5 % of the multiply-adds) stays float, so the logits are not put on
an 8-bit grid (graphs.output_layers). `QuantConfig.bias_correction`, `.float_input_layers` and
`.float_output_layers` turn them off.

Activation ranges come from fusionrt.calibration.ranges (ORT's calibrators, written to ORT's JSON
range cache); a tensor whose range is infinite or reaches RANGE_LIMIT (attention masks) stays
float, with its producer and readers. FP16 conversion is fusionrt.calibration.fp16 (export uses
the same converter).

A variant records its `scheme` (QuantConfig.scheme: e.g. "qdq-static:u8s8", "dynamic:u8s8-reduce-range",
"qdq-static:u8s8-reduce-range-dw8" (7-bit weights, 8-bit in depthwise convolutions), "qdq-static:u8u8",
"qdq-static:s8s8-symmetric", "fp16") and its `target` (see fusionrt.calibration.target, which says
the scheme each target gets: `QuantConfig.for_target`).
"""

from __future__ import annotations

import enum
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from fusionrt.calibration.bias_correction import correct_biases
from fusionrt.calibration.fp16 import fp16_from_onnx
from fusionrt.calibration.graphs import (
    input_layers,
    load_onnx,
    name_nodes,
    nodes_touching,
    output_layers,
)
from fusionrt.calibration.ranges import Calibrator, calibrate_ranges, ort_method, read_batches, wide_range_tensors
from fusionrt.calibration.reader import FeedsReader
from fusionrt.calibration.target import TENSORRT, scheme_for
from fusionrt.calibration.weights import center_uint8_zero_points, depthwise_overrides, weight_type
from fusionrt.errors import CalibrationError, FusionRTError


class QuantMode(str, enum.Enum):
    INT8_STATIC = "int8-static"
    INT8_DYNAMIC = "int8-dynamic"
    FP16 = "fp16"
    AUTO = "auto"


class Preprocess(str, enum.Enum):
    FULL = "symbolic-shape+optimize+onnx-shape"
    NO_SYMBOLIC = "optimize+onnx-shape (symbolic shape inference failed)"
    NONE = "none (pre-processing failed)"
    NOT_NEEDED = "not needed"


DYNAMIC_OP_TYPES = ("MatMul", "Attention", "LSTM", "GRU")


@dataclass(frozen=True)
class QuantConfig:
    """How one variant is made. `calibrator` only matters for INT8_STATIC."""

    mode: QuantMode
    calibrator: Calibrator = Calibrator.MINMAX
    per_channel: bool = True
    exclude_nodes: tuple[str, ...] = ()
    exclude_op_types: tuple[str, ...] = ()
    op_types: tuple[str, ...] = ()  # only these op types are quantized; empty: all ORT can quantize
    symmetric_activations: bool = False  # int8 activations, as TensorRT wants; uint8 suits x86 CPUs
    reduce_range: bool = False  # 7-bit weights: exact on x86 without VNNI (see fusionrt.calibration.target)
    unsigned_weights: bool = False  # U8U8: uint8 weights symmetric around 128, exact on every x86 kernel
    full_range_depthwise: bool = False  # with reduce_range: depthwise Conv weights keep 8 bits (exact there)
    bias_correction: bool = True  # static INT8: biases absorb the weights' rounding shift (calibration.bias_correction)
    float_input_layers: bool = True  # static INT8: Convs reading the raw input stay float (graphs.input_layers)
    float_output_layers: bool = True  # static INT8: small layers writing an output stay float (graphs.output_layers)
    target: str | None = None  # the INT8 kernel family this variant is made for (None: not said)

    def __post_init__(self) -> None:
        if self.mode is QuantMode.AUTO:
            raise CalibrationError("QuantConfig describes one variant; AUTO picks among several (use quantize_bundle)")
        if self.mode is QuantMode.INT8_DYNAMIC and self.symmetric_activations:
            raise CalibrationError("dynamic INT8 quantizes activations as uint8 at run time; symmetric int8 "
                                   "activations (TensorRT) need int8-static")
        if self.unsigned_weights and self.symmetric_activations:
            raise CalibrationError("uint8 weights (U8U8) go with uint8 activations; ONNX Runtime's int8-activation "
                                   "kernels take int8 weights only")

    @classmethod
    def for_target(cls, mode: QuantMode | str, target: str, calibrator: Calibrator = Calibrator.MINMAX,
                   **options) -> QuantConfig:
        """A variant in `mode` with the scheme `target` needs (fusionrt.calibration.target.scheme_for)."""
        mode, scheme = QuantMode(mode), scheme_for(target)
        if mode is not QuantMode.FP16 and not scheme.int8:
            raise CalibrationError(f"--target {scheme.target} runs no INT8 (ONNX Runtime's CUDA provider has INT8 "
                                   "kernels for QuantizeLinear, DequantizeLinear and MatMulInteger only): use --mode "
                                   "fp16 or auto, or --target tensorrt for INT8 on an NVIDIA GPU")
        if mode is QuantMode.INT8_DYNAMIC and scheme.static_only:
            raise CalibrationError(f"--target {scheme.target} runs static QDQ INT8 and FP16 only; dynamic INT8 is a "
                                   "CPU-only choice: use --mode int8-static, fp16 or auto")
        int8 = mode is not QuantMode.FP16
        return cls(mode, calibrator, target=scheme.target, reduce_range=int8 and scheme.reduce_range,
                   unsigned_weights=int8 and scheme.unsigned_weights,
                   full_range_depthwise=int8 and scheme.reduce_range and scheme.full_range_depthwise,
                   symmetric_activations=mode is QuantMode.INT8_STATIC and scheme.symmetric_activations, **options)

    @property
    def precision(self) -> str:
        return "fp16" if self.mode is QuantMode.FP16 else "int8"

    @property
    def variant(self) -> str:
        """The variant name in the bundle: int8, int8-dynamic or fp16; TensorRT's INT8 (s8s8 QDQ) is
        int8-tensorrt, so it sits beside the CPU's int8."""
        if self.mode is QuantMode.INT8_STATIC and self.target == TENSORRT:
            return "int8-tensorrt"
        return {QuantMode.INT8_STATIC: "int8", QuantMode.INT8_DYNAMIC: "int8-dynamic", QuantMode.FP16: "fp16"}[self.mode]

    @property
    def depthwise_8bit(self) -> bool:
        """7-bit weights but for depthwise convolutions, which keep 8 bits."""
        return self.reduce_range and self.full_range_depthwise

    @property
    def scheme(self) -> str:
        """How the variant computes, as the manifest's `Variant.scheme` records it."""
        if self.mode is QuantMode.FP16:
            return "fp16"
        types = "s8s8-symmetric" if self.symmetric_activations else "u8u8" if self.unsigned_weights else "u8s8"
        mode = "qdq-static" if self.mode is QuantMode.INT8_STATIC else "dynamic"
        static = self.mode is QuantMode.INT8_STATIC
        depthwise = "-dw8" if self.depthwise_8bit and static else ""
        return f"{mode}:{types}{'-reduce-range' if self.reduce_range else ''}{depthwise}"

    def excluding(self, nodes: Sequence[str]) -> QuantConfig:
        return replace(self, exclude_nodes=tuple(dict.fromkeys((*self.exclude_nodes, *nodes))))


@dataclass(frozen=True)
class Prepared:
    """A pre-processed float graph, ready to quantize; `notes` say why a fallback ran."""

    path: Path
    method: Preprocess
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class QuantResult:
    path: Path
    config: QuantConfig
    preprocess: Preprocess
    preprocess_notes: tuple[str, ...] = ()
    excluded_nodes: tuple[str, ...] = field(default=())  # all nodes kept float, for every reason
    wide_ranges: tuple[tuple[str, float, float], ...] = ()  # (tensor, min, max) kept float: no 8-bit grid fits
    bias_corrected: tuple[str, ...] = ()  # nodes whose bias absorbed their weights' rounding shift

    def info(self) -> dict:
        """What the bundle manifest records about this variant."""
        info = {
            "mode": self.config.mode.value,
            "per_channel": self.config.per_channel,
            "excluded_nodes": list(self.config.exclude_nodes),
            "excluded_op_types": list(self.config.exclude_op_types),
            "op_types": list(self.config.op_types) or "all",
            "kept_float": list(self.excluded_nodes),
            "preprocess": self.preprocess.value,
        }
        if self.config.mode is not QuantMode.FP16:
            info["reduce_range"] = self.config.reduce_range
            info["weights"] = "uint8" if self.config.unsigned_weights else "int8"
        if self.wide_ranges:
            info["float_for_range"] = [
                {"tensor": t, "min": _json_float(lo), "max": _json_float(hi)} for t, lo, hi in self.wide_ranges
            ]
        if self.config.mode is QuantMode.INT8_STATIC:
            info["calibrator"] = self.config.calibrator.value
            info["bias_correction"] = len(self.bias_corrected)
            info["float_input_layers"] = self.config.float_input_layers
            info["float_output_layers"] = self.config.float_output_layers
            if self.config.depthwise_8bit:
                info["depthwise_weights"] = "8-bit"
            info["format"] = "qdq"
            info["activations"] = "int8" if self.config.symmetric_activations else "uint8"
        return info


def _json_float(value: float) -> float | str:
    """JSON has no infinities: write them as "-inf"/"inf"."""
    return value if np.isfinite(value) else str(value)



def _loads_in_ort(path: Path) -> str | None:
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT has no common exception base
        return str(e).splitlines()[0]
    return None


def prepare_for_quantization(onnx_in, onnx_out) -> Prepared:
    """Pre-process a float graph for quantization, falling back when a step fails."""
    import logging

    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    notes: list[str] = []
    quiet = logging.getLogger("onnxruntime.quantization")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)
    try:
        for method in (Preprocess.FULL, Preprocess.NO_SYMBOLIC):
            try:
                if method is Preprocess.FULL:
                    # quant_pre_process's own symbolic step litters the current directory on failure
                    # (see _symbolic_shapes): run it here, then let ORT do the rest.
                    with tempfile.TemporaryDirectory(prefix="fusionrt-shapes-") as tmp:
                        symbolic = Path(tmp) / "symbolic.onnx"
                        _symbolic_shapes(onnx_in, symbolic)
                        quant_pre_process(str(symbolic), str(onnx_out), skip_symbolic_shape=True)
                else:
                    quant_pre_process(str(onnx_in), str(onnx_out), skip_symbolic_shape=True)
            except Exception as e:  # symbolic shape inference raises anything from AssertionError to sympy errors
                notes.append(f"{method.name.lower()} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
                continue
            problem = _loads_in_ort(onnx_out)
            if problem is None:
                break
            notes.append(f"{method.name.lower()} produced a graph ONNX Runtime rejects: {problem}")
        else:
            method = Preprocess.NONE
            shutil.copyfile(onnx_in, onnx_out)
    finally:
        quiet.setLevel(level)
    model = onnx.load(str(onnx_out))
    name_nodes(model)
    onnx.save(model, str(onnx_out))
    return Prepared(onnx_out, method, tuple(notes))


def _symbolic_shapes(onnx_in: Path, onnx_out: Path) -> None:
    """ORT's symbolic shape inference of `onnx_in`, saved at `onnx_out`; raises when it is incomplete.

    This is the first step of quant_pre_process, without a side effect: when inference is
    incomplete, SymbolicShapeInference.infer_shapes saves the partial graph as the relative path
    "sym_shape_infer_temp.onnx", i.e. in the current directory, with save_as_external_data=True, so
    its weights land beside it in a uuid-named ".data" file, before it raises. The loop below is
    infer_shapes' body (same defaults as quant_pre_process) without that save.
    """
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference, get_opset

    model = load_onnx(onnx_in)
    opset = get_opset(model)
    if not opset or opset < 7:
        raise ValueError(f"symbolic shape inference needs ONNX opset 7 or later, the graph has {opset}")
    inference = SymbolicShapeInference(2**31 - 1, False, False, 0)
    complete = False
    inference._preprocess(model)
    while inference.run_:
        complete = inference._infer_impl()
    inference._update_output_from_vi()
    if not complete:
        raise RuntimeError("Incomplete symbolic shape inference")  # infer_shapes' message
    onnx.save(inference.out_mp_, str(onnx_out))


def _nodes_to_exclude(path: Path, config: QuantConfig) -> list[str]:
    model = load_onnx(path)
    names = {n.name for n in model.graph.node}
    unknown = [n for n in config.exclude_nodes if n not in names]
    if unknown:
        raise CalibrationError(
            f"exclude_nodes {unknown} are not nodes of {path.name}; node names refer to the pre-processed graph "
            f"(e.g. {sorted(names)[:5]})"
        )
    by_type = [n.name for n in model.graph.node if n.op_type in config.exclude_op_types]
    static = config.mode is QuantMode.INT8_STATIC
    inputs = input_layers(model) if config.float_input_layers and static else []
    outputs = output_layers(model) if config.float_output_layers and static else []
    return list(dict.fromkeys((*config.exclude_nodes, *by_type, *inputs, *outputs)))


# ------------------------------------------------------------------------------------------ quantizers
def quantize_onnx(onnx_in, onnx_out, config: QuantConfig, reader=None, *, prepared: Prepared | None = None,
                  calibration_cache=None) -> QuantResult:
    """Make one variant of `onnx_in` at `onnx_out` as `config` says.

    `prepared`: an already pre-processed graph of `onnx_in` (repair loops reuse it so node names stay
    the same); `calibration_cache`: a JSON file of tensor ranges ORT reuses instead of calibrating again.
    """
    onnx_out = Path(onnx_out)
    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    if config.mode is QuantMode.FP16:
        return _convert_fp16(Path(onnx_in), onnx_out, config)
    if config.mode is QuantMode.INT8_STATIC and reader is None and calibration_cache is None:
        raise CalibrationError("int8-static needs calibration data (a reader or a calibration cache); none was given")
    wide: dict[str, tuple[float, float]] = {}
    corrected: list[str] = []
    feeds = read_batches(reader) if reader is not None and config.mode is QuantMode.INT8_STATIC else []
    with tempfile.TemporaryDirectory(prefix="fusionrt-quant-") as tmp:
        if prepared is None:
            prepared = prepare_for_quantization(onnx_in, Path(tmp) / "prepared.onnx")
        exclude = _nodes_to_exclude(prepared.path, config)
        try:
            if config.mode is QuantMode.INT8_STATIC:
                cache = Path(calibration_cache) if calibration_cache is not None else Path(tmp) / "ranges.json"
                if not cache.is_file():
                    calibrate_ranges(prepared.path, FeedsReader(feeds), config.calibrator, cache)
                wide = wide_range_tensors(cache)
                exclude += [n for n in nodes_touching(prepared.path, wide) if n not in exclude]
                _static(prepared.path, onnx_out, config, exclude, cache)
                if config.bias_correction and feeds:
                    unbiased = Path(tmp) / "bias-corrected.onnx"
                    corrected = correct_biases(prepared.path, onnx_out, feeds, unbiased)
                    _static(unbiased, onnx_out, config, exclude, cache)
            else:
                _dynamic(prepared.path, onnx_out, config, exclude)
        except CalibrationError:
            raise
        except Exception as e:  # ORT's quantizer raises ValueError, RuntimeError, KeyError...
            raise CalibrationError(
                f"onnxruntime could not quantize {Path(onnx_in).name} ({config.variant}): {type(e).__name__}: {e}"
            ) from e
    ranges = tuple((t, lo, hi) for t, (lo, hi) in sorted(wide.items()))
    return QuantResult(onnx_out, config, prepared.method, prepared.notes, tuple(exclude), ranges, tuple(corrected))


def _static(path: Path, out: Path, config: QuantConfig, exclude: list[str], cache: Path) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    with np.errstate(divide="ignore", invalid="ignore"):  # ORT derives scales for the infinite ranges too
        quantize_static(
            str(path),
            str(out),
            None,  # the ranges come from the cache calibrate_ranges wrote
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(config.op_types) or None,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            activation_type=QuantType.QInt8 if config.symmetric_activations else QuantType.QUInt8,
            weight_type=weight_type(config.unsigned_weights),
            nodes_to_exclude=exclude,
            calibrate_method=ort_method(config.calibrator),
            extra_options={"ActivationSymmetric": config.symmetric_activations, "WeightSymmetric": True,
                           **(depthwise_overrides(path, config.per_channel) if config.depthwise_8bit else {})},
            calibration_cache_path=str(cache),
        )
    if config.unsigned_weights:
        center_uint8_zero_points(out)


def _dynamic(path: Path, out: Path, config: QuantConfig, exclude: list[str]) -> None:
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(
        str(path),
        str(out),
        op_types_to_quantize=list(config.op_types or DYNAMIC_OP_TYPES),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=weight_type(config.unsigned_weights),
        nodes_to_exclude=exclude,
        extra_options={"WeightSymmetric": True},
    )


def _convert_fp16(onnx_in: Path, onnx_out: Path, config: QuantConfig) -> QuantResult:
    import onnx

    model = load_onnx(onnx_in)
    name_nodes(model)
    try:
        half = fp16_from_onnx(model, op_block_list=config.exclude_op_types, node_block_list=config.exclude_nodes)
    except FusionRTError as e:
        raise CalibrationError(f"{onnx_in.name}: {e}") from e
    onnx.save(half, str(onnx_out))
    return QuantResult(onnx_out, config, Preprocess.NOT_NEEDED, (), tuple(config.exclude_nodes))


def quantize_int8_static(onnx_in, onnx_out, reader, *, calibrator: Calibrator = Calibrator.MINMAX,
                         per_channel: bool = True, exclude_nodes: Sequence[str] = (),
                         exclude_op_types: Sequence[str] = (), target: str = "auto") -> QuantResult:
    """Float ONNX -> QDQ INT8 ONNX, with activation ranges calibrated on `reader`'s batches, in the
    scheme `target` needs ("auto": this CPU; see fusionrt.calibration.target)."""
    config = QuantConfig.for_target(QuantMode.INT8_STATIC, target, calibrator, per_channel=per_channel,
                                    exclude_nodes=tuple(exclude_nodes), exclude_op_types=tuple(exclude_op_types))
    return quantize_onnx(onnx_in, onnx_out, config, reader)


def quantize_int8_dynamic(onnx_in, onnx_out, *, per_channel: bool = True, exclude_nodes: Sequence[str] = (),
                          exclude_op_types: Sequence[str] = (), target: str = "auto") -> QuantResult:
    """Float ONNX -> INT8 weights with activations quantized at run time (MatMul/attention/RNN), in
    the scheme `target` needs."""
    config = QuantConfig.for_target(QuantMode.INT8_DYNAMIC, target, per_channel=per_channel,
                                    exclude_nodes=tuple(exclude_nodes), exclude_op_types=tuple(exclude_op_types))
    return quantize_onnx(onnx_in, onnx_out, config)


def convert_fp16(onnx_in, onnx_out, *, exclude_nodes: Sequence[str] = (),
                 exclude_op_types: Sequence[str] = ()) -> QuantResult:
    """Float32 ONNX -> float16 weights and compute, float32 inputs and outputs kept."""
    config = QuantConfig(QuantMode.FP16, exclude_nodes=tuple(exclude_nodes), exclude_op_types=tuple(exclude_op_types))
    return quantize_onnx(onnx_in, onnx_out, config)
