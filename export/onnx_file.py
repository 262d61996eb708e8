"""Checks on an ONNX file, its IO specs, and ONNX Runtime's offline (portable) graph optimization."""

from __future__ import annotations

from pathlib import Path

import onnx

from fusionrt.bundle import TensorSpec
from fusionrt.errors import ExportError

# ONNX Runtime's docs: only the basic level (constant folding, redundant-node removal, fusions of
# standard ops) is hardware-independent; extended/all write com.microsoft or layout-specific ops.
OFFLINE_OPTIMIZATION = "basic"


def check_model(model: onnx.ModelProto, what: str) -> None:
    """onnx.checker with full_check, which includes strict, type-checking shape inference."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises ValidationError, InferenceError or plain RuntimeError
        raise ExportError(f"{what}: onnx.checker rejects the graph: {_first_line(e)}") from e


def io_specs(model: onnx.ModelProto) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """The graph's inputs (initializers excluded) and outputs, with symbolic dims as strings."""
    weights = {i.name for i in model.graph.initializer}
    inputs = tuple(_spec(v) for v in model.graph.input if v.name not in weights)
    return inputs, tuple(_spec(v) for v in model.graph.output)


def _spec(value: onnx.ValueInfoProto) -> TensorSpec:
    tensor = value.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
    shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim)
    return TensorSpec(value.name, dtype, shape)


def optimize_offline(source: Path, target: Path) -> None:
    """Save `source` as optimized by ONNX Runtime at the basic level, keeping only the opsets it uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(target)
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT's exceptions have no common base
        raise ExportError(f"onnxruntime could not load {source.name} to optimize it: {_first_line(e)}") from e
    original = {o.domain or "ai.onnx" for o in onnx.load(source, load_external_data=False).opset_import}
    model = onnx.load(target)
    used = _domains(model.graph)
    foreign = used - original
    if foreign:
        raise ExportError(
            f"{target.name}: onnxruntime's basic optimization introduced ops of domains {sorted(foreign)}; "
            f"the file would not be portable"
        )
    kept = [o for o in model.opset_import if (o.domain or "ai.onnx") in used | {"ai.onnx"}]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    onnx.save(model, target)


def _domains(graph: onnx.GraphProto) -> set[str]:
    found = set()
    for node in graph.node:
        found.add(node.domain or "ai.onnx")
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == attr.GRAPH else list(attr.graphs):
                found |= _domains(sub)
    return found


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
