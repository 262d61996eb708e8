"""Bias correction, float input layers and the calibration-size warning, on small real ONNX graphs.

Numbers that run through INT8 kernels are compared with margins that hold on every x86 kernel
(the variants use 7-bit weights, which no x86 kernel saturates); the correction's arithmetic is
checked in float, which does not depend on the CPU.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from calibration_models import _model, conv_net, depthwise_net, features
from fusionrt.calibration import CalibrationWarning, QuantConfig, QuantMode, quantize_onnx, quantized_nodes
from fusionrt.calibration.bias_correction import correct_biases, dequantized_weights
from fusionrt.calibration.graphs import input_layers
from fusionrt.calibration.measure import row_cosines
from fusionrt.calibration.ranges import MIN_ITEMS, Calibrator, check_item_count
from fusionrt.calibration.reader import FeedsReader
from fusionrt.runtime.engine import OrtEngine

SEVEN_BIT = dict(reduce_range=True)  # exact on every x86 INT8 kernel


@pytest.fixture
def depthwise_file(tmp_path):
    path = tmp_path / "dw.onnx"
    onnx.save(depthwise_net(np.random.default_rng(0)), path)
    return path


def test_corrected_biases_give_rounded_weights_the_fp32_output_mean(depthwise_file, tmp_path):
    """In float: rounded weights + corrected biases reproduce FP32's per-channel output mean of each
    1x1 layer on the calibration data (the depthwise layer up to its padded border)."""
    rng = np.random.default_rng(1)
    feeds = [{"x": features(rng, 8)} for _ in range(2)]
    config = QuantConfig(QuantMode.INT8_STATIC, bias_correction=False, **SEVEN_BIT)
    quant = quantize_onnx(depthwise_file, tmp_path / "q.onnx", config, FeedsReader(feeds)).path
    corrected = correct_biases(depthwise_file, quant, feeds, tmp_path / "corrected.onnx")
    assert set(corrected) == {"expand", "depthwise", "project"}

    weights = dequantized_weights(onnx.load(quant))
    x = np.concatenate([f["x"] for f in feeds])
    fp32 = OrtEngine(depthwise_file).run({"x": x})["y"].mean(axis=(0, 2, 3))
    means = {}
    for label, biases in (("corrected", tmp_path / "corrected.onnx"), ("plain", depthwise_file)):
        onnx.save(with_weights(onnx.load(biases), weights), tmp_path / f"{label}.onnx")  # the INT8 weights in float
        means[label] = OrtEngine(tmp_path / f"{label}.onnx").run({"x": x})["y"].mean(axis=(0, 2, 3))
    assert np.abs(means["corrected"] - fp32).max() < 0.2 * np.abs(means["plain"] - fp32).max()


def with_weights(model: onnx.ModelProto, weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.name in weights:
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(weights[node.name].astype(np.float32), node.input[1]))
    return model


def test_bias_correction_brings_int8_closer_to_fp32(depthwise_file, tmp_path):
    rng = np.random.default_rng(2)
    feeds = [{"x": features(rng, 8)} for _ in range(4)]
    held = features(rng, 32)
    fp32 = OrtEngine(depthwise_file).run({"x": held})["y"]
    errors = {}
    for corrected in (False, True):
        config = QuantConfig(QuantMode.INT8_STATIC, bias_correction=corrected, **SEVEN_BIT)
        result = quantize_onnx(depthwise_file, tmp_path / f"q{corrected}.onnx", config, FeedsReader(feeds))
        assert len(result.bias_corrected) == (3 if corrected else 0)
        assert result.info()["bias_correction"] == len(result.bias_corrected)
        out = OrtEngine(result.path).run({"x": held})["y"]
        errors[corrected] = float(np.abs((out - fp32).mean(axis=(0, 2, 3))).mean())
        assert row_cosines(fp32, out).mean() > 0.95
    assert errors[True] < 0.5 * errors[False], errors


def test_a_stem_reading_the_raw_image_stays_float_unless_asked(tmp_path):
    model = conv_net(np.random.default_rng(3))
    path = tmp_path / "conv.onnx"
    onnx.save(model, path)
    assert input_layers(model) == ["conv1"]  # 3 raw channels; conv2 reads conv1's 16
    feeds = [{"x": np.random.default_rng(4).normal(size=(8, 3, 32, 32)).astype(np.float32)}]
    default = quantize_onnx(path, tmp_path / "a.onnx", QuantConfig(QuantMode.INT8_STATIC, **SEVEN_BIT), FeedsReader(feeds))
    assert "conv1" in default.excluded_nodes and "conv1" not in quantized_nodes(onnx.load(default.path))
    assert {"conv2", "conv3"} <= set(quantized_nodes(onnx.load(default.path)))  # fc, the classifier: float too
    config = QuantConfig(QuantMode.INT8_STATIC, float_input_layers=False, **SEVEN_BIT)
    every = quantize_onnx(path, tmp_path / "b.onnx", config, FeedsReader(feeds))
    assert "conv1" in quantized_nodes(onnx.load(every.path))


def test_input_layers_follow_in_graph_normalisation_but_not_an_embedding_lookup():
    init = {"w": np.ones((4, 3, 3, 3), np.float32), "mean": np.full(1, 127.0, np.float32),
            "table": np.ones((10, 3), np.float32), "wm": np.ones((3, 3), np.float32)}
    nodes = [
        helper.make_node("Transpose", ["image"], ["t"], name="layout", perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["t"], ["f"], name="cast", to=TensorProto.FLOAT),
        helper.make_node("Sub", ["f", "mean"], ["s"], name="centre"),
        helper.make_node("Conv", ["s", "w"], ["y"], name="stem"),
        helper.make_node("Gather", ["table", "ids"], ["emb"], name="lookup"),
        helper.make_node("MatMul", ["emb", "wm"], ["z"], name="proj"),
    ]
    image = helper.make_tensor_value_info("image", TensorProto.UINT8, [1, 8, 8, 3])
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [1, 4])
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, None)]
    assert input_layers(_model(nodes, "g", [image, ids], outs, init, check=False)) == ["stem"]


@pytest.mark.parametrize("calibrator", list(Calibrator))
def test_too_few_calibration_items_warn_with_the_minimum_and_why(calibrator):
    minimum, why = MIN_ITEMS[calibrator]
    with pytest.warns(CalibrationWarning, match=f"1 calibration item.*{calibrator.value}.*at least {minimum}"):
        check_item_count(1, calibrator)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_item_count(minimum, calibrator)
    assert why


def test_quantizing_with_few_items_warns_but_still_makes_the_variant(depthwise_file, tmp_path):
    feeds = [{"x": features(np.random.default_rng(5), 3)}]
    with pytest.warns(CalibrationWarning, match="3 calibration item.*at least 16"):
        result = quantize_onnx(depthwise_file, tmp_path / "q.onnx", QuantConfig(QuantMode.INT8_STATIC), FeedsReader(feeds))
    assert quantized_nodes(onnx.load(result.path))
