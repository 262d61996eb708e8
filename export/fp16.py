"""FP16 variant with FP32 inputs and outputs, converted from the FP32 file and checked against PyTorch.

ONNX Runtime's CPU provider (1.32) has FP16 kernels for few ops (data movement, LayerNormalization,
Clip, Min/Max...); for every other op it inserts Casts and computes in FP32, so the converted file
runs on CPU as it is, while a GPU runs it in FP16. Only the converter's default block list (ops
whose ONNX schema has no FP16, e.g. Range, or that lose too much, e.g. CumSum, TopK) stays in FP32,
and the report records which of those the graph has. Blocking every op without a CPU FP16
kernel (Conv, MatMul, Gemm, Add...) would leave nothing in FP16 for the GPU.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Mapping

import onnx
import torch

from fusionrt.export.onnx_file import OFFLINE_OPTIMIZATION, check_model
from fusionrt.export.parity import check_parity, parity_inputs, torch_outputs
from fusionrt.export.report import ComponentReport, Tolerance, VariantReport
from fusionrt.calibration.fp16 import fp16_from_onnx


def add_fp16_variant(
    report: ComponentReport,
    module: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    tolerance: Tolerance = Tolerance(),
) -> ComponentReport:
    """Write the FP16 variant of `report`'s FP32 file to `path`; return the report with it added."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    path = Path(path)
    source = report.variants["fp32"].path
    axes = {
        spec.name: {i: d for i, d in enumerate(spec.shape) if isinstance(d, str) and d.isidentifier()}
        for spec in report.inputs
    }
    cases = parity_inputs({n: t.detach().cpu().numpy() for n, t in example_inputs.items()}, axes)
    references = torch_outputs(module, cases, report.name)
    output_names = [s.name for s in report.outputs]
    fp32_model = onnx.load(source)
    with tempfile.TemporaryDirectory(prefix=f".{report.name}.", dir=path.parent) as work:
        candidate = Path(work) / path.name
        t0 = time.perf_counter()
        model = fp16_from_onnx(fp32_model)
        check_model(model, f"{path.name} (fp16 conversion)")
        onnx.save(model, candidate)
        t1 = time.perf_counter()
        parity = check_parity(
            candidate, cases, references, output_names,
            precision="fp16", tolerance=tolerance, what=f"{path.name} (fp16, fp32 IO)",
        )  # fmt: skip
        t2 = time.perf_counter()
        candidate.replace(path)
    graph_ops = {n.op_type for n in fp32_model.graph.node}
    variant = VariantReport(
        "fp16",
        path,
        OFFLINE_OPTIMIZATION,
        parity,
        {"convert": t1 - t0, "parity": t2 - t1},
        fp32_ops=tuple(sorted(graph_ops & set(DEFAULT_OP_BLOCK_LIST))),
    )
    return dataclasses.replace(report, variants={**report.variants, "fp16": variant})
