"""Resampling an audio stream that arrives in pieces, equal to resampling it whole."""

from __future__ import annotations

import math

import numpy as np


def resample(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Polyphase resampling of a whole mono float signal (USB microphones often record at 44.1/48 kHz)."""
    if rate_in == rate_out:
        return signal.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    common = math.gcd(int(rate_in), int(rate_out))
    return resample_poly(signal, int(rate_out) // common, int(rate_in) // common).astype(np.float32)


class StreamResampler:
    """`scipy.signal.resample_poly` applied to a stream pushed piece by piece.

    Each push converts the input that has enough right-hand context (`margin` samples) and keeps
    the rest, so the concatenated output equals `resample_poly` of the whole stream (up to float
    rounding) instead of clicking at every chunk edge. The delay is `margin` input samples
    (about 1-30 ms); `flush()` converts what is left at the end of the stream.
    """

    def __init__(self, rate_in: int, rate_out: int) -> None:
        common = math.gcd(int(rate_in), int(rate_out))
        self.up = int(rate_out) // common
        self.down = int(rate_in) // common
        # resample_poly's default filter reaches 10 * max(up, down) upsampled samples each side.
        reach = 10 * max(self.up, self.down) // self.up + 1
        self.margin = math.ceil(reach / self.down) * self.down
        self._reset()

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def push(self, samples: np.ndarray) -> np.ndarray:
        if self.identity:
            return samples
        self._buffer = np.concatenate([self._buffer, samples.astype(np.float32, copy=False)])
        ready = (len(self._buffer) - self._start - self.margin) // self.down * self.down
        if ready <= 0:
            return np.zeros(0, np.float32)
        out = self._convert(self._buffer[self._start - self.margin : self._start + ready + self.margin], ready)
        self._buffer = self._buffer[self._start + ready - self.margin :]
        self._start = self.margin
        return out

    def flush(self) -> np.ndarray:
        if self.identity:
            return np.zeros(0, np.float32)
        if len(self._buffer) > self._start:
            out = self._convert(self._buffer[self._start - self.margin :], None)
        else:
            out = np.zeros(0, np.float32)
        self._reset()
        return out

    def _convert(self, window: np.ndarray, n_in: int | None) -> np.ndarray:
        from scipy.signal import resample_poly

        y = resample_poly(window, self.up, self.down).astype(np.float32, copy=False)
        first = self.margin * self.up // self.down
        return y[first:] if n_in is None else y[first : first + n_in * self.up // self.down]

    def _reset(self) -> None:
        # Zeros before the first sample, as resample_poly pads a whole signal.
        self._buffer = np.zeros(self.margin, np.float32)
        self._start = self.margin
