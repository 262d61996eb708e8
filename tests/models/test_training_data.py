"""Shared training data (`training_data`) trains exactly the model that fresh data does."""

import dataclasses
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from fusionrt.config import config_from_dict
from fusionrt.errors import ConfigError
from fusionrt.models.train import train, training_data

TINY = yaml.safe_load((Path(__file__).parents[1] / "tiny.yaml").read_text())


def test_shared_trimodal_data_trains_a_single_modality_model_bit_identically(tmp_path):
    config = config_from_dict(TINY)
    text_only = dataclasses.replace(config, model=dataclasses.replace(config.model, modalities=("text",)))
    quiet = {"progress": lambda line: None}
    fresh = train(text_only, tmp_path / "fresh", **quiet)
    shared = train(text_only, tmp_path / "shared", data=training_data(config, **quiet), **quiet)
    a, b = load_file(str(fresh.checkpoint)), load_file(str(shared.checkpoint))
    assert a.keys() == b.keys() and all(name.startswith(("encoders.text.", "fusion.")) for name in a)
    assert all((a[name] == b[name]).all() for name in a)
    assert fresh.metrics == shared.metrics


def test_data_built_for_another_config_is_refused(tmp_path):
    config = config_from_dict(TINY)
    data = training_data(dataclasses.replace(config, model=dataclasses.replace(config.model, modalities=("image",))),
                         progress=lambda line: None)  # fmt: skip
    with pytest.raises(ConfigError, match=r"model inputs \['image'\] does not fit a run with .* model inputs \['text', 'image', 'audio'\]"):
        train(config, tmp_path / "run", data=data, progress=lambda line: None)
    other_noise = dataclasses.replace(config.data, noise=dataclasses.replace(config.data.noise, image=2.0))
    with pytest.raises(ConfigError, match="does not fit"):
        train(dataclasses.replace(config, data=other_noise, model=data.config.model), tmp_path / "run", data=data,
              progress=lambda line: None)  # fmt: skip
