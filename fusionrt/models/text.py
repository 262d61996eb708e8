"""Text encoder (a BERT-family transformer + pooling + projection) and its tokenizer.

Everything loads from local directories only (`local_files_only=True`); nothing is downloaded.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path

import torch
from torch import nn

from fusionrt.config import Pooling, TextConfig
from fusionrt.errors import ModelError

# Encoders that take (input_ids, attention_mask) and return last_hidden_state [B, seq, hidden].
SUPPORTED_MODEL_TYPES = ("bert", "distilbert", "roberta", "xlm-roberta", "camembert", "electra", "mpnet")

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CHARACTERS = string.ascii_lowercase + string.digits + string.punctuation


def pretrained_model_type(directory: str | Path) -> str:
    """The `model_type` of a local transformers directory, checked against SUPPORTED_MODEL_TYPES."""
    config_file = Path(directory) / "config.json"
    if not config_file.is_file():
        raise ModelError(
            f"text.pretrained = {str(directory)!r} is not a directory with a config.json; expected a local "
            f"transformers model directory (model types {', '.join(SUPPORTED_MODEL_TYPES)})"
        )
    try:
        model_type = json.loads(config_file.read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise ModelError(f"{config_file} is not a JSON object with a model_type: {e}") from e
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ModelError(
            f"text.pretrained = {str(directory)!r} holds model_type {model_type!r}; the text encoder supports "
            f"the BERT family only: {', '.join(SUPPORTED_MODEL_TYPES)}"
        )
    return model_type


def load_backbone(directory: str | Path) -> nn.Module:
    """A supported pretrained encoder from a local directory, with eager attention and no pooler."""
    from transformers import AutoModel

    pretrained_model_type(directory)
    try:
        backbone = AutoModel.from_pretrained(str(directory), local_files_only=True, attn_implementation="eager")
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load the text encoder from {directory}: {e}") from e
    if getattr(backbone, "pooler", None) is not None:
        backbone.pooler = None  # loaded (checkpoints carry it) but unused: TextEncoder pools itself
    return backbone


def fresh_backbone(cfg: TextConfig, vocab_size: int) -> nn.Module:
    """An untrained BERT of the configured size; positions cover exactly cfg.max_length tokens."""
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=cfg.max_length,
        pad_token_id=0,
        attn_implementation="eager",
    )
    return BertModel(config, add_pooling_layer=False)


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of hidden [B, seq, H] over the positions where attention_mask [B, seq] is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


class TextEncoder(nn.Module):
    """(input_ids, attention_mask) int64 [B, seq] -> embedding float32 [B, embed_dim or hidden]."""

    def __init__(self, cfg: TextConfig, backbone: nn.Module, embed_dim: int | None):
        super().__init__()
        self.cfg = cfg
        self.backbone = backbone
        hidden = backbone.config.hidden_size
        self.proj = nn.Linear(hidden, embed_dim) if embed_dim is not None else nn.Identity()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.cfg.pooling is Pooling.CLS:
            pooled = hidden[:, 0]
        else:
            pooled = masked_mean(hidden, attention_mask)
        return self.proj(pooled)

    def lower_layers(self, top: int) -> list[nn.Module]:
        """The modules below the top `top` transformer layers (the embeddings and the lower layers):
        what `MultimodalModel.freeze_lower_layers` freezes. The projection is never among them."""
        layers = _transformer_layers(self.backbone)
        keep = min(top, len(layers))
        return [m for name, m in self.backbone.named_children() if name != _layers_owner(self.backbone)] + list(
            layers[: len(layers) - keep]
        )

    def preprocessing(self) -> dict:
        return {
            "max_length": self.cfg.max_length,
            "padding": "max_length",
            "pooling": self.cfg.pooling.value,
            "tokenizer": "tokenizer/tokenizer.json",
        }

    def example_inputs(self, batch: int = 1) -> dict[str, torch.Tensor]:
        """Random ids with trailing padding (row i keeps max_length - 1 - i % (max_length // 2) tokens)."""
        g = torch.Generator().manual_seed(0)
        seq = self.cfg.max_length
        config = self.backbone.config
        pad_id = config.pad_token_id if config.pad_token_id is not None else 0
        lengths = torch.tensor([seq - 1 - i % (seq // 2) for i in range(batch)])
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).to(torch.int64)
        ids = torch.randint(len(SPECIAL_TOKENS), config.vocab_size, (batch, seq), generator=g)
        return {"input_ids": torch.where(mask == 1, ids, pad_id), "attention_mask": mask}


def _layers_owner(backbone: nn.Module) -> str:
    """The child of a BERT-family backbone that holds its transformer layers (`encoder`, DistilBERT's `transformer`)."""
    for name in ("encoder", "transformer"):
        if isinstance(getattr(getattr(backbone, name, None), "layer", None), nn.ModuleList):
            return name
    raise ModelError(
        f"cannot find the transformer layers of a {type(backbone).__name__} (expected .encoder.layer or "
        f".transformer.layer); train.trainable_top needs them"
    )


def _transformer_layers(backbone: nn.Module) -> nn.ModuleList:
    return getattr(backbone, _layers_owner(backbone)).layer


def build_text_encoder(cfg: TextConfig, embed_dim: int | None, vocab_size: int | None) -> TextEncoder:
    """The pretrained encoder of cfg.pretrained, or a fresh BERT over a vocab_size vocabulary."""
    if cfg.pretrained is not None:
        backbone = load_backbone(cfg.pretrained)
        rows = backbone.config.vocab_size
        if vocab_size is not None and vocab_size > rows:
            raise ModelError(
                f"the tokenizer has {vocab_size} tokens but the text encoder in {cfg.pretrained} embeds only {rows}; "
                f"use the tokenizer saved with that model"
            )
    else:
        if not vocab_size:
            raise ModelError(f"a fresh text encoder needs the tokenizer's vocab_size, found {vocab_size!r}")
        backbone = fresh_backbone(cfg, vocab_size)
    return TextEncoder(cfg, backbone, embed_dim)


def demo_vocabulary(words: tuple[str, ...] | list[str]) -> list[str]:
    """WordPiece vocabulary: special tokens, the given words, single characters and their ## forms.

    Words are lowercased and split the way BERT pre-tokenizes ("it's" -> "it", "'", "s"), so every
    given word tokenizes into whole-word tokens.
    """
    from tokenizers.pre_tokenizers import BertPreTokenizer

    split = BertPreTokenizer().pre_tokenize_str
    pieces = [piece for word in words for piece, _ in split(word.lower())]
    tokens = [*SPECIAL_TOKENS, *pieces, *_CHARACTERS, *("##" + c for c in _CHARACTERS)]
    return list(dict.fromkeys(tokens))


def build_tokenizer(cfg: TextConfig, *, words: tuple[str, ...] | None = None):
    """A fast (tokenizers-backed) transformers tokenizer that pads and truncates to cfg.max_length.

    cfg.pretrained set: the tokenizer saved in that directory. Otherwise a lowercasing WordPiece
    tokenizer over `demo_vocabulary(words)`, where words defaults to fusionrt.data.text_vocabulary().
    """
    from transformers import AutoTokenizer, BertTokenizerFast

    if cfg.pretrained is not None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(cfg.pretrained), local_files_only=True)
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot load a tokenizer from text.pretrained = {cfg.pretrained!r}: {e}") from e
        if not tokenizer.is_fast:
            raise ModelError(
                f"the tokenizer in {cfg.pretrained} is not a fast (tokenizers) tokenizer; the runtime needs its "
                f"tokenizer.json: add one to the directory (save it with a fast tokenizer class)"
            )
    else:
        if words is None:
            from fusionrt.data import text_vocabulary

            words = text_vocabulary()
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "vocab.txt").write_text("\n".join(demo_vocabulary(words)) + "\n", encoding="utf-8")
            tokenizer = BertTokenizerFast.from_pretrained(tmp, local_files_only=True, do_lower_case=True)
    tokenizer.model_max_length = cfg.max_length
    backend = tokenizer.backend_tokenizer
    backend.enable_truncation(cfg.max_length)
    backend.enable_padding(length=cfg.max_length, pad_id=tokenizer.pad_token_id, pad_token=tokenizer.pad_token)
    return tokenizer
