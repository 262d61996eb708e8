"""INT8 keeps float, by rules read from the exported graph, an audio front-end and an image network's input layers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusionrt.calibration import QuantConfig, QuantMode
from fusionrt.calibration.frontend import spectral_frontend
from fusionrt.calibration.graphs import input_layers
from fusionrt.calibration.graphs import int8_nodes, load_onnx
from fusionrt.calibration.measure import agreement, run_batches
from fusionrt.calibration.quantize import prepare_for_quantization, quantize_onnx
from fusionrt.calibration.reader import FeedsReader
from fusionrt.export.onnx_from_torch import export_component
from fusionrt.config import AudioConfig, AudioFrontend
from fusionrt.models.audio import AudioEncoder


def _tones(n: int, seed: int, samples: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    feeds = []
    for _ in range(n):
        freq, level = rng.uniform(200, 3000), 10 ** rng.uniform(-3, 0)
        wave = level * np.sin(2 * np.pi * freq * t) + 0.01 * level * rng.standard_normal(samples)
        feeds.append({"audio": wave[None].astype(np.float32)})
    return feeds


@pytest.mark.parametrize("frontend", [AudioFrontend.LOGMEL, AudioFrontend.MFCC])
def test_the_frontend_up_to_the_log_stays_float_and_the_trunk_runs_int8(tmp_path, frontend):
    cfg = AudioConfig(frontend=frontend)
    torch.manual_seed(0)
    encoder = AudioEncoder(cfg, embed_dim=16).eval()
    samples = int(cfg.sample_rate * cfg.window_s)
    fp32 = tmp_path / "audio_encoder.fp32.onnx"
    export_component(encoder, {"audio": torch.zeros(1, samples)}, fp32)
    prepared = prepare_for_quantization(fp32, tmp_path / "prepared.onnx")

    front = spectral_frontend(load_onnx(prepared.path))
    nodes = {n.name: n for n in load_onnx(prepared.path).graph.node}
    ops = [nodes[name].op_type for name in front]
    assert ops[-1] == "Log" and "Conv" in ops and ("MatMul" in ops or "Gemm" in ops)  # DFT, mel projection, log
    trunk = [name for name, node in nodes.items() if name not in front and node.op_type in ("Conv", "Gemm", "MatMul")]
    assert trunk, "the trunk after the log has layers to quantize"

    config = QuantConfig(QuantMode.INT8_STATIC, reduce_range=True).excluding(front)  # 7-bit: exact on every x86
    out = quantize_onnx(fp32, tmp_path / "audio_encoder.int8.onnx", config, FeedsReader(_tones(24, 0, samples)),
                        prepared=prepared).path
    quantized = set(int8_nodes(load_onnx(out)))
    assert quantized and not quantized & set(front)
    heldout = _tones(16, 1, samples)
    cos = agreement(run_batches(fp32, heldout), run_batches(out, heldout))
    assert cos.cosine_mean > 0.99


def test_an_image_encoder_keeps_its_colour_and_stem_convolutions_float_and_has_no_frontend(tmp_path):
    from fusionrt.config import ImageConfig
    from fusionrt.models.image import ImageEncoder

    path = tmp_path / "image_encoder.fp32.onnx"
    image = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    export_component(ImageEncoder(ImageConfig(), embed_dim=8).eval(), {"image": image}, path)
    model = load_onnx(path)
    assert spectral_frontend(model) == ()
    weights = {i.name: tuple(i.dims) for i in model.graph.initializer}
    convs = {n.name: weights[n.input[1]] for n in model.graph.node if n.op_type == "Conv"}
    layers = input_layers(model)
    # the colour 1x1 (3 -> 3) and the stem after it and the per-frame contrast normalisation
    assert [convs[name][:2] for name in layers] == [(3, 3), (ImageConfig().widths[0], 3)]
    assert all(shape[1] > 4 for name, shape in convs.items() if name not in layers)
