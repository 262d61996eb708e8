"""The built-in trimodal digits task: a camera frame, a DTMF tone and a chat message per digit.

Everything is generated from real data that ships with fusionrt: `digits_8x8.npz` beside this
module holds the 1797 8x8 handwritten digits (integers 0..16) and their labels, copied once from
scikit-learn's `load_digits()` (`tests/test_data.py` checks they are identical), so nothing is
downloaded and the runtime-only install (no scikit-learn) runs `test://digits`. The glyphs are the
test set of the UCI "Optical Recognition of Handwritten Digits" data set by E. Alpaydin and
C. Kaynak (1998), https://doi.org/10.24432/C50P49, licensed CC BY 4.0. The images are split once, by index, into
disjoint train/val/test pools (`split_indices`, a fixed seed), so a test frame never shows a
handwritten glyph seen in training, whatever data seed is used. Each modality draws from its own
random stream, so corruptions are independent across modalities and one modality's noise level
does not change the others' samples. Same arguments -> bit-identical output.

Noise (`NoiseConfig.image/audio/text`, 1.0 = default, 0 = clean) scales every nuisance below; at
0 a sample is canonical (a centred white digit on black, a clean tone filling the window, an
error-free message) and fully informative. At default noise each modality is, independently per
sample, made uninformative with probability `min(1, 0.25 * noise)` (HIDDEN_P), so a good
single-modality classifier tops out near 65-80 % while a fusion of the three can pass 90 %:

- image: p = 0.25 * noise the digit is hidden under an opaque block; p = 0.2 * noise a bar covers
  15-30 % of it; always (scaled by noise) size (0.47-0.77 of the frame) and position jitter, a
  random dark background tint with a lighter ink (+90..145 per channel), uniform pixel noise of
  standard deviation 10 * noise.
- audio: p = 0.25 * noise the DTMF pair is missing (half of those) or 50 dB under loud noise
  (the other half); always level (-20..0 dB), row/column twist (+-3 dB), start (-0.05..0.8 of
  the window) and duration (0.1..0.65 of the window) jitter, white noise (std 0.02-0.06 * noise).
- text: p = 0.25 * noise the message names no digit (half of those) or a wrong one (the other
  half); each word of 3+ letters gets a typo (adjacent swap or drop) with p = 0.08 * noise.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fusionrt.config import Config, NoiseConfig, Task
from fusionrt.errors import DataError

LABELS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# The binary task (model.task: binary) on the same samples: is the digit 5 or more? Index 1 is the positive class.
BINARY_LABELS: tuple[str, ...] = ("below_five", "five_or_more")
BINARY_THRESHOLD = 5
SPLITS: tuple[str, ...] = ("train", "val", "test")
SPLIT_FRACTIONS = (0.7, 0.15, 0.15)
SPLIT_SEED = 0

# Telephone keypad: (row Hz, column Hz) per digit, indexed by label.
_ROWS_HZ = (697.0, 770.0, 852.0, 941.0)
_COLS_HZ = (1209.0, 1336.0, 1477.0)
_KEYPAD = ((3, 1), (0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2))
DTMF_HZ: tuple[tuple[float, float], ...] = tuple((_ROWS_HZ[r], _COLS_HZ[c]) for r, c in _KEYPAD)

HIDDEN_P = 0.25  # per modality: chance (times noise) that a sample carries no usable digit
IMAGE_BAR_P = 0.2
IMAGE_PIXEL_SIGMA = 10.0
AUDIO_NOISE_SIGMA = 0.04
TEXT_TYPO_P = 0.08
_RAMP_S = 0.005  # tone on/off ramp

_TEMPLATES = (
    "{d}", "{d}!", "the number is {d}", "i see {d}", "i see a {d}", "it's a {d}!", "looks like a {d}",
    "that's a {d}", "i think it's {d}", "digit: {d}", "my guess is {d}", "definitely a {d}",
    "pretty sure that's a {d}", "this is {d}", "{d}, i think", "hmm... {d}?", "the answer is {d}",
    "it shows a {d}", "reads {d} to me", "could be a {d}", "ok, {d}", "that looks like {d} to me",
)  # fmt: skip
_NO_DIGIT = (
    "i can't tell", "no idea what that is", "too blurry to read", "hard to say", "what is this?",
    "nothing i can read", "hmm, not sure", "let me look again", "can't make it out",
    "the picture is too dark", "wait, what?", "sorry, i missed it",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class DigitsData:
    """Aligned samples: BGR uint8 frames [N,H,W,3], float32 PCM [N,samples], texts, int64 labels."""

    images: np.ndarray
    audio: np.ndarray
    texts: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


# ------------------------------------------------------------------------------------- splits
GLYPHS_FILE = Path(__file__).with_name("digits_8x8.npz")  # images uint8 [1797,8,8] in 0..16, labels uint8


@functools.lru_cache(maxsize=1)
def glyphs() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 digits as ink maps in [0, 1] (float32 [1797,8,8], read-only) and their int64 labels;
    the same order and values as `sklearn.datasets.load_digits()` (images / 16, target)."""
    try:
        with np.load(GLYPHS_FILE, allow_pickle=False) as stored:
            images, labels = stored["images"], stored["labels"]
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"the built-in digits {GLYPHS_FILE} are missing or damaged ({e}); reinstall fusionrt") from e
    ink = (images / 16.0).astype(np.float32)
    ink.flags.writeable = False
    return ink, labels.astype(np.int64)


def split_indices(split: str) -> np.ndarray:
    """Sorted indices into `glyphs()` (= `sklearn.datasets.load_digits()`) that `split` draws its frames from."""
    _check_split(split)
    n = len(glyphs()[1])
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    bounds = np.round(np.cumsum((0.0, *SPLIT_FRACTIONS)) * n).astype(int)
    k = SPLITS.index(split)
    return np.sort(order[bounds[k] : bounds[k + 1]])


@functools.lru_cache(maxsize=len(SPLITS))
def _pools(split: str) -> tuple[np.ndarray, ...]:
    index = split_indices(split)
    targets = glyphs()[1][index]
    return tuple(index[targets == label] for label in range(len(LABELS)))


# -------------------------------------------------------------------------------------- image
def render_glyph(glyph: np.ndarray, rng: np.random.Generator, *, size: int = 64, noise: float = 1.0) -> np.ndarray:
    """Place a 2-D ink map in [0, 1] (an 8x8 sklearn digit / 16) into a uint8 BGR frame [size,size,3]."""
    noise = _check_noise(noise, "image")
    if size < 16:
        raise DataError(f"image size = {size}; expected at least 16 pixels (ModelConfig.image.size)")
    d = rng.random(16, dtype=np.float32)
    t = min(noise, 1.0)
    side = int(round(size * np.clip(0.62 + 0.3 * noise * (d[0] - 0.5), 0.3, 0.95)))
    top, left = (int(round((size - side) * np.clip(0.5 + noise * (u - 0.5), 0.0, 1.0))) for u in d[1:3])
    alpha = np.zeros((size, size), np.float32)
    ink = cv2.resize(np.asarray(glyph, np.float32), (side, side), interpolation=cv2.INTER_CUBIC)
    alpha[top : top + side, left : left + side] = np.clip(ink, 0.0, 1.0)
    background = t * 110.0 * d[3:6]  # a darker tint, and a lighter ink by 90-145 in every channel
    foreground = 255.0 + t * (background + 90.0 + 55.0 * d[6:9] - 255.0)
    frame = np.stack([b + alpha * (f - b) for b, f in zip(background, foreground)], axis=-1)
    occluder = 255.0 * d[9:12]
    if d[12] < HIDDEN_P * noise:  # opaque block over the whole digit and a margin
        m = 2 + int(6 * d[13])
        frame[max(top - m, 0) : top + side + m, max(left - m, 0) : left + side + m] = occluder
    elif d[12] < (HIDDEN_P + IMAGE_BAR_P) * noise:  # a bar across 15-30 % of the digit
        width = int(round(side * (0.15 + 0.15 * d[14])))
        at = int(round((side - width) * d[15]))
        if d[13] < 0.5:
            frame[top + at : top + at + width, left : left + side] = occluder
        else:
            frame[top : top + side, left + at : left + at + width] = occluder
    frame += IMAGE_PIXEL_SIGMA * noise * 12**0.5 * (rng.random(frame.shape, dtype=np.float32) - 0.5)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def render_digit_frame(
    label: int, rng: np.random.Generator, *, size: int = 64, noise: float = 1.0, split: str = "test"
) -> np.ndarray:
    """A camera frame (uint8 BGR [size,size,3]) of a handwritten `label` from `split`'s image pool."""
    _check_label(label)
    _check_split(split)
    pool = _pools(split)[int(label)]
    glyph = glyphs()[0][pool[rng.integers(len(pool))]]
    return render_glyph(glyph, rng, size=size, noise=noise)


# -------------------------------------------------------------------------------------- audio
def _dtmf_batch(
    labels: np.ndarray, rng: np.random.Generator, sample_rate: int, n_samples: int, noise: float
) -> np.ndarray:
    """float32 [len(labels), n_samples]: one DTMF window per label, clipped to [-1, 1]."""
    noise = _check_noise(noise, "audio")
    if sample_rate < 4000 or n_samples < 1:
        raise DataError(
            f"audio sample_rate = {sample_rate}, n_samples = {n_samples}; expected a rate of at least "
            "4000 Hz (DTMF goes up to 1477 Hz) and at least one sample (ModelConfig.audio)"
        )
    n = len(labels)
    u = rng.random((n, 9), dtype=np.float32)
    window = n_samples / sample_rate
    level = 0.4 * 10.0 ** (-noise * u[:, 0])  # 0..-20 dB at noise 1
    twist = 10.0 ** (noise * 0.3 * (u[:, 1] - 0.5))  # +-3 dB between row and column
    jitter = min(noise, 1.0)  # timing jitter saturates: the tone always overlaps the window
    start = window * jitter * (0.85 * u[:, 2] - 0.05)
    end = start + window * (1.0 - jitter * (0.35 + 0.55 * u[:, 3]))
    sigma = AUDIO_NOISE_SIGMA * noise * (0.5 + u[:, 4])
    hidden = u[:, 5] < HIDDEN_P * noise
    drowned = hidden & (u[:, 6] < 0.5)
    sigma[drowned] = 0.3
    level[hidden] = np.where(drowned[hidden], 0.3 * 10.0 ** (-50 / 20), 0.0)
    amps = np.stack([level * twist, level / twist], axis=1)
    freqs = np.asarray(_ROWS_HZ + _COLS_HZ)
    keys = np.asarray(_KEYPAD)[labels] + (0, len(_ROWS_HZ))  # table row of each component
    shifts = (u[:, 7:9] * sample_rate / freqs[keys]).astype(np.int64)  # random phase: up to one period
    longest = int(np.ceil(sample_rate / freqs.min()))
    tables = np.sin(2 * np.pi * freqs[:, None] * np.arange(n_samples + longest) / sample_rate).astype(np.float32)
    t = np.arange(n_samples, dtype=np.float32) / np.float32(sample_rate)
    out = np.empty((n, n_samples), np.float32)
    for i in range(n):  # row by row stays in cache and beats one big broadcast
        (row, col), (a, b) = keys[i], shifts[i]
        tone = amps[i, 0] * tables[row, a : a + n_samples] + amps[i, 1] * tables[col, b : b + n_samples]
        envelope = np.clip(np.minimum(t - start[i], end[i] - t) * (1 / _RAMP_S), 0.0, 1.0)
        hiss = rng.random(n_samples, dtype=np.float32) - 0.5  # white, uniform: cheaper than Gaussian
        out[i] = np.clip(envelope * tone + (sigma[i] * 12**0.5) * hiss, -1.0, 1.0)
    return out


def dtmf_tone(
    label: int, rng: np.random.Generator, *, sample_rate: int = 16000, n_samples: int = 16000, noise: float = 1.0
) -> np.ndarray:
    """A float32 mono PCM window [n_samples] holding the keypad tone pair of `label`."""
    _check_label(label)
    return _dtmf_batch(np.array([int(label)]), rng, sample_rate, n_samples, noise)[0]


# --------------------------------------------------------------------------------------- text
def digit_text(label: int, rng: np.random.Generator, *, noise: float = 1.0) -> str:
    """A short chat message naming `label` as a word or numeral, in varied phrasing."""
    _check_label(label)
    noise = _check_noise(noise, "text")
    u = rng.random(4)
    if u[0] < HIDDEN_P * noise and u[1] < 0.5:
        text = _NO_DIGIT[rng.integers(len(_NO_DIGIT))]
    else:
        if u[0] < HIDDEN_P * noise:
            label = (label + rng.integers(1, len(LABELS))) % len(LABELS)
        digit = LABELS[label] if u[2] < 0.5 else str(label)
        text = _TEMPLATES[rng.integers(len(_TEMPLATES))].format(d=digit)
        text = re.sub(r"\ba (eight|8)\b", r"an \1", text)
    words = [_typo(word, rng) if rng.random() < TEXT_TYPO_P * noise else word for word in text.split(" ")]
    text = " ".join(words)
    return text[:1].upper() + text[1:] if u[3] < 0.5 else text


def _typo(word: str, rng: np.random.Generator) -> str:
    letters = [i for i, c in enumerate(word) if c.isalpha()]
    if len(letters) < 3:
        return word
    i = letters[rng.integers(len(letters) - 1)]
    if rng.random() < 0.5 and word[i + 1].isalpha():
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    return word[:i] + word[i + 1 :]


SCENE_S = 4.0  # the test:// sources present one digit per scene, the same one in every modality


def scene_digit(t_s: float, seed: int = 0) -> int:
    """The digit every test:// source presents at `t_s` seconds into a run, so the modalities agree."""
    return int(np.random.default_rng([seed, int(t_s // SCENE_S)]).integers(10))


def text_vocabulary() -> tuple[str, ...]:
    """Every lowercase whole word (split on whitespace and punctuation) digit_text emits before typos."""
    sentences = (*_TEMPLATES, *_NO_DIGIT, *LABELS, "an", *(str(k) for k in range(len(LABELS))))
    words = {w for s in sentences for w in re.findall(r"[a-z0-9]+", s.replace("{d}", " ").lower())}
    return tuple(sorted(words))


# ------------------------------------------------------------------------------------ dataset
def make_digits(
    split: str,
    n: int,
    *,
    image_size: int = 64,
    sample_rate: int = 16000,
    audio_samples: int = 16000,
    noise: NoiseConfig = NoiseConfig(),
    seed: int = 0,
) -> DigitsData:
    """`n` aligned (frame, tone, message, label) samples of `split`, class-balanced and shuffled."""
    _check_split(split)
    if n < 0:
        raise DataError(f"make_digits: n = {n}; expected a sample count >= 0 (DataConfig.<split>_size)")
    streams = np.random.SeedSequence([seed, SPLITS.index(split)]).spawn(4)
    label_rng, image_rng, audio_rng, text_rng = (np.random.default_rng(s) for s in streams)
    labels = label_rng.permutation(np.arange(n) % len(LABELS)).astype(np.int64)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    for i, label in enumerate(labels):
        images[i] = render_digit_frame(label, image_rng, size=image_size, noise=noise.image, split=split)
    audio = _dtmf_batch(labels, audio_rng, sample_rate, audio_samples, noise.audio)
    texts = tuple(digit_text(label, text_rng, noise=noise.text) for label in labels)
    return DigitsData(images=images, audio=audio, texts=texts, labels=labels)


def binary_labels(digits: np.ndarray) -> np.ndarray:
    """Digit labels -> the binary task's labels (1 = five or more), int64."""
    return (np.asarray(digits) >= BINARY_THRESHOLD).astype(np.int64)


def task_labels(task: Task) -> tuple[str, ...]:
    """The label names of a classification or binary task on the digits; none for regression."""
    return {Task.CLASSIFICATION: LABELS, Task.BINARY: BINARY_LABELS}.get(Task(task), ())


def digits_from_config(config: Config, split: str) -> DigitsData:
    """`make_digits` with sizes, noise and seed from `config.data` and the model's input shapes;
    labels mapped to the binary task when config.model.task is binary."""
    _check_split(split)
    data = make_digits(
        split,
        getattr(config.data, f"{split}_size"),
        image_size=config.model.image.size,
        sample_rate=config.model.audio.sample_rate,
        audio_samples=config.model.audio.window_samples,
        noise=config.data.noise,
        seed=config.data.seed,
    )
    if config.model.task is Task.BINARY:
        return dataclasses.replace(data, labels=binary_labels(data.labels))
    return data


# --------------------------------------------------------------------------------- validation
def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"digits split = {split!r}; expected one of {', '.join(SPLITS)}")


def _check_label(label: int) -> None:
    if not 0 <= int(label) < len(LABELS):
        raise DataError(f"digit label = {label!r}; expected an integer from 0 to {len(LABELS) - 1}")


def _check_noise(noise: float, modality: str) -> float:
    if not noise >= 0:
        raise DataError(
            f"{modality} noise = {noise!r}; expected a float >= 0 (NoiseConfig.{modality}: 1 = default, 0 = clean)"
        )
    return float(noise)
