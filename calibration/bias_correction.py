"""Bias correction: give back to each INT8 Conv/Gemm the mean shift that rounding its weights adds.

Rounding weights to 8 bits moves each output channel's expected value by the rounding error of its
weights times the expected input: shift[c] = sum over inputs i and kernel taps k of
(Wq - W)[c, i, k] * E[x_i]. A depthwise layer has only 9 or 25 weights per channel, so its
rounding errors do not average out, and networks built from them (MobileNet, EfficientNet-Lite)
drift layer after layer (EfficientNet-Lite0 with only its weights rounded to 8 bits: output cosine
0.994, FP32's top-1 kept on 87.5 % of 128 held-out photos; with the correction, INT8 as a whole
does better: benchmarks/real_cnn_int8.md). Subtracting the shift from the float bias before the bias
is quantized removes that drift (the empirical bias correction of Nagel et al., "Data-Free
Quantization", 2019, with E[x] measured through the FP32 graph on the calibration batches; border
taps that read padding are counted at the input's mean).

`Wq` is read from the QDQ graph ONNX Runtime wrote (its weight DequantizeLinear initializers), so
the correction matches the rounding exactly; weights round the same way whatever the bias, so
quantizing the corrected float graph again keeps those weights and only the biases change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from fusionrt.calibration.graphs import instrumented_session, load_onnx

CORRECTED_OPS = ("Conv", "Gemm")


def dequantized_weights(quant_model) -> dict[str, np.ndarray]:
    """Node name -> its dequantized weight, for each Conv/Gemm of a QDQ graph whose weight comes
    out of a DequantizeLinear over initializers."""
    from onnx import numpy_helper

    inits = {i.name: i for i in quant_model.graph.initializer}
    dq_by_output = {n.output[0]: n for n in quant_model.graph.node if n.op_type == "DequantizeLinear"}
    weights = {}
    for node in quant_model.graph.node:
        dq = dq_by_output.get(node.input[1]) if node.op_type in CORRECTED_OPS and len(node.input) > 1 else None
        if dq is None or not all(i in inits for i in dq.input if i):
            continue
        q = numpy_helper.to_array(inits[dq.input[0]]).astype(np.float64)
        scale = numpy_helper.to_array(inits[dq.input[1]]).astype(np.float64)
        zero = numpy_helper.to_array(inits[dq.input[2]]).astype(np.float64) if len(dq.input) > 2 and dq.input[2] else 0.0
        if scale.ndim == 1 and scale.size > 1:  # per channel, along `axis` (ONNX default 1)
            axis = next((a.i for a in dq.attribute if a.name == "axis"), 1) % q.ndim
            shape = [1] * q.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zero = np.reshape(zero, shape) if np.ndim(zero) else zero
        weights[node.name] = (q - zero) * scale
    return weights


def input_means(path: Path, feeds: Sequence[dict[str, np.ndarray]], tensors: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-channel mean of each tensor (axis 1 of NCHW, the last axis of a 2-D matrix) over `feeds`."""
    from onnx import TensorProto

    model = load_onnx(path)
    session = instrumented_session(model, dict.fromkeys(tensors, TensorProto.FLOAT))
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(tensors, 0)
    names = [i.name for i in session.get_inputs()]
    for feed in feeds:
        values = session.run(list(tensors), {n: feed[n] for n in names})
        for name, value in zip(tensors, values):
            value = value.astype(np.float64)
            moved = np.moveaxis(value, 1, -1) if value.ndim > 2 else value
            flat = moved.reshape(-1, moved.shape[-1])
            sums[name] = sums.get(name, 0.0) + flat.sum(0)
            counts[name] += len(flat)
    return {name: sums[name] / max(counts[name], 1) for name in tensors}


def _shift(node, delta: np.ndarray, mean_x: np.ndarray) -> np.ndarray | None:
    """E[output change] per output channel of `node` from a weight change `delta`, or None when the
    node is not a form this handles (Gemm with transA, alpha or beta other than 1)."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Conv":
        groups = attrs["group"].i if "group" in attrs else 1
        out_channels, per_group = delta.shape[0], delta.shape[1]
        taps = delta.reshape(out_channels, per_group, -1).sum(axis=2)
        means = mean_x.reshape(groups, per_group)[np.arange(out_channels) // (out_channels // groups)]
        return (taps * means).sum(axis=1)
    if any(attrs[k].f != 1.0 for k in ("alpha", "beta") if k in attrs) or ("transA" in attrs and attrs["transA"].i):
        return None
    matrix = delta.T if "transB" in attrs and attrs["transB"].i else delta  # [K, N]
    return mean_x @ matrix


def correct_biases(prepared: Path, quantized: Path, feeds: Sequence[dict[str, np.ndarray]], out: Path) -> list[str]:
    """Write `prepared` with each quantized Conv/Gemm bias corrected for the weight rounding that
    `quantized` (a QDQ graph of `prepared`) applied; returns the names of the corrected nodes."""
    import onnx
    from onnx import numpy_helper

    model = load_onnx(prepared)
    rounded = dequantized_weights(load_onnx(quantized))
    inits = {i.name: i for i in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.name in rounded and n.input[1] in inits]
    means = input_means(prepared, feeds, list(dict.fromkeys(n.input[0] for n in nodes)))
    names = []
    for node in nodes:
        weight = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        shift = _shift(node, rounded[node.name] - weight, means[node.input[0]])
        if shift is None:
            continue
        if len(node.input) > 2 and node.input[2]:
            bias_name = node.input[2]
            bias = numpy_helper.to_array(inits[bias_name]).astype(np.float64)
        else:
            bias_name, bias = f"{node.name}_corrected_bias", np.zeros(len(shift))
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = bias_name
        corrected = numpy_helper.from_array((bias - shift).astype(np.float32), bias_name)
        if bias_name in inits:
            inits[bias_name].CopyFrom(corrected)
        else:
            model.graph.initializer.append(corrected)
            inits[bias_name] = corrected
        names.append(node.name)
    onnx.save(model, str(out))
    return names
