"""Reading calibration and evaluation items from files, through the bundle's own host preprocessors.

    DIR/images/*.jpg|*.jpeg|*.png   any size; decoded BGR by OpenCV, then the runtime's image preprocessor
    DIR/audio/*.wav|*.flac           any rate and channel count; mixed to mono, resampled, one window each
    DIR/text.txt                     one item per line
    DIR/labels.txt                   (evaluation) one label name or class index per line

Items are sampled deterministically (seeded permutation); an unreadable file is skipped with a
warning naming it, and only too few remaining items is an error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionrt.errors import CalibrationError
from fusionrt.runtime.preprocess import AudioPreprocessor, ImagePreprocessor, fit_window
from fusionrt.runtime.sources.resample import resample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AUDIO_SUFFIXES = (".wav", ".flac")
LAYOUT = "images/*.jpg|*.png, audio/*.wav|*.flac, text.txt (one item per line)"
FOLDERS = {"image": "images/", "audio": "audio/", "text": "text.txt"}
MODALITY_SEEDS = {"image": 1, "audio": 2, "text": 3}


class CalibrationWarning(UserWarning):
    """A calibration input was skipped or changed (corrupt file, resampled audio)."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


def image_file(path: Path, pre: ImagePreprocessor) -> np.ndarray | str:
    """The image as the model takes it (uint8 [H, W, 3] at model size and channel order), or why it cannot be read."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return "OpenCV cannot decode it as an image"
    return pre(image)[pre.spec.name][0]


def audio_file(path: Path, pre: AudioPreprocessor) -> tuple[np.ndarray, int] | str:
    """(one mono window at the bundle's rate, the file's own rate), or why it cannot be read."""
    import soundfile

    try:
        signal, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as e:
        return f"soundfile cannot read it ({e})"
    if signal.size == 0:
        return "it holds no samples"
    mono = resample(signal.mean(axis=1), rate, pre.spec.sample_rate)
    return pre(fit_window(mono, pre.spec.window_samples))[pre.spec.name][0], rate


def read_images(folder: Path, pre: ImagePreprocessor, n: int, seed: int, needed: int,
                skipped: list[Skipped]) -> np.ndarray:
    files = list_files(folder, IMAGE_SUFFIXES)
    images = []
    for k in sample_order(len(files), seed, "image"):
        if len(images) == n:
            break
        image = image_file(files[k], pre)
        if isinstance(image, str):
            _skip(files[k], image, skipped)
        else:
            images.append(image)
    if len(images) < needed:
        raise _too_few(folder, "images", len(images), needed, skipped)
    return np.stack(images)


def read_audio(folder: Path, pre: AudioPreprocessor, n: int, seed: int, needed: int,
               skipped: list[Skipped]) -> np.ndarray:
    files = list_files(folder, AUDIO_SUFFIXES)
    windows, resampled = [], {}
    for k in sample_order(len(files), seed, "audio"):
        if len(windows) == n:
            break
        read = audio_file(files[k], pre)
        if isinstance(read, str):
            _skip(files[k], read, skipped)
            continue
        window, rate = read
        if rate != pre.spec.sample_rate:
            resampled.setdefault(rate, []).append(files[k].name)
        windows.append(window)
    warn_resampled(folder, resampled, pre.spec.sample_rate)
    if len(windows) < needed:
        raise _too_few(folder, "audio files", len(windows), needed, skipped)
    return np.stack(windows)


def read_texts(path: Path, n: int, seed: int, needed: int) -> tuple[str, ...]:
    lines = text_lines(path)
    order = sample_order(len(lines), seed, "text")[:n]
    if len(order) < needed:
        raise CalibrationError(
            f"calibration text file {path}: found {len(order)} non-empty lines, need at least {needed}; "
            "add lines or lower min_items"
        )
    return tuple(lines[k] for k in order)


def read_all_images(folder: Path, pre: ImagePreprocessor) -> np.ndarray:
    """Every image of `folder` in name order; an unreadable one is an error (it would shift the labels)."""
    return np.stack([_must(image_file(f, pre), f) for f in list_files(folder, IMAGE_SUFFIXES)])


def read_all_audio(folder: Path, pre: AudioPreprocessor) -> np.ndarray:
    """Every audio file of `folder` in name order, one window each; an unreadable one is an error."""
    reads = [(_must(audio_file(f, pre), f), f) for f in list_files(folder, AUDIO_SUFFIXES)]
    resampled: dict[int, list[str]] = {}
    for (_, rate), f in reads:
        if rate != pre.spec.sample_rate:
            resampled.setdefault(rate, []).append(f.name)
    warn_resampled(folder, resampled, pre.spec.sample_rate)
    return np.stack([window for (window, _), _ in reads])


def text_lines(path: Path) -> list[str]:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"text file {path} cannot be read as UTF-8 ({e})") from e
    return [line for line in lines if line]


def label_index(line: str, names: tuple[str, ...], path: Path) -> int:
    if line in names:
        return names.index(line)
    if line.isdigit() and (not names or int(line) < len(names)):
        return int(line)
    raise CalibrationError(f"{path}: label {line!r} is neither one of the bundle's labels {list(names)} nor a class index")


def sample_order(count: int, seed: int, modality: str) -> np.ndarray:
    return np.random.default_rng([seed, MODALITY_SEEDS[modality]]).permutation(count)


def list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    except OSError as e:
        raise CalibrationError(f"calibration folder {folder} cannot be read ({e}); expected {LAYOUT}") from e


def warn_resampled(folder: Path, resampled: dict[int, list[str]], to_rate: int) -> None:
    for rate, names in resampled.items():
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        warnings.warn(
            f"calibration: resampled {', '.join(names[:3])}{more} in {folder} from {rate} Hz to {to_rate} Hz "
            "(the bundle's rate)",
            CalibrationWarning,
            stacklevel=5,
        )


def _must(read, path: Path):
    if isinstance(read, str):
        raise CalibrationError(f"evaluation file {path} cannot be used: {read}; fix or remove it (and its label)")
    return read


def _skip(path: Path, reason: str, skipped: list[Skipped]) -> None:
    warnings.warn(f"calibration: skipping {path}: {reason}", CalibrationWarning, stacklevel=5)
    skipped.append(Skipped(str(path), reason))


def _too_few(folder: Path, kind: str, found: int, needed: int, skipped: list[Skipped]) -> CalibrationError:
    bad = [Path(s.path).name for s in skipped if Path(s.path).parent == folder]
    why = f" ({len(bad)} skipped as unreadable: {', '.join(bad[:5])})" if bad else ""
    return CalibrationError(
        f"calibration folder {folder}: found {found} readable {kind}, need at least {needed}{why}; "
        "add more files or lower min_items"
    )
