"""Fixtures: one thread and a fixed seed per test, and a bundle exported once per test module."""

from __future__ import annotations

import pytest
import torch
from export_modules import (
    VOCAB,
    TinyBertMean,
    TinyConvEncoder,
    TinyFusion,
    fusion_inputs,
    image_inputs,
    tiny_tokenizer,
    token_inputs,
)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def exported_bundle(tmp_path_factory):
    """A text + image bundle (fp32 and fp16 variants), exported once per test module."""
    from fusionrt.export import export_bundle

    torch.manual_seed(0)
    torch.set_num_threads(1)
    modalities = ("text", "image")
    encoders = {"text": TinyBertMean(len(VOCAB)), "image": TinyConvEncoder()}
    fusion = TinyFusion(modalities)
    examples = {"text_encoder": token_inputs(), "image_encoder": image_inputs(), "fusion": fusion_inputs(modalities)}
    lines: list[str] = []
    out = tmp_path_factory.mktemp("bundles") / "demo"
    bundle = export_bundle(
        encoders, fusion, out, example_inputs=examples, labels=["zero", "one", "two", "three"],
        tokenizer=tiny_tokenizer(), progress=lines.append,
    )  # fmt: skip
    return bundle, lines, encoders, fusion, examples
