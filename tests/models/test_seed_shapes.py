"""configs/seed.yaml builds the seed system at its real shapes, from the demo's own classes."""

import pytest
import torch

from fusionrt.config import FusionKind, ImageBlock, Pooling, Task, apply_override, load_config
from fusionrt.errors import ConfigError
from fusionrt.models import EarlyFusion, MultimodalModel
from fusionrt.models.image import Bottleneck
from seed_small import CROSS_ATTENTION, SEED_CONFIG, SEED_SMALL

RESNET50_BACKBONE_PARAMS = 23_508_032  # torchvision's resnet50 without its fc layer
BERT_BASE_LAYER_PARAMS = 7_087_872  # one BERT-base encoder layer (attention + FFN + 2 LayerNorms)


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_seed_config_is_bert_base_resnet50_mfcc_early_fusion_binary():
    config = load_config(SEED_CONFIG)
    m = config.model
    assert (m.task, m.num_outputs) == (Task.BINARY, 1)
    assert (m.text.hidden_size, m.text.num_layers, m.text.num_heads, m.text.intermediate_size) == (768, 12, 12, 3072)
    assert m.text.pooling is Pooling.CLS
    assert (m.image.size, m.image.blocks_per_stage, m.image.block) == (224, (3, 4, 6, 3), ImageBlock.BOTTLENECK)
    assert m.audio.frontend.value == "mfcc"
    assert (m.fusion.kind, m.fusion.hidden) == (FusionKind.EARLY, 1024)


def test_seed_encoders_have_the_published_parameter_counts():
    model = MultimodalModel(load_config(SEED_CONFIG).model, vocab_size=100)
    image = model.encoders["image"]
    assert _count(image.stem) + _count(image.blocks) == RESNET50_BACKBONE_PARAMS
    assert sum(isinstance(b, Bottleneck) for b in image.blocks) == 16
    layers = model.encoders["text"].backbone.encoder.layer
    assert len(layers) == 12 and all(_count(layer) == BERT_BASE_LAYER_PARAMS for layer in layers)
    head = model.fusion
    assert isinstance(head, EarlyFusion)
    assert (head.mlp[0].out_features, head.head.out_features) == (1024, 1)


def test_small_seed_keeps_the_seed_structure_and_runs():
    config = load_config(SEED_CONFIG, SEED_SMALL)
    assert config.model.task is Task.BINARY and config.model.text.pooling is Pooling.CLS
    model = MultimodalModel(config.model, vocab_size=100).eval()
    inputs = {name: tuple(e.example_inputs(2).values()) for name, e in model.encoders.items()}
    with torch.no_grad():
        out = model(inputs, torch.ones(2, 3))
    assert out.shape == (2, 1) and torch.isfinite(out).all()
    crossed = load_config(SEED_CONFIG, (*SEED_SMALL, CROSS_ATTENTION))
    assert crossed.model.fusion.kind is FusionKind.CROSS_ATTENTION


def test_cls_pooling_reads_only_the_first_token():
    config = load_config(SEED_CONFIG, SEED_SMALL)
    encoder = MultimodalModel(config.model, vocab_size=100).encoders["text"].eval()
    ids, mask = encoder.example_inputs(1).values()
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 100  # the padded last position: masked from attention
    assert mask[0, -1] == 0
    with torch.no_grad():
        assert torch.equal(encoder(ids, mask), encoder(changed, mask))


@pytest.mark.parametrize("override, message", [
    ("model.text.num_layers", "is not KEY=VALUE"),
    ("=3", "is not KEY=VALUE"),
    ("model.image.size.x=3", "model.image.size is not a mapping"),
])
def test_bad_overrides_say_what_is_wrong(override, message):
    raw = {"model": {"image": {"size": 32}}}
    with pytest.raises(ConfigError, match=message):
        apply_override(raw, override)


def test_override_does_not_change_the_given_mapping():
    raw = {"model": {"image": {"size": 32}}}
    changed = apply_override(raw, "model.image.widths=[8, 16]")
    assert changed["model"]["image"] == {"size": 32, "widths": [8, 16]}
    assert raw == {"model": {"image": {"size": 32}}}


def test_binary_task_needs_one_output_and_stage_counts_match_widths():
    with pytest.raises(ConfigError, match="model.num_outputs"):
        load_config(SEED_CONFIG, ("model.num_outputs=2",))
    with pytest.raises(ConfigError, match="model.image.blocks_per_stage"):
        load_config(SEED_CONFIG, ("model.image.blocks_per_stage=[3, 4]",))
