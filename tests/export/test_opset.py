import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from fusionrt.errors import ExportError
from fusionrt.export.opset import lower_18_to_17


def model18(nodes, inputs, outputs, initializers=()):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model


def run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def tensor(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def ints(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


def test_reduce_axes_input_becomes_attribute_and_noop_flag_goes():
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=0, noop_with_empty_axes=0)
    model = model18([node], [tensor("x", ["batch", 3, 4])], [tensor("y", ["batch", 4])], [ints("axes", [1])])
    lowered = lower_18_to_17(model)
    onnx.checker.check_model(lowered, full_check=True)
    (reduce,) = lowered.graph.node
    assert list(reduce.input) == ["x"]
    assert {a.name: helper.get_attribute_value(a) for a in reduce.attribute} == {"keepdims": 0, "axes": [1]}
    assert lowered.opset_import[0].version == 17 and lowered.ir_version == 8
    assert list(lowered.graph.initializer) == []  # the axes tensor is no longer used
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)
    np.testing.assert_allclose(run(lowered, {"x": x})[0], run(model, {"x": x})[0])


def test_split_into_parts_gets_explicit_sizes():
    node = helper.make_node("Split", ["x"], ["a", "b", "c"], axis=1, num_outputs=3)
    outputs = [tensor("a", ["batch", 3]), tensor("b", ["batch", 3]), tensor("c", ["batch", 2])]
    model = model18([node], [tensor("x", ["batch", 8])], outputs)
    lowered = lower_18_to_17(model)
    onnx.checker.check_model(lowered, full_check=True)
    sizes = numpy_helper.to_array(lowered.graph.initializer[0]).tolist()
    assert sizes == [3, 3, 2]
    x = np.arange(16, dtype=np.float32).reshape(2, 8)
    for got, expected in zip(run(lowered, {"x": x}), run(model, {"x": x})):
        np.testing.assert_array_equal(got, expected)


def test_split_of_a_dynamic_axis_is_refused_by_name():
    node = helper.make_node("Split", ["x"], ["a", "b"], name="halves", axis=0, num_outputs=2)
    model = model18([node], [tensor("x", ["batch", 8])], [tensor("a", None), tensor("b", None)])
    with pytest.raises(ExportError, match="node 'halves' \\(Split\\) splits a dynamic axis"):
        lower_18_to_17(model)


def test_pad_without_axes_is_kept_and_with_axes_refused():
    pads = ints("pads", [0, 1, 0, 1])
    plain = model18([helper.make_node("Pad", ["x", "pads"], ["y"], mode="reflect")], [tensor("x", [2, 4])],
                    [tensor("y", [2, 6])], [pads])  # fmt: skip
    lowered = lower_18_to_17(plain)
    onnx.checker.check_model(lowered, full_check=True)
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(run(lowered, {"x": x})[0], run(plain, {"x": x})[0])

    with_axes = model18(
        [helper.make_node("Pad", ["x", "pads2", "", "axes"], ["y"], name="pad_last")], [tensor("x", [2, 4])],
        [tensor("y", [2, 6])], [ints("pads2", [1, 1]), ints("axes", [1])],
    )  # fmt: skip
    with pytest.raises(ExportError, match="node 'pad_last' \\(Pad\\) uses an axes input, new in opset 18"):
        lower_18_to_17(with_axes)


def test_ops_new_in_opset_18_are_refused():
    node = helper.make_node("BitwiseAnd", ["a", "b"], ["y"], name="bits")
    inputs = [tensor("a", [2], TensorProto.INT32), tensor("b", [2], TensorProto.INT32)]
    model = model18([node], inputs, [tensor("y", [2], TensorProto.INT32)])
    with pytest.raises(ExportError, match="node 'bits' \\(BitwiseAnd\\) exists only from opset 18"):
        lower_18_to_17(model)


def test_only_opset_18_is_lowered():
    model = model18([helper.make_node("Relu", ["x"], ["y"])], [tensor("x", [2])], [tensor("y", [2])])
    model.opset_import[0].version = 19
    with pytest.raises(ExportError, match="found opset 19"):
        lower_18_to_17(model)
