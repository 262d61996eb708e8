"""The one configuration tree: frozen dataclasses loaded from YAML or JSON, validated once.

Every default lives here and only here. Unknown keys are errors that name the full key path.
"""

from __future__ import annotations

import copy
import dataclasses
import enum
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from fusionrt.bundle.specs import DEFAULT_HOP_S
from fusionrt.errors import ConfigError
from fusionrt.frame import MODALITIES


class Pooling(str, enum.Enum):
    CLS = "cls"
    MEAN = "mean"


class AudioFrontend(str, enum.Enum):
    LOGMEL = "logmel"
    MFCC = "mfcc"


class FusionKind(str, enum.Enum):
    EARLY = "early"
    LATE = "late"
    CROSS_ATTENTION = "cross_attention"


class Task(str, enum.Enum):
    CLASSIFICATION = "classification"  # softmax over num_outputs classes, cross-entropy
    BINARY = "binary"  # one logit, sigmoid, binary cross-entropy; labels (negative, positive)
    REGRESSION = "regression"


class ImageBlock(str, enum.Enum):
    BASIC = "basic"  # two 3x3 convolutions; a stage's output width is its width
    BOTTLENECK = "bottleneck"  # 1x1 reduce, 3x3, 1x1 expand (ResNet-50); output width is 4x its width


class ImageStem(str, enum.Enum):
    COMPACT = "compact"  # one 3x3 stride-2 convolution
    RESNET = "resnet"  # 7x7 stride-2 convolution, then 3x3 stride-2 max pooling


@dataclass(frozen=True)
class TextConfig:
    """A BERT-family encoder: a local `transformers` directory, or one built from these sizes."""

    pretrained: str | None = None  # local directory; None builds a fresh BERT from the sizes below
    pooling: Pooling = Pooling.MEAN
    max_length: int = 24
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 128


@dataclass(frozen=True)
class ImageConfig:
    """A ResNet-style CNN over a uint8 HxWx3 frame at model resolution."""

    size: int = 64
    channel_order: str = "bgr"  # the order of the uint8 input (OpenCV delivers BGR)
    widths: tuple[int, ...] = (16, 32, 64)
    blocks_per_stage: int | tuple[int, ...] = 1  # one count for every stage, or one per stage
    block: ImageBlock = ImageBlock.BASIC
    stem: ImageStem = ImageStem.COMPACT
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # RGB, on [0, 1] pixels
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AudioConfig:
    """float32 mono PCM window -> Conv1d-STFT log-mel (or MFCC) front-end -> small CNN."""

    sample_rate: int = 16000
    window_s: float = 1.0
    hop_s: float = DEFAULT_HOP_S  # how often the runtime cuts a new window from the stream
    n_fft: int = 512
    stft_hop: int = 160
    n_mels: int = 40
    frontend: AudioFrontend = AudioFrontend.LOGMEL
    n_mfcc: int = 20
    widths: tuple[int, ...] = (16, 32)

    @property
    def window_samples(self) -> int:
        return int(round(self.sample_rate * self.window_s))


@dataclass(frozen=True)
class FusionConfig:
    kind: FusionKind = FusionKind.CROSS_ATTENTION
    hidden: int = 64
    heads: int = 4
    dropout: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    embed_dim: int = 64
    modalities: tuple[str, ...] = ("text", "image", "audio")
    task: Task = Task.CLASSIFICATION
    num_outputs: int = 10  # classes, regression targets, or 1 for a binary task
    text: TextConfig = field(default_factory=TextConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)


@dataclass(frozen=True)
class NoiseConfig:
    """Per-modality corruption of the built-in digits data; 1.0 is the default difficulty."""

    image: float = 1.0
    audio: float = 1.0
    text: float = 1.0


@dataclass(frozen=True)
class DataConfig:
    seed: int = 0
    train_size: int = 3000
    val_size: int = 500
    test_size: int = 500
    noise: NoiseConfig = field(default_factory=NoiseConfig)


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    epochs: int = 10
    batch_size: int = 64
    lr: float = 4e-3
    weight_decay: float = 1e-4
    modality_dropout: float = 0.3  # chance that each modality is hidden from a training sample
    threads: int = 2
    # Train only the top `trainable_top` transformer layers of the text encoder and the top
    # `trainable_top` stages of the image encoder; the layers below (BERT's embeddings and lower
    # layers, the ResNet stem and lower stages) keep their weights and run in eval mode (BatchNorm
    # statistics and dropout frozen too), so backward stops at the top. The encoders' projections,
    # the audio encoder and the fusion head always train. None trains every layer.
    trainable_top: int | None = None
    # Peak learning rate of the text and image encoders' own layers (BERT, the ResNet stem and
    # stages); their projections, the audio encoder and the fusion head use `lr`. None: `lr` for all.
    # A lower rate keeps a randomly initialised (or pretrained) transformer layer from being scrambled
    # faster than the head can follow.
    encoder_lr: float | None = None


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Keys earlier versions wrote and nothing reads: skipped, so saved runs and bundles' reference configs
# still load. (The encoders' nominal rates live in fusionrt.export.bundle_writer.DEFAULT_RATES_HZ.)
RETIRED_KEYS = frozenset({"model.text.rate_hz", "model.image.rate_hz"})


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML or JSON config file into a validated `Config`.

    `overrides` are "dotted.key=value" strings applied on top of the file, the value read as YAML
    ("model.text.num_layers=2", "model.image.widths=[8,16]", "model.fusion.kind=cross_attention").
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist (expected a .yaml, .yml or .json file)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text ({e.reason} at byte {e.start}); expected a .yaml, "
                          f".yml or .json file") from None
    try:
        raw = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid {path.suffix.lstrip('.').upper()}: {e}") from e
    raw = raw or {}
    for override in overrides:
        raw = apply_override(raw, override, source=str(path))
    return config_from_dict(raw, source=str(path))


def apply_override(raw: dict, override: str, source: str = "config") -> dict:
    """A copy of the raw config mapping with one "dotted.key=value" override applied."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{source}: override {override!r} is not KEY=VALUE (e.g. model.text.num_layers=2)")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{source}: the value of override {override!r} is not valid YAML: {e}") from e
    result = copy.deepcopy(raw)
    node = result
    parts = key.strip().split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: override {override!r}: {'.'.join(parts[: depth + 1])} is not a mapping")
        node = child
    node[parts[-1]] = value
    return result


def config_from_dict(raw: dict, source: str = "config") -> Config:
    config = _build(Config, raw, source, "")
    validate(config, source)
    return config


def config_to_dict(config: Any) -> Any:
    """Plain JSON/YAML-safe form of a config (enums as values, tuples as lists)."""
    if dataclasses.is_dataclass(config):
        return {f.name: config_to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, enum.Enum):
        return config.value
    if isinstance(config, (tuple, list)):
        return [config_to_dict(v) for v in config]
    return config


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False), encoding="utf-8")


def validate(config: Config, source: str = "config") -> None:
    m = config.model
    bad = [name for name in m.modalities if name not in MODALITIES]
    if bad or not m.modalities or len(set(m.modalities)) != len(m.modalities):
        raise ConfigError(
            f"{source}: model.modalities = {list(m.modalities)}; expected a non-empty, duplicate-free "
            f"subset of {list(MODALITIES)}"
        )
    checks = {
        "model.embed_dim": m.embed_dim > 0,
        "model.num_outputs": m.num_outputs > 0 and (m.task is not Task.BINARY or m.num_outputs == 1),
        "model.image.blocks_per_stage": _stage_counts_fit(m.image),
        "model.image.size": m.image.size >= 16,
        "model.image.channel_order": m.image.channel_order in ("bgr", "rgb"),
        "model.image.widths": len(m.image.widths) > 0 and all(w > 0 for w in m.image.widths),
        "model.audio.n_fft": m.audio.n_fft <= m.audio.window_samples,
        "model.audio.n_mfcc": m.audio.frontend is AudioFrontend.LOGMEL or m.audio.n_mfcc <= m.audio.n_mels,
        "model.text.max_length": m.text.max_length >= 4,
        "model.fusion.heads": m.fusion.hidden % m.fusion.heads == 0,
        "train.modality_dropout": 0.0 <= config.train.modality_dropout < 1.0,
        "train.epochs": config.train.epochs > 0,
        "train.trainable_top": config.train.trainable_top is None or config.train.trainable_top >= 1,
        "train.encoder_lr": config.train.encoder_lr is None or config.train.encoder_lr > 0,
    }
    for key, ok in checks.items():
        if not ok:
            value = _lookup(config, key)
            raise ConfigError(f"{source}: {key} = {value!r} is out of range (see fusionrt/config.py for the rules)")


def _stage_counts_fit(image: ImageConfig) -> bool:
    counts = image.blocks_per_stage
    if isinstance(counts, int):
        return counts > 0
    return len(counts) == len(image.widths) and all(c > 0 for c in counts)


def _lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _build(cls: type, raw: Any, source: str, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {prefix or 'top level'} must be a mapping, found {type(raw).__name__}")
    raw = {key: value for key, value in raw.items() if f"{prefix}{key}" not in RETIRED_KEYS}
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise ConfigError(
            f"{source}: unknown key {prefix}{unknown[0]!s} (allowed at {where}: {', '.join(sorted(names))})"
        )
    values = {}
    for key, value in raw.items():
        values[key] = _coerce(hints[key], value, source, f"{prefix}{key}")
    return cls(**values)


def _coerce(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if isinstance(value, (list, tuple)):  # e.g. int | tuple[int, ...]: a list picks the tuple
            args = [a for a in args if typing.get_origin(a) is tuple] or args
        return _coerce(args[0], value, source, key)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, source, key + ".")
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(value)
        except ValueError:
            allowed = ", ".join(e.value for e in hint)
            raise ConfigError(f"{source}: {key} = {value!r}; expected one of {allowed}") from None
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {key} must be a list, found {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, source, key) for v in value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint in (int, str, bool) and (type(value) is not hint):
        raise ConfigError(f"{source}: {key} = {value!r}; expected {hint.__name__}")
    return value
