"""`Frame`: one timestamped input flowing from a source into the pipeline."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from enum import Enum

import numpy as np

from fusionrt.errors import DataError


class Modality(str, Enum):
    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"


MODALITIES = tuple(m.value for m in Modality)  # ("text", "image", "audio"): the one list of modality names


@dataclass(frozen=True)
class Frame:
    """One input: `t_ns` is the monotonic capture time (`time.monotonic_ns()` at the source)."""

    modality: Modality
    t_ns: int
    seq: int
    data: np.ndarray | str
    label: int | None = None  # ground truth, known only for built-in test sources
    pixel_format: str = "bgr"  # image payloads: bgr, rgb, yuyv, uyvy, nv12 or i420 (runtime/native.py)

    def __post_init__(self) -> None:
        if not isinstance(self.modality, Modality):
            try:
                object.__setattr__(self, "modality", Modality(self.modality))
            except ValueError:
                raise DataError(f"Frame.modality is {self.modality!r:.40}; expected one of "
                                f"{list(MODALITIES)}") from None
        for name in ("t_ns", "seq"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise DataError(f"Frame.{name} is {value!r:.40}; expected an integer"
                                + (" (nanoseconds from time.monotonic_ns())" if name == "t_ns" else ""))
