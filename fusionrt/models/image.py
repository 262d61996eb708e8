"""Image encoder: a ResNet over a uint8 HxWx3 frame, with its normalisation in the graph.

Configured small (the demo: basic blocks, a 3x3 stem) or at ResNet-50's shape (bottleneck blocks
3-4-6-3 of widths 64-128-256-512, the 7x7 stem with max pooling; configs/seed.yaml).
"""

from __future__ import annotations

import torch
from torch import nn

from fusionrt.config import ImageBlock, ImageConfig, ImageStem


def _conv_bn(c_in: int, c_out: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = _conv_bn(c_in, c_out, 3, stride)
        self.conv2 = _conv_bn(c_out, c_out, 3, 1)
        self.shortcut = _conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv1(x))
        return torch.relu(self.conv2(y) + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand to 4x width, with a projection shortcut
    when the shape changes (ResNet v1.5)."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.reduce = _conv_bn(c_in, width, 1, 1)
        self.conv = _conv_bn(width, width, 3, stride)
        self.expand = _conv_bn(width, c_out, 1, 1)
        self.shortcut = _conv_bn(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.conv(torch.relu(self.reduce(x))))
        return torch.relu(self.expand(y) + self.shortcut(x))


def _stem(cfg: ImageConfig) -> nn.Sequential:
    if cfg.stem is ImageStem.RESNET:
        return nn.Sequential(_conv_bn(3, cfg.widths[0], 7, 2), nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1))
    return nn.Sequential(_conv_bn(3, cfg.widths[0], 3, 2), nn.ReLU())


def stage_block_counts(cfg: ImageConfig) -> tuple[int, ...]:
    counts = cfg.blocks_per_stage
    return (counts,) * len(cfg.widths) if isinstance(counts, int) else tuple(counts)


class ImageEncoder(nn.Module):
    """uint8 [B, H, W, 3] in `cfg.channel_order` -> embedding float32 [B, embed_dim].

    The stem halves the resolution (the ResNet stem quarters it); each stage after the first halves it again.
    """

    def __init__(self, cfg: ImageConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        mean = torch.tensor(cfg.mean, dtype=torch.float32)
        std = torch.tensor(cfg.std, dtype=torch.float32)
        weight = torch.diag(1.0 / (255.0 * std))  # RGB out x input channels
        if cfg.channel_order == "bgr":
            weight = weight.flip(1)
        self.register_buffer("channel_weight", weight.view(3, 3, 1, 1), persistent=False)
        self.register_buffer("channel_bias", -mean / std, persistent=False)
        self.stem = _stem(cfg)
        bottleneck = cfg.block is ImageBlock.BOTTLENECK
        blocks = []
        c_in = cfg.widths[0]
        for stage, (width, count) in enumerate(zip(cfg.widths, stage_block_counts(cfg))):
            for block in range(count):
                stride = 2 if stage > 0 and block == 0 else 1
                blocks.append(Bottleneck(c_in, width, stride) if bottleneck else BasicBlock(c_in, width, stride))
                c_in = width * Bottleneck.expansion if bottleneck else width
        self.blocks = nn.Sequential(*blocks)
        self.proj = nn.Linear(c_in, embed_dim)

    def lower_layers(self, top: int) -> list[nn.Module]:
        """The modules below the top `top` stages (the stem and the lower stages' blocks): what
        `MultimodalModel.freeze_lower_layers` freezes. The projection is never among them."""
        counts = stage_block_counts(self.cfg)
        frozen_blocks = sum(counts[: max(len(counts) - top, 0)])
        return [self.stem, *list(self.blocks)[:frozen_blocks]]

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC in the configured channel order -> normalised float NCHW RGB."""
        x = image.permute(0, 3, 1, 2).to(torch.float32)
        # Scaling, channel order and mean/std as one fixed 1x1 convolution: element-wise ops with a
        # per-channel broadcast get slow in ONNX Runtime once an INT8 graph is laid out NHWC.
        x = nn.functional.conv2d(x, self.channel_weight, self.channel_bias)
        # Per-frame contrast normalisation: exposure and colour cast vary from frame to frame.
        centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
        return centred / (centred.pow(2).mean(dim=(1, 2, 3), keepdim=True) + 1e-6).sqrt()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(self.normalise(image)))
        return self.proj(x.mean(dim=(2, 3)))

    def preprocessing(self) -> dict:
        size = self.cfg.size
        return {
            "height": size,
            "width": size,
            "channel_order": self.cfg.channel_order,
            "dtype": "uint8",
            "layout": "HWC",
            "resize": "host",
        }

    def example_inputs(self, batch: int = 1) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        size = self.cfg.size
        return {"image": torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g)}
