"""The whole reference model: one encoder per configured modality, then a fusion head."""

from __future__ import annotations

import torch
from torch import nn

from fusionrt.config import ModelConfig
from fusionrt.errors import ModelError
from fusionrt.models.audio import AudioEncoder
from fusionrt.models.fusion import build_fusion
from fusionrt.models.image import ImageEncoder
from fusionrt.models.text import build_text_encoder


def build_encoder(cfg: ModelConfig, modality: str, vocab_size: int | None = None) -> nn.Module:
    """The encoder of one modality, projecting to cfg.embed_dim."""
    if modality == "image":
        return ImageEncoder(cfg.image, cfg.embed_dim)
    if modality == "audio":
        return AudioEncoder(cfg.audio, cfg.embed_dim)
    if modality == "text":
        return build_text_encoder(cfg.text, cfg.embed_dim, vocab_size)
    raise ModelError(f"unknown modality {modality!r}; expected one of text, image, audio (model.modalities)")


class MultimodalModel(nn.Module):
    """inputs {"image": uint8 [B,H,W,3], "audio": float [B,samples], "text": (ids, mask)} + presence -> logits."""

    def __init__(self, cfg: ModelConfig, vocab_size: int | None = None):
        super().__init__()
        self.cfg = cfg
        self.modalities = tuple(cfg.modalities)
        self.encoders = nn.ModuleDict({m: build_encoder(cfg, m, vocab_size) for m in self.modalities})
        self.fusion = build_fusion(cfg.fusion, self.modalities, cfg.embed_dim, cfg.num_outputs)
        self.frozen: list[nn.Module] = []

    def freeze_lower_layers(self, top: int) -> list[nn.Module]:
        """Freeze all but the top `top` transformer layers of the text encoder and stages of the image
        encoder (train.trainable_top): their parameters stop requiring gradients and they stay in eval
        mode through `train()` (BatchNorm statistics and dropout frozen too). The projections, the audio
        encoder and the fusion head keep training. Returns the frozen modules."""
        if top < 1:
            raise ModelError(f"train.trainable_top = {top}; expected at least 1 layer (or none to train every layer)")
        for encoder in self.encoders.values():
            if hasattr(encoder, "lower_layers"):
                self.frozen.extend(encoder.lower_layers(top))
        for module in self.frozen:
            module.requires_grad_(False)
            module.eval()
        return list(self.frozen)

    def encoder_layer_parameters(self) -> list[nn.Parameter]:
        """The parameters of the text and image encoders' own layers (not their projections): what
        train.encoder_lr applies to."""
        return [p for encoder in self.encoders.values() if hasattr(encoder, "lower_layers")
                for name, p in encoder.named_parameters() if not name.startswith("proj.")]  # fmt: skip

    def train(self, mode: bool = True) -> "MultimodalModel":
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def embed(self, inputs: dict) -> list[torch.Tensor]:
        """One embedding [B, embed_dim] per modality, in self.modalities order."""
        missing = [m for m in self.modalities if m not in inputs]
        if missing:
            raise ModelError(f"model inputs lack {missing}; expected a tensor for each of {list(self.modalities)}")
        embeddings = []
        for m in self.modalities:
            x = inputs[m]
            embeddings.append(self.encoders[m](*x) if isinstance(x, (tuple, list)) else self.encoders[m](x))
        return embeddings

    def forward(self, inputs: dict, presence: torch.Tensor) -> torch.Tensor:
        return self.fusion(*self.embed(inputs), presence)
