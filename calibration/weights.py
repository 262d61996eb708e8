"""How an INT8 scheme stores its weights: ORT's weight type, 8-bit depthwise overrides under 7-bit
weights, and one zero point per uint8 weight (see fusionrt.calibration.target for why each scheme
wants these)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fusionrt.calibration.graphs import depthwise_weights, load_onnx

UINT8_ZERO_POINT = 128  # symmetric uint8 weights


def weight_type(unsigned: bool):
    """int8 weights, or for U8U8 uint8 ones; both symmetric (ORT's WeightSymmetric), so a uint8
    weight's zero point is 128 on every channel, which ONNX Runtime's QLinearConv requires of
    per-channel uint8 weights."""
    from onnxruntime.quantization import QuantType

    return QuantType.QUInt8 if unsigned else QuantType.QInt8


def depthwise_overrides(path: Path, per_channel: bool) -> dict:
    """ORT's TensorQuantOverrides that give the depthwise Conv weights of `path` 8 bits while the rest
    are 7-bit (reduce_range); empty when the graph has none."""
    override = {"axis": 0, "reduce_range": False} if per_channel else {"reduce_range": False}
    weights = depthwise_weights(load_onnx(path))
    return {"TensorQuantOverrides": {w: [dict(override)] for w in weights.values()}} if weights else {}


def center_uint8_zero_points(path: Path) -> None:
    """Give every channel of each per-channel uint8 weight the zero point 128.

    ORT's symmetric uint8 weights have zero point 128, except a channel whose weights are all zero
    (its range is empty: zero point 0). ONNX Runtime's fast QLinearConv wants one zero point for all
    channels; with mixed ones it ran EfficientNet-Lite0's depthwise layers up to 50x slower. An all-zero
    channel is 0 at either zero point, so it becomes 128 with zero point 128."""
    import onnx
    from onnx import numpy_helper

    model = load_onnx(path)
    inits = {i.name: i for i in model.graph.initializer}
    changed = False
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or len(node.input) < 3 or not {*node.input} <= {*inits, ""}:
            continue
        zero = numpy_helper.to_array(inits[node.input[2]])
        if zero.dtype != np.uint8 or zero.ndim != 1 or not (zero != UINT8_ZERO_POINT).any():
            continue
        weight = numpy_helper.to_array(inits[node.input[0]]).copy()
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % weight.ndim
        off = np.flatnonzero(zero != UINT8_ZERO_POINT)
        moved = np.moveaxis(weight, axis, 0)
        if (moved[off] != zero[off].reshape((-1,) + (1,) * (moved.ndim - 1))).any():
            continue  # a channel with real weights off 128: leave it to ORT's general path
        moved[off] = UINT8_ZERO_POINT
        zero = zero.copy()
        zero[off] = UINT8_ZERO_POINT
        inits[node.input[0]].CopyFrom(numpy_helper.from_array(weight, node.input[0]))
        inits[node.input[2]].CopyFrom(numpy_helper.from_array(zero, node.input[2]))
        changed = True
    if changed:
        onnx.save(model, str(path))
