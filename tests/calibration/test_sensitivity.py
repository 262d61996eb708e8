from __future__ import annotations

import numpy as np
import onnx
import pytest
from calibration_models import mlp_with_sensitive_node

from fusionrt.calibration import (
    FeedsReader,
    QuantConfig,
    QuantMode,
    Verdict,
    compare_outputs,
    cosine_judge,
    node_errors,
    prepare_for_quantization,
    quantize_onnx,
    quantized_nodes,
    repair,
)


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
    config = QuantConfig(QuantMode.INT8_STATIC)
    quant = quantize_onnx(path, tmp_path / "q.onnx", config, FeedsReader(feeds), prepared=prepared)
    assert compare_outputs(path, quant.path, feeds).cosine_mean < 0.5  # plain int8 is broken
    errors = node_errors(prepared.path, quant.path, feeds)
    worst = errors[0]
    assert worst.node == "mm_sensitive" and worst.op_type == "MatMul"
    assert worst.cosine < 0.5 and worst.added_error > 0.5
    others = {e.node: e for e in errors[1:]}
    assert others["mm_in"].cosine > 0.999 and others["mm_in"].added_error < 0.05


def test_repair_keeps_the_sensitive_node_float_and_says_why(mlp, tmp_path):
    path, prepared, feeds = mlp
    rounds = []
    fixed = repair(prepared, tmp_path / "fixed.onnx", QuantConfig(QuantMode.INT8_STATIC), feeds,
                   cosine_judge(path, feeds, 0.999), progress=rounds.append)
    assert fixed.verdict.ok and fixed.stopped == "budget met"
    assert fixed.result.config.exclude_nodes == ("mm_sensitive",)
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
    fixed = repair(prepared, tmp_path / "fixed.onnx", QuantConfig(QuantMode.INT8_STATIC), feeds, never, max_rounds=6)
    assert not fixed.verdict.ok
    assert fixed.stopped.startswith("nothing left to gain")
    assert len(fixed.rounds) <= 3  # patience 2: two rounds without a lower loss
    assert fixed.result.path.is_file()
