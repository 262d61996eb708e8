"""Tiny ONNX models built with onnx.helper, and a whole bundle of them, for the calibration tests.

The bundle follows the manifest contract: an image encoder (uint8 NHWC in, cast/normalise/layout
inside), an audio encoder (float PCM window), a text encoder (ids + mask, masked mean of an
embedding table) with a `tokenizers` tokenizer.json, and a fusion head (embeddings * presence ->
logits). Its labels are the FP32 model's own predictions, so FP32 accuracy is 100 % and any
quantization loss shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
EMBED = 8
IMAGE = 16
SAMPLE_RATE = 8000
WINDOW = 800
MAX_LENGTH = 8
LABELS = ("a", "b", "c", "d")
WORDS = ("red", "green", "blue", "big", "small", "cat", "dog", "runs", "sits", "the")
TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
COMPONENTS = ("text_encoder", "image_encoder", "audio_encoder", "fusion")


def _model(nodes, name, inputs, outputs, initializers, *, check: bool = True) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 9
    if check:
        onnx.checker.check_model(model)
    return model


def conv_net(rng: np.random.Generator, channels=(16, 32, 32), size: int = 32) -> onnx.ModelProto:
    """float [batch, 3, size, size] -> 3 Conv+Relu (strided) -> GAP -> Gemm -> [batch, 10]."""
    nodes, init, previous, width = [], {}, "x", 3
    for k, c in enumerate(channels, start=1):
        init[f"w{k}"] = rng.normal(0, np.sqrt(2 / (9 * width)), (c, width, 3, 3)).astype(np.float32)
        init[f"b{k}"] = rng.normal(0, 0.1, c).astype(np.float32)
        nodes.append(helper.make_node("Conv", [previous, f"w{k}", f"b{k}"], [f"c{k}"], name=f"conv{k}", pads=[1] * 4,
                                      strides=[1, 1] if k == 1 else [2, 2]))
        nodes.append(helper.make_node("Relu", [f"c{k}"], [f"r{k}"], name=f"relu{k}"))
        previous, width = f"r{k}", c
    init["wf"] = rng.normal(0, np.sqrt(1 / width), (width, 10)).astype(np.float32)
    init["bf"] = np.zeros(10, np.float32)
    nodes += [
        helper.make_node("GlobalAveragePool", [previous], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["y"], name="fc"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])
    return _model(nodes, "conv_net", [x], [y], init)


def depthwise_net(rng: np.random.Generator, channels: int = 24, size: int = 12) -> onnx.ModelProto:
    """float [batch, 8, size, size] (post-ReLU features) -> 1x1 expand -> ReLU -> depthwise 3x3 ->
    1x1 project -> [batch, 8, size, size]; small weights with a few large ones per channel, as BN
    folding leaves them, so 8-bit rounding errors are large relative to most weights."""
    def weights(shape, scale):
        w = rng.normal(0, scale, shape) * rng.choice([0.2, 3.0], size=shape, p=[0.9, 0.1])
        return w.astype(np.float32)

    init = {
        "w_expand": weights((channels, 8, 1, 1), 0.3), "b_expand": rng.normal(0, 0.1, channels).astype(np.float32),
        "w_dw": weights((channels, 1, 3, 3), 0.5), "b_dw": rng.normal(0, 0.1, channels).astype(np.float32),
        "w_project": weights((8, channels, 1, 1), 0.3), "b_project": np.zeros(8, np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w_expand", "b_expand"], ["e"], name="expand"),
        helper.make_node("Relu", ["e"], ["er"], name="expand_relu"),
        helper.make_node("Conv", ["er", "w_dw", "b_dw"], ["d"], name="depthwise", group=channels, pads=[1] * 4),
        helper.make_node("Relu", ["d"], ["dr"], name="depthwise_relu"),
        helper.make_node("Conv", ["dr", "w_project", "b_project"], ["y"], name="project"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8, size, size])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, size, size])
    return _model(nodes, "depthwise_net", [x], [y], init)


def features(rng, n: int, size: int = 12) -> np.ndarray:
    return np.maximum(rng.normal(0.5, 1.0, (n, 8, size, size)), 0).astype(np.float32)


def mlp_with_sensitive_node(rng: np.random.Generator, width: int = 32) -> onnx.ModelProto:
    """x -> mm_in -> relu -> mm_sensitive -> relu -> mm_out. mm_sensitive's weight has one huge row
    that meets an always-zero input channel: it never matters in float, but it sets the per-column
    int8 scale so every other weight of that node rounds to zero."""
    w_in = rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32)
    w_in[:, 0] = 0.0  # channel 0 of the hidden activation is always 0
    w_sensitive = rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32)
    w_sensitive[0, :] = 200.0
    w_out = rng.normal(0, 1 / np.sqrt(width), (width, 8)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w_in"], ["a"], name="mm_in"),
        helper.make_node("Relu", ["a"], ["a_relu"], name="relu_in"),
        helper.make_node("MatMul", ["a_relu", "w_sensitive"], ["b"], name="mm_sensitive"),
        helper.make_node("Relu", ["b"], ["b_relu"], name="relu_sensitive"),
        helper.make_node("MatMul", ["b_relu", "w_out"], ["y"], name="mm_out"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    return _model(nodes, "mlp", [x], [y], {"w_in": w_in, "w_sensitive": w_sensitive, "w_out": w_out})


def mlp_with_outlier_activation(rng: np.random.Generator, width: int = 32) -> onnx.ModelProto:
    """x -> mm_in -> relu -> mm_outlier -> relu -> mm_out. Hidden channel 0 is 300 * x[:, 0] (an input
    feature that is almost always 0) and mm_outlier's weight row 0 is tiny, so it hardly matters in
    float; but dynamic int8 quantizes that activation per tensor and call, and when the rare outlier
    comes, the grid stretched to fit it rounds every other value of the batch away."""
    w_in = rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32)
    w_in[0, :], w_in[:, 0] = 0.0, 0.0
    w_in[0, 0] = 300.0
    w_outlier = rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32)
    w_outlier[0, :] *= 1e-4
    w_out = rng.normal(0, 1 / np.sqrt(width), (width, 8)).astype(np.float32)
    nodes = [
        helper.make_node("MatMul", ["x", "w_in"], ["a"], name="mm_in"),
        helper.make_node("Relu", ["a"], ["a_relu"], name="relu_in"),
        helper.make_node("MatMul", ["a_relu", "w_outlier"], ["b"], name="mm_outlier"),
        helper.make_node("Relu", ["b"], ["b_relu"], name="relu_outlier"),
        helper.make_node("MatMul", ["b_relu", "w_out"], ["y"], name="mm_out"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    return _model(nodes, "mlp_outlier", [x], [y], {"w_in": w_in, "w_outlier": w_outlier, "w_out": w_out})


def reshape_from_input(rng: np.random.Generator) -> onnx.ModelProto:
    """MatMul then Reshape to a shape given as an input of unknown rank: ORT's symbolic shape
    inference fails on it (as it does on some BERT exports), plain ONNX shape inference does not."""
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        helper.make_node("Reshape", ["m", "shape"], ["y"], name="reshape"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])
    shape = helper.make_tensor_value_info("shape", TensorProto.INT64, None)
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    weights = {"w": rng.normal(0, 0.25, (16, 16)).astype(np.float32)}
    return _model(nodes, "reshape", [x, shape], [y], weights, check=False)  # the checker wants every input's rank


def position_table(rng: np.random.Generator, width: int = 16, positions: int = 24) -> onnx.ModelProto:
    """A position table sliced to the input's length, added, then a MatMul (a text encoder's pattern):
    ORT's symbolic shape inference cannot broadcast Min(24, sequence) with sequence and stops
    incomplete (after saving its partial graph in the working directory), ONNX shape inference is fine."""
    init = {
        "pos": rng.normal(0, 1, (positions, width)).astype(np.float32),
        "w": rng.normal(0, 1 / np.sqrt(width), (width, width)).astype(np.float32),
        "zero": np.array([0], np.int64),
        "one": np.array([1], np.int64),
    }
    nodes = [
        helper.make_node("Shape", ["x"], ["x_shape"], name="shape"),
        helper.make_node("Gather", ["x_shape", "one"], ["length"], name="length", axis=0),
        helper.make_node("Slice", ["pos", "zero", "length", "zero"], ["p"], name="positions"),
        helper.make_node("Add", ["x", "p"], ["h"], name="add"),
        helper.make_node("MatMul", ["h", "w"], ["y"], name="mm"),
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", width])
    return _model(nodes, "position_table", [x], [y], init)


def masked_softmax(rng: np.random.Generator, width: int = 16) -> onnx.ModelProto:
    """Attention-style scores plus a mask that is -inf where `keep` is 0, then Softmax and a MatMul:
    the mask and the masked scores have an infinite range that no 8-bit grid can cover."""
    init = {
        "w_scores": rng.normal(0, 1, (width, width)).astype(np.float32),
        "w_out": rng.normal(0, 1 / np.sqrt(width), (width, 4)).astype(np.float32),
        "zero": np.array(0.0, np.float32),
        "minus_inf": np.array(-np.inf, np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["x", "w_scores"], ["scores"], name="scores"),
        helper.make_node("Equal", ["keep", "zero"], ["dropped"], name="dropped"),
        helper.make_node("Where", ["dropped", "minus_inf", "zero"], ["mask"], name="mask"),
        helper.make_node("Add", ["scores", "mask"], ["masked"], name="apply_mask"),
        helper.make_node("Softmax", ["masked"], ["weights"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["weights", "w_out"], ["y"], name="mm_out"),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", width]) for n in ("x", "keep")]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    return _model(nodes, "masked_softmax", inputs, [y], init)


# ------------------------------------------------------------------------------------------ bundle
def image_encoder(rng: np.random.Generator) -> onnx.ModelProto:
    init = {
        "scale": np.array(1 / 255.0, np.float32),
        "mean": np.array([0.5, 0.5, 0.5], np.float32).reshape(1, 3, 1, 1),
        "w1": rng.normal(0, 0.5, (8, 3, 3, 3)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 8).astype(np.float32),
        "w2": rng.normal(0, 0.3, (16, 8, 3, 3)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 16).astype(np.float32),
        "wp": rng.normal(0, 0.5, (16, EMBED)).astype(np.float32),
        "bp": np.zeros(EMBED, np.float32),
    }
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("Mul", ["f", "scale"], ["f01"], name="to_unit"),
        helper.make_node("Transpose", ["f01"], ["nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
        helper.make_node("Sub", ["nchw", "mean"], ["centred"], name="centre"),
        helper.make_node("Conv", ["centred", "w1", "b1"], ["c1"], pads=[1] * 4, name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4, strides=[2, 2], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "wp", "bp"], ["embedding"], name="project"),
    ]
    x = helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", IMAGE, IMAGE, 3])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBED])
    return _model(nodes, "image_encoder", [x], [y], init)


def audio_encoder(rng: np.random.Generator) -> onnx.ModelProto:
    init = {
        "w1": rng.normal(0, 1 / np.sqrt(WINDOW), (WINDOW, 32)).astype(np.float32),
        "w2": rng.normal(0, 1 / np.sqrt(32), (32, EMBED)).astype(np.float32),
    }
    nodes = [
        helper.make_node("MatMul", ["audio", "w1"], ["h"], name="frontend"),
        helper.make_node("Abs", ["h"], ["energy"], name="energy"),
        helper.make_node("MatMul", ["energy", "w2"], ["embedding"], name="project"),
    ]
    x = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", WINDOW])
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBED])
    return _model(nodes, "audio_encoder", [x], [y], init)


def text_encoder(rng: np.random.Generator, vocab_size: int, *, token_type_ids: bool = False) -> onnx.ModelProto:
    """Masked mean of an embedding table; with `token_type_ids`, a BERT-like third input whose type
    embedding is added to each token's."""
    init = {
        "table": rng.normal(0, 1, (vocab_size, 16)).astype(np.float32),
        "axis1": np.array([1], np.int64),
        "w": rng.normal(0, 0.25, (16, EMBED)).astype(np.float32),
        "one": np.array(1.0, np.float32),
    }
    nodes = [helper.make_node("Gather", ["table", "input_ids"], ["tokens" if not token_type_ids else "words"],
                              name="embed")]
    if token_type_ids:
        init["type_table"] = rng.normal(0, 1, (2, 16)).astype(np.float32)
        nodes += [
            helper.make_node("Gather", ["type_table", "token_type_ids"], ["types"], name="embed_types"),
            helper.make_node("Add", ["words", "types"], ["tokens"], name="add_types"),
        ]
    nodes += [
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT, name="mask_float"),
        helper.make_node("Unsqueeze", ["mask", "axis1"], ["mask3"], name="mask_axis"),
        helper.make_node("Transpose", ["mask3"], ["mask_t"], perm=[0, 2, 1], name="mask_t"),
        helper.make_node("Mul", ["tokens", "mask_t"], ["masked"], name="apply_mask"),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0, name="sum_tokens"),
        helper.make_node("ReduceSum", ["mask", "axis1"], ["count"], keepdims=1, name="count_tokens"),
        helper.make_node("Max", ["count", "one"], ["safe_count"], name="at_least_one"),
        helper.make_node("Div", ["summed", "safe_count"], ["pooled"], name="mean"),
        helper.make_node("MatMul", ["pooled", "w"], ["embedding"], name="project"),
    ]
    names = TEXT_INPUTS if token_type_ids else TEXT_INPUTS[:2]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"]) for n in names]
    y = helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", EMBED])
    return _model(nodes, "text_encoder", inputs, [y], init)


def fusion_head(rng: np.random.Generator, modalities=("text", "image", "audio")) -> onnx.ModelProto:
    n = len(modalities)
    spread = np.kron(np.eye(n, dtype=np.float32), np.ones((1, EMBED), np.float32))  # presence [b,n] -> mask [b,n*E]
    init = {
        "spread": spread,
        "w": rng.normal(0, 1 / np.sqrt(n * EMBED), (n * EMBED, len(LABELS))).astype(np.float32),
        "b": np.zeros(len(LABELS), np.float32),
    }
    nodes = [
        helper.make_node("Concat", list(modalities), ["joined"], axis=1, name="join"),
        helper.make_node("MatMul", ["presence", "spread"], ["mask"], name="spread_presence"),
        helper.make_node("Mul", ["joined", "mask"], ["present"], name="mask_missing"),
        helper.make_node("Gemm", ["present", "w", "b"], ["logits"], name="classify"),
    ]
    inputs = [helper.make_tensor_value_info(m, TensorProto.FLOAT, ["batch", EMBED]) for m in modalities]
    inputs.append(helper.make_tensor_value_info("presence", TensorProto.FLOAT, ["batch", n]))
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])
    return _model(nodes, "fusion", inputs, [y], init)


def write_tokenizer(directory: Path) -> int:
    """A WordLevel tokenizer.json over WORDS; returns the vocabulary size."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "tokenizer_config.json").write_text(json.dumps({"pad_token": "[PAD]"}))
    return len(vocab)


def _spec(name, dtype, shape) -> dict:
    return {"name": name, "dtype": dtype, "shape": list(shape)}


def write_bundle(root: Path, seed: int = 0, *, channel_order: str = "bgr", token_type_ids: bool = False,
                 names: dict[str, str] | None = None) -> Path:
    """A 3-encoder + fusion bundle under `root`, manifest written with fusionrt.bundle.write_manifest.

    `channel_order`: the image encoder's; `token_type_ids`: the text encoder takes a third input;
    `names`: other component names (e.g. {"image_encoder": "vision"}), for code that must find
    components by role.
    """
    from fusionrt.bundle import FORMAT, FORMAT_VERSION, write_manifest

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tokenizer(root / "tokenizer")
    models = {
        "text_encoder": text_encoder(rng, vocab_size, token_type_ids=token_type_ids),
        "image_encoder": image_encoder(rng),
        "audio_encoder": audio_encoder(rng),
        "fusion": fusion_head(rng),
    }
    named = {c: (names or {}).get(c, c) for c in COMPONENTS}
    for name, model in models.items():
        onnx.save(model, str(root / f"{named[name]}.fp32.onnx"))
    embedding = [_spec("embedding", "float32", ["batch", EMBED])]
    variants = lambda name: {  # noqa: E731
        "fp32": {"file": f"{named[name]}.fp32.onnx", "precision": "fp32", "exporter": "onnx.helper"}
    }
    encoder = lambda name, modality, inputs, pre: {  # noqa: E731
        "role": "encoder", "modality": modality, "rate_hz": 10.0, "inputs": inputs, "outputs": embedding,
        "preprocessing": pre, "variants": variants(name), "default_variant": "fp32",
    }  # fmt: skip
    text_inputs = TEXT_INPUTS if token_type_ids else TEXT_INPUTS[:2]
    components = {
        "text_encoder": encoder(
            "text_encoder", "text", [_spec(n, "int64", ["batch", "sequence"]) for n in text_inputs],
            {"max_length": MAX_LENGTH, "padding": "max_length"},
        ),
        "image_encoder": encoder(
            "image_encoder", "image", [_spec("image", "uint8", ["batch", IMAGE, IMAGE, 3])],
            {"height": IMAGE, "width": IMAGE, "channel_order": channel_order},
        ),
        "audio_encoder": encoder(
            "audio_encoder", "audio", [_spec("audio", "float32", ["batch", WINDOW])],
            {"sample_rate": SAMPLE_RATE, "window_samples": WINDOW},
        ),
        "fusion": {
            "role": "fusion", "modality": None, "rate_hz": None,
            "inputs": [_spec(m, "float32", ["batch", EMBED]) for m in ("text", "image", "audio")]
            + [_spec("presence", "float32", ["batch", 3])],
            "outputs": [_spec("logits", "float32", ["batch", len(LABELS)])],
            "preprocessing": {}, "variants": variants("fusion"), "default_variant": "fp32",
        },
    }  # fmt: skip
    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": "2024-01-01T00:00:00+00:00",
        "task": {"kind": "classification", "labels": list(LABELS)},
        "modalities": ["text", "image", "audio"],
        "components": {named[name]: entry for name, entry in components.items()},
        "tokenizer": "tokenizer",
        "tools": {},
    }
    write_manifest(root, manifest)
    return root


class Items:
    """Raw multimodal items (BGR images, PCM, texts) with labels, like fusionrt.data.DigitsData."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        base = rng.integers(0, 256, (n, 1, 1, 3))
        self.images = np.clip(base + rng.normal(0, 40, (n, IMAGE, IMAGE, 3)), 0, 255).astype(np.uint8)
        t = np.arange(WINDOW) / SAMPLE_RATE
        freq = rng.uniform(100, 2000, (n, 1))
        self.audio = (np.sin(2 * np.pi * freq * t) * rng.uniform(0.1, 1.0, (n, 1))).astype(np.float32)
        self.texts = tuple(" ".join(rng.choice(WORDS, size=rng.integers(2, 7))) for _ in range(n))
        self.labels = np.zeros(n, np.int64)

    def __len__(self) -> int:
        return len(self.labels)


def labelled_set(bundle, n: int, seed: int):
    """A CalibrationSet of `n` items whose labels are the FP32 bundle's own predictions."""
    from fusionrt.calibration import BundleRunner, CalibrationSet

    items = CalibrationSet.from_data(bundle, Items(n, seed), source=f"synthetic seed {seed}")
    items.labels = BundleRunner(bundle, items).logits().argmax(axis=1)
    return items
