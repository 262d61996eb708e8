"""What each encoder expects from the host, read from the bundle once into a `HostSpec`, and the
host steps calibration needs: image resize and tokenization through the runtime's own functions
(fusionrt.runtime.preprocess), plus what only files need (resampling, one window per file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionrt.errors import CalibrationError

ENCODERS = {"image": "image_encoder", "audio": "audio_encoder", "text": "text_encoder"}


@dataclass(frozen=True)
class ImageSpec:
    height: int
    width: int
    channel_order: str = "bgr"


@dataclass(frozen=True)
class AudioSpec:
    sample_rate: int
    window_samples: int


@dataclass(frozen=True)
class TextSpec:
    tokenizer_file: Path
    max_length: int
    input_names: tuple[str, ...] = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class HostSpec:
    """What the host must produce for each encoder of one bundle (None: no such encoder)."""

    image: ImageSpec | None = None
    audio: AudioSpec | None = None
    text: TextSpec | None = None


def host_spec(bundle) -> HostSpec:
    """Read image size, audio rate/window and tokenizer settings from a loaded `Bundle`."""
    specs = {}
    for modality, name in ENCODERS.items():
        component = bundle.components.get(name)
        if component is not None:
            specs[modality] = _SPEC_READERS[modality](bundle, component)
    return HostSpec(**specs)


def _image_spec(bundle, component) -> ImageSpec:
    pre = component.preprocessing or {}
    shape = component.inputs[0].shape
    height = pre.get("height", pre.get("size", shape[1] if len(shape) == 4 else None))
    width = pre.get("width", pre.get("size", shape[2] if len(shape) == 4 else None))
    if not isinstance(height, int) or not isinstance(width, int):
        raise CalibrationError(
            f"{bundle.root / 'manifest.json'}: components.{component.name} has no fixed input size "
            f"(preprocessing {pre}, input shape {list(shape)}); expected preprocessing.height/width; re-export the bundle"
        )
    return ImageSpec(height, width, str(pre.get("channel_order", "bgr")).lower())


def _audio_spec(bundle, component) -> AudioSpec:
    pre = component.preprocessing or {}
    shape = component.inputs[0].shape
    rate = pre.get("sample_rate")
    window = pre.get("window_samples", shape[1] if len(shape) == 2 else None)
    if not isinstance(rate, int) or not isinstance(window, int):
        raise CalibrationError(
            f"{bundle.root / 'manifest.json'}: components.{component.name}.preprocessing = {pre}; expected integer "
            "sample_rate and window_samples; re-export the bundle"
        )
    return AudioSpec(rate, window)


def _text_spec(bundle, component) -> TextSpec:
    pre = component.preprocessing or {}
    shape = component.inputs[0].shape
    max_length = pre.get("max_length", shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None)
    tokenizer_file = (bundle.tokenizer_dir / "tokenizer.json") if bundle.tokenizer_dir else None
    if not isinstance(max_length, int) or tokenizer_file is None or not tokenizer_file.is_file():
        raise CalibrationError(
            f"{bundle.root}: the text encoder needs tokenizer/tokenizer.json and preprocessing.max_length; "
            f"found tokenizer {tokenizer_file}, max_length {max_length}; re-export the bundle with its tokenizer"
        )
    return TextSpec(tokenizer_file, max_length, tuple(spec.name for spec in component.inputs))


_SPEC_READERS = {"image": _image_spec, "audio": _audio_spec, "text": _text_spec}


def resize_image(image: np.ndarray, spec: ImageSpec) -> np.ndarray:
    """A BGR uint8 HxWx3 image (as OpenCV reads it) -> the model's resolution and channel order,
    exactly as the runtime does it (fusionrt.runtime.preprocess)."""
    from fusionrt.runtime.preprocess import resize_image as runtime_resize

    return runtime_resize(image, spec.height, spec.width, spec.channel_order)[0]


def fit_window(signal: np.ndarray, window_samples: int) -> np.ndarray:
    """The first `window_samples` of a mono signal, zero-padded at the end when shorter."""
    out = np.zeros(window_samples, dtype=np.float32)
    n = min(window_samples, len(signal))
    out[:n] = signal[:n]
    return out


class TextTokenizer:
    """Batches of texts -> the text encoder's inputs, through the runtime's tokenizer (the
    `tokenizers` library over the bundle's tokenizer.json, padded and truncated to max_length)."""

    def __init__(self, spec: TextSpec) -> None:
        from fusionrt.runtime.preprocess import TextTokenizer as RuntimeTokenizer

        self.spec = spec
        self.tokenizer = RuntimeTokenizer(spec.tokenizer_file, spec.max_length)

    def __call__(self, texts: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
        rows = [self.tokenizer(text) for text in texts]
        columns = {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}
        if "token_type_ids" in self.spec.input_names:
            columns["token_type_ids"] = np.zeros_like(columns["input_ids"])
        return {name: columns[name] for name in self.spec.input_names}
