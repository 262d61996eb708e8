"""`export_bundle`: encoders + fusion head -> a bundle directory, written atomically.

The bundle contract (`fusionrt.export.contract`) is checked before any export and again on the
final manifest. The bundle is built in a hidden directory next to `out_dir` (reference weights
included), hashed once, and renamed into place at the end, so a failure (a contract or export
error, a parity failure, Ctrl-C) leaves no partial bundle behind.
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
from fusionrt.bundle import FORMAT, FORMAT_VERSION, MAX_RATE_HZ, PRESENCE, TASKS, Bundle, Reference, parse, swap_in
from fusionrt.errors import BundleError, ExportError
from fusionrt.export.contract import check_before_export, resolve_preprocessing, write_checked_manifest
from fusionrt.export.examples import complete_examples
from fusionrt.export.fp16 import add_fp16_variant
from fusionrt.export.onnx_from_torch import export_component
from fusionrt.export.report import ComponentReport, Tolerance
from fusionrt.frame import MODALITIES
from fusionrt.progress import eta_text

DEFAULT_RATES_HZ = {"image": 30.0, "audio": 10.0, "text": 1.0}  # the one home of the nominal encoder rates
TOKENIZER_DIR = "tokenizer"
REFERENCE_DIR = "reference"
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def export_bundle(
    encoders: Mapping[str, torch.nn.Module],
    fusion: torch.nn.Module,
    out_dir: str | Path,
    *,
    example_inputs: Mapping[str, Mapping[str, torch.Tensor]] | None = None,
    labels,
    tokenizer=None,
    task: str = "classification",
    force: bool = False,
    fp16: bool = True,
    dynamic_axes: Mapping[str, Mapping[str, Mapping[int, str]]] | None = None,
    preprocessing: Mapping[str, dict] | None = None,
    rates: Mapping[str, float] | None = None,
    reference: Reference | None = None,
    tolerance: Tolerance = Tolerance(),
    progress: Callable[[str], None] | None = print,
) -> Bundle:
    """Export every encoder (component "<modality>_encoder") and the fusion head into `out_dir`.

    `example_inputs`, `dynamic_axes` and `preprocessing` are keyed by component name; `rates` by
    modality. A component's preprocessing is `preprocessing[name]` when given, else
    `module.preprocessing()`; rates default to `DEFAULT_RATES_HZ`. A component with no entry in
    `example_inputs` (or all, when it is None) gets one derived from its preprocessing, the
    tokenizer and the encoders' widths (`fusionrt.export.examples`). Every integer input of the text
    encoder gets dynamic "batch" and "sequence" axes. `reference` (the PyTorch config + safetensors
    weights) is copied into reference/ for the runtime's torch backend. Anything the runtime would
    refuse is an ExportError, raised before the exports where the example inputs tell. A non-empty
    `out_dir` is refused unless `force` (then it is replaced). `progress` gets one line per
    component (None: silent).
    """
    progress = progress or (lambda line: None)
    out_dir = Path(out_dir)
    labels = tuple(str(label) for label in labels or ())
    plan = _plan(encoders, fusion, example_inputs, labels, tokenizer, task)
    steps = {name: resolve_preprocessing(name, modality, module, preprocessing) for name, modality, module in plan}
    example_inputs = complete_examples(plan, example_inputs, steps, tokenizer)
    _check_fusion_example(encoders, example_inputs)
    axes = {name: _axes(modality, example_inputs[name], (dynamic_axes or {}).get(name)) for name, modality, _ in plan}
    rates_hz = _rates(encoders, rates)
    _check_reference(reference)
    _refuse_existing(out_dir, force)
    check_before_export(plan, example_inputs, axes, steps, task=task, labels=labels, has_tokenizer=tokenizer is not None)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        if tokenizer is not None:
            _save_tokenizer(tokenizer, staging / TOKENIZER_DIR)
        reports = {}
        started = time.perf_counter()
        for index, (name, modality, module) in enumerate(plan, start=1):
            t0 = time.perf_counter()
            reports[name] = _export(name, modality, module, example_inputs[name], axes[name], staging, fp16, tolerance)
            so_far = eta_text(time.perf_counter() - started, index, len(plan))
            progress(f"[{index}/{len(plan)}] {name}: {_summary(reports[name])} ({time.perf_counter() - t0:.1f} s; "
                     f"{so_far})")
        manifest = _manifest(plan, reports, steps, rates_hz, labels, task, tokenizer is not None)
        if reference is not None:
            manifest["reference"] = _copy_reference(reference, staging)
        _write_report(staging, manifest, reports)
        bundle = write_checked_manifest(staging, manifest, out_dir, {name: modality for name, modality, _ in plan})
        swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"bundle written to {out_dir}")
    return parse(out_dir, bundle.manifest, verify_hashes=False)  # hashed once, by write_manifest in the staging


def _export(name, modality, module, example, axes, staging: Path, fp16: bool, tolerance: Tolerance) -> ComponentReport:
    output = "logits" if modality is None else "embedding"
    report = export_component(
        module, example, staging / f"{name}.fp32.onnx", dynamic_axes=axes, output_names=[output], tolerance=tolerance
    )
    if fp16:
        report = add_fp16_variant(report, module, example, staging / f"{name}.fp16.onnx", tolerance=tolerance)
    return report


def _manifest(plan, reports, steps, rates_hz, labels, task: str, has_tokenizer: bool) -> dict:
    tools = _tool_versions()
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "task": {"kind": task, "labels": list(labels)},
        "modalities": [modality for _, modality, _ in plan if modality is not None],
        "components": {
            name: _component_entry(reports[name], modality, steps[name], rates_hz.get(modality))
            for name, modality, _ in plan
        },
        "tokenizer": TOKENIZER_DIR if has_tokenizer else None,
        "tools": tools,
    }


def _write_report(staging: Path, manifest: dict, reports: Mapping[str, ComponentReport]) -> None:
    (staging / "reports").mkdir()
    report = {
        "created": manifest["created"],
        "tools": manifest["tools"],
        "components": {name: r.to_json() for name, r in reports.items()},
    }
    (staging / "reports" / "export.json").write_text(json.dumps(report, indent=2) + "\n")


def _plan(encoders, fusion, example_inputs, labels, tokenizer, task) -> list[tuple[str, str | None, torch.nn.Module]]:
    """(component name, modality or None for the fusion head, module) in export order; validates the arguments."""
    if task not in TASKS:
        raise ExportError(f"task is {task!r}; expected one of {list(TASKS)}")
    if task in ("classification", "binary") and not labels:
        raise ExportError("a classification bundle needs its labels; pass labels=[...] in output order")
    unknown = [m for m in encoders if m not in MODALITIES]
    if unknown or not encoders:
        raise ExportError(f"encoders are keyed by modality; expected some of {list(MODALITIES)}, found {list(encoders)}")
    if "text" in encoders and tokenizer is None:
        raise ExportError("the text encoder needs its tokenizer in the bundle; pass tokenizer= (a transformers fast tokenizer)")
    if tokenizer is not None and not hasattr(tokenizer, "save_pretrained"):
        raise ExportError(f"tokenizer is a {type(tokenizer).__name__}; expected a transformers tokenizer (save_pretrained)")
    plan = [(f"{m}_encoder", m, module) for m, module in encoders.items()] + [("fusion", None, fusion)]
    unknown = sorted(set(example_inputs or {}) - {name for name, _, _ in plan})
    if unknown:
        raise ExportError(f"example_inputs names {unknown}; expected components among {[p[0] for p in plan]}")
    return plan


def _check_fusion_example(encoders, example_inputs) -> None:
    expected = [*encoders, PRESENCE]
    if list(example_inputs["fusion"]) != expected:
        raise ExportError(
            f"example_inputs['fusion'] is named {list(example_inputs['fusion'])}; expected {expected} "
            f"(one embedding per modality in encoder order, then the presence mask)"
        )


def _axes(modality: str | None, example: Mapping[str, torch.Tensor], extra) -> dict:
    """Text encoders: "batch" and "sequence" on every 2-D integer input (as Optimum does); then `extra`."""
    axes: dict[str, dict[int, str]] = {}
    if modality == "text":
        for input_name, tensor in example.items():
            if tensor.dim() == 2 and not tensor.is_floating_point() and tensor.dtype != torch.bool:
                axes[input_name] = {0: "batch", 1: "sequence"}
    for tensor_name, more in (extra or {}).items():
        axes[tensor_name] = {**axes.get(tensor_name, {}), **more}
    return axes


def _rates(encoders: Mapping[str, torch.nn.Module], rates: Mapping[str, float] | None) -> dict[str, float]:
    unknown = sorted(set(rates or {}) - set(encoders))
    if unknown:
        raise ExportError(f"rates names {unknown}, which have no encoder; rates are keyed by modality: {list(encoders)}")
    chosen = {m: (rates or {}).get(m, DEFAULT_RATES_HZ[m]) for m in encoders}
    for modality, rate in chosen.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_RATE_HZ:
            raise ExportError(f"rates[{modality!r}] is {rate!r}; expected the encoder's nominal rate in Hz, in "
                              f"(0, {MAX_RATE_HZ}]")
    return {m: float(rate) for m, rate in chosen.items()}


def _summary(report: ComponentReport) -> str:
    fp32 = report.variants["fp32"].parity
    text = f"exported ({report.exporter}), parity cos={fp32.worst_cosine:.6f} max_abs={fp32.worst_max_abs:.1e}"
    if "fp16" in report.variants:
        text += f"; fp16 cos={report.variants['fp16'].parity.worst_cosine:.6f}"
    if report.fallback_reason:
        text += f"; dynamo failed: {report.fallback_reason}"
    return text


def _component_entry(report: ComponentReport, modality: str | None, steps: dict, rate: float | None) -> dict:
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
    tokenizer.save_pretrained(str(directory))
    if not (directory / "tokenizer.json").is_file():
        raise ExportError(
            f"the tokenizer ({type(tokenizer).__name__}) wrote no tokenizer.json, which the runtime reads with the "
            f"tokenizers library; pass a fast tokenizer (e.g. AutoTokenizer.from_pretrained(..., use_fast=True))"
        )


def _check_reference(reference: Reference | None) -> None:
    if reference is None:
        return
    if not isinstance(reference, Reference):
        raise ExportError(f"reference is a {type(reference).__name__}; expected fusionrt.bundle.Reference(config=, weights=)")
    for key in ("config", "weights"):
        if not Path(getattr(reference, key)).is_file():
            raise ExportError(f"reference.{key} {getattr(reference, key)} does not exist; expected a file")
    if Path(reference.config).suffix not in CONFIG_SUFFIXES:
        raise ExportError(f"reference.config {reference.config} is not a {'/'.join(CONFIG_SUFFIXES)} file (the "
                          f"torch backend reads it with fusionrt.config.load_config)")


def _copy_reference(reference: Reference, staging: Path) -> dict[str, str]:
    """Copy the reference config and weights into staging/reference/; their manifest entry."""
    (staging / REFERENCE_DIR).mkdir()
    entry = {
        "config": f"{REFERENCE_DIR}/config.{'json' if Path(reference.config).suffix == '.json' else 'yaml'}",
        "weights": f"{REFERENCE_DIR}/model.safetensors",
    }
    shutil.copyfile(reference.config, staging / entry["config"])
    shutil.copyfile(reference.weights, staging / entry["weights"])
    return entry


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
