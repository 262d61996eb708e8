"""Real benchmark inputs: the built-in digits test split through each encoder's host preprocessor
(`host_preprocessor(component.input)`, the one the runtime's stages use), and the fusion head's
inputs (`bundle_fusion_feeds`) from the FP32 encoders' embeddings of those items (zeros and presence
0 for a modality whose encoder cannot run, as the pipeline fuses a missing modality)."""

from __future__ import annotations

import math

import numpy as np

from fusionrt.bundle import EMBEDDING, AudioInput, Bundle
from fusionrt.errors import DataError, FusionRTError
from fusionrt.runtime.backend import Backend, open_engine
from fusionrt.runtime.fusion_feeds import bundle_fusion_feeds
from fusionrt.runtime.preprocess import fit_window, host_preprocessor
from fusionrt.runtime.sources.resample import resample

CAPTURE_RATE = 16000  # the built-in data's microphone rate


class BenchInputs:
    """Host-preprocessed feeds of `count` digits items per component: {component: {input: [count, ...]}}."""

    def __init__(self, bundle: Bundle, count: int) -> None:
        self.feeds: dict[str, dict[str, np.ndarray]] = {}
        self.errors: dict[str, str] = {}  # component -> why its inputs could not be made
        items = _digits(bundle, count)
        embeddings = {}
        for component in bundle.encoders:
            try:
                feeds = host_preprocessor(component.input).batch(items[component.modality])
                engine = open_engine(bundle, component, "fp32", Backend.ORT, threads=1)
            except FusionRTError as e:
                self.errors[component.name] = str(e)
                continue
            self.feeds[component.name] = feeds
            try:
                rows = [engine.run({k: v[i : i + 1] for k, v in feeds.items()})[EMBEDDING] for i in range(count)]
                embeddings[component.modality] = np.concatenate(rows)
            except FusionRTError:
                pass  # that encoder's own rows report the error; fusion sees the modality as missing
            finally:
                engine.close()
        self.feeds[bundle.fusion.name] = bundle_fusion_feeds(bundle, embeddings, count=count)

    def batch(self, component: str, start: int, size: int) -> dict[str, np.ndarray]:
        """Items [start, start + size) of a component's feeds, as contiguous arrays."""
        return {k: np.ascontiguousarray(v[start : start + size]) for k, v in self.feeds[component].items()}


def _digits(bundle: Bundle, count: int) -> dict[str, list]:
    """`count` digits test items per modality, as a camera, a microphone and a text box give them: frames
    at the data's own size (the preprocessor resizes) and audio captured at CAPTURE_RATE, resampled to
    the bundle's rate as a microphone's is."""
    try:
        from fusionrt.data import make_digits
    except ImportError as e:
        raise DataError(f"benchmark inputs come from the built-in digits data, which needs {e.name}: "
                        "pip install 'fusionrt[export]'") from e

    audio = bundle.encoder("audio").input if "audio" in bundle.modalities else None
    audio = audio if isinstance(audio, AudioInput) else None
    seconds = audio.window_samples / audio.sample_rate if audio else 1.0
    data = make_digits("test", count, sample_rate=CAPTURE_RATE, audio_samples=math.ceil(seconds * CAPTURE_RATE))
    items = {"image": data.images, "text": data.texts}
    if audio:
        items["audio"] = [fit_window(resample(a, CAPTURE_RATE, audio.sample_rate), audio.window_samples)
                          for a in data.audio]
    return items
