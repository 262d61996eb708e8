"""`Frame`: one timestamped input flowing from a source into the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


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
