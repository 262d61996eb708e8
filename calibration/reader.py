"""The calibration reader ONNX Runtime's quantizer pulls from: `get_next() -> dict | None`."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from onnxruntime.quantization import CalibrationDataReader


class FeedsReader(CalibrationDataReader):
    """Replays a fixed list of feeds (one dict of ONNX inputs per batch); `rewind()` starts over."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self.feeds = list(feeds)
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.feeds):
            return None
        self.position += 1
        return self.feeds[self.position - 1]

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.feeds)


def reader_for(calib, component: str, batch_size: int = 8) -> FeedsReader:
    """A reader over a `CalibrationSet`'s feeds for one bundle component."""
    return FeedsReader(calib.feeds(component, batch_size))
