"""ONNX graph helpers the quantizers and the sensitivity repair share: loading with a clear error,
stable node names, and which nodes of a QDQ graph run in INT8."""

from __future__ import annotations

from pathlib import Path

from fusionrt.errors import CalibrationError

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def load_onnx(path):
    """The ModelProto at `path`; CalibrationError when it is not a readable ONNX file."""
    import onnx

    try:
        return onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError, OSError, ValueError...
        raise CalibrationError(f"{path} is not a readable ONNX model ({e}); re-export the component") from e


def name_nodes(model) -> None:
    """Give every unnamed node a stable name (op_type_index) so exclusions and reports can name it."""
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def quantized_nodes(model) -> list[str]:
    """Names of the compute nodes of a QDQ graph whose every float input comes out of a
    DequantizeLinear and whose every output goes into a QuantizeLinear.

    Those are the node units ONNX Runtime fuses into integer kernels. An excluded node keeps float
    weights, and an op without an integer kernel (Log, Softmax...) has no Q after it, so neither is
    listed even when its neighbours hand it dequantized activations.
    """
    from onnx import TensorProto

    floats = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)
    dtypes = {i.name: i.data_type for i in model.graph.initializer}
    for info in (*model.graph.value_info, *model.graph.input, *model.graph.output):
        dtypes.setdefault(info.name, info.type.tensor_type.elem_type)
    dq_outputs = {out for n in model.graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    q_inputs = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    names = []
    for node in model.graph.node:
        if node.op_type in QDQ_OPS:
            continue
        inputs = [i for i in node.input if i and dtypes.get(i, TensorProto.FLOAT) in floats]
        outputs = [o for o in node.output if o and dtypes.get(o, TensorProto.FLOAT) in floats]
        if inputs and all(i in dq_outputs for i in inputs) and all(o in q_inputs for o in outputs):
            names.append(node.name)
    return names


def instrumented_session(model, tensors: dict[str, int]):
    """An ONNX Runtime session of `model` (unoptimized) that also returns `tensors` (name -> ONNX element type)."""
    import onnx
    import onnxruntime as ort

    model = onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in model.graph.output}
    for name, elem_type in tensors.items():
        if name not in existing:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem_type, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep every tensor as written
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


# Ops that only cast, scale, shift, normalise or lay out the raw input (a bundle's in-graph normalisation,
# per-frame contrast normalisation included).
INPUT_PREPARATION_OPS = ("Cast", "Sub", "Div", "Mul", "Add", "Transpose", "Reshape", "Unsqueeze", "Squeeze", "Identity",
                         "Pad", "Slice", "Concat", "ReduceMean", "Pow", "Sqrt")
RAW_CHANNELS = 4  # a Conv reading at most this many channels of the raw input is an input layer (RGB, mono PCM)


def input_layers(model) -> list[str]:
    """Names of the Convs that read the graph's raw input (through INPUT_PREPARATION_OPS only) over
    at most RAW_CHANNELS channels per group: an image network's stem, an audio network's first filter.
    A colour-space Conv (at most RAW_CHANNELS out as well, e.g. a 1x1 RGB normalisation) is one of
    them and its output still counts as raw input, so the stem after it is found too.

    Their INT8 rounding reaches every later layer the way input noise would, and a reduction depth of
    3 x 3 x 3 leaves INT8 little to gain. benchmarks/real_cnn_int8.md, bias-corrected minmax, stem INT8
    -> float: EfficientNet-Lite1 (VNNI scheme) keeps FP32's top-1 on 92.9 -> 96.0 % of noise-stable
    photos, Lite0 with 7-bit weights cosine 0.9918 -> 0.9946, at the same speed. ONNX Runtime's x86
    QLinearConv also ran the demo image encoder's 3-channel convolutions about 4x slower than float:
    with them float the encoder's INT8 went from 1.36x to 1.6x FP32 (a 3-channel 7x7 stem at 224 px
    ran faster float as well).
    """
    initializers = {i.name: i for i in model.graph.initializer}
    raw = {i.name for i in model.graph.input if i.name not in initializers}
    layers = []
    for node in model.graph.node:  # topological order: a tensor is marked raw before it is read
        activations = [i for i in node.input if i and i not in initializers]
        if not activations or not all(i in raw for i in activations):
            continue
        if node.op_type in INPUT_PREPARATION_OPS:
            raw.update(node.output)
        elif node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in initializers:
            dims = initializers[node.input[1]].dims
            if len(dims) > 1 and dims[1] <= RAW_CHANNELS:
                layers.append(node.name)
                if dims[0] <= RAW_CHANNELS:
                    raw.update(node.output)
    return layers


def nodes_touching(path: Path, tensors) -> list[str]:
    """Producers and readers of `tensors`: excluding them all keeps those tensors out of Q/DQ pairs."""
    if not tensors:
        return []
    model = load_onnx(path)
    return [n.name for n in model.graph.node if set(tensors) & {*n.input, *n.output}]


def per_channel_scales(model) -> dict[str, tuple[int, ...]]:
    """Shape of each weight DequantizeLinear's scale (per-channel weights have a 1-D scale)."""
    initializers = {i.name: i for i in model.graph.initializer}
    shapes = {}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in initializers and node.input[1] in initializers:
            shapes[node.input[0]] = tuple(initializers[node.input[1]].dims)
    return shapes


# Ops of a dynamic (or operator-format) INT8 graph that compute in integers.
INTEGER_OPS = ("MatMulInteger", "ConvInteger", "DynamicQuantizeMatMul", "DynamicQuantizeLSTM", "QAttention",
               "QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul")


def int8_nodes(model) -> list[str]:
    """Names of the nodes that run in INT8: the QDQ node units (`quantized_nodes`) and the integer
    ops of a dynamic graph. Empty for a file that computes exactly what FP32 does (nothing the
    quantizer handles, or every candidate node kept float): such a file is not an INT8 variant."""
    integer = [n.name for n in model.graph.node if n.op_type in INTEGER_OPS]
    return integer + quantized_nodes(model)
