"""Whisper's audio encoder on short windows, from a CTranslate2 Whisper model directory.

`WhisperWindowEncoder` takes float32 16 kHz PCM [batch, samples] and returns the encoder's hidden
states [batch, samples / 320, d_model]: Whisper's log-mel front-end written as a Conv1d (the DFT)
and MatMuls (the mel filters of `WhisperFeatureExtractor`), then `transformers`' `WhisperEncoder`
with the weights read from `model.bin`. Whisper was trained on 30-s inputs; a window shorter than
that keeps only the first positional embeddings (as whisper.cpp's `audio_ctx` does), so a 1-s
window costs a thirtieth of the 30-s encoder. Differences from the feature extractor: frames are
zero-padded at the edges (not reflected: `SpectralFrontend`'s choice, for TensorRT), and the
"max - 8" floor of the log-mel is taken per window instead of per 30-s clip.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from fusionrt.errors import ExportError
from fusionrt.export.ctranslate2 import read_ctranslate2
from fusionrt.models.audio import dft_kernels

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
SAMPLES_PER_POSITION = 2 * HOP  # conv2 has stride 2
LOG_RANGE = 8.0  # Whisper keeps log10-mel values within 8 of the maximum


class WhisperLogMel(nn.Module):
    """float32 PCM [B, samples] -> Whisper's normalized log10-mel [B, n_mels, samples // 160]."""

    def __init__(self, n_mels: int):
        super().__init__()
        real, imag = dft_kernels(N_FFT)
        kernels = np.concatenate([real, imag])[:, None, :]  # [2 * 201, 1, 400]
        filters = WhisperFeatureExtractor(feature_size=n_mels).mel_filters.T  # [n_mels, 201], computed locally
        self.register_buffer("dft", torch.from_numpy(kernels.astype(np.float32)), persistent=False)
        self.register_buffer("mel", torch.from_numpy(np.ascontiguousarray(filters, dtype=np.float32)), persistent=False)
        self.bins = real.shape[0]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        frames = audio.shape[1] // HOP  # Whisper drops the STFT's last frame
        x = F.pad(audio.unsqueeze(1), (N_FFT // 2, N_FFT // 2))
        spectrum = F.conv1d(x, self.dft, stride=HOP)[:, :, :frames]
        power = spectrum[:, : self.bins] ** 2 + spectrum[:, self.bins :] ** 2
        log_mel = torch.log10(torch.clamp(torch.matmul(self.mel, power), min=1e-10))
        log_mel = torch.maximum(log_mel, log_mel.amax(dim=(1, 2), keepdim=True) - LOG_RANGE)
        return (log_mel + 4.0) / 4.0


class WhisperWindowEncoder(nn.Module):
    """float32 16 kHz PCM [B, window_samples] -> Whisper encoder hidden states [B, positions, d_model]."""

    def __init__(self, config: WhisperConfig):
        super().__init__()
        self.window_samples = config.max_source_positions * SAMPLES_PER_POSITION
        self.log_mel = WhisperLogMel(config.num_mel_bins)
        self.encoder = WhisperEncoder(config)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.log_mel(audio)).last_hidden_state

    @classmethod
    def from_ctranslate2(cls, model_dir: str | Path, *, window_s: float = 1.0) -> "WhisperWindowEncoder":
        """The encoder of a CTranslate2 Whisper model directory (its `model.bin`) for windows of `window_s`."""
        spec, weights = read_ctranslate2(model_dir)
        if spec != "WhisperSpec":
            raise ExportError(f"{model_dir}/model.bin holds a {spec}; expected a WhisperSpec (a converted Whisper model)")
        positions = weights["encoder/position_encodings/encodings"]
        wanted = window_s * SAMPLE_RATE / SAMPLES_PER_POSITION
        if wanted != int(wanted) or not 1 <= wanted <= len(positions):
            raise ExportError(f"window_s is {window_s}; expected a multiple of {SAMPLES_PER_POSITION / SAMPLE_RATE} s "
                              f"up to {len(positions) * SAMPLES_PER_POSITION / SAMPLE_RATE} s")
        config = _config(weights, int(wanted))
        model = cls(config)
        model.encoder.load_state_dict(_encoder_state(weights, config), strict=True)
        return model.eval()


def _config(weights: dict[str, np.ndarray], positions: int) -> WhisperConfig:
    conv1 = weights["encoder/conv1/weight"]  # [d_model, n_mels, 3]
    layers = sum(1 for name in weights if name.startswith("encoder/layer_") and name.endswith("ffn/linear_0/weight"))
    return WhisperConfig(
        num_mel_bins=conv1.shape[1],
        d_model=conv1.shape[0],
        encoder_layers=layers,
        encoder_attention_heads=int(weights["encoder/num_heads"]),
        encoder_ffn_dim=weights["encoder/layer_0/ffn/linear_0/weight"].shape[0],
        max_source_positions=positions,
        activation_function="gelu",
    )


def _encoder_state(weights: dict[str, np.ndarray], config: WhisperConfig) -> dict[str, torch.Tensor]:
    """CTranslate2 names -> transformers' WhisperEncoder names (q/k/v are fused in CTranslate2; k has no bias)."""
    def tensor(name: str) -> torch.Tensor:
        return torch.from_numpy(np.asarray(weights[name], dtype=np.float32).copy())

    d = config.d_model
    state = {
        "conv1.weight": tensor("encoder/conv1/weight"), "conv1.bias": tensor("encoder/conv1/bias"),
        "conv2.weight": tensor("encoder/conv2/weight"), "conv2.bias": tensor("encoder/conv2/bias"),
        "embed_positions.weight": tensor("encoder/position_encodings/encodings")[: config.max_source_positions],
        "layer_norm.weight": tensor("encoder/layer_norm/gamma"), "layer_norm.bias": tensor("encoder/layer_norm/beta"),
    }  # fmt: skip
    for i in range(config.encoder_layers):
        src, dst = f"encoder/layer_{i}", f"layers.{i}"
        qkv_w, qkv_b = tensor(f"{src}/self_attention/linear_0/weight"), tensor(f"{src}/self_attention/linear_0/bias")
        state |= {
            f"{dst}.self_attn.q_proj.weight": qkv_w[:d], f"{dst}.self_attn.q_proj.bias": qkv_b[:d],
            f"{dst}.self_attn.k_proj.weight": qkv_w[d : 2 * d],
            f"{dst}.self_attn.v_proj.weight": qkv_w[2 * d :], f"{dst}.self_attn.v_proj.bias": qkv_b[2 * d :],
            f"{dst}.self_attn.out_proj.weight": tensor(f"{src}/self_attention/linear_1/weight"),
            f"{dst}.self_attn.out_proj.bias": tensor(f"{src}/self_attention/linear_1/bias"),
            f"{dst}.self_attn_layer_norm.weight": tensor(f"{src}/self_attention/layer_norm/gamma"),
            f"{dst}.self_attn_layer_norm.bias": tensor(f"{src}/self_attention/layer_norm/beta"),
            f"{dst}.fc1.weight": tensor(f"{src}/ffn/linear_0/weight"), f"{dst}.fc1.bias": tensor(f"{src}/ffn/linear_0/bias"),
            f"{dst}.fc2.weight": tensor(f"{src}/ffn/linear_1/weight"), f"{dst}.fc2.bias": tensor(f"{src}/ffn/linear_1/bias"),
            f"{dst}.final_layer_norm.weight": tensor(f"{src}/ffn/layer_norm/gamma"),
            f"{dst}.final_layer_norm.bias": tensor(f"{src}/ffn/layer_norm/beta"),
        }  # fmt: skip
    return state
