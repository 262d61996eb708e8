"""PyTorch -> ONNX export, parity checks, FP16 variants, bundle writing; adapters and head training
for pretrained encoders (`fusionrt.export.whisper` reads a CTranslate2 Whisper model)."""

from fusionrt.export.adapters import AudioAdapter, ImageAdapter, TextAdapter, freeze
from fusionrt.export.bundle_writer import export_bundle
from fusionrt.export.fp16 import add_fp16_variant
from fusionrt.export.frozen import HeadTraining, encode, head_accuracy, train_head
from fusionrt.export.onnx_from_torch import export_component
from fusionrt.export.report import ComponentReport, OutputParity, Parity, Tolerance, VariantReport

__all__ = [
    "AudioAdapter",
    "ComponentReport",
    "HeadTraining",
    "ImageAdapter",
    "OutputParity",
    "Parity",
    "TextAdapter",
    "Tolerance",
    "VariantReport",
    "add_fp16_variant",
    "encode",
    "export_bundle",
    "export_component",
    "freeze",
    "head_accuracy",
    "train_head",
]
