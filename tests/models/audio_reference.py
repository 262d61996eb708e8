"""NumPy reference of the audio front-end, written independently of fusionrt.models.audio.

Plain framing + np.fft.rfft, a mel filterbank built filter by filter, and the DCT-II computed with
an FFT of the mirrored signal. Float64 throughout.
"""

from __future__ import annotations

import numpy as np


def reference_mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """HTK mel triangles (peak 1) from 0 Hz to Nyquist, [n_mels, n_fft // 2 + 1]."""
    top = 2595.0 * np.log10(1.0 + (sample_rate / 2.0) / 700.0)
    edges = [700.0 * (10.0 ** (top * i / (n_mels + 1) / 2595.0) - 1.0) for i in range(n_mels + 2)]
    bank = np.zeros((n_mels, n_fft // 2 + 1))
    for m in range(n_mels):
        low, centre, high = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_fft // 2 + 1):
            f = k * sample_rate / n_fft
            if low < f <= centre:
                bank[m, k] = (f - low) / (centre - low)
            elif centre < f < high:
                bank[m, k] = (high - f) / (high - centre)
    return bank


def reference_dct_ortho(x: np.ndarray) -> np.ndarray:
    """Orthonormal DCT-II along axis 0, via the FFT of [x, reversed x]."""
    n = x.shape[0]
    mirrored = np.concatenate([x, x[::-1]], axis=0)
    k = np.arange(n).reshape(-1, *([1] * (x.ndim - 1)))
    y = np.real(np.exp(-1j * np.pi * k / (2 * n)) * np.fft.fft(mirrored, axis=0)[:n])
    scale = np.full(k.shape, np.sqrt(1.0 / (2 * n)))
    scale[0] = np.sqrt(1.0 / (4 * n))
    return y * scale


def reference_features(
    audio: np.ndarray,
    *,
    sample_rate: int,
    n_fft: int,
    hop: int,
    n_mels: int,
    n_mfcc: int | None = None,
) -> np.ndarray:
    """One mono signal [samples] -> log-mel [n_mels, frames] (or MFCC [n_mfcc, frames])."""
    x = np.pad(np.asarray(audio, dtype=np.float64), n_fft // 2)  # centred frames, zero padding
    n_frames = 1 + (len(x) - n_fft) // hop
    frames = np.stack([x[i * hop : i * hop + n_fft] for i in range(n_frames)])
    window = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # [frames, n_fft // 2 + 1]
    mel = power @ reference_mel_filterbank(sample_rate, n_fft, n_mels).T
    log_mel = np.log(mel + 1e-6).T
    return log_mel if n_mfcc is None else reference_dct_ortho(log_mel)[:n_mfcc]
