"""The INT8 weight schemes per target, read from the files the quantizer writes.

Only the integers in the file are checked where they decide exactness (which bits the weights use,
their zero points); numbers that run through ORT's kernels are checked only for schemes that every
x86 kernel computes exactly (7-bit dense weights, 8-bit depthwise weights, U8U8), so the tests pass
the same on AVX2-only and VNNI machines.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from calibration_models import conv_net, depthwise_net, features
from onnx import numpy_helper

from fusionrt.calibration import FeedsReader, QuantConfig, QuantMode, compare_outputs, quantize_onnx, quantized_nodes
from fusionrt.calibration.graphs import depthwise_weights, output_layers
from fusionrt.errors import CalibrationError


@pytest.fixture
def depthwise_file(tmp_path):
    path = tmp_path / "dw.onnx"
    onnx.save(depthwise_net(np.random.default_rng(0)), path)
    return path


def _feeds(seed: int = 1, batches: int = 2) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"x": features(rng, 8)} for _ in range(batches)]


def _weights(path) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_the_graph_helpers_find_depthwise_and_output_layers(depthwise_file):
    model = onnx.shape_inference.infer_shapes(onnx.load(str(depthwise_file)))
    assert depthwise_weights(model) == {"depthwise": "w_dw"}
    assert output_layers(model) == []  # it writes the output, but does a third of the multiply-adds
    assert output_layers(model, max_share=0.5) == ["project"]
    classifier = conv_net(np.random.default_rng(0))
    assert depthwise_weights(classifier) == {}
    assert output_layers(onnx.shape_inference.infer_shapes(classifier)) == ["fc"]


def test_x86_avx2_keeps_depthwise_weights_8_bit_and_dense_ones_7_bit(depthwise_file, tmp_path):
    """Dense u8s8 kernels on AVX2 add two products in 16 bits: 7-bit weights (|q| <= 64) keep
    2 x 255 x 64 < 2**15. Depthwise kernels widen each product first, so they keep 8 bits."""
    config = QuantConfig.for_target(QuantMode.INT8_STATIC, "x86-avx2", float_output_layers=False)
    assert config.reduce_range and config.full_range_depthwise
    assert config.scheme == "qdq-static:u8s8-reduce-range-dw8"
    result = quantize_onnx(depthwise_file, tmp_path / "q.onnx", config, FeedsReader(_feeds()))
    weights = _weights(result.path)
    assert int(np.abs(weights["w_dw_quantized"]).max()) == 127
    assert max(int(np.abs(weights[f"w_{k}_quantized"]).max()) for k in ("expand", "project")) <= 64
    assert {"expand", "depthwise", "project"} <= set(quantized_nodes(onnx.load(str(result.path))))
    # every x86 kernel computes this scheme exactly: the same margin holds on AVX2 and VNNI machines
    assert compare_outputs(depthwise_file, result.path, _feeds(2)).cosine_mean > 0.99


def test_the_vnni_scheme_has_8_bit_weights_everywhere(depthwise_file, tmp_path):
    config = QuantConfig.for_target(QuantMode.INT8_STATIC, "x86-vnni", float_output_layers=False)
    assert not config.reduce_range and not config.full_range_depthwise and config.scheme == "qdq-static:u8s8"
    weights = _weights(quantize_onnx(depthwise_file, tmp_path / "q.onnx", config, FeedsReader(_feeds())).path)
    assert all(int(np.abs(weights[f"w_{k}_quantized"]).max()) == 127 for k in ("expand", "dw", "project"))


def test_u8u8_weights_are_uint8_with_zero_point_128_on_every_channel(tmp_path):
    """A channel whose weights are all zero gets zero point 0 from ORT; it is moved to 128 so that
    ORT's QLinearConv sees one zero point per weight (its fast path needs that)."""
    model = depthwise_net(np.random.default_rng(0))
    for init in model.graph.initializer:
        if init.name == "w_dw":
            w = numpy_helper.to_array(init).copy()
            w[3] = 0.0
            init.CopyFrom(numpy_helper.from_array(w, "w_dw"))
    path = tmp_path / "dw0.onnx"
    onnx.save(model, path)
    config = QuantConfig(QuantMode.INT8_STATIC, unsigned_weights=True, float_output_layers=False)
    assert config.scheme == "qdq-static:u8u8"
    result = quantize_onnx(path, tmp_path / "q.onnx", config, FeedsReader(_feeds()))
    assert result.info()["weights"] == "uint8"
    weights = _weights(result.path)
    for name in ("w_expand", "w_dw", "w_project"):
        assert weights[f"{name}_quantized"].dtype == np.uint8
        assert set(np.unique(weights[f"{name}_zero_point"])) == {128}
    assert (weights["w_dw_quantized"][3] == 128).all()
    assert {"expand", "depthwise", "project"} <= set(quantized_nodes(onnx.load(str(result.path))))
    # U8U8 accumulates in 32 bits on every x86 and ARM kernel
    assert compare_outputs(path, result.path, _feeds(2)).cosine_mean > 0.99


def test_uint8_weights_need_uint8_activations():
    with pytest.raises(CalibrationError, match="uint8 weights"):
        QuantConfig(QuantMode.INT8_STATIC, unsigned_weights=True, symmetric_activations=True)


def test_a_small_classifier_layer_stays_float_by_default(tmp_path):
    """conv_net's Gemm writes the logits and does under 5 % of the multiply-adds: float by default."""
    path = tmp_path / "conv.onnx"
    onnx.save(conv_net(np.random.default_rng(0)), path)
    feeds = [{"x": np.random.default_rng(1).random((8, 3, 32, 32), dtype=np.float32)}]
    config = QuantConfig.for_target(QuantMode.INT8_STATIC, "x86-avx2")
    result = quantize_onnx(path, tmp_path / "q.onnx", config, FeedsReader(feeds))
    assert "fc" in result.excluded_nodes and "fc" not in quantized_nodes(onnx.load(str(result.path)))
    assert result.info()["float_output_layers"] is True
    every = quantize_onnx(path, tmp_path / "every.onnx", QuantConfig.for_target(QuantMode.INT8_STATIC, "x86-avx2",
                                                                                float_output_layers=False),
                          FeedsReader(feeds))
    assert "fc" in quantized_nodes(onnx.load(str(every.path)))
