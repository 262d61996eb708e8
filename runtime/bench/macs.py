"""Multiply-accumulates of an ONNX graph at concrete input shapes.

Counted: Conv, ConvTranspose, MatMul, Gemm and their quantized forms (QLinearConv, ConvInteger,
QLinearMatMul, MatMulInteger), so FP32, FP16 (same ops behind Casts) and INT8 (QDQ around the same
ops, or the QLinear/Integer ops) variants of a component count alike. Shapes come from ONNX shape
inference after the graph inputs are pinned to the shapes of the feeds; where it leaves a counted
node's shapes unknown (shape arithmetic it cannot follow, e.g. in exported transformers), one ONNX
Runtime run on the feeds with those tensors as extra outputs tells them. A node still unknown is
listed as unresolved rather than guessed. onnx is imported lazily (an extra).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

# op type -> index of its weight input (the data input is input 0 for all of them)
CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3, "ConvTranspose": 1}
MATMUL_B = {"MatMul": 1, "MatMulInteger": 1, "QLinearMatMul": 3}
COUNTED = {*CONV_WEIGHT, *MATMUL_B, "Gemm"}


@dataclass(frozen=True)
class MacCount:
    total: int
    by_op: dict[str, int]
    unresolved: tuple[str, ...]  # counted nodes whose shapes neither shape inference nor a run could tell

    def as_dict(self) -> dict:
        return {"total": self.total, "by_op": dict(self.by_op), "unresolved": list(self.unresolved)}


def count_macs(model, feeds: Mapping[str, np.ndarray]) -> MacCount:
    """MACs of `model` (an ONNX file path or ModelProto) run on `feeds`."""
    import onnx

    if isinstance(model, (str, Path)):
        proto = onnx.load(str(model))
    else:  # a copy: the inputs are pinned below
        proto = onnx.ModelProto.FromString(model.SerializeToString())
    for graph_input in proto.graph.input:
        if graph_input.name in feeds:
            dims = graph_input.type.tensor_type.shape.dim
            for dim, value in zip(dims, feeds[graph_input.name].shape):
                dim.Clear()
                dim.dim_value = int(value)
    inferred = onnx.shape_inference.infer_shapes(proto, data_prop=True).graph
    shapes = {init.name: tuple(init.dims) for init in inferred.initializer}
    for info in [*inferred.input, *inferred.value_info, *inferred.output]:
        dims = info.type.tensor_type.shape.dim
        if info.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[info.name] = tuple(d.dim_value for d in dims)
    counted = [n for n in inferred.node if n.op_type in COUNTED]
    unknown = sorted({t for n in counted for t in _shape_inputs(n) if t not in shapes})
    if unknown:
        shapes.update(_run_shapes(proto, feeds, unknown))
    by_op: dict[str, int] = {}
    unresolved = []
    for node in counted:
        macs = _node_macs(node, shapes)
        if macs is None:
            unresolved.append(node.name or f"{node.op_type}->{node.output[0]}")
        else:
            by_op[node.op_type] = by_op.get(node.op_type, 0) + macs
    return MacCount(sum(by_op.values()), by_op, tuple(unresolved))


def _run_shapes(proto, feeds: Mapping[str, np.ndarray], names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Shapes of intermediate tensors `names`, from one unoptimized ONNX Runtime run on `feeds`
    (none when the model does not run on them: its nodes are then reported unresolved)."""
    import onnx
    import onnxruntime as ort

    exposed = onnx.ModelProto.FromString(proto.SerializeToString())
    known = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in known)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(exposed.SerializeToString(), options, providers=["CPUExecutionProvider"])
        wanted = {i.name for i in session.get_inputs()}
        values = session.run(list(names), {k: v for k, v in feeds.items() if k in wanted})
    except Exception:  # ORT raises its own exception types without a common base
        return {}
    return {name: tuple(value.shape) for name, value in zip(names, values)}


def _shape_inputs(node) -> tuple[str, ...]:
    """The tensors whose shapes a node's MAC count needs: data input, output, and a Conv's weight."""
    weight = (node.input[CONV_WEIGHT[node.op_type]],) if node.op_type in CONV_WEIGHT else ()
    return (node.input[0], node.output[0], *weight)


def _node_macs(node, shapes: dict[str, tuple[int, ...]]) -> int | None:
    data, out = shapes.get(node.input[0]), shapes.get(node.output[0])
    if node.op_type == "ConvTranspose":  # every input element meets C_out/group x kernel weights
        weight = shapes.get(node.input[1])
        return None if data is None or weight is None else math.prod(data) * math.prod(weight[1:])
    if out is None:
        return None
    if node.op_type in CONV_WEIGHT:  # every output element sums C_in/group x kernel products
        weight = shapes.get(node.input[CONV_WEIGHT[node.op_type]])
        return None if weight is None else math.prod(out) * math.prod(weight[1:])
    if data is None or not data:
        return None
    if node.op_type == "Gemm":
        trans_a = next((a.i for a in node.attribute if a.name == "transA"), 0)
        inner = data[0] if trans_a else data[-1]
    else:  # MatMul family, numpy semantics: the inner dimension is A's last
        inner = data[-1]
    return math.prod(out) * inner
