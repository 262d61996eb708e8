"""Adapt a pretrained network to the bundle contract (README, "Bring your own pretrained encoders").

Each adapter wraps a network you already have, takes the input the contract names, returns the
contract's [batch, E] embedding and declares its preprocessing, so `export_bundle` needs neither
`preprocessing=` nor example inputs for it. `freeze` makes a network an untrainable feature
extractor; the adapters freeze what they wrap.

- `ImageAdapter(net, size=, mean=, std=)`: uint8 [B, H, W, 3] -> cast, normalize and NCHW inside
  the graph -> `net` (or one of its methods, `method="extract_features"`) -> a 4-D feature map is
  averaged over space.
- `TextAdapter(model, max_length=)`: a `transformers` encoder (`AutoModel`) called with
  `input_ids` and `attention_mask`; mean pooling over the mask (sentence-transformers' rule) or
  the first token ("cls").
- `AudioAdapter(net, sample_rate=, window_samples=)`: float32 PCM [B, samples] -> `net` -> a 3-D
  output [B, time, E] is averaged over time.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from fusionrt.errors import ExportError

POOLINGS = ("mean", "cls")
CHANNEL_ORDERS = ("rgb", "bgr")


def freeze(module: nn.Module) -> nn.Module:
    """`module` in eval mode with no trainable parameter (dropout and batch-norm statistics fixed)."""
    module.requires_grad_(False)
    return module.eval()


class _Frozen(nn.Module):
    """An adapter stays in eval mode: `.train()` on a model that holds it (a head being trained) leaves
    the pretrained network's dropout and batch-norm statistics alone."""

    def __init__(self) -> None:
        super().__init__()
        self.training = False

    def train(self, mode: bool = True) -> "_Frozen":
        return super().train(False)


class ImageAdapter(_Frozen):
    """uint8 [B, size, size, 3] in `channel_order` -> `net` -> float32 [B, E].

    `mean` and `std` are per channel, in units of pixel / 255 (torchvision's convention; a TF-Lite
    model's `(x - 127) / 128` is mean 127/255, std 128/255), in the order `net` takes channels.
    """

    def __init__(self, net: nn.Module, *, size: int, mean: Sequence[float], std: Sequence[float],
                 channel_order: str = "rgb", method: str = "forward"):  # fmt: skip
        super().__init__()
        if channel_order not in CHANNEL_ORDERS:
            raise ExportError(f"ImageAdapter: channel_order is {channel_order!r}; expected one of {CHANNEL_ORDERS}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ExportError(f"ImageAdapter: mean {list(mean)} and std {list(std)}: expected 3 values each, std > 0")
        if not callable(getattr(net, method, None)):
            raise ExportError(f"ImageAdapter: {type(net).__name__} has no method {method!r}")
        self.net, self.method = freeze(net), method
        self.size, self.channel_order = int(size), channel_order
        self.register_buffer("mean", 255.0 * torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", 255.0 * torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (image.permute(0, 3, 1, 2).float() - self.mean) / self.std
        features = getattr(self.net, self.method)(x)
        return features.mean((2, 3)) if features.dim() == 4 else features

    def preprocessing(self) -> dict:
        return {"height": self.size, "width": self.size, "channel_order": self.channel_order}


class TextAdapter(_Frozen):
    """int64 input_ids, attention_mask [B, sequence] -> `model`'s last hidden state, pooled -> float32 [B, E]."""

    def __init__(self, model: nn.Module, *, max_length: int, pooling: str = "mean", padding: str = "max_length"):
        super().__init__()
        if pooling not in POOLINGS:
            raise ExportError(f"TextAdapter: pooling is {pooling!r}; expected one of {POOLINGS}")
        self.model, self.pooling = freeze(model), pooling
        self.max_length, self.padding = int(max_length), padding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def preprocessing(self) -> dict:
        return {"max_length": self.max_length, "padding": self.padding}


class AudioAdapter(_Frozen):
    """float32 mono PCM [B, window_samples] at `sample_rate` -> `net` -> float32 [B, E]."""

    def __init__(self, net: nn.Module, *, sample_rate: int, window_samples: int, hop_s: float = 0.1):
        super().__init__()
        self.net = freeze(net)
        self.sample_rate, self.window_samples, self.hop_s = int(sample_rate), int(window_samples), float(hop_s)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        features = self.net(audio)
        return features.mean(1) if features.dim() == 3 else features

    def preprocessing(self) -> dict:
        return {"sample_rate": self.sample_rate, "window_samples": self.window_samples, "hop_s": self.hop_s}
