"""ONNX graph helpers the quantizers and the sensitivity repair share: loading with a clear error,
stable node names, and which nodes of a QDQ graph run in INT8."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


# Ops that only reshape, scale or normalise a graph output (logits -> probabilities and the like).
OUTPUT_PREPARATION_OPS = ("Add", "Mul", "Div", "Sub", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast",
                          "Softmax", "LogSoftmax", "Sigmoid", "Transpose")
OUTPUT_LAYER_OPS = ("Gemm", "MatMul", "Conv")
OUTPUT_LAYER_SHARE = 0.05  # an output layer stays float only when it does at most this share of the multiply-adds


def macs(model) -> dict[str, int]:
    """Multiply-adds per item of each Gemm/MatMul/Conv with constant weights whose output shape the
    (shape-inferred) graph knows: output elements x weight elements per output channel. A symbolic
    dimension counts as 1 (the batch)."""
    initializers = {i.name: i for i in model.graph.initializer}
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else 1 for d in v.type.tensor_type.shape.dim]
              for v in (*model.graph.value_info, *model.graph.output) if v.type.tensor_type.HasField("shape")}
    counts = {}
    for node in model.graph.node:
        if node.op_type not in OUTPUT_LAYER_OPS or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        out, weight = shapes.get(node.output[0]), list(initializers[node.input[1]].dims)
        if not out or not weight:
            continue
        if node.op_type == "Conv":
            per_output = int(np.prod(weight[1:]))
        else:
            transposed = node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute)
            per_output = weight[1] if transposed else weight[0]
        counts[node.name] = int(np.prod(out)) * int(per_output)
    return counts


def output_layers(model, max_share: float = OUTPUT_LAYER_SHARE) -> list[str]:
    """Names of the Gemm/MatMul/Conv nodes with constant weights whose output reaches a graph output
    through OUTPUT_PREPARATION_OPS only (a classifier's last layer: its INT8 output would be the
    logits on a 256-step grid) and that do at most `max_share` of the graph's multiply-adds (`macs`),
    so keeping them float costs little time. A layer whose size the graph does not say stays INT8.

    benchmarks/results/real_cnn_int8.md: EfficientNet-Lite0/-Lite1's 1000-class classifier float
    (0.2-0.3 % of the multiply-adds) keeps FP32's top-1 on 0.0-0.9 points more noise-stable views on
    the two x86 schemes, at the same speed; the demo image encoder's last Gemm float: 1.6x FP32 as before."""
    initializers = {i.name for i in model.graph.initializer}
    readers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in model.graph.output}

    def reaches_output(tensor: str) -> bool:
        pending, seen = [tensor], set()
        while pending:
            name = pending.pop()
            if name in outputs:
                return True
            if name in seen:
                continue
            seen.add(name)
            pending.extend(o for r in readers.get(name, []) if r.op_type in OUTPUT_PREPARATION_OPS for o in r.output)
        return False

    candidates = [n.name for n in model.graph.node
                  if n.op_type in OUTPUT_LAYER_OPS and len(n.input) > 1 and n.input[1] in initializers
                  and any(reaches_output(o) for o in n.output)]
    if not candidates:
        return []
    counts = macs(model)
    total = sum(counts.values())
    return [n for n in candidates if n in counts and total and counts[n] <= max_share * total]


def depthwise_weights(model) -> dict[str, str]:
    """Node name -> weight initializer of each depthwise Conv (one input channel per group, group > 1).

    ONNX Runtime's x86 kernels for these widen u8 x s8 products to 16/32 bits before adding them
    (MLAS ConvSym depthwise kernel: vpmovzxbd/vpmovsxbd + vpmaddwd; qdwconv: 16-bit multiplies into
    32-bit sums), so they cannot saturate with 8-bit weights even without VNNI."""
    initializers = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in initializers:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        dims = initializers[node.input[1]].dims
        if group > 1 and len(dims) > 2 and dims[1] == 1:
            found[node.name] = node.input[1]
    return found


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
