"""Fusion heads: per-modality embeddings + a presence mask -> logits (or regression outputs).

Every head's forward is `forward(*embeddings, presence)`: one float [B, E] per modality in
`self.modalities` order, then presence float [B, M] with 1 = present and 0 = missing. A missing
modality's embedding never changes the output (tests check it), and all-missing gives finite
outputs. Masks are additive with MASK_VALUE rather than -inf, which stays finite in FP16 and in
every backend's softmax.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from fusionrt.config import FusionConfig, FusionKind
from fusionrt.errors import ModelError

MASK_VALUE = -1e4


class FusionHead(nn.Module):
    """Base of the heads: checks the inputs, stacks the embeddings, provides example inputs."""

    def __init__(self, modalities: Sequence[str], embed_dim: int):
        super().__init__()
        self.modalities = tuple(modalities)
        self.embed_dim = embed_dim

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        if len(inputs) != len(self.modalities) + 1:
            raise ModelError(
                f"fusion head expects {len(self.modalities)} embeddings ({', '.join(self.modalities)}) then presence, "
                f"found {len(inputs)} inputs"
            )
        return self.fuse(torch.stack(inputs[:-1], dim=1), inputs[-1])

    def fuse(self, embeddings: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        """embeddings [B, M, E], presence [B, M] -> outputs [B, num_outputs]."""
        raise NotImplementedError

    def example_inputs(self, batch: int = 1) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        inputs = {m: torch.randn(batch, self.embed_dim, generator=g) for m in self.modalities}
        inputs["presence"] = torch.ones(batch, len(self.modalities))
        return inputs


class EarlyFusion(FusionHead):
    """concat(embedding_i * presence_i) + presence -> MLP -> Linear."""

    def __init__(self, cfg: FusionConfig, modalities: Sequence[str], embed_dim: int, num_outputs: int):
        super().__init__(modalities, embed_dim)
        m = len(self.modalities)
        self.mlp = nn.Sequential(nn.Linear(m * embed_dim + m, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout))
        self.head = nn.Linear(cfg.hidden, num_outputs)

    def fuse(self, embeddings: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        masked = (embeddings * presence.unsqueeze(-1)).flatten(1)
        return self.head(self.mlp(torch.cat([masked, presence], dim=1)))


class LateFusion(FusionHead):
    """Per-modality MLP heads whose outputs are averaged with learned weights over present modalities.

    The weights are a softmax over the present modalities only; with none present the output is 0.
    """

    def __init__(self, cfg: FusionConfig, modalities: Sequence[str], embed_dim: int, num_outputs: int):
        super().__init__(modalities, embed_dim)
        self.heads = nn.ModuleDict({m: self._head(cfg, embed_dim, num_outputs) for m in self.modalities})
        self.weight_logits = nn.Parameter(torch.zeros(len(self.modalities)))

    @staticmethod
    def _head(cfg: FusionConfig, embed_dim: int, num_outputs: int) -> nn.Sequential:
        layers = [nn.Linear(embed_dim, cfg.hidden), nn.ReLU(), nn.Dropout(cfg.dropout)]
        return nn.Sequential(*layers, nn.Linear(cfg.hidden, num_outputs))

    def fuse(self, embeddings: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        outputs = torch.stack([head(embeddings[:, i]) for i, head in enumerate(self.heads.values())], dim=1)
        weights = torch.softmax(self.weight_logits + (1.0 - presence) * MASK_VALUE, dim=1) * presence
        return (weights.unsqueeze(-1) * outputs).sum(dim=1)


class SelfAttention(nn.Module):
    """Multi-head self-attention over a short, fixed-length token axis, with an additive key bias."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ModelError(f"fusion.hidden = {dim} must be divisible by fusion.heads = {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], key_bias [B, T] (0 = attend, MASK_VALUE = ignore) -> [B, T, D]."""
        tokens, dim = x.shape[1], x.shape[2]
        q, k, v = self.qkv(x).reshape(-1, tokens, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(self.head_dim))
        attention = self.dropout(torch.softmax(scores + key_bias[:, None, None, :], dim=-1))
        mixed = torch.matmul(attention, v).transpose(1, 2).reshape(-1, tokens, dim)
        return self.out(mixed)


class TransformerLayer(nn.Module):
    """Pre-LayerNorm transformer layer: x + attention(LN(x)), then x + FFN(LN(x))."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 4 * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * dim, dim), nn.Dropout(dropout)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, key_bias: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attention(self.norm1(x), key_bias))
        return x + self.ffn(self.norm2(x))


class CrossAttentionFusion(FusionHead):
    """One token per modality (+ learned modality embedding) and an always-present summary token.

    A transformer layer mixes them, missing modalities masked out as keys; the summary token's
    output goes to the decision head.
    """

    def __init__(self, cfg: FusionConfig, modalities: Sequence[str], embed_dim: int, num_outputs: int):
        super().__init__(modalities, embed_dim)
        self.proj = nn.Linear(embed_dim, cfg.hidden)
        self.modality_embedding = nn.Parameter(0.02 * torch.randn(len(self.modalities), cfg.hidden))
        self.summary = nn.Parameter(0.02 * torch.randn(1, 1, cfg.hidden))
        self.layer = TransformerLayer(cfg.hidden, cfg.heads, cfg.dropout)
        self.norm = nn.LayerNorm(cfg.hidden)
        self.head = nn.Linear(cfg.hidden, num_outputs)

    def fuse(self, embeddings: torch.Tensor, presence: torch.Tensor) -> torch.Tensor:
        tokens = self.proj(embeddings) + self.modality_embedding
        x = torch.cat([self.summary.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        key_bias = torch.cat([torch.zeros_like(presence[:, :1]), (1.0 - presence) * MASK_VALUE], dim=1)
        return self.head(self.norm(self.layer(x, key_bias)[:, 0]))


_HEADS = {
    FusionKind.EARLY: EarlyFusion,
    FusionKind.LATE: LateFusion,
    FusionKind.CROSS_ATTENTION: CrossAttentionFusion,
}


def build_fusion(cfg: FusionConfig, modalities: Sequence[str], embed_dim: int, num_outputs: int) -> FusionHead:
    """The fusion head cfg.kind names, over `modalities` in that order."""
    if not modalities:
        raise ModelError("a fusion head needs at least one modality, found none (check model.modalities)")
    return _HEADS[FusionKind(cfg.kind)](cfg, modalities, embed_dim, num_outputs)
