from __future__ import annotations

import numpy as np
import onnx
import pytest
from calibration_models import mlp_with_outlier_activation, mlp_with_sensitive_node

from fusionrt.calibration import (
    FeedsReader,
    QuantConfig,
    QuantMode,
    Verdict,
    compare_outputs,
    cosine_judge,
    node_errors,
    outlier_ratios,
    prepare_for_quantization,
    quantize_onnx,
    quantized_nodes,
    repair,
)

# 7-bit weights (the x86-avx2 scheme): the same integers on AVX2, VNNI and ARM kernels, so the
# numbers below hold on every machine.
PORTABLE_STATIC = QuantConfig.for_target(QuantMode.INT8_STATIC, "x86-avx2")
PORTABLE_DYNAMIC = QuantConfig.for_target(QuantMode.INT8_DYNAMIC, "x86-avx2")


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlp")
    path = root / "mlp.onnx"
    onnx.save(mlp_with_sensitive_node(np.random.default_rng(0)), str(path))
    prepared = prepare_for_quantization(path, root / "mlp.prepared.onnx")
    x = np.random.default_rng(1).normal(size=(48, 32)).astype(np.float32)
    return path, prepared, [{"x": x[i : i + 16]} for i in range(0, 48, 16)]


def test_layer_by_layer_errors_point_at_the_sensitive_node(mlp, tmp_path):
    path, prepared, feeds = mlp
    config = PORTABLE_STATIC
    quant = quantize_onnx(path, tmp_path / "q.onnx", config, FeedsReader(feeds), prepared=prepared)
    assert compare_outputs(path, quant.path, feeds).cosine_mean < 0.5  # plain int8 is broken
    errors = node_errors(prepared.path, quant.path, feeds)
    worst = errors[0]
    assert worst.node == "mm_sensitive" and worst.op_type == "MatMul"
    assert worst.cosine < 0.5 and worst.added_error > 0.5
    others = {e.node: e for e in errors[1:]}
    assert others["mm_in"].cosine > 0.999 and others["mm_in"].added_error < 0.05


def test_repair_keeps_the_sensitive_node_float_and_says_why(mlp, tmp_path):
    """With the x86-avx2 scheme (7-bit weights) the integers are the same on AVX2 and VNNI kernels,
    so the repair's rounds are too (with 8-bit weights AVX2's saturation made it keep mm_in float)."""
    path, prepared, feeds = mlp
    rounds = []
    fixed = repair(prepared, tmp_path / "fixed.onnx", PORTABLE_STATIC, feeds,
                   cosine_judge(path, feeds, 0.999), progress=rounds.append)
    assert fixed.verdict.ok and fixed.stopped == "budget met"
    assert fixed.result.config.exclude_nodes == ("mm_sensitive",) and fixed.result.config.reduce_range
    assert [k["node"] for k in fixed.kept_float] == ["mm_sensitive"]
    assert fixed.kept_float[0]["cosine"] < 0.5 and "largest error" in fixed.kept_float[0]["reason"]
    assert len(fixed.rounds) == 2 and fixed.rounds[0]["cosine"] < 0.5 and fixed.rounds[1]["cosine"] > 0.999
    model = onnx.load(str(fixed.result.path))
    assert set(quantized_nodes(model)) == {"mm_in", "mm_out"}
    assert compare_outputs(path, fixed.result.path, feeds).cosine_mean > 0.999
    assert len(rounds) == 1


def test_repair_stops_when_nothing_is_left_to_gain(mlp, tmp_path):
    path, prepared, feeds = mlp
    never = lambda p: Verdict(False, 1.0, {"judged": p.name})  # noqa: E731  (a budget nothing can meet)
    fixed = repair(prepared, tmp_path / "fixed.onnx", PORTABLE_STATIC, feeds, never, max_rounds=6)
    assert not fixed.verdict.ok
    assert fixed.stopped.startswith("nothing left to gain")
    assert len(fixed.rounds) <= 3  # patience 2: two rounds without a lower loss
    assert fixed.result.path.is_file()


@pytest.fixture(scope="module")
def outlier_mlp(tmp_path_factory):
    root = tmp_path_factory.mktemp("outlier")
    path = root / "mlp.onnx"
    onnx.save(mlp_with_outlier_activation(np.random.default_rng(0)), str(path))
    prepared = prepare_for_quantization(path, root / "mlp.prepared.onnx")
    x = np.abs(np.random.default_rng(1).normal(size=(48, 32))).astype(np.float32)
    x[:, 0] = 0.0
    x[7, 0] = 1.0  # the one outlier: hidden channel 0 of row 7 is 300
    return path, prepared, [{"x": x[i : i + 16]} for i in range(0, 48, 16)]


def test_outlier_ratios_rank_the_matmul_reading_the_outlier_channel_first(outlier_mlp, tmp_path):
    path, prepared, feeds = outlier_mlp
    quant = quantize_onnx(path, tmp_path / "dyn.onnx", PORTABLE_DYNAMIC, prepared=prepared)
    assert compare_outputs(path, quant.path, feeds).cosine_min < 0.9  # plain dynamic int8 breaks row 7's batch
    ratios = dict(outlier_ratios(prepared.path, quant.path, feeds))
    assert list(ratios)[0] == "mm_outlier" and set(ratios) == {"mm_in", "mm_outlier", "mm_out"}
    a_relu = np.maximum(np.concatenate([f["x"] for f in feeds]) @ onnx.numpy_helper.to_array(
        next(i for i in onnx.load(str(path)).graph.initializer if i.name == "w_in")), 0)
    expected = np.abs(a_relu).max() / np.percentile(np.abs(a_relu), 99.9)
    assert ratios["mm_outlier"] == pytest.approx(expected, rel=1e-4)
    assert ratios["mm_outlier"] > 10.0 and ratios["mm_in"] < 2.0


def test_dynamic_repair_keeps_the_outlier_matmul_float(outlier_mlp, tmp_path):
    path, prepared, feeds = outlier_mlp
    fixed = repair(prepared, tmp_path / "fixed.onnx", PORTABLE_DYNAMIC, feeds,
                   cosine_judge(path, feeds, 0.999, every_row=True))
    assert fixed.verdict.ok and fixed.stopped == "budget met"
    assert fixed.result.config.exclude_nodes == ("mm_outlier",)
    kept = fixed.kept_float[0]
    assert kept["node"] == "mm_outlier" and kept["outlier_ratio"] > 10.0 and "outliers" in kept["reason"]
    names = {n.name for n in onnx.load(str(fixed.result.path)).graph.node}
    assert "mm_outlier" in names and "mm_in" not in names  # mm_outlier float; mm_in still quantized
    assert compare_outputs(path, fixed.result.path, feeds).cosine_min >= 0.999


def test_cosine_judge_every_row_judges_the_worst_sample(outlier_mlp, tmp_path):
    path, prepared, feeds = outlier_mlp
    quant = quantize_onnx(path, tmp_path / "q.onnx", PORTABLE_DYNAMIC, prepared=prepared)
    a = compare_outputs(path, quant.path, feeds)
    assert a.cosine_min < a.cosine_mean
    mean_verdict = cosine_judge(path, feeds, a.cosine_mean - 1e-9)(quant.path)
    row_verdict = cosine_judge(path, feeds, a.cosine_mean - 1e-9, every_row=True)(quant.path)
    assert mean_verdict.ok and not row_verdict.ok
    assert row_verdict.loss == pytest.approx(1.0 - a.cosine_min)
    assert row_verdict.figures["cosine_min"] == pytest.approx(a.cosine_min, abs=1e-6)
