"""PyTorch -> ONNX export, parity checks, FP16 variants, bundle writing."""

from fusionrt.export.bundle_writer import export_bundle
from fusionrt.export.fp16 import add_fp16_variant
from fusionrt.export.onnx_from_torch import export_component
from fusionrt.export.report import ComponentReport, OutputParity, Parity, Tolerance, VariantReport

__all__ = [
    "ComponentReport",
    "OutputParity",
    "Parity",
    "Tolerance",
    "VariantReport",
    "add_fp16_variant",
    "export_bundle",
    "export_component",
]
