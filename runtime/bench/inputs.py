"""Real benchmark inputs: the built-in digits test split through the runtime's own host
preprocessing (each encoder stage's `prepare`), and the fusion head's inputs as the FP32 encoders'
embeddings of those items (zeros and presence 0 for a modality whose encoder cannot run, as the
pipeline fuses a missing modality)."""

from __future__ import annotations

import math

import numpy as np

from fusionrt.bundle import Bundle
from fusionrt.errors import BundleError, DataError, FusionRTError
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.sources.resample import resample
from fusionrt.runtime.stages import EMBEDDING, PRESENCE, EncoderStage

CAPTURE_RATE = 16000  # the built-in data's microphone rate


class BenchInputs:
    """Host-preprocessed feeds of `count` digits items per component: {component: {input: [count, ...]}}."""

    def __init__(self, bundle: Bundle, count: int) -> None:
        try:
            from fusionrt.data import make_digits
        except ImportError as e:
            raise DataError(f"benchmark inputs come from the built-in digits data, which needs {e.name}: "
                            "pip install 'fusionrt[export]'") from e

        self.feeds: dict[str, dict[str, np.ndarray]] = {}
        self.errors: dict[str, str] = {}  # component -> why its inputs could not be made
        stages = {}
        for modality in bundle.modalities:
            component = bundle.encoder(modality)
            try:
                stages[modality] = EncoderStage(
                    modality,
                    [("fp32", OrtEngine(component.variant("fp32").path, threads=1))],
                    inputs=component.inputs,
                    outputs=component.outputs,
                    preprocessing=component.preprocessing,
                    tokenizer_json=bundle.tokenizer_dir / "tokenizer.json" if bundle.tokenizer_dir else None,
                )
            except FusionRTError as e:
                self.errors[component.name] = str(e)
        # Frames come at the data's own size and audio at its own rate, as from a camera and a microphone:
        # the image stage resizes, and audio is resampled to the bundle's rate as a microphone's is.
        audio = stages.get("audio")
        seconds = audio.window_samples / audio.sample_rate if audio else 1.0
        data = make_digits("test", count, sample_rate=CAPTURE_RATE, audio_samples=math.ceil(seconds * CAPTURE_RATE))
        items = {"image": data.images, "text": data.texts}
        if audio:
            items["audio"] = [resample(a, CAPTURE_RATE, audio.sample_rate)[: audio.window_samples] for a in data.audio]
        embeddings = {}
        for modality, stage in stages.items():
            rows = [stage.prepare(item) for item in items[modality]]
            self.feeds[bundle.encoder(modality).name] = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
            try:
                embeddings[modality] = np.concatenate([stage.engine.run(r)[EMBEDDING] for r in rows])
            except FusionRTError:
                pass  # that encoder's own rows report the error; fusion sees the modality as missing
        self.feeds[bundle.fusion.name] = fusion_feeds(bundle, embeddings, count)

    def batch(self, component: str, start: int, size: int) -> dict[str, np.ndarray]:
        """Items [start, start + size) of a component's feeds, as contiguous arrays."""
        return {k: np.ascontiguousarray(v[start : start + size]) for k, v in self.feeds[component].items()}


def fusion_feeds(bundle: Bundle, embeddings: dict[str, np.ndarray], count: int) -> dict[str, np.ndarray]:
    """Fusion inputs from per-modality embeddings [count, E]; a modality without them is absent."""
    fusion = bundle.fusion
    feeds, presence = {}, np.zeros((count, len(bundle.modalities)), np.float32)
    for i, modality in enumerate(bundle.modalities):
        if modality in embeddings:
            feeds[modality] = embeddings[modality].astype(np.float32, copy=False)
            presence[:, i] = 1.0
        else:
            feeds[modality] = np.zeros((count, _width(bundle, modality)), np.float32)
    feeds[PRESENCE] = presence
    return {s.name: feeds[s.name] for s in fusion.inputs}


def _width(bundle: Bundle, modality: str) -> int:
    """The embedding width of a modality, from the fusion input or else the encoder output."""
    declared = next(s.shape[-1] for s in bundle.fusion.inputs if s.name == modality)
    if not isinstance(declared, int):
        declared = bundle.encoder(modality).outputs[0].shape[-1]
    if not isinstance(declared, int):
        raise BundleError(f"bundle {bundle.root}: the {modality} embedding width is dynamic in both the encoder and "
                          "the fusion head, so a missing modality cannot be fed; give the bundle a static width")
    return declared
