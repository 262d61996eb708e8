"""FP32 ONNX -> FP16 ONNX with FP32 inputs and outputs: the one converter export and calibration share.

ONNX Runtime's converter appends its input Casts after the nodes that read them and can leave
value_info typed fp16 for an initializer it kept in fp32; both are repaired here, so the result
passes the onnx checker. Imports onnx and onnxruntime only (no torch).
"""

from __future__ import annotations

from typing import Sequence

from fusionrt.errors import FusionRTError


def fp16_from_onnx(
    model,
    *,
    op_block_list: Sequence[str] | None = None,
    node_block_list: Sequence[str] | None = None,
):
    """A converted copy of `model` (an onnx.ModelProto); the listed op types and nodes stay FP32."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(op_block_list or ()))
    try:
        half = convert_float_to_float16(
            copy, keep_io_types=True, op_block_list=blocked, node_block_list=list(node_block_list or ()) or None
        )
    except Exception as e:  # the converter raises plain Exceptions from its shape inference
        raise FusionRTError(f"could not convert {model.graph.name or 'the graph'} to fp16: {type(e).__name__}: {e}") from e
    del half.graph.value_info[:]  # a cache of inferred types; onnx and ORT infer them again
    _sort_topologically(half.graph)
    return half


def _sort_topologically(graph) -> None:
    import onnx

    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    nodes = []
    for node in graph.node:
        clone = onnx.NodeProto()
        clone.CopyFrom(node)
        nodes.append(clone)
    pending, ordered = list(range(len(nodes))), []
    while pending:
        runnable = [k for k in pending if all(i in ready for i in nodes[k].input)]
        if not runnable:
            raise FusionRTError(f"the fp16 graph has a cycle or dangling inputs at {[nodes[k].name for k in pending][:3]}")
        for k in runnable:
            ordered.append(nodes[k])
            ready.update(nodes[k].output)
        done = set(runnable)
        pending = [k for k in pending if k not in done]
    del graph.node[:]
    graph.node.extend(ordered)
