"""Audio encoder: float32 PCM -> log-mel / MFCC front-end written with plain ops -> small CNN.

The front-end is an STFT expressed as two Conv1d with fixed DFT kernels (real and imaginary part,
each multiplied by a periodic Hann window), so every ONNX backend runs it (no STFT op). Choices,
matched by the NumPy reference in tests/models/audio_reference.py:
- frames are centred: the signal is zero-padded by n_fft // 2 on both sides (constant padding,
  which every backend supports, unlike reflect padding on older TensorRT);
- power spectrum |X|^2 of the n_fft // 2 + 1 non-negative frequencies, no 1/n scaling;
- HTK mel scale (mel = 2595 log10(1 + f / 700)), triangles peaking at 1 (no area normalisation),
  from 0 Hz to sample_rate / 2;
- natural log(mel + 1e-6); MFCC = orthonormal DCT-II over the mel channels, first n_mfcc kept.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusionrt.config import AudioConfig, AudioFrontend

LOG_FLOOR = 1e-6


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (the STFT convention), float64 [n]."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def dft_kernels(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """Windowed real and imaginary DFT kernels, each float64 [n_fft // 2 + 1, n_fft]."""
    k = np.arange(n_fft // 2 + 1)[:, None]
    n = np.arange(n_fft)[None, :]
    angle = 2.0 * np.pi * k * n / n_fft
    window = hann_window(n_fft)
    return np.cos(angle) * window, -np.sin(angle) * window


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """HTK-scale triangular filters from 0 Hz to Nyquist, peak 1, float64 [n_mels, n_fft // 2 + 1]."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2.0), n_mels + 2))
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II as a matrix, float64 [n_out, n_in] (rows are the first n_out basis vectors)."""
    k = np.arange(n_out)[:, None]
    n = np.arange(n_in)[None, :]
    basis = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    basis[0] /= np.sqrt(2.0)
    return basis


def _buffer(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class SpectralFrontend(nn.Module):
    """float32 PCM [B, samples] -> log-mel [B, n_mels, frames] or MFCC [B, n_mfcc, frames].

    frames = 1 + samples // stft_hop. The kernels are derived from the config, so they are
    non-persistent buffers: not trained and not stored in checkpoints.
    """

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.n_fft = cfg.n_fft
        self.hop = cfg.stft_hop
        real, imag = dft_kernels(cfg.n_fft)
        self.register_buffer("dft_real", _buffer(real[:, None, :]), persistent=False)
        self.register_buffer("dft_imag", _buffer(imag[:, None, :]), persistent=False)
        self.register_buffer("mel", _buffer(mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)), persistent=False)
        self.mfcc = cfg.frontend is AudioFrontend.MFCC
        if self.mfcc:
            self.register_buffer("dct", _buffer(dct_matrix(cfg.n_mfcc, cfg.n_mels)), persistent=False)
        self.n_features = cfg.n_mfcc if self.mfcc else cfg.n_mels

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        pad = self.n_fft // 2
        x = F.pad(audio.unsqueeze(1), (pad, pad))
        real = F.conv1d(x, self.dft_real, stride=self.hop)
        imag = F.conv1d(x, self.dft_imag, stride=self.hop)
        power = real * real + imag * imag
        features = torch.log(torch.matmul(self.mel, power) + LOG_FLOOR)
        if self.mfcc:
            features = torch.matmul(self.dct, features)
        return features


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class AudioEncoder(nn.Module):
    """float32 mono PCM [B, samples] at cfg.sample_rate -> embedding float32 [B, embed_dim].

    Features are normalised per utterance to cancel the input gain without erasing steady sounds (a
    per-band mean over time would remove a tone that fills the window), then a stride-2
    conv-BN-ReLU per width over (feature, time), an average over time only (where a sound sits in
    frequency is what tells sounds apart, so the feature axis is kept and flattened), Linear.
    """

    def __init__(self, cfg: AudioConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        self.frontend = SpectralFrontend(cfg)
        widths = (1, *cfg.widths)
        self.cnn = nn.Sequential(*(_conv_bn_relu(a, b) for a, b in zip(widths[:-1], widths[1:])))
        bands = self.frontend.n_features
        for _ in cfg.widths:
            bands = (bands + 1) // 2
        self.proj = nn.Linear(widths[-1] * bands, embed_dim)

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Gain-normalised features [B, n_features, frames]. A gain is one offset on every log-mel band,
        so log-mel loses its mean over bands and time; after the orthonormal DCT that offset sits in
        c0 alone, so MFCC loses c0's mean over time."""
        features = self.frontend(audio)
        if not self.frontend.mfcc:
            return features - features.mean(dim=(1, 2), keepdim=True)
        c0 = features[:, :1]
        return torch.cat([c0 - c0.mean(dim=2, keepdim=True), features[:, 1:]], dim=1)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = self.cnn(self.features(audio).unsqueeze(1))
        return self.proj(x.mean(dim=3).flatten(1))

    def preprocessing(self) -> dict:
        cfg = self.cfg
        info = {
            "sample_rate": cfg.sample_rate,
            "window_samples": cfg.window_samples,
            "hop_s": cfg.hop_s,
            "dtype": "float32",
            "channels": 1,
            "frontend": cfg.frontend.value,
            "n_mels": cfg.n_mels,
        }
        if cfg.frontend is AudioFrontend.MFCC:
            info["n_mfcc"] = cfg.n_mfcc
        return info

    def example_inputs(self, batch: int = 1) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(0)
        return {"audio": 0.1 * torch.randn(batch, self.cfg.window_samples, generator=g)}
