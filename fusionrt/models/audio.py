"""Audio encoder: float32 PCM -> log-mel / MFCC front-end written with plain ops -> small CNN.

The front-end is an STFT written with ops every ONNX backend runs (no STFT/DFT op: TensorRT has
neither, and ONNX Runtime's CPU STFT took 0.84 ms for a 1-s window, twice the direct convolution).
It is a two-factor Cooley-Tukey split of the windowed DFT (see `polyphase_dft`): the padded signal
is read as rows of n2 samples (n2 divides the hop), a grouped Conv1d over the rows does the first
stage (window and twiddles folded into its kernels), one MatMul the second; then |X|^2 = Re^2 + Im^2
and one MatMul for the mel projection. The signal is real, so |X[b]| = |X[n_fft - b]|: the first
stage computes only its lower half (k1 <= n1 / 2), whose bins or their mirrors cover every bin. For
the default n_fft 512 / hop 160 the two stages take an eighth of the multiply-adds of the direct
DFT-as-Conv1d they replace, and the whole encoder runs 2.1-2.9x as fast in ONNX Runtime as with
it (benchmarks/results/export_vs_torch.md). Choices, matched by the NumPy reference in
tests/models/audio_reference.py:
- frames are centred: the signal is zero-padded by n_fft // 2 on both sides (constant padding,
  which every backend supports, unlike reflect padding on older TensorRT);
- power spectrum |X|^2 of the n_fft // 2 + 1 non-negative frequencies (periodic Hann window), no
  1/n scaling; bins no mel filter weighs (e.g. Nyquist) are not computed;
- HTK mel scale (mel = 2595 log10(1 + f / 700)), triangles peaking at 1 (no area normalisation),
  from 0 Hz to sample_rate / 2;
- natural log(mel + 1e-6); MFCC = orthonormal DCT-II over the mel channels, first n_mfcc kept.
"""

from __future__ import annotations

import math

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


def polyphase_split(n_fft: int, hop: int) -> tuple[int, int]:
    """(n1, n2) with n1 * n2 = n_fft and n2 dividing the hop, the fewest multiply-adds per frame
    ((n1 // 2 + 1) * (2 * n_fft + 4 * n2 ** 2): the two stages of `polyphase_dft`; ties: the larger n2).

    The padded signal is read as rows of n2 samples: a frame is n1 consecutive rows, and frames
    start hop // n2 rows apart. An odd hop gives n2 = 1, one stage of length n_fft.
    """
    common = math.gcd(n_fft, hop)
    n2 = min((d for d in range(1, common + 1) if common % d == 0),
             key=lambda d: ((n_fft // d // 2 + 1) * (2 * n_fft + 4 * d * d), -d))
    return n_fft // n2, n2


def polyphase_dft(n_fft: int, hop: int, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windowed DFT of every frame as two small stages, float64, enough for the power of bins [0, n_bins).

    With sample n = n2 * i + p (row i, phase p) and bin b = k1 + n1 * k2 (n1, n2 from
    `polyphase_split`):  X[b] = sum_p W_n2^(p k2) A[p, k1],  A[p, k1] = sum_i w[n] x[n] W_N^(n k1).
    Stage A carries the window and the twiddle W_N^(p k1), so its kernels differ per phase: a
    Conv1d over the rows with one group per phase, kernel n1, stride hop // n2, for k1 in
    [0, n1 // 2] only; weights [n2 * 2 * k1s, 1, n1], output channels ordered (p, re/im, k1). Stage B
    is then one matrix for every k1 and frame, [2 * k2s, 2 * n2]: rows (re/im, k2), columns (p, re/im).
    A bin above n_fft / 2 has the power of its mirror n_fft - b, and each bin below has itself or
    its mirror among these outputs (both only when k1 is 0 or n1 / 2: then itself is used).
    Returns (stage_a, stage_b, bins), bins [k2s, k1s] the bin whose power each output gives, or -1
    for an output no bin in [0, n_bins) needs (it is computed and must be weighted 0).
    """
    n1, n2 = polyphase_split(n_fft, hop)
    k1s = n1 // 2 + 1
    output = np.arange(k1s)[None, :] + n1 * np.arange(n2)[:, None]  # [n2, k1s] each output's DFT bin
    direct = output <= n_fft // 2
    stands_for = np.where(direct, output, n_fft - output)
    used = (direct | ~np.isin(stands_for, output[direct])) & (stands_for < n_bins)
    needed = np.flatnonzero(used.any(axis=1))  # the values of k2 some bin needs
    real, imag = dft_kernels(n_fft)  # rows are bins 0 .. n_fft // 2, and k1s <= n_fft // 2 + 1
    stage_a = np.stack([real[:k1s], imag[:k1s]]).reshape(2, k1s, n1, n2).transpose(3, 0, 1, 2)
    angle = 2.0 * np.pi * np.outer(needed, np.arange(n2)) / n2  # [k2s, n2]
    cos, sin = np.cos(angle), np.sin(angle)
    stage_b = np.zeros((2, len(needed), n2, 2))
    stage_b[0, :, :, 0], stage_b[0, :, :, 1] = cos, sin  # Re X = sum_p Re A cos + Im A sin
    stage_b[1, :, :, 0], stage_b[1, :, :, 1] = -sin, cos  # Im X = sum_p Im A cos - Re A sin
    bins = np.where(used, stands_for, -1)[needed]
    return stage_a.reshape(n2 * 2 * k1s, 1, n1), stage_b.reshape(2 * len(needed), 2 * n2), bins


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """HTK-scale triangular filters from 0 Hz to Nyquist, peak 1, float64 [n_mels, n_fft // 2 + 1]."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2.0), n_mels + 2))
    edges[-1] = sample_rate / 2.0  # the mel round trip lands a hair above Nyquist, weighing its bin 1e-15
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
    non-persistent buffers: not trained and not stored in checkpoints (checkpoints written before
    the front-end's formulation changed load unchanged).
    """

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.n_fft = cfg.n_fft
        self.hop = cfg.stft_hop
        self.n1, self.n2 = polyphase_split(cfg.n_fft, cfg.stft_hop)
        self.stride = cfg.stft_hop // self.n2
        mel = mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels)  # [n_mels, n_fft // 2 + 1]
        n_bins = int(np.flatnonzero(mel.any(axis=0)).max()) + 1  # the highest bin a filter weighs, + 1
        stage_a, stage_b, bins = polyphase_dft(cfg.n_fft, cfg.stft_hop, n_bins)
        self.register_buffer("stage_a", _buffer(stage_a), persistent=False)
        self.register_buffer("stage_b", _buffer(stage_b), persistent=False)
        self.k2s = bins.shape[0]
        # The mel matrix's columns follow the power's rows, (k2, k1): the bin each output stands for.
        weights = np.where(bins >= 0, mel[:, np.maximum(bins, 0)], 0.0)  # [n_mels, k2s, k1s]
        self.register_buffer("mel", _buffer(weights.reshape(cfg.n_mels, -1)), persistent=False)
        self.mfcc = cfg.frontend is AudioFrontend.MFCC
        if self.mfcc:
            self.register_buffer("dct", _buffer(dct_matrix(cfg.n_mfcc, cfg.n_mels)), persistent=False)
        self.n_features = cfg.n_mfcc if self.mfcc else cfg.n_mels

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        batch, samples = audio.shape
        frames = 1 + samples // self.hop
        rows = (frames - 1) * self.stride + self.n1  # the rows of n2 samples that the frames cover
        pad = self.n_fft // 2
        right = rows * self.n2 - samples - pad
        x = F.pad(audio, (pad, max(right, 0)))
        if right < 0:
            x = x[:, : rows * self.n2]
        phases = x.reshape(batch, rows, self.n2).transpose(1, 2)  # [B, n2, rows]
        partial = F.conv1d(phases, self.stage_a, stride=self.stride, groups=self.n2)  # [B, (p, re/im, k1), frames]
        partial = partial.reshape(batch, 2 * self.n2, -1)  # [B, (p, re/im), (k1, frames)]
        spectrum = torch.matmul(self.stage_b, partial)  # [B, (re/im, k2), (k1, frames)]
        squared = spectrum * spectrum
        power = (squared[:, : self.k2s] + squared[:, self.k2s :]).reshape(batch, -1, frames)  # [B, (k2, k1), frames]
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
