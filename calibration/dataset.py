"""`CalibrationSet`: representative inputs per modality, read from files or the built-in digits data.

Directory layout:
    DIR/images/*.jpg|*.jpeg|*.png   any size; resized to the model's resolution (OpenCV, INTER_AREA)
    DIR/audio/*.wav|*.flac           any rate and channel count; mixed to mono, resampled, one window each
    DIR/text.txt                     one item per line
Items are sampled deterministically (seeded permutation); an unreadable file is skipped with a
warning naming it, and only too few remaining items is an error.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fusionrt.calibration.host import (
    ENCODERS,
    HostSpec,
    TextTokenizer,
    fit_window,
    host_spec,
    resize_image,
)
from fusionrt.errors import CalibrationError
from fusionrt.runtime.sources.resample import resample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
AUDIO_SUFFIXES = (".wav", ".flac")
LAYOUT = "images/*.jpg|*.png, audio/*.wav|*.flac, text.txt (one item per line)"
MODALITY_SEEDS = {"image": 1, "audio": 2, "text": 3}


class CalibrationWarning(UserWarning):
    """A calibration input was skipped or changed (corrupt file, resampled audio)."""


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


class CalibrationSet:
    """Host-preprocessed inputs per modality, ready to feed the bundle's components.

    images: uint8 [N, H, W, 3] at model resolution and channel order; audio: float32 [N, window];
    texts: N strings; labels: int64 [N] when the items are labelled and aligned across modalities.
    """

    def __init__(
        self,
        target,  # a loaded Bundle, a bundle directory, or a HostSpec (no fusion feeds then)
        *,
        images: np.ndarray | None = None,
        audio: np.ndarray | None = None,
        texts: Sequence[str] | None = None,
        labels: np.ndarray | None = None,
        source: str = "arrays",
        skipped: Sequence[Skipped] = (),
    ) -> None:
        resolved, self.spec = _resolve(target)
        self.bundle = None if isinstance(resolved, HostSpec) else resolved
        self.images = images
        self.audio = audio
        self.texts = tuple(texts) if texts is not None else None
        self.labels = None if labels is None else np.asarray(labels)
        self.source = source
        self.skipped = tuple(skipped)
        self._tokenizer: TextTokenizer | None = None
        self._embeddings: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------------------------- builders
    @classmethod
    def from_directory(cls, path, target, *, n: int = 128, seed: int = 0, min_items: int = 16) -> CalibrationSet:
        """Read up to `n` items per modality from DIR (see the module docstring for the layout)."""
        root = Path(path)
        target, spec = _resolve(target)
        if not root.is_dir():
            raise CalibrationError(f"calibration directory {root} does not exist or is not a directory; expected {LAYOUT}")
        try:
            entries = {p.name for p in root.iterdir()}
        except OSError as e:
            raise CalibrationError(f"calibration directory {root} cannot be read ({e}); expected {LAYOUT}") from e
        needed = min(min_items, n)
        found, skipped = {}, []
        if spec.image is not None and "images" in entries:
            found["images"] = _read_images(root / "images", spec, n, seed, needed, skipped)
        if spec.audio is not None and "audio" in entries:
            found["audio"] = _read_audio(root / "audio", spec, n, seed, needed, skipped)
        if spec.text is not None and "text.txt" in entries:
            found["texts"] = _read_texts(root / "text.txt", n, seed, needed)
        if not found:
            wanted = [m for m in ENCODERS if getattr(spec, m) is not None]
            raise CalibrationError(
                f"calibration directory {root} has no usable inputs for this bundle's encoders ({', '.join(wanted)}); "
                f"found {sorted(entries) or 'nothing'}; expected {LAYOUT}"
            )
        return cls(target, source=str(root), skipped=skipped, **found)

    @classmethod
    def from_labelled_directory(cls, path, target) -> CalibrationSet:
        """Every item of DIR, aligned by position: labels.txt (one label name or class index per
        line) and, per modality, images/ and audio/ files in name order and text.txt lines. No item
        is skipped here: a file that cannot be read is an error, since it would shift the labels."""
        root = Path(path)
        target, spec = _resolve(target)
        labels_file = root / "labels.txt"
        if not labels_file.is_file():
            raise CalibrationError(f"evaluation directory {root} has no labels.txt; expected labels.txt plus {LAYOUT}")
        names = tuple(getattr(target, "labels", ()) or ())
        labels = [_label_index(line, names, labels_file) for line in _text_lines(labels_file)]
        found: dict = {}
        if spec.image is not None and (root / "images").is_dir():
            found["images"] = np.stack([_must(_image_file(f, spec), f) for f in _list_files(root / "images", IMAGE_SUFFIXES)])
        if spec.audio is not None and (root / "audio").is_dir():
            reads = [(_must(_audio_file(f, spec), f), f) for f in _list_files(root / "audio", AUDIO_SUFFIXES)]
            resampled: dict[int, list[str]] = {}
            for (_, rate), f in reads:
                if rate != spec.audio.sample_rate:
                    resampled.setdefault(rate, []).append(f.name)
            _warn_resampled(root / "audio", resampled, spec.audio.sample_rate)
            found["audio"] = np.stack([window for (window, _), _ in reads])
        if spec.text is not None and (root / "text.txt").is_file():
            found["texts"] = tuple(_text_lines(root / "text.txt"))
        for key, items in found.items():
            if len(items) != len(labels):
                raise CalibrationError(
                    f"evaluation directory {root}: {len(items)} {key} items for {len(labels)} labels in labels.txt; "
                    "expected one item per label, aligned by name order"
                )
        if not found:
            raise CalibrationError(
                f"evaluation directory {root} has no inputs for this bundle; expected labels.txt plus {LAYOUT}"
            )
        return cls(target, labels=np.asarray(labels, dtype=np.int64), source=str(root), **found)

    @classmethod
    def from_digits(cls, target, split: str = "val", n: int = 128, *, seed: int = 0) -> CalibrationSet:
        """`n` labelled items of the built-in digits data, aligned across modalities."""
        from fusionrt.data import make_digits

        target, spec = _resolve(target)
        options = {}
        if spec.image is not None:
            options["image_size"] = spec.image.height
        if spec.audio is not None:
            options["sample_rate"] = spec.audio.sample_rate
            options["audio_samples"] = spec.audio.window_samples
        data = make_digits(split, n, seed=seed, **options)
        return cls.from_data(target, data, source=f"builtin digits ({split}, n={n}, seed={seed})")

    @classmethod
    def from_data(cls, target, data, *, source: str = "arrays") -> CalibrationSet:
        """From any object with images (BGR uint8), audio, texts and labels, like `fusionrt.data.DigitsData`."""
        target, spec = _resolve(target)
        images = audio = texts = None
        if spec.image is not None and getattr(data, "images", None) is not None:
            images = np.stack([resize_image(img, spec.image) for img in data.images])
        if spec.audio is not None and getattr(data, "audio", None) is not None:
            audio = np.stack([fit_window(np.asarray(a, np.float32), spec.audio.window_samples) for a in data.audio])
        if spec.text is not None and getattr(data, "texts", None) is not None:
            texts = tuple(data.texts)
        return cls(target, images=images, audio=audio, texts=texts, labels=getattr(data, "labels", None), source=source)

    # ----------------------------------------------------------------------------------- contents
    @property
    def counts(self) -> dict[str, int]:
        return {
            "image": 0 if self.images is None else len(self.images),
            "audio": 0 if self.audio is None else len(self.audio),
            "text": 0 if self.texts is None else len(self.texts),
        }

    def has(self, component: str) -> bool:
        """Whether this set can produce feeds for `component`."""
        if component == "fusion":
            return self.bundle is not None and any(self.counts[m] for m in self.bundle.modalities)
        modality = _modality_of(component)
        return self.counts[modality] > 0

    def summary(self) -> dict:
        return {
            "source": self.source,
            "counts": self.counts,
            "labelled": self.labels is not None,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }

    # ----------------------------------------------------------------------------------- feeds
    def encoder_inputs(self, modality: str, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The ONNX inputs of one encoder for items [start, stop)."""
        if self.counts[modality] == 0:
            raise CalibrationError(
                f"calibration set {self.source} has no {modality} items; add "
                f"{ {'image': 'images/', 'audio': 'audio/', 'text': 'text.txt'}[modality] } to it"
            )
        if modality == "image":
            return {"image": self.images[start:stop]}
        if modality == "audio":
            return {"audio": self.audio[start:stop].astype(np.float32, copy=False)}
        if self._tokenizer is None:
            self._tokenizer = TextTokenizer(self.spec.text)
        return self._tokenizer(self.texts[start:stop])

    def feeds(self, component: str, batch_size: int = 8) -> list[dict[str, np.ndarray]]:
        """Batches of ONNX inputs for `component`; for "fusion", FP32 encoder embeddings + presence.

        Fusion batches rotate which modality is missing (presence 0, zero embedding) so the
        calibrated ranges also cover the degraded inputs the runtime produces.
        """
        if component == "fusion":
            rows = self._fusion_rows()
            total = len(rows["presence"])
            return [{k: v[i : i + batch_size] for k, v in rows.items()} for i in range(0, total, batch_size)]
        modality = _modality_of(component)
        total = self.counts[modality]
        return [self.encoder_inputs(modality, i, i + batch_size) for i in range(0, max(total, 1), batch_size)]

    def embeddings(self, modality: str) -> np.ndarray:
        """FP32 embeddings of this set's `modality` items, from the bundle's fp32 encoder file."""
        if modality not in self._embeddings:
            from fusionrt.runtime.engine import OrtEngine

            engine = OrtEngine(self._bundle().components[ENCODERS[modality]].variants["fp32"].path)
            total = self.counts[modality]
            chunks = [engine.run(self.encoder_inputs(modality, i, i + 32))["embedding"] for i in range(0, total, 32)]
            self._embeddings[modality] = np.concatenate(chunks).astype(np.float32)
        return self._embeddings[modality]

    def _fusion_rows(self) -> dict[str, np.ndarray]:
        bundle = self._bundle()
        modalities = list(bundle.modalities)
        present = [m for m in modalities if self.counts[m] > 0]
        if not present:
            raise CalibrationError(f"calibration set {self.source} has no items for any of {modalities}")
        total = min(self.counts[m] for m in present)
        width = _embedding_width(bundle)
        rows = {
            m: self.embeddings(m)[:total].copy() if m in present else np.zeros((total, width), np.float32)
            for m in modalities
        }
        presence = np.array([[1.0 if m in present else 0.0 for m in modalities]] * total, dtype=np.float32)
        if len(present) > 1:
            for i in range(total):
                slot = i % (len(present) + 1)  # the last slot keeps every modality
                if slot < len(present):
                    presence[i, modalities.index(present[slot])] = 0.0
                    rows[present[slot]][i] = 0.0
        rows["presence"] = presence
        names = [spec.name for spec in bundle.components["fusion"].inputs]
        return {name: rows[name] for name in names}

    def _bundle(self):
        if self.bundle is None:
            raise CalibrationError(
                "this calibration set was built from a HostSpec; build it from a Bundle to feed the fusion head"
            )
        return self.bundle


def _resolve(target) -> tuple[object, HostSpec]:
    """(loaded Bundle or the HostSpec itself, host spec) from a Bundle, a bundle directory or a HostSpec."""
    if isinstance(target, HostSpec):
        return target, target
    if isinstance(target, (str, Path)):
        from fusionrt.bundle import load

        target = load(target)
    return target, host_spec(target)


def _modality_of(component: str) -> str:
    for modality, name in ENCODERS.items():
        if name == component:
            return modality
    raise CalibrationError(f"unknown component {component!r}; expected one of {[*ENCODERS.values(), 'fusion']}")


def _embedding_width(bundle) -> int:
    for spec in bundle.components["fusion"].inputs:
        if spec.name != "presence" and isinstance(spec.shape[-1], int):
            return spec.shape[-1]
    raise CalibrationError(f"{bundle.root}: the fusion inputs have no fixed embedding width in the manifest")


def _label_index(line: str, names: tuple[str, ...], path: Path) -> int:
    if line in names:
        return names.index(line)
    if line.isdigit() and (not names or int(line) < len(names)):
        return int(line)
    raise CalibrationError(f"{path}: label {line!r} is neither one of the bundle's labels {list(names)} nor a class index")


def _must(read, path: Path):
    if isinstance(read, str):
        raise CalibrationError(f"evaluation file {path} cannot be used: {read}; fix or remove it (and its label)")
    return read


def _sample_order(count: int, seed: int, modality: str) -> np.ndarray:
    return np.random.default_rng([seed, MODALITY_SEEDS[modality]]).permutation(count)


def _list_files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in suffixes)
    except OSError as e:
        raise CalibrationError(f"calibration folder {folder} cannot be read ({e}); expected {LAYOUT}") from e


def _skip(path: Path, reason: str, skipped: list[Skipped]) -> None:
    warnings.warn(f"calibration: skipping {path}: {reason}", CalibrationWarning, stacklevel=4)
    skipped.append(Skipped(str(path), reason))


def _too_few(folder: Path, kind: str, found: int, needed: int, skipped: list[Skipped]) -> CalibrationError:
    bad = [Path(s.path).name for s in skipped if Path(s.path).parent == folder]
    why = f" ({len(bad)} skipped as unreadable: {', '.join(bad[:5])})" if bad else ""
    return CalibrationError(
        f"calibration folder {folder}: found {found} readable {kind}, need at least {needed}{why}; "
        "add more files or lower min_items"
    )


def _image_file(path: Path, spec: HostSpec) -> np.ndarray | str:
    """The image at model resolution, or why it cannot be read."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        return "OpenCV cannot decode it as an image"
    return resize_image(image, spec.image)


def _audio_file(path: Path, spec: HostSpec) -> tuple[np.ndarray, int] | str:
    """(one mono window at the bundle's rate, the file's own rate), or why it cannot be read."""
    import soundfile

    try:
        signal, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError, ValueError) as e:
        return f"soundfile cannot read it ({e})"
    if signal.size == 0:
        return "it holds no samples"
    mono = resample(signal.mean(axis=1), rate, spec.audio.sample_rate)
    return fit_window(mono, spec.audio.window_samples), rate


def _warn_resampled(folder: Path, resampled: dict[int, list[str]], to_rate: int) -> None:
    for rate, names in resampled.items():
        more = f" and {len(names) - 3} more" if len(names) > 3 else ""
        warnings.warn(
            f"calibration: resampled {', '.join(names[:3])}{more} in {folder} from {rate} Hz to {to_rate} Hz "
            "(the bundle's rate)",
            CalibrationWarning,
            stacklevel=4,
        )


def _read_images(folder: Path, spec: HostSpec, n: int, seed: int, needed: int, skipped: list[Skipped]) -> np.ndarray:
    files = _list_files(folder, IMAGE_SUFFIXES)
    images = []
    for k in _sample_order(len(files), seed, "image"):
        if len(images) == n:
            break
        image = _image_file(files[k], spec)
        if isinstance(image, str):
            _skip(files[k], image, skipped)
        else:
            images.append(image)
    if len(images) < needed:
        raise _too_few(folder, "images", len(images), needed, skipped)
    return np.stack(images)


def _read_audio(folder: Path, spec: HostSpec, n: int, seed: int, needed: int, skipped: list[Skipped]) -> np.ndarray:
    files = _list_files(folder, AUDIO_SUFFIXES)
    windows, resampled = [], {}
    for k in _sample_order(len(files), seed, "audio"):
        if len(windows) == n:
            break
        read = _audio_file(files[k], spec)
        if isinstance(read, str):
            _skip(files[k], read, skipped)
            continue
        window, rate = read
        if rate != spec.audio.sample_rate:
            resampled.setdefault(rate, []).append(files[k].name)
        windows.append(window)
    _warn_resampled(folder, resampled, spec.audio.sample_rate)
    if len(windows) < needed:
        raise _too_few(folder, "audio files", len(windows), needed, skipped)
    return np.stack(windows)


def _text_lines(path: Path) -> list[str]:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise CalibrationError(f"text file {path} cannot be read as UTF-8 ({e})") from e
    return [line for line in lines if line]


def _read_texts(path: Path, n: int, seed: int, needed: int) -> tuple[str, ...]:
    lines = _text_lines(path)
    order = _sample_order(len(lines), seed, "text")[:n]
    if len(order) < needed:
        raise CalibrationError(
            f"calibration text file {path}: found {len(order)} non-empty lines, need at least {needed}; "
            "add lines or lower min_items"
        )
    return tuple(lines[k] for k in order)
