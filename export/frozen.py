"""Train a fusion head on frozen encoders: embeddings computed once, as the runtime prepares inputs.

`encode(encoder, modality, items)` runs a (frozen) encoder on raw items through the runtime's own
host preprocessing (`fusionrt.runtime.preprocess`: camera frames resized to the encoder's size in
its channel order, audio clips fitted to its window, texts through the tokenizer with its
max_length and padding), so the head is trained on the embeddings it will see when streaming.
`train_head` fits a fusion head on those embeddings with AdamW and cross-entropy, dropping each
modality at random through the presence mask so that the head learns to work with one missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from fusionrt.errors import ExportError
from fusionrt.export.contract import resolve_preprocessing
from fusionrt.runtime.preprocess import fit_window, resize_image


@dataclass(frozen=True)
class HeadTraining:
    """What `train_head` did: loss per epoch, accuracy on the training embeddings at the end."""

    losses: tuple[float, ...]
    train_accuracy: float


def encode(encoder: nn.Module, modality: str, items: Sequence, *, tokenizer=None, batch_size: int = 16,
           channel_order_in: str = "bgr") -> np.ndarray:  # fmt: skip
    """float32 [len(items), E]: `encoder` on `items`, prepared as the runtime prepares them.

    items: image frames uint8 [H, W, 3] of any size in `channel_order_in` (what cameras and video
    files deliver: BGR), audio clips float32 [samples] at the encoder's sample rate, or texts.
    """
    steps = resolve_preprocessing(f"{modality}_encoder", modality, encoder, None)
    prepare = _preparer(modality, steps, tokenizer, channel_order_in)
    chunks = []
    with torch.no_grad():
        encoder.eval()
        for start in range(0, len(items), batch_size):
            inputs = prepare(list(items[start : start + batch_size]))
            chunks.append(encoder(*inputs).float().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)


def _preparer(modality: str, steps: dict, tokenizer, channel_order_in: str):
    if modality == "image":
        def images(batch):
            arrays = [resize_image(f, steps["height"], steps["width"], steps["channel_order"], channel_order_in)
                      for f in batch]  # fmt: skip
            return (torch.from_numpy(np.concatenate(arrays)),)
        return images
    if modality == "audio":
        return lambda batch: (torch.from_numpy(np.stack([fit_window(np.asarray(c, np.float32), steps["window_samples"])
                                                         for c in batch])),)  # fmt: skip
    if modality == "text":
        if tokenizer is None:
            raise ExportError("encode: a text encoder needs tokenizer= (the one export_bundle puts in the bundle)")

        def texts(batch):
            tokens = tokenizer(batch, padding=steps.get("padding", "max_length"), truncation=True,
                               max_length=steps["max_length"], return_tensors="pt")  # fmt: skip
            return tokens["input_ids"].long(), tokens["attention_mask"].long()
        return texts
    raise ExportError(f"encode: modality is {modality!r}; expected image, audio or text")


def train_head(
    head: nn.Module,
    embeddings: Mapping[str, np.ndarray],
    labels: np.ndarray,
    *,
    epochs: int = 30,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 64,
    drop_modality_p: float = 0.2,
    seed: int = 0,
) -> HeadTraining:
    """Fit `head(*embeddings in order, presence)` to int `labels`; each modality is dropped (presence 0,
    embedding zeroed) with probability `drop_modality_p` per sample, never all of them at once."""
    modalities = list(embeddings)
    sizes = {len(e) for e in embeddings.values()} | {len(labels)}
    if len(sizes) != 1:
        raise ExportError(f"train_head: embeddings and labels differ in length: "
                          f"{ {m: len(e) for m, e in embeddings.items()} }, labels {len(labels)}")
    generator = torch.Generator().manual_seed(seed)
    xs = [torch.from_numpy(np.asarray(embeddings[m], np.float32)) for m in modalities]
    ys = torch.from_numpy(np.asarray(labels, np.int64))
    optimizer = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
    losses = []
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(ys), generator=generator)
        total = 0.0
        for start in range(0, len(ys), batch_size):
            index = order[start : start + batch_size]
            presence = _random_presence(len(index), len(modalities), drop_modality_p, generator)
            inputs = [x[index] * presence[:, i : i + 1] for i, x in enumerate(xs)]
            loss = nn.functional.cross_entropy(head(*inputs, presence), ys[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        losses.append(total / len(ys))
    head.eval()
    return HeadTraining(tuple(losses), head_accuracy(head, embeddings, labels))


def head_accuracy(head: nn.Module, embeddings: Mapping[str, np.ndarray], labels: np.ndarray,
                  presence: Sequence[float] | None = None) -> float:  # fmt: skip
    """Accuracy of `head` on the embeddings with a fixed presence row (default: all present)."""
    n, m = len(labels), len(embeddings)
    mask = torch.tensor(presence if presence is not None else [1.0] * m, dtype=torch.float32).expand(n, m)
    xs = [torch.from_numpy(np.asarray(e, np.float32)) * mask[:, i : i + 1] for i, e in enumerate(embeddings.values())]
    with torch.no_grad():
        predicted = head.eval()(*xs, mask).argmax(1).numpy()
    return float((predicted == np.asarray(labels)).mean())


def _random_presence(n: int, m: int, p: float, generator: torch.Generator) -> torch.Tensor:
    presence = (torch.rand(n, m, generator=generator) >= p).float()
    empty = presence.sum(1) == 0
    presence[empty, torch.randint(0, m, (int(empty.sum()),), generator=generator)] = 1.0
    return presence
