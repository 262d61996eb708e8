"""Task metrics per variant, computed by running the bundle's exported ONNX files in ONNX Runtime,
and `BundleRunner`, the whole model over a labelled set that the quantizer's judge also uses."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fusionrt.bundle import FALLBACK, Bundle, edit, resolve_variants
from fusionrt.calibration.dataset import CalibrationSet, as_bundle
from fusionrt.errors import CalibrationError
from fusionrt.progress import progress as eta
from fusionrt.runtime.cpu_kernels import int8_kernels, target_mismatch
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.fusion_feeds import bundle_fusion_feeds
from fusionrt.scoring import predicted_classes, task_metrics

EVAL_REPORT = "reports/eval.json"


class BundleRunner:
    """The whole model (encoders -> fusion) over a labelled set, batch by batch, with each component's
    host inputs from the set (the runtime's preprocessors) and the fusion head's from `bundle_fusion_feeds`.

    Outputs are cached per (component, file content), so swapping one component for a candidate
    file reruns only that component (and the fusion head).
    """

    def __init__(self, bundle: Bundle, data: CalibrationSet, *, batch_size: int = 32) -> None:
        if data.labels is None:
            raise CalibrationError(f"evaluation data {data.source} has no labels; use a labelled set (builtin digits)")
        self.bundle = bundle
        self.data = data
        self.batch_size = batch_size
        self.count = len(data.labels)
        for modality in bundle.modalities:
            if data.counts[modality] not in (0, self.count):
                raise CalibrationError(
                    f"evaluation data {data.source}: {data.counts[modality]} {modality} items for {self.count} labels; "
                    "every modality must have one item per label (or none)"
                )
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def fp32(self, component: str) -> Path:
        return self.bundle.components[component].variant(FALLBACK).path

    def inputs(self, component: str, start: int = 0, stop: int | None = None,
               encoder_files: Mapping[str, Path] | None = None) -> dict[str, np.ndarray]:
        """The ONNX inputs of `component` for items [start, stop): an encoder's host inputs, or the fusion
        head's feeds from the encoders' outputs (fp32 files, or `encoder_files` swapped in)."""
        if self.bundle.components[component].role == "fusion":
            return {k: v[start:stop] for k, v in self.fusion_feeds(encoder_files).items()}
        return self.data.encoder_inputs(self.bundle.components[component].modality, start, stop)

    def fusion_feeds(self, encoder_files: Mapping[str, Path] | None = None) -> dict[str, np.ndarray]:
        """The fusion head's inputs over the whole set; a modality the set lacks is fed as missing."""
        files = encoder_files or {}
        embeddings = {
            encoder.modality: self.component_outputs(encoder.name, files.get(encoder.name))
            if self.data.counts[encoder.modality] else None
            for encoder in self.bundle.encoders
        }
        return bundle_fusion_feeds(self.bundle, embeddings, count=self.count)

    def component_outputs(self, component: str, path: Path | None = None, *,
                          encoder_files: Mapping[str, Path] | None = None) -> np.ndarray:
        """First output of `component` (from `path`, default its fp32 file) over the whole set; for the
        fusion head, `encoder_files` are the encoder files that make its inputs."""
        path = Path(path or self.fp32(component))
        fusion = self.bundle.components[component].role == "fusion"
        extra = json.dumps({k: _digest(v) for k, v in sorted((encoder_files or {}).items())}) if fusion else ""
        key = (component, _digest(path) + extra)
        if key not in self._cache:
            engine = OrtEngine(path)
            feeds = self.fusion_feeds(encoder_files) if fusion else None
            out = []
            for start in range(0, self.count, self.batch_size):
                stop = start + self.batch_size
                batch = {k: v[start:stop] for k, v in feeds.items()} if fusion else self.inputs(component, start, stop)
                out.append(engine.run(batch)[engine.output_names[0]])
            self._cache[key] = np.concatenate(out)
        return self._cache[key]

    def logits(self, files: Mapping[str, Path] | None = None) -> np.ndarray:
        """Model outputs with the given component files swapped in (fp32 for the others)."""
        files = dict(files or {})
        encoders = {e.name: files.get(e.name, self.fp32(e.name)) for e in self.bundle.encoders}
        fusion = self.bundle.fusion.name
        return self.component_outputs(fusion, files.get(fusion), encoder_files=encoders)

    def metrics(self, logits: np.ndarray) -> dict:
        return task_metrics(self.data.labels, logits, self.bundle.task, self.bundle.labels)


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return matrix


def save_confusion_png(matrix: np.ndarray, labels: Sequence[str], path: Path, title: str) -> None:
    """Rows = true class, columns = predicted; drawn with matplotlib's Agg canvas (no display needed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = 1.0 + 0.45 * len(labels)
    figure = Figure(figsize=(size + 1.0, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        axes.text(j, i, str(count), ha="center", va="center", fontsize=7, color="white" if count > threshold else "black")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def evaluate(bundle: Bundle | str | Path, data: CalibrationSet, variants: Sequence[str] = ("fp32",), *,
             write: bool = True) -> dict:
    """Accuracy, macro-F1, per-class recall and a confusion matrix per variant, from the ONNX files.

    Each requested name is resolved per component by `fusionrt.bundle.resolve_variants` ("default":
    each default variant; a name: that variant where a component has it, else fp32); an unknown
    name is a BundleError before anything runs. The report records this machine's INT8 kernels
    (`machine`) and, per variant, the target of each int8 file and where it differs from this
    machine's (the accuracy is measured with this machine's kernels). Unless `write` is False, reports/eval.json and
    reports/confusion_<variant>.png are added to the bundle in one edit transaction.
    """
    bundle = as_bundle(bundle)
    plans = {variant: resolve_variants(bundle, variant) for variant in variants}
    runner = BundleRunner(bundle, data)
    results, matrices = {}, {}
    with eta(len(plans), "eval") as bar:
        for variant, chosen in plans.items():
            results[variant], matrix = _evaluate_variant(bundle, runner, data, variant, chosen, write)
            if matrix is not None:
                matrices[variant] = matrix
            bar.advance()
    report = {"data": data.summary(), "task": bundle.task, "machine": int8_kernels(), "variants": results}
    if write:
        with edit(bundle) as change:
            for variant, matrix in matrices.items():
                save_confusion_png(matrix, bundle.labels, change.stage(confusion_png(variant)),
                                   f"{bundle.root.name}: {variant}")
            change.write_json(EVAL_REPORT, report)
    return report


def _evaluate_variant(bundle: Bundle, runner: BundleRunner, data: CalibrationSet, variant: str,
                      chosen: Mapping[str, str], write: bool) -> tuple[dict, np.ndarray | None]:
    """One variant's metrics (and its confusion matrix for a classifier)."""
    files = {name: bundle.components[name].variant(v).path for name, v in chosen.items()}
    logits = runner.logits(files)
    result = {"components": dict(chosen), **runner.metrics(logits), **_targets(bundle, chosen)}
    if bundle.task == "regression":
        return result, None
    matrix = confusion_matrix(data.labels, predicted_classes(logits, bundle.task), len(bundle.labels))
    result["confusion_matrix"] = matrix.tolist()
    if write:
        result["confusion_png"] = confusion_png(variant)
    return result, matrix


def _targets(bundle: Bundle, chosen: Mapping[str, str]) -> dict:
    """The INT8 target of each chosen int8 variant, and a note where it is not this machine's kernels:
    the accuracy above is then what the variant really gives here."""
    int8 = {name: bundle.components[name].variants[v] for name, v in chosen.items()
            if bundle.components[name].variants[v].precision == "int8"}
    if not int8:
        return {}
    notes = {name: note for name, v in int8.items() if (note := target_mismatch(v.target))}
    return {"int8_targets": {name: v.target for name, v in int8.items()},
            **({"target_mismatch": notes} if notes else {})}


def confusion_png(variant: str) -> str:
    """Where a variant's confusion matrix goes inside the bundle."""
    return f"reports/confusion_{variant}.png"


def evaluate_bundle(bundle_path, data="builtin", variants: Sequence[str] = ("fp32",), *, n: int = 500) -> dict:
    """`fusionrt eval`: `data` is "builtin" (the digits test split, `n` items), a labelled directory
    (see `CalibrationSet.from_labelled_directory`) or a `CalibrationSet` with labels."""
    bundle = as_bundle(bundle_path)
    if isinstance(data, CalibrationSet):
        labelled = data
    elif data == "builtin":
        labelled = CalibrationSet.from_digits(bundle, "test", n)
    else:
        labelled = CalibrationSet.from_labelled_directory(data, bundle)
    return evaluate(bundle, labelled, variants)
