"""The typed per-modality contract of a bundle: what each encoder takes and what the fusion head
takes, parsed and checked once, from a component's declared tensors and its `preprocessing` keys.

Every error names the manifest field and the fix. The same parser runs when a bundle is exported
(so `export_bundle` refuses what the runtime would refuse) and when it is loaded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

from fusionrt.errors import BundleError
from fusionrt.frame import Modality

EMBEDDING = "embedding"
PRESENCE = "presence"
LOGITS = "logits"
IMAGE_INPUT = "image"
AUDIO_INPUT = "audio"
TEXT_INPUTS = ("input_ids", "attention_mask")  # required, in this order
TEXT_OPTIONAL_INPUTS = ("token_type_ids",)  # fed as zeros when the model takes it
CHANNEL_ORDERS = ("bgr", "rgb")
TEXT_PADDINGS = ("max_length", "longest")
DEFAULT_HOP_S = 0.1  # how often the runtime cuts an audio window when the bundle does not say
# Bounds that keep a hostile or mistyped manifest from asking for absurd allocations.
MAX_IMAGE_SIDE = 8192
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384_000
MAX_WINDOW_S = 60.0
MAX_TEXT_LENGTH = 8192
MAX_RATE_HZ = 10_000
MAX_EMBEDDING = 1 << 16  # an embedding's width
MAX_CLASSES = 100_000  # logits of a classification head (task.labels has the same cap)

# The preprocessing keys each modality reads (the rest of the dict is informational).
PREPROCESSING_KEYS = {
    Modality.IMAGE: ("height", "width", "channel_order"),
    Modality.AUDIO: ("sample_rate", "window_samples", "hop_s"),
    Modality.TEXT: ("max_length", "padding"),
}


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int | str, ...]  # str = a dynamic dimension's name, e.g. "batch"


@dataclass(frozen=True)
class ImageInput:
    """uint8 [batch, height, width, 3] (NHWC) in `channel_order`; the host resizes to height x width."""

    name: str
    height: int
    width: int
    channel_order: str
    dtype: str = "uint8"
    layout: str = "NHWC"
    modality: Modality = Modality.IMAGE

    @property
    def input_names(self) -> tuple[str, ...]:
        return (self.name,)


@dataclass(frozen=True)
class AudioInput:
    """float32 [batch, window_samples] mono PCM at sample_rate; a window is cut every hop_s."""

    name: str
    sample_rate: int
    window_samples: int
    hop_s: float
    dtype: str = "float32"
    layout: str = "NT"
    modality: Modality = Modality.AUDIO

    @property
    def input_names(self) -> tuple[str, ...]:
        return (self.name,)

    @property
    def hop_samples(self) -> int:
        return max(1, round(self.hop_s * self.sample_rate))


@dataclass(frozen=True)
class TextInput:
    """int64 [batch, sequence] token ids and masks from the bundle's tokenizer.json, padded to max_length."""

    input_names: tuple[str, ...]
    max_length: int
    padding: str
    tokenizer_file: Path | None
    dtype: str = "int64"
    layout: str = "NS"
    modality: Modality = Modality.TEXT


InputSpec = Union[ImageInput, AudioInput, TextInput]


@dataclass(frozen=True)
class FusionInput:
    """float32 [batch, E] per modality in `modalities` order, then presence float32 [batch, M]."""

    modalities: tuple[Modality, ...]
    widths: dict  # Modality -> int | None (None: dynamic in the manifest)


def encoder_input(
    where: str,
    component: str,
    modality: Modality,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    preprocessing: Mapping,
    tokenizer_file: Path | None,
    *,
    legacy: bool = False,
) -> tuple[InputSpec, int | None]:
    """The typed input spec of an encoder and its embedding width (None when dynamic).

    `legacy` (format version 1): keys v1 bundles could omit take the v1 runtime's defaults
    (channel_order bgr, sizes from static dims); from version 2 on they must be written.
    """
    field = f"components.{component}"
    if not isinstance(preprocessing, Mapping):
        raise BundleError(f"{where}: {field}.preprocessing must be an object, found {type(preprocessing).__name__}")
    check_embedding_output(where, component, outputs)
    width = outputs[0].shape[1]
    parse = {Modality.IMAGE: _image, Modality.AUDIO: _audio, Modality.TEXT: _text}[modality]
    spec = parse(where, field, {s.name: s for s in inputs}, [s.name for s in inputs], preprocessing,
                 tokenizer_file, legacy)
    return spec, width if isinstance(width, int) else None


def fusion_input(
    where: str, modalities: Sequence[Modality], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
    task: str, labels: Sequence[str],
) -> FusionInput:
    """Check the fusion head's IO: one float32 [batch, E] per modality in order, then presence; logits out."""
    field = "components.fusion"
    expected = [m.value for m in modalities] + [PRESENCE]
    names = [s.name for s in inputs]
    if names != expected:
        raise BundleError(f"{where}: {field}.inputs are {names}; expected {expected} "
                          f"(one embedding per modality in the bundle's modality order, then the presence mask)")
    widths = {}
    for modality, spec in zip(modalities, inputs):
        _check_tensor(where, f"{field}.inputs.{spec.name}", spec, "float32", 2)
        widths[modality] = spec.shape[1] if isinstance(spec.shape[1], int) else None
    presence = inputs[-1]
    _check_tensor(where, f"{field}.inputs.{PRESENCE}", presence, "float32", 2)
    for modality, width in widths.items():
        if width is not None and not 1 <= width <= MAX_EMBEDDING:
            raise BundleError(f"{where}: {field}.inputs.{modality.value} has width {width}; expected 1 to "
                              f"{MAX_EMBEDDING}")
    if isinstance(presence.shape[1], int) and presence.shape[1] != len(modalities):
        raise BundleError(f"{where}: {field}.inputs.{PRESENCE} has width {presence.shape[1]}; expected "
                          f"{len(modalities)} (one per modality)")
    if [s.name for s in outputs] != [LOGITS]:
        raise BundleError(f"{where}: {field}.outputs are {[s.name for s in outputs]}; expected ['{LOGITS}']")
    _check_tensor(where, f"{field}.outputs.{LOGITS}", outputs[0], "float32", 2)
    classes = outputs[0].shape[1]
    if isinstance(classes, int) and not 1 <= classes <= MAX_CLASSES:
        raise BundleError(f"{where}: {field}.outputs.{LOGITS} has {classes} logits; expected 1 to {MAX_CLASSES}")
    if task == "classification" and labels and isinstance(classes, int) and classes != len(labels):
        raise BundleError(f"{where}: {field} returns {classes} logits but task.labels has {len(labels)} labels")
    if task == "binary" and isinstance(classes, int) and classes != 1:
        raise BundleError(f"{where}: {field} returns {classes} logits; a binary task returns 1 (sigmoid of it is "
                          f"the positive label's probability)")
    return FusionInput(tuple(modalities), widths)


def check_embedding_output(where: str, component: str, outputs: Sequence[TensorSpec]) -> None:
    names = [s.name for s in outputs]
    if names != [EMBEDDING]:
        raise BundleError(f"{where}: components.{component}.outputs are {names}; an encoder has one output named "
                          f"'{EMBEDDING}' (float32 [batch, E]) — export it with output_names=['{EMBEDDING}']")
    _check_tensor(where, f"components.{component}.outputs.{EMBEDDING}", outputs[0], "float32", 2)
    width = outputs[0].shape[1]
    if isinstance(width, int) and not 1 <= width <= MAX_EMBEDDING:
        raise BundleError(f"{where}: components.{component}.outputs.{EMBEDDING} has width {width}; expected 1 to "
                          f"{MAX_EMBEDDING}")


def _image(where, field, specs, names, p, tokenizer_file, legacy) -> ImageInput:
    if names != [IMAGE_INPUT]:
        raise BundleError(f"{where}: {field}.inputs are {names}; an image encoder takes one input named "
                          f"'{IMAGE_INPUT}' (uint8 [batch, H, W, 3]); inputs are named by the example_inputs keys — "
                          f"name it '{IMAGE_INPUT}'")
    spec = specs[IMAGE_INPUT]
    _check_tensor(where, f"{field}.inputs.{IMAGE_INPUT}", spec, "uint8", 4)
    if spec.shape[3] != 3:
        raise BundleError(f"{where}: {field}.inputs.{IMAGE_INPUT} has shape {list(spec.shape)}; expected "
                          f"[batch, H, W, 3] (NHWC uint8, as a camera delivers it)")
    height = _size(where, field, p, "height", spec.shape[1], MAX_IMAGE_SIDE)
    width = _size(where, field, p, "width", spec.shape[2], MAX_IMAGE_SIDE)
    order = p.get("channel_order", "bgr" if legacy else None)
    if order is None:
        raise BundleError(f"{where}: {field}.preprocessing.channel_order is missing; say which order the model "
                          f"was trained on: 'rgb' (torchvision, PIL) or 'bgr' (OpenCV)")
    if order not in CHANNEL_ORDERS:
        raise BundleError(f"{where}: {field}.preprocessing.channel_order is {order!r}; expected one of "
                          f"{list(CHANNEL_ORDERS)}")
    return ImageInput(IMAGE_INPUT, height, width, order)


def _audio(where, field, specs, names, p, tokenizer_file, legacy) -> AudioInput:
    if names != [AUDIO_INPUT]:
        raise BundleError(f"{where}: {field}.inputs are {names}; an audio encoder takes one input named "
                          f"'{AUDIO_INPUT}' (float32 [batch, samples])")
    spec = specs[AUDIO_INPUT]
    _check_tensor(where, f"{field}.inputs.{AUDIO_INPUT}", spec, "float32", 2)
    rate = p.get("sample_rate")
    if rate is None:
        raise BundleError(f"{where}: {field}.preprocessing.sample_rate is missing; give the rate (Hz) the model "
                          f"was trained on, e.g. 16000")
    rate = _integer(where, f"{field}.preprocessing.sample_rate", rate, MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
    window = _size(where, field, p, "window_samples", spec.shape[1], int(rate * MAX_WINDOW_S))
    hop = p.get("hop_s", DEFAULT_HOP_S)
    if isinstance(hop, bool) or not isinstance(hop, (int, float)) or not math.isfinite(hop) or \
            not 0 < hop <= MAX_WINDOW_S:
        raise BundleError(f"{where}: {field}.preprocessing.hop_s is {hop!r}; expected seconds in (0, {MAX_WINDOW_S:g}]")
    return AudioInput(AUDIO_INPUT, rate, window, float(hop))


def _text(where, field, specs, names, p, tokenizer_file, legacy) -> TextInput:
    allowed = (*TEXT_INPUTS, *TEXT_OPTIONAL_INPUTS)
    if [n for n in names if n in TEXT_INPUTS] != list(TEXT_INPUTS) or any(n not in allowed for n in names):
        raise BundleError(f"{where}: {field}.inputs are {names}; a text encoder takes {list(TEXT_INPUTS)} "
                          f"(and optionally {list(TEXT_OPTIONAL_INPUTS)}), int64 [batch, sequence] — name the "
                          f"forward() arguments so")
    for name in names:
        _check_tensor(where, f"{field}.inputs.{name}", specs[name], "int64", 2)
    lengths = {specs[n].shape[1] for n in names}
    if len(lengths) > 1:
        raise BundleError(f"{where}: {field}.inputs disagree on the sequence length ({sorted(map(str, lengths))})")
    max_length = _size(where, field, p, "max_length", specs[TEXT_INPUTS[0]].shape[1], MAX_TEXT_LENGTH)
    padding = p.get("padding", "max_length")
    if padding not in TEXT_PADDINGS:
        raise BundleError(f"{where}: {field}.preprocessing.padding is {padding!r}; expected one of {list(TEXT_PADDINGS)}")
    if padding == "longest" and isinstance(specs[TEXT_INPUTS[0]].shape[1], int):
        raise BundleError(f"{where}: {field}.preprocessing.padding is 'longest' but the sequence axis is fixed at "
                          f"{specs[TEXT_INPUTS[0]].shape[1]}; use padding 'max_length' or a dynamic sequence axis")
    if tokenizer_file is None:
        raise BundleError(f"{where}: the text encoder needs the bundle's tokenizer (field 'tokenizer' naming a "
                          f"directory with tokenizer.json); export with tokenizer=<a transformers fast tokenizer>")
    return TextInput(tuple(names), max_length, padding, tokenizer_file)


def _size(where, field, p, key, declared, limit) -> int:
    """A static size the host must produce: preprocessing[key], checked against the model's dim."""
    configured = p.get(key)
    if configured is None:
        if isinstance(declared, int):
            return _integer(where, f"{field}.inputs' {key} dimension", declared, 1, limit)
        raise BundleError(f"{where}: {field}.preprocessing.{key} is missing and the model's dimension is dynamic "
                          f"({declared!r}), so the host cannot size the input; set preprocessing {key}=N")
    value = _integer(where, f"{field}.preprocessing.{key}", configured, 1, limit)
    if isinstance(declared, int) and declared != value:
        raise BundleError(f"{where}: {field}.preprocessing.{key} is {value} but the model input takes {declared}; "
                          f"make them agree (re-export)")
    return value


def _integer(where: str, field: str, value, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BundleError(f"{where}: {field} is {value!r}; expected an integer in [{low}, {high}]")
    return value


def _check_tensor(where: str, field: str, spec: TensorSpec, dtype: str, rank: int) -> None:
    if spec.dtype != dtype or len(spec.shape) != rank:
        raise BundleError(f"{where}: {field} is {spec.dtype} {list(spec.shape)}; the runtime feeds/reads {dtype} "
                          f"with {rank} dimensions; export the component with that input/output")
