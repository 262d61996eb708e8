from __future__ import annotations

import json

import pytest
import torch

from fusionrt.config import AudioConfig, FusionConfig, FusionKind, ImageConfig, ModelConfig, Task, TextConfig
from fusionrt.errors import ModelError
from fusionrt.models import AudioEncoder, ImageEncoder, MultimodalModel, TextEncoder

TINY = ModelConfig(
    embed_dim=16,
    text=TextConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=12),
    image=ImageConfig(size=32, widths=(8, 16)),
    audio=AudioConfig(window_s=0.25, widths=(8,)),
    fusion=FusionConfig(hidden=16, heads=2),
)


def _inputs(model: MultimodalModel, batch: int) -> dict:
    inputs = {}
    for name, encoder in model.encoders.items():
        example = tuple(encoder.example_inputs(batch=batch).values())
        inputs[name] = example if name == "text" else example[0]
    return inputs


def test_builds_one_encoder_per_configured_modality():
    model = MultimodalModel(TINY, vocab_size=60)
    assert list(model.encoders) == ["text", "image", "audio"]
    assert isinstance(model.encoders["text"], TextEncoder)
    assert isinstance(model.encoders["image"], ImageEncoder)
    assert isinstance(model.encoders["audio"], AudioEncoder)
    assert model.fusion.modalities == ("text", "image", "audio")

    two = MultimodalModel(ModelConfig(**{**TINY.__dict__, "modalities": ("audio", "image")}))
    assert list(two.encoders) == ["audio", "image"] and two.fusion.modalities == ("audio", "image")


@pytest.mark.parametrize("kind", list(FusionKind))
def test_forward_gives_logits_and_respects_presence(kind):
    cfg = ModelConfig(**{**TINY.__dict__, "fusion": FusionConfig(kind=kind, hidden=16, heads=2)})
    model = MultimodalModel(cfg, vocab_size=60).eval()
    inputs = _inputs(model, batch=2)
    presence = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
    with torch.no_grad():
        out = model(inputs, presence)
        other_image = model(
            {**inputs, "image": torch.randint(0, 256, inputs["image"].shape, dtype=torch.uint8)}, presence
        )
    assert out.shape == (2, 10)
    torch.testing.assert_close(other_image[0], out[0])  # image missing in row 0
    assert not torch.allclose(other_image[1], out[1])


def test_regression_task_has_raw_outputs_and_trains():
    cfg = ModelConfig(**{**TINY.__dict__, "task": Task.REGRESSION, "num_outputs": 1})
    model = MultimodalModel(cfg, vocab_size=60).train()
    inputs = _inputs(model, batch=4)
    out = model(inputs, torch.ones(4, 3))
    assert out.shape == (4, 1)
    out.square().mean().backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad


def test_checkpoint_holds_no_derived_buffers():
    names = set(MultimodalModel(TINY, vocab_size=60).state_dict())
    assert not any(n.startswith("encoders.audio.frontend.") for n in names)
    assert "encoders.image.mean" not in names


def test_encoder_contracts_are_json_safe():
    model = MultimodalModel(TINY, vocab_size=60)
    for encoder in model.encoders.values():
        json.dumps(encoder.preprocessing())


def test_missing_input_and_missing_vocabulary_are_errors():
    model = MultimodalModel(TINY, vocab_size=60)
    inputs = _inputs(model, batch=1)
    del inputs["audio"]
    with pytest.raises(ModelError, match="audio"):
        model(inputs, torch.ones(1, 3))
    with pytest.raises(ModelError, match="vocab_size"):
        MultimodalModel(TINY, vocab_size=0)
