"""`export_bundle`: encoders + fusion head -> a bundle directory, written atomically.

The bundle is built in a hidden directory next to `out_dir` and renamed into place at the end,
so a failure (an export error, a parity failure, Ctrl-C) leaves no partial bundle behind.
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import torch

import fusionrt
from fusionrt.bundle import FORMAT, FORMAT_VERSION, TASKS, Bundle, load, write_manifest
from fusionrt.errors import BundleError, ExportError
from fusionrt.export.fp16 import add_fp16_variant
from fusionrt.export.onnx_from_torch import export_component
from fusionrt.export.report import ComponentReport, Tolerance

MODALITIES = ("text", "image", "audio")
DEFAULT_RATES_HZ = {"image": 30.0, "audio": 10.0, "text": 1.0}
PRESENCE = "presence"
TOKENIZER_DIR = "tokenizer"


def export_bundle(
    encoders: Mapping[str, torch.nn.Module],
    fusion: torch.nn.Module,
    out_dir: str | Path,
    *,
    example_inputs: Mapping[str, Mapping[str, torch.Tensor]],
    labels,
    tokenizer=None,
    task: str = "classification",
    force: bool = False,
    fp16: bool = True,
    dynamic_axes: Mapping[str, Mapping[str, Mapping[int, str]]] | None = None,
    preprocessing: Mapping[str, dict] | None = None,
    rates: Mapping[str, float] | None = None,
    tolerance: Tolerance = Tolerance(),
    progress: Callable[[str], None] | None = print,
) -> Bundle:
    """Export every encoder (component "<modality>_encoder") and the fusion head into `out_dir`.

    `example_inputs`, `dynamic_axes` and `preprocessing` are keyed by component name; `rates` by
    modality. Preprocessing defaults to `module.preprocessing()` when the module has it, rates to
    image 30 Hz, audio 10 Hz, text 1 Hz. 2-D integer inputs of the text encoder get a dynamic
    "sequence" axis. A non-empty `out_dir` is refused unless `force` (then it is replaced).
    `progress` gets one line per component (None: silent).
    """
    progress = progress or (lambda line: None)
    out_dir = Path(out_dir)
    labels = tuple(str(label) for label in labels or ())
    plan = _plan(encoders, fusion, example_inputs, labels, tokenizer, task)
    _refuse_existing(out_dir, force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        reports = {}
        for index, (name, modality, module) in enumerate(plan, start=1):
            t0 = time.perf_counter()
            axes = _axes(name, modality, example_inputs[name], (dynamic_axes or {}).get(name))
            output = "logits" if modality is None else "embedding"
            report = export_component(
                module, example_inputs[name], staging / f"{name}.fp32.onnx",
                dynamic_axes=axes, output_names=[output], tolerance=tolerance,
            )  # fmt: skip
            if fp16:
                report = add_fp16_variant(
                    report, module, example_inputs[name], staging / f"{name}.fp16.onnx", tolerance=tolerance
                )
            reports[name] = report
            progress(f"[{index}/{len(plan)}] {name}: {_summary(report)} ({time.perf_counter() - t0:.1f} s)")
        if tokenizer is not None:
            _save_tokenizer(tokenizer, staging / TOKENIZER_DIR)
        tools = _tool_versions()
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        (staging / "reports").mkdir()
        export_report = {"created": created, "tools": tools, "components": {n: r.to_json() for n, r in reports.items()}}
        (staging / "reports" / "export.json").write_text(json.dumps(export_report, indent=2) + "\n")
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "created": created,
            "task": {"kind": task, "labels": list(labels)},
            "modalities": list(encoders),
            "components": {
                name: _component_entry(reports[name], modality, module, preprocessing, rates)
                for name, modality, module in plan
            },
            "tokenizer": TOKENIZER_DIR if tokenizer is not None else None,
            "tools": tools,
        }
        write_manifest(staging, manifest)
        load(staging)
        _move_into_place(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"bundle written to {out_dir}")
    return load(out_dir)


def _plan(encoders, fusion, example_inputs, labels, tokenizer, task) -> list[tuple[str, str | None, torch.nn.Module]]:
    """(component name, modality or None for the fusion head, module) in export order; validates the arguments."""
    if task not in TASKS:
        raise ExportError(f"task is {task!r}; expected one of {list(TASKS)}")
    if task == "classification" and not labels:
        raise ExportError("a classification bundle needs its labels; pass labels=[...] in output order")
    unknown = [m for m in encoders if m not in MODALITIES]
    if unknown or not encoders:
        raise ExportError(f"encoders are keyed by modality; expected some of {list(MODALITIES)}, found {list(encoders)}")
    if "text" in encoders and tokenizer is None:
        raise ExportError("the text encoder needs its tokenizer in the bundle; pass tokenizer= (a transformers fast tokenizer)")
    plan = [(f"{m}_encoder", m, module) for m, module in encoders.items()] + [("fusion", None, fusion)]
    for name, _, _ in plan:
        if name not in example_inputs:
            raise ExportError(f"example_inputs has no entry {name!r}; expected one per component: {[p[0] for p in plan]}")
    expected = [*encoders, PRESENCE]
    if list(example_inputs["fusion"]) != expected:
        raise ExportError(
            f"example_inputs['fusion'] is named {list(example_inputs['fusion'])}; expected {expected} "
            f"(one embedding per modality in encoder order, then the presence mask)"
        )
    return plan


def _axes(name: str, modality: str | None, example: Mapping[str, torch.Tensor], extra) -> dict:
    axes: dict[str, dict[int, str]] = {}
    if modality == "text":
        for input_name, tensor in example.items():
            if tensor.dim() == 2 and not tensor.is_floating_point() and tensor.dtype != torch.bool:
                axes[input_name] = {0: "batch", 1: "sequence"}
    for tensor_name, more in (extra or {}).items():
        axes[tensor_name] = {**axes.get(tensor_name, {}), **more}
    return axes


def _summary(report: ComponentReport) -> str:
    fp32 = report.variants["fp32"].parity
    text = f"exported ({report.exporter}), parity cos={fp32.worst_cosine:.6f} max_abs={fp32.worst_max_abs:.1e}"
    if "fp16" in report.variants:
        text += f"; fp16 cos={report.variants['fp16'].parity.worst_cosine:.6f}"
    if report.fallback_reason:
        text += f"; dynamo failed: {report.fallback_reason}"
    return text


def _component_entry(report: ComponentReport, modality, module, preprocessing, rates) -> dict:
    name = report.name
    if preprocessing and name in preprocessing:
        steps = dict(preprocessing[name])
    elif hasattr(module, "preprocessing"):
        steps = dict(module.preprocessing())
    else:
        steps = {}
    try:
        json.dumps(steps)
    except TypeError as e:
        raise ExportError(f"{name}: preprocessing must be JSON-safe (numbers, strings, lists, dicts): {e}") from e
    rate = None if modality is None else float((rates or {}).get(modality, DEFAULT_RATES_HZ[modality]))
    variants = {
        variant_name: {
            "file": v.path.name,
            "precision": v.precision,
            "exporter": report.exporter,
            "optimization": v.optimization,
            "opset": report.opset,
        }
        for variant_name, v in report.variants.items()
    }
    return {
        "role": "fusion" if modality is None else "encoder",
        "modality": modality,
        "rate_hz": rate,
        "inputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in report.inputs],
        "outputs": [{"name": s.name, "dtype": s.dtype, "shape": list(s.shape)} for s in report.outputs],
        "preprocessing": steps,
        "variants": variants,
        "default_variant": "fp32",
    }


def _save_tokenizer(tokenizer, directory: Path) -> None:
    if not hasattr(tokenizer, "save_pretrained"):
        raise ExportError(f"tokenizer is a {type(tokenizer).__name__}; expected a transformers tokenizer (save_pretrained)")
    tokenizer.save_pretrained(str(directory))
    if not (directory / "tokenizer.json").is_file():
        raise ExportError(
            f"the tokenizer ({type(tokenizer).__name__}) wrote no tokenizer.json, which the runtime reads with the "
            f"tokenizers library; pass a fast tokenizer (e.g. AutoTokenizer.from_pretrained(..., use_fast=True))"
        )


def _tool_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"fusionrt": fusionrt.__version__}
    for package in ("torch", "onnx", "onnxruntime", "transformers"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _refuse_existing(out_dir: Path, force: bool) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise BundleError(f"{out_dir} exists and is not a directory; choose another output path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise BundleError(f"{out_dir} is not empty; pass force=True (--force) to replace it, or choose another directory")


def _move_into_place(staging: Path, out_dir: Path) -> None:
    """Rename staging to out_dir; an existing out_dir (force) is moved aside first and removed after."""
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    old.rmdir()
    out_dir.rename(old)
    try:
        staging.rename(out_dir)
    except BaseException:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)
