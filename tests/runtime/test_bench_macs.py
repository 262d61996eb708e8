"""The MAC counter against hand-computed tiny graphs, and the GEMM peak on a small size."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from fusionrt.runtime.bench.macs import count_macs
from fusionrt.runtime.bench.peak import measure_peak, numpy_gemm_gflops, ort_gemm_gflops


def model(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def io(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def zeros(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


def test_conv_with_groups_strides_and_padding():
    # x [1, 4, 9, 9], 6 filters over 4/2 channels, 3x3, stride 2, pad 1 -> out [1, 6, 5, 5]
    w = numpy_helper.from_array(zeros(6, 2, 3, 3), "w")
    m = model([helper.make_node("Conv", ["x", "w"], ["y"], group=2, strides=[2, 2], pads=[1, 1, 1, 1])],
              [io("x", TensorProto.FLOAT, [1, 4, 9, 9])], [io("y", TensorProto.FLOAT, None)], [w])
    counted = count_macs(m, {"x": zeros(1, 4, 9, 9)})
    assert counted.total == 1 * 6 * 5 * 5 * (2 * 3 * 3)  # each output sums C_in/group x kernel products
    assert counted.by_op == {"Conv": 2700}
    assert counted.unresolved == ()


def test_conv_transpose():
    # each of the 2x4x4 input elements meets C_out/group x kernel = 3 x 3 x 3 weights
    w = numpy_helper.from_array(zeros(2, 3, 3, 3), "w")
    m = model([helper.make_node("ConvTranspose", ["x", "w"], ["y"])],
              [io("x", TensorProto.FLOAT, [1, 2, 4, 4])], [io("y", TensorProto.FLOAT, None)], [w])
    assert count_macs(m, {"x": zeros(1, 2, 4, 4)}).total == 2 * 4 * 4 * 27


def test_matmul_with_batch_dimensions_and_a_dynamic_batch():
    w = numpy_helper.from_array(zeros(5, 7), "w")
    m = model([helper.make_node("MatMul", ["a", "w"], ["y"]), helper.make_node("MatMul", ["b", "c"], ["z"])],
              [io("a", TensorProto.FLOAT, ["batch", 3, 4, 5]), io("b", TensorProto.FLOAT, [2, 4, 5]),
               io("c", TensorProto.FLOAT, [2, 5, 6])],
              [io("y", TensorProto.FLOAT, None), io("z", TensorProto.FLOAT, None)], [w])  # fmt: skip
    feeds = {"b": zeros(2, 4, 5), "c": zeros(2, 5, 6)}
    one = count_macs(m, {"a": zeros(1, 3, 4, 5), **feeds})
    two = count_macs(m, {"a": zeros(2, 3, 4, 5), **feeds})
    assert one.total == 3 * 4 * 7 * 5 + 2 * 4 * 6 * 5
    assert two.total == 2 * 3 * 4 * 7 * 5 + 2 * 4 * 6 * 5  # the batch comes from the feeds


@pytest.mark.parametrize("trans_a", [0, 1])
def test_gemm_with_transposes(trans_a):
    a_shape = [8, 3] if trans_a else [3, 8]
    b = numpy_helper.from_array(zeros(10, 8), "b")  # transB: [N, K]
    m = model([helper.make_node("Gemm", ["a", "b"], ["y"], transA=trans_a, transB=1)],
              [io("a", TensorProto.FLOAT, a_shape)], [io("y", TensorProto.FLOAT, None)], [b])
    assert count_macs(m, {"a": zeros(*a_shape)}).total == 3 * 10 * 8  # M x N x K


def test_quantized_ops_count_like_their_float_forms():
    init = [
        numpy_helper.from_array(zeros(4, 3, 3, 3, dtype=np.int8), "w"),
        numpy_helper.from_array(np.float32(0.1), "s"),
        numpy_helper.from_array(np.uint8(128), "zu"),
        numpy_helper.from_array(np.int8(0), "zi"),
        numpy_helper.from_array(zeros(4, 3, dtype=np.int8), "bm"),
        numpy_helper.from_array(zeros(4, 3, dtype=np.uint8), "bu"),
    ]
    nodes = [
        # x uint8 [1, 3, 8, 8], 4 filters 3x3 -> [1, 4, 6, 6]: 144 outputs x 27 products
        helper.make_node("QLinearConv", ["x", "s", "zu", "w", "s", "zi", "s", "zu"], ["y"]),
        helper.make_node("MatMulInteger", ["a", "bm"], ["p"]),  # [2, 4] x [4, 3]
        helper.make_node("QLinearMatMul", ["a", "s", "zu", "bu", "s", "zu", "s", "zu"], ["q"]),
        helper.make_node("ConvInteger", ["x", "w"], ["r"]),
    ]
    m = model(nodes, [io("x", TensorProto.UINT8, [1, 3, 8, 8]), io("a", TensorProto.UINT8, [2, 4])],
              [io(n, t, None) for n, t in (("y", TensorProto.UINT8), ("p", TensorProto.INT32),
                                           ("q", TensorProto.UINT8), ("r", TensorProto.INT32))], init)  # fmt: skip
    counted = count_macs(m, {"x": zeros(1, 3, 8, 8, dtype=np.uint8), "a": zeros(2, 4, dtype=np.uint8)})
    assert counted.by_op == {"QLinearConv": 3888, "MatMulInteger": 24, "QLinearMatMul": 24, "ConvInteger": 3888}


def test_shapes_shape_inference_cannot_follow_come_from_a_run():
    # the reshape target is a graph input: only running the graph tells the MatMul's input shape
    w = numpy_helper.from_array(zeros(6, 5), "w")
    m = model([helper.make_node("Reshape", ["x", "shape"], ["h"]), helper.make_node("MatMul", ["h", "w"], ["y"])],
              [io("x", TensorProto.FLOAT, [24]), io("shape", TensorProto.INT64, [2])],
              [io("y", TensorProto.FLOAT, None)], [w])  # fmt: skip
    counted = count_macs(m, {"x": zeros(24), "shape": np.array([4, 6], np.int64)})
    assert counted.total == 4 * 6 * 5
    assert counted.unresolved == ()


def test_a_graph_that_cannot_run_lists_its_nodes_as_unresolved():
    w = numpy_helper.from_array(zeros(6, 5), "w")
    m = model([helper.make_node("Reshape", ["x", "shape"], ["h"]),
               helper.make_node("MatMul", ["h", "w"], ["y"], name="mm")],
              [io("x", TensorProto.FLOAT, [24]), io("shape", TensorProto.INT64, [2])],
              [io("y", TensorProto.FLOAT, None)], [w])  # fmt: skip
    counted = count_macs(m, {"x": zeros(24), "shape": np.array([5, 6], np.int64)})  # 24 does not reshape to 5x6
    assert counted.total == 0 and counted.unresolved == ("mm",)


def test_gemm_peak_is_positive_on_a_small_size():
    assert ort_gemm_gflops(1, n=64) > 0
    rate, how = numpy_gemm_gflops(1, n=64)
    assert rate > 0 and how
    peak = measure_peak([1], n=32, progress=lambda line: None)
    assert peak["size"] == 32
    assert peak["ort_gflops"]["1"] > 0 and peak["numpy_gflops"]["1"] > 0
