"""Tiny real ONNX components, bundles written with `fusionrt.bundle.write_manifest`, and a list-backed
source (real threads, real timing) for the pipeline tests.

The encoders are simple enough to recompute in NumPy, so tests can assert which inputs were fused:
image -> mean pixel per channel / 255 @ W_image; audio -> samples @ W_audio; text -> masked mean
of an embedding table; fusion -> concat(embedding * presence..., presence) @ W_fusion.
"""

from __future__ import annotations

import _thread
import contextlib
import signal
import threading
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fusionrt.bundle import write_manifest
from fusionrt.errors import SourceError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.sources import Replay, SourceOptions

E = 4  # embedding width
LABELS = ("zero", "one", "two")
IMAGE_SIZE = 8
SAMPLE_RATE = 1000
WINDOW = 200  # audio window: 0.2 s at 1 kHz
MAX_LENGTH = 6
WORDS = ("[PAD]", "[UNK]", "red", "green", "blue", "cat", "dog")
OPSET = 17


def weights(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


W_IMAGE = weights(1, 3, E)
W_AUDIO = weights(2, WINDOW, E) / np.float32(np.sqrt(WINDOW))
TABLE = weights(3, len(WORDS), E)
MODALITIES = ("text", "image", "audio")
W_FUSION = weights(4, E * len(MODALITIES) + len(MODALITIES), len(LABELS))


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def _io(name, dtype, shape):
    return helper.make_tensor_value_info(name, dtype, shape)


def image_encoder(path: Path, *, heavy: int = 0, dim: int = 512) -> Path:
    """uint8 [b, S, S, 3] -> mean/255 @ W_IMAGE; `heavy` > 0 adds that many [dim, dim] MatMuls
    (their result is multiplied by 0 and added, so the embedding stays the same)."""
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Div", ["m", "c255"], ["mean"]),
        helper.make_node("MatMul", ["mean", "w"], ["base"]),
    ]
    init = [numpy_helper.from_array(np.float32(255.0), "c255"), numpy_helper.from_array(W_IMAGE, "w")]
    last = "base"
    if heavy:
        init += [
            numpy_helper.from_array(weights(5, 3, dim) * 0.5, "w0"),
            numpy_helper.from_array(np.ones((1, dim), np.float32), "ones"),
            numpy_helper.from_array(weights(6, dim, E) * 0.0, "wout"),
            numpy_helper.from_array(np.array([dim, 1], np.int64), "col"),
        ]
        nodes += [
            helper.make_node("MatMul", ["mean", "w0"], ["h0"]),
            helper.make_node("Reshape", ["h0", "col"], ["hc"]),
            helper.make_node("Mul", ["hc", "ones"], ["H0"]),
        ]
        for k in range(heavy):
            init.append(numpy_helper.from_array(weights(10 + k, dim, dim) / np.float32(np.sqrt(dim)), f"wk{k}"))
            nodes += [helper.make_node("MatMul", [f"H{k}", f"wk{k}"], [f"P{k}"]),
                      helper.make_node("Tanh", [f"P{k}"], [f"H{k + 1}"])]
        nodes += [
            helper.make_node("ReduceMean", [f"H{heavy}"], ["r"], axes=[0], keepdims=1),
            helper.make_node("MatMul", ["r", "wout"], ["zero"]),
            helper.make_node("Add", ["base", "zero"], ["sum"]),
        ]
        last = "sum"
    nodes.append(helper.make_node("Identity", [last], ["embedding"]))
    graph = helper.make_graph(nodes, "image_encoder", [_io("image", TensorProto.UINT8, ["batch", IMAGE_SIZE, IMAGE_SIZE, 3])],
                              [_io("embedding", TensorProto.FLOAT, ["batch", E])], init)
    return _save(graph, path)


def audio_encoder(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["audio", "w"], ["embedding"])], "audio_encoder",
        [_io("audio", TensorProto.FLOAT, ["batch", WINDOW])], [_io("embedding", TensorProto.FLOAT, ["batch", E])],
        [numpy_helper.from_array(W_AUDIO, "w")],
    )
    return _save(graph, path)


def text_encoder(path: Path) -> Path:
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["tokens"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "last"], ["mask3"]),
        helper.make_node("Mul", ["tokens", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "one"], ["total"], keepdims=0),
        helper.make_node("ReduceSum", ["maskf", "one"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "tiny"], ["safe"]),
        helper.make_node("Div", ["total", "safe"], ["embedding"]),
    ]
    init = [numpy_helper.from_array(TABLE, "table"), numpy_helper.from_array(np.array([-1], np.int64), "last"),
            numpy_helper.from_array(np.array([1], np.int64), "one"), numpy_helper.from_array(np.float32(1e-9), "tiny")]
    graph = helper.make_graph(
        nodes, "text_encoder",
        [_io("input_ids", TensorProto.INT64, ["batch", "sequence"]), _io("attention_mask", TensorProto.INT64, ["batch", "sequence"])],
        [_io("embedding", TensorProto.FLOAT, ["batch", E])], init,
    )  # fmt: skip
    return _save(graph, path)


def fusion_head(path: Path, modalities=MODALITIES) -> Path:
    n = len(modalities)
    nodes, gated = [], []
    init = [numpy_helper.from_array(W_FUSION[: E * n + n] if n == len(MODALITIES) else weights(4, E * n + n, len(LABELS)), "w")]
    for i, m in enumerate(modalities):
        init.append(numpy_helper.from_array(np.array([i], np.int64), f"i{i}"))
        nodes += [helper.make_node("Gather", ["presence", f"i{i}"], [f"p{i}"], axis=1),
                  helper.make_node("Mul", [m, f"p{i}"], [f"g{i}"])]
        gated.append(f"g{i}")
    nodes += [helper.make_node("Concat", [*gated, "presence"], ["features"], axis=1),
              helper.make_node("MatMul", ["features", "w"], ["logits"])]
    graph = helper.make_graph(
        nodes, "fusion", [*(_io(m, TensorProto.FLOAT, ["batch", E]) for m in modalities), _io("presence", TensorProto.FLOAT, ["batch", n])],
        [_io("logits", TensorProto.FLOAT, ["batch", len(LABELS)])], init,
    )  # fmt: skip
    return _save(graph, path)


def write_tokenizer(directory: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))


def _spec(name, dtype, shape):
    return {"name": name, "dtype": dtype, "shape": list(shape)}


def write_bundle(root: Path, *, heavy_image: int = 0, fast_int8_image: bool = False,
                 modalities=MODALITIES, hop_s: float = 0.1) -> Path:
    """A real bundle directory: an encoder per modality, the fusion head, tokenizer, manifest.

    heavy_image > 0 makes image_encoder.fp32 slow (that many 512x512 MatMuls); fast_int8_image adds
    a light "int8" variant computing the same embedding (a stand-in for a quantized file).
    """
    root.mkdir(parents=True, exist_ok=True)
    components = {}
    encoders = {
        "image": (image_encoder, [_spec("image", "uint8", ["batch", IMAGE_SIZE, IMAGE_SIZE, 3])],
                  {"height": IMAGE_SIZE, "width": IMAGE_SIZE, "channel_order": "bgr", "dtype": "uint8", "layout": "HWC"}),
        "audio": (audio_encoder, [_spec("audio", "float32", ["batch", WINDOW])],
                  {"sample_rate": SAMPLE_RATE, "window_samples": WINDOW, "hop_s": hop_s, "dtype": "float32"}),
        "text": (text_encoder, [_spec("input_ids", "int64", ["batch", "sequence"]), _spec("attention_mask", "int64", ["batch", "sequence"])],
                 {"max_length": MAX_LENGTH, "padding": "max_length", "tokenizer": "tokenizer/tokenizer.json"}),
    }  # fmt: skip
    for modality in modalities:
        build, inputs, preprocessing = encoders[modality]
        name = f"{modality}_encoder"
        variants = {"fp32": {"file": f"{name}.fp32.onnx", "precision": "fp32"}}
        if modality == "image":
            build(root / f"{name}.fp32.onnx", heavy=heavy_image)
            if fast_int8_image:
                build(root / f"{name}.int8.onnx")
                variants["int8"] = {"file": f"{name}.int8.onnx", "precision": "int8"}
        else:
            build(root / f"{name}.fp32.onnx")
        components[name] = {
            "role": "encoder", "modality": modality, "rate_hz": None, "inputs": inputs,
            "outputs": [_spec("embedding", "float32", ["batch", E])], "preprocessing": preprocessing,
            "variants": variants, "default_variant": "fp32",
        }  # fmt: skip
    fusion_head(root / "fusion.fp32.onnx", modalities)
    components["fusion"] = {
        "role": "fusion", "modality": None, "rate_hz": None,
        "inputs": [*(_spec(m, "float32", ["batch", E]) for m in modalities), _spec("presence", "float32", ["batch", len(modalities)])],
        "outputs": [_spec("logits", "float32", ["batch", len(LABELS)])], "preprocessing": {},
        "variants": {"fp32": {"file": "fusion.fp32.onnx", "precision": "fp32"}}, "default_variant": "fp32",
    }  # fmt: skip
    if "text" in modalities:
        write_tokenizer(root / "tokenizer")
    manifest = {
        "format": "fusionrt-bundle", "version": 1, "created": "2024-01-01T00:00:00Z",
        "task": {"kind": "classification", "labels": list(LABELS)}, "modalities": list(modalities),
        "components": components, "tokenizer": "tokenizer" if "text" in modalities else None, "tools": {},
    }  # fmt: skip
    write_manifest(root, manifest)
    return root


# NumPy references of the components above.


def image_embedding(frame: np.ndarray) -> np.ndarray:
    return (frame.astype(np.float32).mean(axis=(0, 1)) / np.float32(255.0)) @ W_IMAGE


def audio_embedding(window: np.ndarray) -> np.ndarray:
    return window.astype(np.float32) @ W_AUDIO


def fused_logits(embeddings: dict[str, np.ndarray | None], modalities=MODALITIES) -> np.ndarray:
    presence = np.array([embeddings.get(m) is not None for m in modalities], np.float32)
    parts = [embeddings[m] if embeddings.get(m) is not None else np.zeros(E, np.float32) for m in modalities]
    return np.concatenate([*parts, presence]) @ W_FUSION


class ListSource:
    """A source over a list of (offset_s, data, label). REALTIME: releases each item at its offset
    from the first pull by the monotonic clock (t_ns = release time); DETERMINISTIC: t_ns = offset.
    `fail_at`: raise SourceError instead of yielding that item. `period_s`: every item's offset."""

    def __init__(self, modality, items, *, replay=Replay.REALTIME, fail_at=None, uri="list://", sample_rate=SAMPLE_RATE):
        self.modality = Modality(modality)
        self.items = list(items)
        self.uri = uri
        offsets = [o for o, _, _ in self.items]
        self.rate_hz = (len(offsets) - 1) / (offsets[-1] - offsets[0]) if len(offsets) > 1 and offsets[-1] > offsets[0] else 0.0
        self.options = SourceOptions(replay=replay, sample_rate=sample_rate)
        self.fail_at = fail_at
        self.stats = {"frames": 0}
        self._closed = threading.Event()
        self.pulled = 0

    def frames(self):
        start = time.monotonic_ns()
        for seq, (offset, data, label) in enumerate(self.items):
            if self.options.replay is Replay.REALTIME:
                wait = start + offset * 1e9 - time.monotonic_ns()
                if wait > 0 and self._closed.wait(wait / 1e9):
                    return
                t_ns = time.monotonic_ns()
            else:
                t_ns = round(offset * 1e9)
            if self._closed.is_set():
                return
            if seq == self.fail_at:
                raise SourceError(f"{self.uri}: the device went away at item {seq}")
            self.pulled += 1
            self.stats["frames"] += 1
            yield Frame(self.modality, t_ns, seq, data, label)

    def close(self) -> None:
        self._closed.set()


@contextlib.contextmanager
def ctrl_c_after(seconds: float):
    """Ctrl-C in the main thread `seconds` after entering, under Python's own SIGINT handler (a
    process a non-interactive shell starts in the background ignores SIGINT, and interrupt_main
    then does nothing)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(seconds, _thread.interrupt_main)
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)


def camera_items(count: int, period_s: float, *, start_s: float = 0.0, size: int = IMAGE_SIZE, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(start_s + i * period_s, rng.integers(0, 256, (size, size, 3), dtype=np.uint8), i % len(LABELS))
            for i in range(count)]


def audio_items(seconds: float, chunk: int = 20, *, seed: int = 0):
    """Chunks of `chunk` samples at SAMPLE_RATE; an item's offset is the time of its last sample."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE / chunk)
    return [((i + 1) * chunk / SAMPLE_RATE, rng.standard_normal(chunk).astype(np.float32), None) for i in range(n)]
