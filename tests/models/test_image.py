from __future__ import annotations

import numpy as np
import torch

from fusionrt.config import ImageConfig
from fusionrt.models import ImageEncoder

SMALL = ImageConfig(size=32, widths=(8, 16), blocks_per_stage=1)


def test_normalise_casts_flips_and_scales_inside_the_module():
    encoder = ImageEncoder(SMALL, embed_dim=8)
    image = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    rgb = image.numpy()[..., ::-1].astype(np.float64) / 255.0  # the input is BGR
    standard = (rgb - np.array(SMALL.mean)) / np.array(SMALL.std)
    centred = standard - standard.mean(axis=(1, 2, 3), keepdims=True)  # then per-frame contrast
    expected = (centred / np.sqrt((centred**2).mean(axis=(1, 2, 3), keepdims=True) + 1e-6)).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(encoder.normalise(image).numpy(), expected, atol=1e-5)


def test_bgr_and_rgb_configs_agree_on_the_same_picture():
    bgr_encoder = ImageEncoder(SMALL, embed_dim=8).eval()
    rgb_encoder = ImageEncoder(ImageConfig(size=32, widths=(8, 16), channel_order="rgb"), embed_dim=8).eval()
    rgb_encoder.load_state_dict(bgr_encoder.state_dict())
    bgr = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(bgr_encoder(bgr), rgb_encoder(bgr.flip(-1)))
        assert not torch.allclose(bgr_encoder(bgr), bgr_encoder(bgr.flip(-1)))


def test_architecture_follows_the_config():
    cfg = ImageConfig(size=32, widths=(8, 16, 24), blocks_per_stage=2)
    encoder = ImageEncoder(cfg, embed_dim=12).eval()
    assert len(encoder.blocks) == 6
    assert [b.conv1[0].stride[0] for b in encoder.blocks] == [1, 1, 2, 1, 2, 1]
    assert encoder.proj.in_features == 24 and encoder.proj.out_features == 12
    with torch.no_grad():
        assert encoder(**encoder.example_inputs(batch=3)).shape == (3, 12)


def test_contract():
    encoder = ImageEncoder(ImageConfig(), embed_dim=8)
    example = encoder.example_inputs(batch=2)
    assert list(example) == ["image"]
    assert example["image"].dtype == torch.uint8 and example["image"].shape == (2, 64, 64, 3)
    assert encoder.preprocessing() == {
        "height": 64,
        "width": 64,
        "channel_order": "bgr",
        "dtype": "uint8",
        "layout": "HWC",
        "resize": "host",
    }
    assert not any(name in ("mean", "std") for name in encoder.state_dict())


def test_exports_to_onnx(onnx_parity):
    assert onnx_parity(ImageEncoder(SMALL, embed_dim=16), output_name="embedding") < 1e-3
