from __future__ import annotations

import numpy as np
import onnx
import pytest
from calibration_models import conv_net, masked_softmax, mlp_with_sensitive_node, position_table, reshape_from_input
from onnx import TensorProto, numpy_helper

from fusionrt.calibration import (
    Calibrator,
    FeedsReader,
    Preprocess,
    QuantConfig,
    QuantMode,
    compare_outputs,
    convert_fp16,
    per_channel_scales,
    quantize_int8_dynamic,
    quantize_int8_static,
    quantized_nodes,
)
from fusionrt.errors import CalibrationError


@pytest.fixture(scope="module")
def conv_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("conv") / "conv.onnx"
    onnx.save(conv_net(np.random.default_rng(0)), str(path))
    return path


def _images(seed: int, n: int = 16, batch: int = 8) -> list[dict]:
    x = np.random.default_rng(seed).random((n, 3, 32, 32), dtype=np.float32)
    return [{"x": x[i : i + batch]} for i in range(0, n, batch)]


def _ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_static_int8_is_qdq_per_channel_and_close_to_fp32(conv_path, tmp_path):
    result = quantize_int8_static(conv_path, tmp_path / "conv.int8.onnx", FeedsReader(_images(0)))
    model = onnx.load(str(result.path))
    ops = _ops(result.path)
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 8
    assert result.preprocess is Preprocess.FULL
    scales = per_channel_scales(model)
    assert scales["w2_quantized"] == (32,) and scales["w3_quantized"] == (32,)
    weights = {i.name: i for i in model.graph.initializer}
    assert weights["w2_quantized"].data_type == TensorProto.INT8
    assert set(quantized_nodes(model)) >= {"conv2", "conv3"}
    assert "w1_quantized" not in scales and "conv1" in result.excluded_nodes  # the stem reads raw RGB: float
    assert "fc" in result.excluded_nodes and "fc" not in quantized_nodes(model)  # the classifier: float logits
    held_out = _images(seed=1)
    assert compare_outputs(conv_path, result.path, held_out).cosine_mean > 0.99
    assert result.info()["calibrator"] == "minmax" and result.info()["format"] == "qdq"


def _activation_scales(path) -> dict[str, float]:
    model = onnx.load(str(path))
    scalars = [i for i in model.graph.initializer if i.name.endswith("_scale") and not i.dims]
    return {i.name: float(numpy_helper.to_array(i)) for i in scalars}


@pytest.mark.parametrize("calibrator", [Calibrator.ENTROPY, Calibrator.PERCENTILE])
def test_histogram_calibrators_clip_ranges_that_minmax_keeps(conv_path, tmp_path, calibrator):
    minmax = quantize_int8_static(conv_path, tmp_path / "minmax.onnx", FeedsReader(_images(0)))
    result = quantize_int8_static(conv_path, tmp_path / "q.onnx", FeedsReader(_images(0)), calibrator=calibrator)
    assert result.config.calibrator is calibrator
    clipped, full = _activation_scales(result.path), _activation_scales(minmax.path)
    assert clipped.keys() == full.keys()
    assert all(clipped[k] <= full[k] * (1 + 1e-6) for k in full) and any(clipped[k] < 0.99 * full[k] for k in full)
    assert compare_outputs(conv_path, result.path, _images(seed=1)).cosine_mean > 0.98


def test_excluded_nodes_and_op_types_stay_float(conv_path, tmp_path):
    result = quantize_int8_static(
        conv_path, tmp_path / "q.onnx", FeedsReader(_images(0)), exclude_nodes=["conv2"], exclude_op_types=["Gemm"]
    )
    model = onnx.load(str(result.path))
    assert set(result.excluded_nodes) == {"conv1", "conv2", "fc"}  # conv1: the stem, float by default
    quantized = quantized_nodes(model)
    assert "conv2" not in quantized and "fc" not in quantized and "conv3" in quantized
    weights = {i.name: i for i in model.graph.initializer}
    assert weights["w2"].data_type == TensorProto.FLOAT and "w2_quantized" not in weights
    assert weights["wf"].data_type == TensorProto.FLOAT
    assert result.info()["excluded_nodes"] == ["conv2"] and result.info()["excluded_op_types"] == ["Gemm"]


def test_unknown_excluded_node_is_named(conv_path, tmp_path):
    with pytest.raises(CalibrationError, match="conv9"):
        quantize_int8_static(conv_path, tmp_path / "q.onnx", FeedsReader(_images(0)), exclude_nodes=["conv9"])


def test_dynamic_int8_quantizes_matmuls(tmp_path):
    path = tmp_path / "mlp.onnx"
    onnx.save(mlp_with_sensitive_node(np.random.default_rng(0)), str(path))
    result = quantize_int8_dynamic(path, tmp_path / "mlp.dyn.onnx", exclude_nodes=["mm_sensitive"])
    ops = _ops(result.path)
    assert ops.count("MatMul") == 1  # the excluded one
    assert ops.count("MatMulInteger") + ops.count("DynamicQuantizeMatMul") == 2
    x = np.random.default_rng(1).normal(size=(32, 32)).astype(np.float32)
    assert compare_outputs(path, result.path, [{"x": x}]).cosine_mean > 0.99


def test_fp16_keeps_float32_io(conv_path, tmp_path):
    result = convert_fp16(conv_path, tmp_path / "conv.fp16.onnx")
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "w1")).dtype == np.float16
    agreement = compare_outputs(conv_path, result.path, _images(seed=1))
    assert agreement.cosine_min > 0.9999 and agreement.max_abs_error < 1e-2


def test_preprocessing_falls_back_when_symbolic_shape_inference_fails(tmp_path):
    path = tmp_path / "reshape.onnx"
    onnx.save(reshape_from_input(np.random.default_rng(0)), str(path))
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.normal(size=(4, 16)).astype(np.float32), "shape": np.array([4, 4, 4], np.int64)} for _ in range(3)]
    result = quantize_int8_static(path, tmp_path / "reshape.int8.onnx", FeedsReader(feeds))
    assert result.preprocess is Preprocess.NO_SYMBOLIC
    assert "full failed" in result.preprocess_notes[0]
    assert "mm" in quantized_nodes(onnx.load(str(result.path)))
    assert compare_outputs(path, result.path, feeds).cosine_mean > 0.99


@pytest.mark.parametrize("mode", ["int8-static", "int8-dynamic"])
def test_quantizing_writes_nothing_in_the_current_directory(tmp_path, monkeypatch, mode):
    """ORT's symbolic shape inference, stopping incomplete on this graph, used to save its partial
    graph as ./sym_shape_infer_temp.onnx plus a uuid-named .data file of its weights."""
    from onnx.external_data_helper import uses_external_data

    models = tmp_path / "models"
    models.mkdir()
    path = models / "positions.onnx"
    onnx.save(position_table(np.random.default_rng(0)), str(path))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = models / f"positions.{mode}.onnx"
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.normal(size=(2, 12, 16)).astype(np.float32)} for _ in range(3)]
    # x86-avx2's 7-bit weights compute the same integers on every x86 kernel (and ARM's): the
    # cosine below holds on AVX2-only and VNNI machines alike (u8s8 with 8-bit weights saturated to
    # 0.95 on AVX2).
    if mode == "int8-static":
        result = quantize_int8_static(path, out, FeedsReader(feeds), target="x86-avx2")
    else:
        result = quantize_int8_dynamic(path, out, target="x86-avx2")
    assert result.config.reduce_range and result.info()["reduce_range"] is True
    assert result.preprocess is Preprocess.NO_SYMBOLIC
    assert "Incomplete symbolic shape inference" in result.preprocess_notes[0]
    assert sorted(p.name for p in cwd.iterdir()) == []
    assert sorted(p.name for p in models.iterdir()) == sorted([path.name, out.name])
    model = onnx.load(str(out), load_external_data=False)
    assert not any(uses_external_data(t) for t in model.graph.initializer)
    if mode == "int8-static":
        assert "mm" in quantized_nodes(model)
    else:
        assert "MatMulInteger" in _ops(out)
    assert compare_outputs(path, out, feeds).cosine_mean > 0.99


def test_config_names_the_variant():
    assert QuantConfig(QuantMode.INT8_STATIC).variant == "int8"
    assert QuantConfig(QuantMode.INT8_STATIC).scheme == "qdq-static:u8s8"
    assert QuantConfig.for_target(QuantMode.INT8_DYNAMIC, "x86-avx2").scheme == "dynamic:u8s8-reduce-range"
    assert QuantConfig.for_target(QuantMode.INT8_STATIC, "x86-avx2").scheme == "qdq-static:u8s8-reduce-range-dw8"
    assert QuantConfig.for_target(QuantMode.INT8_STATIC, "x86-vnni").scheme == "qdq-static:u8s8"
    assert QuantConfig.for_target(QuantMode.INT8_STATIC, "tensorrt").scheme == "qdq-static:s8s8-symmetric"
    assert QuantConfig.for_target(QuantMode.FP16, "x86-avx2").scheme == "fp16"
    with pytest.raises(CalibrationError, match="dynamic INT8 is a CPU-only choice"):
        QuantConfig.for_target(QuantMode.INT8_DYNAMIC, "tensorrt")
    assert QuantConfig(QuantMode.INT8_DYNAMIC).variant == "int8-dynamic"
    assert QuantConfig(QuantMode.FP16).precision == "fp16"
    assert QuantConfig(QuantMode.INT8_STATIC).excluding(["a", "b"]).excluding(["a"]).exclude_nodes == ("a", "b")
    with pytest.raises(CalibrationError, match="AUTO"):
        QuantConfig(QuantMode.AUTO)
    with pytest.raises(CalibrationError, match="calibration data"):
        from fusionrt.calibration import quantize_onnx

        quantize_onnx("unused.onnx", "out.onnx", QuantConfig(QuantMode.INT8_STATIC))


@pytest.mark.parametrize("calibrator", [Calibrator.MINMAX, Calibrator.PERCENTILE])
def test_tensors_with_an_infinite_range_stay_float(tmp_path, calibrator):
    path = tmp_path / "masked.onnx"
    onnx.save(masked_softmax(np.random.default_rng(0)), str(path))
    rng = np.random.default_rng(1)
    feeds = [
        {"x": rng.normal(size=(8, 16)).astype(np.float32), "keep": (rng.random((8, 16)) > 0.3).astype(np.float32)}
        for _ in range(4)
    ]
    result = quantize_int8_static(path, tmp_path / "masked.int8.onnx", FeedsReader(feeds), calibrator=calibrator)
    wide = {t: (lo, hi) for t, lo, hi in result.wide_ranges}
    assert set(wide) == {"mask", "masked"} and wide["mask"][0] == -np.inf
    # pre-processing fused scores (MatMul) + apply_mask (Add) into one Gemm
    assert set(result.excluded_nodes) == {"mask", "scores/MatMulAddFusion", "softmax"}
    assert result.info()["float_for_range"][0] == {"tensor": "mask", "min": "-inf", "max": 0.0}
    assert quantized_nodes(onnx.load(str(result.path))) == ["mm_out"]
    assert compare_outputs(path, result.path, feeds).cosine_mean > 0.99


@pytest.mark.parametrize("calibrator", list(Calibrator))
@pytest.mark.parametrize("count", [1, 7, 9, 36])
def test_any_number_of_calibration_items_works_with_every_calibrator(conv_path, tmp_path, calibrator, count):
    """Batches of 8 leave a short last batch (9 items: 8 + 1; 36: 4 x 8 + 4); ORT's histogram
    calibrators used to fail stacking them ("inhomogeneous shape")."""
    feeds = _images(seed=0, n=count)
    assert len(feeds[-1]["x"]) == (count % 8 or min(count, 8))
    result = quantize_int8_static(conv_path, tmp_path / "q.onnx", FeedsReader(feeds), calibrator=calibrator,
                                  target="x86-avx2")
    assert {"conv2", "conv3"} <= set(quantized_nodes(onnx.load(str(result.path))))  # conv1, fc: float
    assert compare_outputs(conv_path, result.path, _images(seed=1)).cosine_mean > (0.95 if count == 1 else 0.98)


@pytest.mark.parametrize("target", ["x86-vnni", "x86-avx2", "aarch64", "tensorrt"])
def test_each_target_gets_its_int8_scheme_in_the_file(conv_path, tmp_path, target):
    """Only the scheme is checked here: its numbers depend on the kernels of the machine running it."""
    result = quantize_int8_static(conv_path, tmp_path / "q.onnx", FeedsReader(_images(0)), target=target)
    weights = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(result.path)).graph.initializer}
    widest = max(int(np.abs(weights[f"w{k}_quantized"]).max()) for k in (2, 3))  # conv1 reads raw RGB: float
    assert widest == (64 if target == "x86-avx2" else 127)  # 7-bit weights: 2 x 255 x 64 < 2**15
    activation_zero_points = [v for k, v in weights.items() if k.endswith("_zero_point") and v.ndim == 0]
    assert {v.dtype for v in activation_zero_points} == {np.dtype(np.int8 if target == "tensorrt" else np.uint8)}
    assert result.config.target == target and result.info()["reduce_range"] == (target == "x86-avx2")
