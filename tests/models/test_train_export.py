"""The spine end to end: train a tiny model, export it, and check the bundle answers like PyTorch."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

import fusionrt.bundle.format
from fusionrt.bundle import load, sha256_of
from fusionrt.cli import main
from fusionrt.config import config_from_dict, save_config
from fusionrt.data import digits_from_config
from fusionrt.errors import ConfigError, ModelError
from fusionrt.models import MultimodalModel, build_tokenizer
from fusionrt.runtime.engine import OrtEngine
from fusionrt.models.train import load_checkpoint, modality_dropout_mask, tensors_from_digits, train

TINY = yaml.safe_load((Path(__file__).parents[1] / "tiny.yaml").read_text())


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("spine")
    config = config_from_dict(TINY)
    save_config(config, root / "tiny.yaml")
    result = train(config, root / "run", progress=lambda line: None)
    return root, config, result


def test_train_writes_safetensors_config_and_metrics(tiny_run):
    root, config, result = tiny_run
    run = root / "run"
    assert sorted(p.name for p in run.iterdir()) == ["config.yaml", "metrics.json", "model.safetensors", "tokenizer"]
    assert not list(run.rglob("*.pt")) and not list(run.rglob("*.bin")) and not list(run.rglob("*.pkl"))
    metrics = json.loads((run / "metrics.json").read_text())
    for split in ("val", "test"):
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
        assert 0.0 <= metrics[split]["macro_f1"] <= 1.0
        assert set(metrics[split]["per_class_recall"]) == {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
    weights = load_file(str(result.checkpoint))
    assert any(name.startswith("encoders.image.") for name in weights)


def test_modality_dropout_never_hides_everything():
    g = torch.Generator().manual_seed(0)
    presence = modality_dropout_mask(2000, 3, 0.6, g)
    assert presence.sum(dim=1).min() >= 1
    assert 0.4 < presence.mean() < 0.7


def test_exported_bundle_answers_like_pytorch(tiny_run, tmp_path, monkeypatch):
    root, config, result = tiny_run
    out = tmp_path / "bundle"
    hashed = []
    counting = lambda path: hashed.append(path.name) or sha256_of(path)  # noqa: E731
    monkeypatch.setattr(fusionrt.bundle.format, "sha256_of", counting)
    assert main(["export", "--config", str(root / "tiny.yaml"), "--checkpoint", str(result.checkpoint), "--out", str(out)]) == 0
    monkeypatch.undo()
    bundle = load(out)
    assert sorted(hashed) == sorted(Path(f).name for f in bundle.manifest["files"])  # every file hashed once
    assert set(bundle.components) == {"text_encoder", "image_encoder", "audio_encoder", "fusion"}
    assert bundle.manifest["reference"] == {"config": "reference/config.yaml", "weights": "reference/model.safetensors"}
    assert (bundle.reference.weights.read_bytes() == result.checkpoint.read_bytes())
    assert config_from_dict(yaml.safe_load(bundle.reference.config.read_text())) == config
    report = bundle.report("export")
    for name in bundle.components:
        assert report["components"][name]["variants"]["fp32"]["parity"]["outputs"]

    tokenizer = build_tokenizer(config.model.text)
    model = MultimodalModel(config.model, vocab_size=len(tokenizer))
    load_checkpoint(model, result.checkpoint)
    model.eval()
    data = digits_from_config(config, "test")
    inputs = tensors_from_digits(data, config, tokenizer)
    presence = torch.tensor([[1, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0]] * 10, dtype=torch.float32)
    with torch.no_grad():
        expected = model(inputs, presence).numpy()

    # The runtime's path: tokenizer.json through `tokenizers`, each encoder file, then the fusion file.
    from tokenizers import Tokenizer

    runtime_tokenizer = Tokenizer.from_file(str(bundle.tokenizer_dir / "tokenizer.json"))
    encoded = runtime_tokenizer.encode_batch(list(data.texts))
    ids = np.array([e.ids for e in encoded], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
    assert np.array_equal(ids, inputs["text"][0].numpy())
    feeds = {
        "text_encoder": {"input_ids": ids, "attention_mask": mask},
        "image_encoder": {"image": data.images},
        "audio_encoder": {"audio": data.audio},
    }
    embeddings = {
        m: OrtEngine(bundle.encoder(m).variant().path).run(feeds[f"{m}_encoder"])["embedding"] for m in bundle.modalities
    }
    logits = OrtEngine(bundle.fusion.variant().path).run({**embeddings, "presence": presence.numpy()})["logits"]
    np.testing.assert_allclose(logits, expected, atol=1e-3)
    assert np.array_equal(logits.argmax(1), expected.argmax(1))


def test_cli_bad_inputs_exit_nonzero_with_one_line(tiny_run, tmp_path, capsys):
    root, config, result = tiny_run
    cfg = str(root / "tiny.yaml")

    assert main(["export", "--config", cfg, "--checkpoint", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip()
    assert "missing.safetensors does not exist" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "b").exists()

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  fusion:\n    kinds: late\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 1
    assert "unknown key model.fusion.kinds" in capsys.readouterr().err

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("user data")
    assert main(["export", "--config", cfg, "--checkpoint", str(result.checkpoint), "--out", str(occupied)]) == 1
    assert "--force" in capsys.readouterr().err
    assert (occupied / "keep.txt").read_text() == "user data"


def test_configs_saved_before_the_rates_moved_still_load(tmp_path):
    """Runs and bundles' reference configs written with model.text/image.rate_hz (now export's DEFAULT_RATES_HZ)."""
    old = {**TINY, "model": {**TINY["model"], "text": {**TINY["model"]["text"], "rate_hz": 1.0}, "image": {"rate_hz": 30.0}}}
    assert config_from_dict(old).model.text == config_from_dict(TINY).model.text
    with pytest.raises(ConfigError, match="unknown key model.audio.rate_hz"):
        config_from_dict({"model": {"audio": {"rate_hz": 10.0}}})


def test_checkpoint_config_mismatch_names_the_tensor(tiny_run, tmp_path):
    root, config, result = tiny_run
    tokenizer = build_tokenizer(config.model.text)
    wider = config_from_dict({**TINY, "model": {**TINY["model"], "embed_dim": 24}})
    with pytest.raises(ModelError, match=r"tensor '.*' has shape .* expects"):
        load_checkpoint(MultimodalModel(wider.model, vocab_size=len(tokenizer)), result.checkpoint)

    weights = load_file(str(result.checkpoint))
    weights["encoders.image.extra"] = torch.zeros(1)
    save_file(weights, str(tmp_path / "extra.safetensors"))
    with pytest.raises(ModelError, match="'encoders.image.extra'"):
        load_checkpoint(MultimodalModel(config.model, vocab_size=len(tokenizer)), tmp_path / "extra.safetensors")

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        load_checkpoint(MultimodalModel(config.model, vocab_size=len(tokenizer)), tmp_path / "junk.safetensors")
