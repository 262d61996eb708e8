"""Tiny modules standing in for users' trained models, and their example inputs."""

from __future__ import annotations

import torch
from torch import nn


class TinyConvEncoder(nn.Module):
    """uint8 NHWC BGR -> embedding, with the cast/flip/normalise/layout inside, like an image encoder.

    A permuted (channels-last strided) input through bias-free conv+BN and a residual add: torch.export
    rejects a batch-1 example of it ("Constraints violated (batch)") unless the exporter traces a larger batch.
    """

    def __init__(self, embed_dim: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6, embed_dim)
        self.register_buffer("mean", torch.tensor([0.45, 0.46, 0.41]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.22, 0.22, 0.23]).view(1, 3, 1, 1))
        with torch.no_grad():
            for bn in (self.bn, self.bn2):
                bn.running_mean.uniform_(-0.1, 0.1)
                bn.running_var.uniform_(0.5, 1.5)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = image.flip(-1).permute(0, 3, 1, 2).float() / 255.0
        x = torch.relu(self.bn(self.conv((x - self.mean) / self.std)))
        x = torch.relu(self.bn2(self.conv2(x)) + x)
        return self.fc(x.mean((2, 3)))

    def preprocessing(self) -> dict:
        return {"height": 16, "width": 16, "channel_order": "bgr", "dtype": "uint8", "layout": "HWC"}


class TinyMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(12, 16), nn.GELU(), nn.LayerNorm(16), nn.Linear(16, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MaskedMeanEmbedding(nn.Module):
    """Two int64 inputs with a dynamic sequence axis: token embedding averaged over the mask."""

    def __init__(self, vocab: int = 40, dim: int = 8) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).float()
        return (self.embedding(input_ids) * mask).sum(1) / torch.maximum(mask.sum(1), torch.ones(()))


class TinyBertMean(nn.Module):
    """A transformers BertModel (hidden 32, one layer) with masked mean pooling, like a text encoder."""

    def __init__(self, vocab_size: int, embed_dim: int = 8) -> None:
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=64,
        )  # fmt: skip
        self.bert = BertModel(config, add_pooling_layer=False)
        self.proj = nn.Linear(32, embed_dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.proj((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-6))

    def preprocessing(self) -> dict:
        return {"max_length": 16, "lowercase": True}


class TinyFusion(nn.Module):
    """forward(*inputs): embeddings in modality order, then the presence mask; masked mean + linear head."""

    def __init__(self, modalities: tuple[str, ...], embed_dim: int = 8, num_outputs: int = 4) -> None:
        super().__init__()
        self.modalities = modalities
        self.head = nn.Linear(embed_dim, num_outputs)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        *embeddings, presence = inputs
        stacked = torch.stack(embeddings, 1) * presence.unsqueeze(-1)
        return self.head(stacked.sum(1) / presence.sum(1, keepdim=True).clamp(min=1.0))


class SymmetricEigenvalues(nn.Module):
    """Uses linalg.eigh, which neither ONNX exporter can translate."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.eigh(x @ x.transpose(-1, -2))[0]


class DataDependentBranch(nn.Module):
    """Python control flow on tensor values: torch.export rejects it, the TorchScript tracer bakes the branch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x > -1e9).all():
            return x * 2.0 + 1.0
        return x


VOCAB = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "zero", "one", "two", "three", "four", "digit", "the", "is")


def tiny_tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)})


def token_inputs(batch: int = 2, length: int = 6, vocab: int = len(VOCAB)) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.long)
    mask[-1, length // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask}


def image_inputs(batch: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return {"image": torch.randint(0, 256, (batch, 16, 16, 3), dtype=torch.uint8, generator=generator)}


def fusion_inputs(modalities: tuple[str, ...], batch: int = 2, dim: int = 8) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    inputs = {m: torch.randn(batch, dim, generator=generator) for m in modalities}
    inputs["presence"] = torch.ones(batch, len(modalities))
    return inputs
