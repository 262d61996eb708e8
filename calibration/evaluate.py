"""Task metrics per variant, computed by running the bundle's exported ONNX files in ONNX Runtime."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from fusionrt.calibration.dataset import CalibrationSet
from fusionrt.calibration.host import ENCODERS
from fusionrt.errors import CalibrationError
from fusionrt.runtime.engine import OrtEngine
from fusionrt.scoring import classification_metrics, regression_metrics

DEFAULT = "default"  # in a variants list: each component's manifest default_variant


class BundleRunner:
    """The whole model (encoders -> fusion) over a labelled set, batch by batch.

    Outputs are cached per (component, file content), so swapping one component for a candidate
    file reruns only that component (and the fusion head).
    """

    def __init__(self, bundle, data: CalibrationSet, *, batch_size: int = 32) -> None:
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
        return self.bundle.components[component].variants["fp32"].path

    def component_outputs(
        self, component: str, path: Path | None = None, *, fusion_inputs: Mapping[str, Path] | None = None
    ) -> np.ndarray:
        """First output of `component` (from `path`, default its fp32 file) over the whole set."""
        path = Path(path or self.fp32(component))
        extra = "" if component != "fusion" else json.dumps({k: _digest(v) for k, v in sorted((fusion_inputs or {}).items())})
        key = (component, _digest(path) + extra)
        if key not in self._cache:
            engine = OrtEngine(path)
            feeds = self._fusion_feeds(fusion_inputs or {}) if component == "fusion" else None
            out = []
            for start in range(0, self.count, self.batch_size):
                stop = start + self.batch_size
                if feeds is None:
                    batch = self.data.encoder_inputs(_modality(component), start, stop)
                else:
                    batch = {k: v[start:stop] for k, v in feeds.items()}
                out.append(engine.run(batch)[engine.output_names[0]])
            self._cache[key] = np.concatenate(out)
        return self._cache[key]

    def logits(self, files: Mapping[str, Path] | None = None) -> np.ndarray:
        """Model outputs with the given component files swapped in (fp32 for the others)."""
        files = dict(files or {})
        encoders = {ENCODERS[m]: files.get(ENCODERS[m], self.fp32(ENCODERS[m])) for m in self.bundle.modalities}
        return self.component_outputs("fusion", files.get("fusion"), fusion_inputs=encoders)

    def _fusion_feeds(self, encoder_files: Mapping[str, Path]) -> dict[str, np.ndarray]:
        names = [spec.name for spec in self.bundle.components["fusion"].inputs]
        feeds, presence = {}, []
        for modality in self.bundle.modalities:
            component = ENCODERS[modality]
            if self.data.counts[modality]:
                feeds[modality] = self.component_outputs(component, encoder_files.get(component)).astype(np.float32)
                presence.append(np.ones(self.count, np.float32))
            else:
                width = next(s.shape[-1] for s in self.bundle.components["fusion"].inputs if s.name == modality)
                feeds[modality] = np.zeros((self.count, width), np.float32)
                presence.append(np.zeros(self.count, np.float32))
        feeds["presence"] = np.stack(presence, axis=1)
        return {name: feeds[name] for name in names}

    def metrics(self, logits: np.ndarray) -> dict:
        if self.bundle.task == "regression":
            return regression_metrics(self.data.labels, logits)
        return classification_metrics(self.data.labels, logits.argmax(axis=1), self.bundle.labels)


def _modality(component: str) -> str:
    return next(m for m, name in ENCODERS.items() if name == component)


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


def resolve_variants(bundle, variant: str) -> dict[str, str]:
    """Component -> variant actually run for a requested name: the component's own variant of that
    name, its default for "default", else fp32."""
    chosen = {}
    for name, component in bundle.components.items():
        if variant == DEFAULT:
            chosen[name] = component.default_variant
        else:
            chosen[name] = variant if variant in component.variants else "fp32"
    return chosen


def evaluate(bundle, data: CalibrationSet, variants: Sequence[str] = ("fp32",), *, write: bool = True) -> dict:
    """Accuracy, macro-F1, per-class recall and a confusion matrix per variant, from the ONNX files.

    Writes reports/eval.json and reports/confusion_<variant>.png into the bundle (and refreshes the
    manifest's file hashes) unless `write` is False.
    """
    known = {v for c in bundle.components.values() for v in c.variants} | {DEFAULT}
    unknown = [v for v in variants if v not in known]
    if unknown:
        raise CalibrationError(f"variants {unknown} are in no component of {bundle.root}; available: {sorted(known)}")
    runner = BundleRunner(bundle, data)
    reports_dir = bundle.root / "reports"
    results = {}
    for variant in variants:
        chosen = resolve_variants(bundle, variant)
        files = {name: bundle.components[name].variants[v].path for name, v in chosen.items()}
        logits = runner.logits(files)
        result = {"components": chosen, **runner.metrics(logits)}
        if bundle.task == "classification":
            matrix = confusion_matrix(data.labels, logits.argmax(axis=1), len(bundle.labels))
            result["confusion_matrix"] = matrix.tolist()
            if write:
                reports_dir.mkdir(exist_ok=True)
                png = reports_dir / f"confusion_{variant}.png"
                save_confusion_png(matrix, bundle.labels, png, f"{bundle.root.name}: {variant}")
                result["confusion_png"] = png.relative_to(bundle.root).as_posix()
        results[variant] = result
    report = {"data": data.summary(), "task": bundle.task, "variants": results}
    if write:
        _write_report(bundle, "eval", report)
    return report


def _write_report(bundle, name: str, report: dict, manifest: dict | None = None) -> None:
    from fusionrt.bundle import write_manifest

    reports_dir = bundle.root / "reports"
    reports_dir.mkdir(exist_ok=True)
    (reports_dir / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    write_manifest(bundle.root, manifest if manifest is not None else bundle.manifest)


def evaluate_bundle(bundle_path, data="builtin", variants: Sequence[str] = ("fp32",), *, n: int = 500) -> dict:
    """`fusionrt eval`: `data` is "builtin" (the digits test split, `n` items), a labelled directory
    (see `CalibrationSet.from_labelled_directory`) or a `CalibrationSet` with labels."""
    from fusionrt.bundle import load

    bundle = load(bundle_path)
    if isinstance(data, CalibrationSet):
        labelled = data
    elif data == "builtin":
        labelled = CalibrationSet.from_digits(bundle, "test", n)
    else:
        labelled = CalibrationSet.from_labelled_directory(data, bundle)
    return evaluate(bundle, labelled, variants)
