"""Lower an opset-18 ONNX graph to opset 17 (TensorRT 8.5+ reads up to 17).

The torch.export-based exporter emits opset 18 at the lowest, and onnx's own version converter
has no 18 -> 17 adapter for Split or Pad and leaves an attribute opset 17 does not know on the
Reduce ops. The differences between the two opsets are few (onnx.defs lists them), so this module
rewrites exactly those and refuses, naming the node, what has no opset-17 form.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fusionrt.errors import ExportError

# The IR version onnx released together with opset 17 (onnx 1.12).
IR_VERSION_FOR_OPSET_17 = 8

_REDUCE_AXES_AS_INPUT_SINCE_18 = {
    "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax",
    "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSumSquare",
}  # fmt: skip
_UNCHANGED_UNLESS_NEW_FEATURE = {"Pad", "Resize", "ScatterElements", "ScatterND"}


def lower_18_to_17(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of `model` (default-domain opset 18) rewritten for opset 17, or raise ExportError."""
    version = _default_opset(model)
    if version != 18:
        raise ExportError(f"expected an opset-18 graph to lower to 17, found opset {version}")
    if model.functions:
        names = sorted({f.name for f in model.functions})
        raise ExportError(f"cannot lower a graph with local functions {names} to opset 17; inline them first")
    lowered = onnx.ModelProto()
    lowered.CopyFrom(model)
    shapes = _static_shapes(lowered)
    _lower_graph(lowered.graph, {i.name: i for i in lowered.graph.initializer}, shapes)
    _drop_unused_initializers(lowered.graph)
    for opset in lowered.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 17
    lowered.ir_version = IR_VERSION_FOR_OPSET_17
    return lowered


def _default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    shapes = {}
    for v in values:
        if v.type.HasField("tensor_type") and v.type.tensor_type.HasField("shape"):
            dims = v.type.tensor_type.shape.dim
            shapes[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shapes


def _lower_graph(graph: onnx.GraphProto, initializers: dict, shapes: dict) -> None:
    initializers = {**initializers, **{i.name: i for i in graph.initializer}}
    constants = {o: n for n in graph.node if n.op_type == "Constant" for o in n.output}
    for node in graph.node:
        del node.metadata_props[:]  # node metadata is an IR-10 field
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.type in (attr.GRAPH, attr.GRAPHS) else []:
                _lower_graph(sub, initializers, shapes)
        if node.domain not in ("", "ai.onnx"):
            continue
        since_18 = onnx.defs.get_schema(node.op_type, 18).since_version
        if since_18 < 18:
            continue
        if node.op_type in _REDUCE_AXES_AS_INPUT_SINCE_18:
            _reduce_axes_to_attribute(node, initializers, constants)
        elif node.op_type == "Split":
            _split_num_outputs_to_sizes(node, graph, shapes)
        elif node.op_type in _UNCHANGED_UNLESS_NEW_FEATURE:
            _refuse_opset_18_features(node)
        else:
            raise ExportError(f"node {node.name!r} ({node.op_type}) exists only from opset 18; no opset-17 form")


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {o.name for o in graph.output}
    pending = [graph]
    while pending:
        g = pending.pop()
        for node in g.node:
            used.update(node.input)
            pending.extend(a.g for a in node.attribute if a.type == a.GRAPH)
            pending.extend(sub for a in node.attribute if a.type == a.GRAPHS for sub in a.graphs)
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)


def _constant_ints(name: str, initializers: dict, constants: dict) -> list[int] | None:
    if name in initializers:
        return numpy_helper.to_array(initializers[name]).astype("int64").ravel().tolist()
    node = constants.get(name)
    if node is not None:
        value = next((a for a in node.attribute if a.name in ("value", "value_ints")), None)
        if value is not None and value.name == "value":
            return numpy_helper.to_array(value.t).astype("int64").ravel().tolist()
        if value is not None:
            return list(value.ints)
    return None


def _reduce_axes_to_attribute(node: onnx.NodeProto, initializers: dict, constants: dict) -> None:
    noop = next((a.i for a in node.attribute if a.name == "noop_with_empty_axes"), 0)
    has_axes = len(node.input) > 1 and node.input[1] != ""
    if noop and not has_axes:
        raise ExportError(f"node {node.name!r} ({node.op_type}) uses noop_with_empty_axes=1; no opset-17 form")
    _remove_attribute(node, "noop_with_empty_axes")
    if not has_axes:
        return
    axes = _constant_ints(node.input[1], initializers, constants)
    if axes is None:
        raise ExportError(
            f"node {node.name!r} ({node.op_type}) takes its axes from a computed tensor; opset 17 needs constant axes"
        )
    del node.input[1:]
    node.attribute.append(helper.make_attribute("axes", axes))


def _split_num_outputs_to_sizes(node: onnx.NodeProto, graph: onnx.GraphProto, shapes: dict) -> None:
    count = next((a.i for a in node.attribute if a.name == "num_outputs"), None)
    if count is None:
        return  # sizes already given as the second input, as in opset 13
    axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
    shape = shapes.get(node.input[0])
    length = shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None
    if length is None:
        raise ExportError(
            f"node {node.name!r} (Split) splits a dynamic axis into {count} parts; opset 17 needs static sizes"
        )
    chunk = -(-length // count)
    sizes = [chunk] * (count - 1) + [length - chunk * (count - 1)]
    sizes_name = f"{node.name or node.output[0]}_split_sizes"
    graph.initializer.append(numpy_helper.from_array(np.asarray(sizes, dtype=np.int64), sizes_name))
    _remove_attribute(node, "num_outputs")
    del node.input[1:]
    node.input.append(sizes_name)


def _refuse_opset_18_features(node: onnx.NodeProto) -> None:
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    problems = []
    if node.op_type == "Pad" and len(node.input) > 3 and node.input[3]:
        problems.append("an axes input")
    if node.op_type == "Resize":
        if attrs.get("antialias", 0):
            problems.append("antialias=1")
        if attrs.get("axes"):
            problems.append("axes")
        if attrs.get("keep_aspect_ratio_policy", b"stretch") != b"stretch":
            problems.append("keep_aspect_ratio_policy")
        for name in ("antialias", "axes", "keep_aspect_ratio_policy"):
            _remove_attribute(node, name)
    if node.op_type.startswith("Scatter") and attrs.get("reduction", b"none") in (b"max", b"min"):
        problems.append(f"reduction={attrs['reduction'].decode()}")
    if problems:
        raise ExportError(
            f"node {node.name!r} ({node.op_type}) uses {', '.join(problems)}, new in opset 18; no opset-17 form"
        )


def _remove_attribute(node: onnx.NodeProto, name: str) -> None:
    kept = [a for a in node.attribute if a.name != name]
    del node.attribute[:]
    node.attribute.extend(kept)

