"""train.trainable_top and train.encoder_lr on the scaled-down seed config: the lower layers of the text
and image encoders keep their initial weights (BatchNorm statistics included), everything above them
moves, and the encoders' own layers train at encoder_lr while the rest trains at lr."""

import pytest
import torch
from safetensors.torch import load_file

from fusionrt.config import load_config
from fusionrt.errors import ConfigError
from fusionrt.models import MultimodalModel, build_tokenizer
from fusionrt.models.train import train
from seed_small import SEED_CONFIG, SEED_SMALL

# seed_small: text has 2 layers, image 4 stages of 1, 2, 1, 1 blocks (blocks.0 .. blocks.4).
FROZEN = ("encoders.text.backbone.embeddings.", "encoders.text.backbone.encoder.layer.0.",
          "encoders.image.stem.", *(f"encoders.image.blocks.{i}." for i in range(4)))  # fmt: skip
TRAINED = ("encoders.text.backbone.encoder.layer.1.", "encoders.text.proj.", "encoders.image.blocks.4.",
           "encoders.image.proj.", "encoders.audio.", "fusion.")  # fmt: skip


def _config(*extra):
    return load_config(SEED_CONFIG, (*SEED_SMALL, "data={train_size: 40, val_size: 10, test_size: 10}",
                                     "train={epochs: 1, batch_size: 8, lr: 0.003, threads: 1, trainable_top: 1}",
                                     *extra))  # fmt: skip


def _initial(config):
    """The model `train` starts from: it seeds torch with train.seed before building it."""
    torch.manual_seed(config.train.seed)
    return MultimodalModel(config.model, vocab_size=len(build_tokenizer(config.model.text)))


def _moved(name, before, after):
    return not torch.equal(before[name], after[name])


def test_frozen_layers_keep_their_init_and_the_rest_trains(tmp_path):
    config = _config()
    before = {k: v.clone() for k, v in _initial(config).state_dict().items()}
    after = load_file(str(train(config, tmp_path / "run", progress=lambda line: None).checkpoint))
    assert set(after) == set(before)
    frozen = [k for k in before if k.startswith(FROZEN)]
    assert any("running_mean" in k for k in frozen)  # BatchNorm statistics are frozen with the weights
    for name in frozen:
        assert not _moved(name, before, after), f"{name} is frozen but changed"
    for prefix in TRAINED:  # every trainable part moved off its init (a tensor or more per part)
        params = [k for k in before if k.startswith(prefix) and after[k].is_floating_point()]
        assert params and any(_moved(k, before, after) for k in params), f"{prefix} did not train"
    weights = [k for k in before if k.startswith(TRAINED) and k.endswith("weight")]
    assert sum(_moved(k, before, after) for k in weights) >= 0.9 * len(weights)


def test_frozen_modules_stay_in_eval_mode_and_outside_autograd():
    model = _initial(_config())
    frozen = model.freeze_lower_layers(2)  # 2 of 2 text layers: only the embeddings; the top 2 image stages
    assert model.encoders["text"].backbone.embeddings in frozen
    assert not any(layer in frozen for layer in model.encoders["text"].backbone.encoder.layer)
    assert [b in frozen for b in model.encoders["image"].blocks] == [True, True, True, False, False]
    model.train()
    assert all(not m.training for f in frozen for m in f.modules())
    assert model.fusion.training and model.encoders["audio"].training
    assert all(not p.requires_grad for f in frozen for p in f.parameters())
    assert all(p.requires_grad for p in model.encoders["audio"].parameters())


def test_trainable_top_and_encoder_lr_are_validated():
    with pytest.raises(ConfigError, match="train.trainable_top = 0"):
        _config("train.trainable_top=0")
    assert _config("train.trainable_top=null").train.trainable_top is None
    with pytest.raises(ConfigError, match="train.encoder_lr = 0.0"):
        _config("train.encoder_lr=0.0")


def test_encoder_lr_sets_the_rate_of_the_encoder_layers_only(tmp_path):
    config = _config("train.encoder_lr=1.0e-9")
    before = _initial(config).state_dict()
    after = load_file(str(train(config, tmp_path / "run", progress=lambda line: None).checkpoint))

    def largest_step(prefix):
        return max((after[k] - before[k]).abs().max().item() for k in before
                   if k.startswith(prefix) and k.endswith("weight"))  # fmt: skip

    for layers in ("encoders.text.backbone.encoder.layer.1.", "encoders.image.blocks.4."):
        assert largest_step(layers) < 1e-6  # Adam moves a weight by about its rate per step
    for part in ("encoders.text.proj.", "encoders.image.proj.", "encoders.audio.", "fusion."):
        assert largest_step(part) > 1e-4  # train.lr
