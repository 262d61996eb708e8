import json
from pathlib import Path

import pytest

from fusionrt.config import (
    Config,
    FusionKind,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from fusionrt.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_demo_yaml_spells_out_the_defaults():
    assert load_config(REPO / "configs" / "demo.yaml") == Config()


def test_round_trip_yaml_and_json(tmp_path):
    config = config_from_dict({"model": {"fusion": {"kind": "late"}, "image": {"widths": [8, 16]}}})
    assert config.model.fusion.kind is FusionKind.LATE
    assert config.model.image.widths == (8, 16)
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config
    (tmp_path / "c.json").write_text(json.dumps(config_to_dict(config)))
    assert load_config(tmp_path / "c.json") == config


def test_unknown_key_names_its_full_path(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  audio:\n    n_mel: 40\n")
    with pytest.raises(ConfigError, match=r"unknown key model\.audio\.n_mel .*n_mels"):
        load_config(path)


def test_bad_enum_lists_choices():
    with pytest.raises(ConfigError, match="model.fusion.kind = 'gated'; expected one of early, late, cross_attention"):
        config_from_dict({"model": {"fusion": {"kind": "gated"}}})


def test_wrong_type_and_range_are_named():
    with pytest.raises(ConfigError, match="train.epochs = 'ten'; expected int"):
        config_from_dict({"train": {"epochs": "ten"}})
    with pytest.raises(ConfigError, match="model.modalities"):
        config_from_dict({"model": {"modalities": ["smell"]}})
    with pytest.raises(ConfigError, match="model.fusion.heads"):
        config_from_dict({"model": {"fusion": {"hidden": 10, "heads": 4}}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
