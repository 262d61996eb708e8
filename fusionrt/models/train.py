"""Train the reference multimodal model on the built-in digits task (Adam; cross-entropy, binary
cross-entropy for a binary task, or MSE for regression).

A run directory holds `model.safetensors` (never pickle), the resolved `config.yaml`, the
`tokenizer/` the text encoder was trained with, and `metrics.json` (val and test).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from fusionrt.config import Config, Task, save_config
from fusionrt.data import DigitsData, digits_from_config, task_labels
from fusionrt.errors import ConfigError, ModelError
from fusionrt.models import MultimodalModel, build_tokenizer
from fusionrt.progress import eta_text
from fusionrt.scoring import task_metrics

CHECKPOINT = "model.safetensors"
STEP_REPORT_S = 30.0


@dataclass(frozen=True)
class TrainResult:
    run_dir: Path
    checkpoint: Path
    metrics: dict
    seconds: float


@dataclass(frozen=True, eq=False)
class TrainingData:
    """The digits splits a config describes and the model inputs made from them (all its modalities).

    Built once, it can be shared by runs that differ only in seeds, fusion head or a subset of the
    modalities (the effectiveness study trains 18 models on the same data).
    """

    config: Config
    splits: dict[str, DigitsData]
    tokenizer: object | None
    inputs: dict[str, dict]

    def inputs_for(self, config: Config) -> dict[str, dict]:
        """The inputs of the modalities `config` uses; ConfigError unless `config` trains on this data."""
        built, wanted = self.config.model, config.model
        fits = config.data == self.config.data and all(
            m in built.modalities and getattr(wanted, m) == getattr(built, m) for m in wanted.modalities
        )
        if not fits:
            raise ConfigError(
                f"training data built for {self.config.data} and model inputs {list(built.modalities)} does not fit a "
                f"run with {config.data} and model inputs {list(wanted.modalities)} (model.text/image/audio must match "
                "too); build it with training_data(config)"
            )
        return {split: {m: x[m] for m in wanted.modalities} for split, x in self.inputs.items()}


def training_data(config: Config, *, progress: Callable[[str], None] = print) -> TrainingData:
    """Generate the train/val/test splits of `config.data` and tokenize them once."""
    progress(f"building the digits data ({config.data.train_size}/{config.data.val_size}/{config.data.test_size})")
    splits = {s: digits_from_config(config, s) for s in ("train", "val", "test")}
    tokenizer = build_tokenizer(config.model.text) if "text" in config.model.modalities else None
    inputs = {s: tensors_from_digits(d, config, tokenizer) for s, d in splits.items()}
    return TrainingData(config, splits, tokenizer, inputs)


def tensors_from_digits(data: DigitsData, config: Config, tokenizer) -> dict:
    """The model's inputs for a whole split, as tensors keyed by modality."""
    inputs = {}
    if "image" in config.model.modalities:
        inputs["image"] = torch.from_numpy(data.images)
    if "audio" in config.model.modalities:
        inputs["audio"] = torch.from_numpy(data.audio)
    if "text" in config.model.modalities:
        enc = tokenizer(
            list(data.texts),
            padding="max_length",
            truncation=True,
            max_length=config.model.text.max_length,
            return_tensors="pt",
        )
        inputs["text"] = (enc["input_ids"].long(), enc["attention_mask"].long())
    return inputs


def _take(inputs: dict, idx: torch.Tensor) -> dict:
    return {k: tuple(t[idx] for t in v) if isinstance(v, tuple) else v[idx] for k, v in inputs.items()}


def _targets(labels: np.ndarray, task: Task) -> torch.Tensor:
    y = torch.from_numpy(labels)
    return y.long() if task is Task.CLASSIFICATION else y.float().unsqueeze(1)


def modality_dropout_mask(n: int, m: int, p: float, generator: torch.Generator) -> torch.Tensor:
    """Presence mask with each modality hidden with probability p, never all hidden at once."""
    presence = (torch.rand(n, m, generator=generator) >= p).float()
    empty = presence.sum(dim=1) == 0
    if empty.any():
        keep = torch.randint(0, m, (int(empty.sum()),), generator=generator)
        presence[empty.nonzero().squeeze(1), keep] = 1.0
    return presence


@torch.no_grad()
def predict(model: MultimodalModel, inputs: dict, n: int, presence: torch.Tensor | None = None, batch: int = 256):
    model.eval()
    m = len(model.encoders)
    outputs = []
    for start in range(0, n, batch):
        idx = torch.arange(start, min(n, start + batch))
        p = presence[idx] if presence is not None else torch.ones(len(idx), m)
        outputs.append(model(_take(inputs, idx), p))
    return torch.cat(outputs).numpy()


def score(outputs: np.ndarray, labels: np.ndarray, task: Task) -> dict:
    return task_metrics(labels, outputs, task.value, task_labels(task))


_LOSSES = {
    Task.CLASSIFICATION: torch.nn.CrossEntropyLoss,
    Task.BINARY: torch.nn.BCEWithLogitsLoss,
    Task.REGRESSION: torch.nn.MSELoss,
}


def train(
    config: Config,
    out_dir: str | Path,
    *,
    progress: Callable[[str], None] = print,
    data: TrainingData | None = None,
) -> TrainResult:
    """Train end to end with modality drop-out; write weights, resolved config, tokenizer, metrics.

    With `train.trainable_top` set, the lower layers of the text and image encoders stay frozen
    (`MultimodalModel.freeze_lower_layers`) and only the rest is optimised.

    `data` (from `training_data`) skips generating and tokenizing the splits again.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.train.seed)
    torch.set_num_threads(config.train.threads)
    generator = torch.Generator().manual_seed(config.train.seed)
    task = config.model.task

    if data is None:
        data = training_data(config, progress=progress)
    splits, inputs = data.splits, data.inputs_for(config)
    tokenizer = data.tokenizer if "text" in config.model.modalities else None
    vocab_size = len(tokenizer) if tokenizer is not None else 0

    model = MultimodalModel(config.model, vocab_size=vocab_size)
    if config.train.trainable_top is not None:
        model.freeze_lower_layers(config.train.trainable_top)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if config.train.trainable_top is not None:
        n_params = sum(p.numel() for p in model.parameters())
        progress(f"training the top {config.train.trainable_top} layer(s)/stage(s) of the deep encoders: "
                 f"{sum(p.numel() for p in trainable) / 1e6:.1f}M of {n_params / 1e6:.1f}M parameters")
    groups, max_lr = [trainable], [config.train.lr]
    if config.train.encoder_lr is not None:  # the deep encoders' layers at their own (peak) rate
        layers = {id(p) for p in model.encoder_layer_parameters()}
        groups = [[p for p in trainable if id(p) not in layers], [p for p in trainable if id(p) in layers]]
        max_lr = [config.train.lr, config.train.encoder_lr]
    optimizer = torch.optim.AdamW([{"params": g} for g in groups if g], lr=config.train.lr,
                                  weight_decay=config.train.weight_decay)  # fmt: skip
    max_lr = [lr for g, lr in zip(groups, max_lr) if g]
    n = len(splits["train"])
    steps = config.train.epochs * ((n + config.train.batch_size - 1) // config.train.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps)
    loss_fn = _LOSSES[task]()
    y_train = _targets(splits["train"].labels, task)
    m = len(config.model.modalities)
    step, last_report = 0, time.perf_counter()

    for epoch in range(1, config.train.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, config.train.batch_size):
            idx = order[start : start + config.train.batch_size]
            presence = modality_dropout_mask(len(idx), m, config.train.modality_dropout, generator)
            loss = loss_fn(model(_take(inputs["train"], idx), presence), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(idx)
            step += 1
            if time.perf_counter() - last_report >= STEP_REPORT_S:  # big models: an epoch takes minutes
                last_report = time.perf_counter()
                progress(f"step {step}/{steps}: loss {loss.item():.4f} ({eta_text(last_report - started, step, steps)})")
        val = score(predict(model, inputs["val"], len(splits["val"])), splits["val"].labels, task)
        headline = f"acc {val['accuracy']:.3f}" if "accuracy" in val else f"mae {val['mae']:.3f}"
        so_far = eta_text(time.perf_counter() - started, epoch, config.train.epochs)
        progress(f"epoch {epoch}/{config.train.epochs}: loss {total / n:.4f}, val {headline} ({so_far})")

    metrics = {
        split: score(predict(model, inputs[split], len(splits[split])), splits[split].labels, task)
        for split in ("val", "test")
    }
    checkpoint = out_dir / CHECKPOINT
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(checkpoint))
    save_config(config, out_dir / "config.yaml")
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out_dir / "tokenizer"))
    seconds = time.perf_counter() - started
    (out_dir / "metrics.json").write_text(json.dumps({**metrics, "train_seconds": seconds}, indent=2))
    progress(f"wrote {checkpoint} ({seconds:.0f} s); test {_headline(metrics['test'])}")
    return TrainResult(out_dir, checkpoint, metrics, seconds)


def _headline(metrics: dict) -> str:
    if "f1" in metrics:
        return f"accuracy {metrics['accuracy']:.3f}, recall {metrics['recall']:.3f}, F1 {metrics['f1']:.3f}"
    if "accuracy" in metrics:
        return f"accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}"
    return f"MAE {metrics['mae']:.3f}"


def load_checkpoint(model: torch.nn.Module, path: str | Path) -> None:
    """Load safetensors weights, naming the first tensor that is missing, unexpected or misshapen."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist (expected the model.safetensors written by `fusionrt train`)")
    try:
        weights = load_file(str(path))
    except Exception as e:  # safetensors raises its own error types
        raise ModelError(f"checkpoint {path} is not a readable safetensors file: {e}") from e
    expected = model.state_dict()
    for name, tensor in expected.items():
        if name not in weights:
            raise ModelError(f"checkpoint {path} has no tensor {name!r}, which the config's model needs: config and checkpoint do not match")
        if tuple(weights[name].shape) != tuple(tensor.shape):
            raise ModelError(
                f"checkpoint {path}: tensor {name!r} has shape {tuple(weights[name].shape)}, the config's model "
                f"expects {tuple(tensor.shape)}: config and checkpoint do not match"
            )
    unexpected = sorted(set(weights) - set(expected))
    if unexpected:
        raise ModelError(f"checkpoint {path} has tensor {unexpected[0]!r}, which the config's model does not have: config and checkpoint do not match")
    model.load_state_dict(weights)
