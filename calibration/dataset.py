"""`CalibrationSet`: representative inputs per modality of one bundle, read from files (see
fusionrt.calibration.files for the directory layout) or from arrays like the built-in digits data.

Every host step is the runtime's own: each encoder's inputs come from `host_preprocessor(component.input)`
(image resize and channel order, audio windows via `fit_window`, tokenization), and the fusion
head's from `bundle_fusion_feeds`. Components are found by role, never by name.
"""

from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Sequence

import numpy as np

from fusionrt.bundle import EMBEDDING, FALLBACK, Bundle, Component, load
from fusionrt.calibration.files import (
    FOLDERS,
    LAYOUT,
    Skipped,
    label_index,
    read_all_audio,
    read_all_images,
    read_audio,
    read_images,
    read_texts,
    text_lines,
)
from fusionrt.errors import CalibrationError
from fusionrt.runtime.fusion_feeds import bundle_fusion_feeds
from fusionrt.runtime.preprocess import Preprocessor, fit_window, host_preprocessor

EMBEDDING_BATCH = 32


class CalibrationSet:
    """Host-preprocessed inputs per modality, ready to feed the bundle's components.

    images: uint8 [N, H, W, 3] at model resolution and channel order; audio: float32 [N, window];
    texts: N strings (tokenized when fed); labels: int64 [N] when the items are labelled and aligned
    across modalities. Arrays given to the constructor are taken as model-ready; the `from_*`
    builders run raw items through the bundle's host preprocessors.
    """

    def __init__(
        self,
        bundle: Bundle | str | Path,
        *,
        images: np.ndarray | None = None,
        audio: np.ndarray | None = None,
        texts: Sequence[str] | None = None,
        labels: np.ndarray | None = None,
        source: str = "arrays",
        skipped: Sequence[Skipped] = (),
    ) -> None:
        self.bundle = as_bundle(bundle)
        self.images = images
        self.audio = audio
        self.texts = tuple(texts) if texts is not None else None
        self.labels = None if labels is None else np.asarray(labels)
        self.source = source
        self.skipped = tuple(skipped)
        self._preprocessors: dict[str, Preprocessor] = {}
        self._embeddings: dict[str, np.ndarray] = {}

    # ----------------------------------------------------------------------------------- builders
    @classmethod
    def from_directory(cls, path, bundle, *, n: int = 128, seed: int = 0, min_items: int = 16) -> CalibrationSet:
        """Read up to `n` items per modality from DIR (see fusionrt.calibration.files for the layout)."""
        root, bundle = Path(path), as_bundle(bundle)
        if not root.is_dir():
            raise CalibrationError(f"calibration directory {root} does not exist or is not a directory; expected {LAYOUT}")
        try:
            entries = {p.name for p in root.iterdir()}
        except OSError as e:
            raise CalibrationError(f"calibration directory {root} cannot be read ({e}); expected {LAYOUT}") from e
        needed = min(min_items, n)
        found, skipped = {}, []
        pre = preprocessors(bundle)
        if "image" in pre and "images" in entries:
            found["images"] = read_images(root / "images", pre["image"], n, seed, needed, skipped)
        if "audio" in pre and "audio" in entries:
            found["audio"] = read_audio(root / "audio", pre["audio"], n, seed, needed, skipped)
        if "text" in pre and "text.txt" in entries:
            found["texts"] = read_texts(root / "text.txt", n, seed, needed)
        if not found:
            raise CalibrationError(
                f"calibration directory {root} has no usable inputs for this bundle's encoders "
                f"({', '.join(bundle.modalities)}); found {sorted(entries) or 'nothing'}; expected {LAYOUT}"
            )
        return cls(bundle, source=str(root), skipped=skipped, **found)

    @classmethod
    def from_labelled_directory(cls, path, bundle) -> CalibrationSet:
        """Every item of DIR, aligned by position: labels.txt (one label name or class index per
        line) and, per modality, images/ and audio/ files in name order and text.txt lines. No item
        is skipped here: a file that cannot be read is an error, since it would shift the labels."""
        root, bundle = Path(path), as_bundle(bundle)
        labels_file = root / "labels.txt"
        if not labels_file.is_file():
            raise CalibrationError(f"evaluation directory {root} has no labels.txt; expected labels.txt plus {LAYOUT}")
        labels = [label_index(line, bundle.labels, labels_file) for line in text_lines(labels_file)]
        pre = preprocessors(bundle)
        found: dict = {}
        if "image" in pre and (root / "images").is_dir():
            found["images"] = read_all_images(root / "images", pre["image"])
        if "audio" in pre and (root / "audio").is_dir():
            found["audio"] = read_all_audio(root / "audio", pre["audio"])
        if "text" in pre and (root / "text.txt").is_file():
            found["texts"] = tuple(text_lines(root / "text.txt"))
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
        return cls(bundle, labels=np.asarray(labels, dtype=np.int64), source=str(root), **found)

    @classmethod
    def from_digits(cls, bundle, split: str = "val", n: int = 128, *, seed: int = 0) -> CalibrationSet:
        """`n` labelled items of the built-in digits data, aligned across modalities."""
        from fusionrt.data import make_digits

        bundle = as_bundle(bundle)
        options = {}
        if "image" in bundle.modalities:
            options["image_size"] = bundle.encoder("image").input.height
        if "audio" in bundle.modalities:
            options["sample_rate"] = bundle.encoder("audio").input.sample_rate
            options["audio_samples"] = bundle.encoder("audio").input.window_samples
        data = make_digits(split, n, seed=seed, **options)
        if bundle.task == "binary":
            from fusionrt.data import binary_labels

            data = dataclasses.replace(data, labels=binary_labels(data.labels))
        return cls.from_data(bundle, data, source=f"builtin digits ({split}, n={n}, seed={seed})")

    @classmethod
    def from_data(cls, bundle, data, *, source: str = "arrays") -> CalibrationSet:
        """From any object with images (BGR uint8, any size), audio (mono clips at the bundle's rate),
        texts and labels, like `fusionrt.data.DigitsData`."""
        bundle = as_bundle(bundle)
        pre = preprocessors(bundle)
        images = audio = texts = None
        if "image" in pre and getattr(data, "images", None) is not None:
            images = pre["image"].batch(list(data.images))[pre["image"].spec.name]
        if "audio" in pre and getattr(data, "audio", None) is not None:
            window = pre["audio"].spec.window_samples
            clips = [fit_window(np.asarray(a, np.float32), window) for a in data.audio]
            audio = pre["audio"].batch(clips)[pre["audio"].spec.name]
        if "text" in pre and getattr(data, "texts", None) is not None:
            texts = tuple(data.texts)
        return cls(bundle, images=images, audio=audio, texts=texts, labels=getattr(data, "labels", None), source=source)

    # ----------------------------------------------------------------------------------- contents
    @property
    def counts(self) -> dict[str, int]:
        return {
            "image": 0 if self.images is None else len(self.images),
            "audio": 0 if self.audio is None else len(self.audio),
            "text": 0 if self.texts is None else len(self.texts),
        }

    def has(self, component: str) -> bool:
        """Whether this set can produce feeds for `component` (the fusion head: any modality will do)."""
        found = self.component(component)
        if found.role == "fusion":
            return any(self.counts[m] for m in self.bundle.modalities)
        return self.counts[found.modality] > 0

    def component(self, name: str) -> Component:
        if name not in self.bundle.components:
            raise CalibrationError(f"unknown component {name!r}; the bundle has {sorted(self.bundle.components)}")
        return self.bundle.components[name]

    def summary(self) -> dict:
        return {
            "source": self.source,
            "counts": self.counts,
            "labelled": self.labels is not None,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }

    # ----------------------------------------------------------------------------------- feeds
    def preprocessor(self, modality: str) -> Preprocessor:
        """The runtime's host preprocessor of the bundle's `modality` encoder."""
        if modality not in self._preprocessors:
            self._preprocessors[modality] = host_preprocessor(self.bundle.encoder(modality).input)
        return self._preprocessors[modality]

    def encoder_inputs(self, modality: str, start: int = 0, stop: int | None = None) -> dict[str, np.ndarray]:
        """The ONNX inputs of one encoder for items [start, stop)."""
        if self.counts[modality] == 0:
            raise CalibrationError(f"calibration set {self.source} has no {modality} items; add {FOLDERS[modality]} to it")
        pre = self.preprocessor(modality)
        if modality == "text":
            return pre.batch(self.texts[start:stop])
        if modality == "image":
            return {pre.spec.name: self.images[start:stop]}
        return {pre.spec.name: self.audio[start:stop].astype(np.float32, copy=False)}

    def feeds(self, component: str, batch_size: int = 8) -> list[dict[str, np.ndarray]]:
        """Batches of ONNX inputs for `component`; for the fusion head, FP32 encoder embeddings + presence.

        Fusion batches rotate which modality is missing (presence 0, zero embedding) so the
        calibrated ranges also cover the degraded inputs the runtime produces.
        """
        found = self.component(component)
        if found.role == "fusion":
            rows = self.fusion_inputs()
            total = len(next(iter(rows.values())))
            return [{k: v[i : i + batch_size] for k, v in rows.items()} for i in range(0, total, batch_size)]
        total = self.counts[found.modality]
        return [self.encoder_inputs(found.modality, i, i + batch_size) for i in range(0, max(total, 1), batch_size)]

    def embeddings(self, modality: str) -> np.ndarray:
        """FP32 embeddings of this set's `modality` items, from the bundle's fp32 encoder file."""
        if modality not in self._embeddings:
            from fusionrt.runtime.engine import OrtEngine

            engine = OrtEngine(self.bundle.encoder(modality).variant(FALLBACK).path)
            total = self.counts[modality]
            chunks = [engine.run(self.encoder_inputs(modality, i, i + EMBEDDING_BATCH))[EMBEDDING]
                      for i in range(0, total, EMBEDDING_BATCH)]
            self._embeddings[modality] = np.concatenate(chunks).astype(np.float32)
        return self._embeddings[modality]

    def fusion_inputs(self) -> dict[str, np.ndarray]:
        """The fusion head's inputs over the items every present modality has, rotating the presence mask."""
        modalities = self.bundle.modalities
        present = [m for m in modalities if self.counts[m] > 0]
        if not present:
            raise CalibrationError(f"calibration set {self.source} has no items for any of {list(modalities)}")
        total = min(self.counts[m] for m in present)
        embeddings = {m: self.embeddings(m)[:total] for m in present}
        return bundle_fusion_feeds(self.bundle, embeddings, presence=rotating_presence(modalities, present, total))


def rotating_presence(modalities: Sequence[str], present: Sequence[str], rows: int) -> np.ndarray:
    """float32 [rows, M]: row i drops present modality i mod (P + 1) (the last slot keeps all), so
    calibration covers each degraded input; with one present modality nothing is dropped."""
    presence = np.ones((rows, len(modalities)), np.float32)
    if len(present) > 1:
        slot = np.arange(rows) % (len(present) + 1)
        for k, modality in enumerate(present):
            presence[slot == k, list(modalities).index(modality)] = 0.0
    return presence


def preprocessors(bundle: Bundle) -> dict[str, Preprocessor]:
    """modality -> the runtime's host preprocessor of that encoder, for every modality of the bundle."""
    return {m: host_preprocessor(bundle.encoder(m).input) for m in bundle.modalities}


def as_bundle(bundle: Bundle | str | Path) -> Bundle:
    """A loaded bundle from a `Bundle` or a bundle directory (loaded and hash-checked)."""
    if isinstance(bundle, Bundle):
        return bundle
    if isinstance(bundle, (str, Path)):
        return load(bundle)
    raise CalibrationError(f"expected a Bundle or a bundle directory, found {type(bundle).__name__}; "
                           "a calibration set is built for one bundle (fusionrt.bundle.load)")
