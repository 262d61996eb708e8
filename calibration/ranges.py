"""Activation ranges for static INT8: ORT's calibrators (MinMax, entropy, percentile) run over a
reader's batches and write ORT's JSON range cache, which `quantize_static` then reads, so histogram
calibrators get real bin counts and repair loops reuse one calibration. A tensor whose range is
infinite or reaches RANGE_LIMIT (attention masks) is reported by `wide_range_tensors`.
"""

from __future__ import annotations

import contextlib
import enum
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np

from fusionrt.calibration.files import CalibrationWarning
from fusionrt.calibration.graphs import load_onnx
from fusionrt.calibration.reader import FeedsReader
from fusionrt.errors import CalibrationError

RANGE_LIMIT = 1e4  # an activation reaching this magnitude stays float (see wide_range_tensors)


class Calibrator(str, enum.Enum):
    MINMAX = "minmax"
    ENTROPY = "entropy"
    PERCENTILE = "percentile"


# Histogram settings passed to ORT's calibrators. quantize_static cannot pass bin counts, and its
# entropy default (128 bins, 128 quantized bins) has a single candidate threshold, i.e. MinMax.
# TensorRT uses 2048 bins, but ORT's threshold search is quadratic in Python (measured on a 3-conv
# net: 0.6 s at 512 bins, 2 s at 1024, 5 s at 2048); 512 gives 193 candidate thresholds.
CALIBRATOR_OPTIONS = {
    Calibrator.MINMAX: {},
    Calibrator.ENTROPY: {"num_bins": 512, "num_quantized_bins": 128},
    Calibrator.PERCENTILE: {"num_bins": 2048, "percentile": 99.999},
}


# Fewer calibration items than this still work, with a CalibrationWarning saying why they are too few.
MIN_ITEMS = {
    Calibrator.MINMAX: (16, "the min/max of a few items underestimates the ranges of new inputs, whose larger "
                            "values then clip"),
    Calibrator.ENTROPY: (32, "its KL-divergence threshold search needs histograms filled by many items; with few it "
                             "cuts the range at values new inputs exceed"),
    Calibrator.PERCENTILE: (32, "the 99.999th percentile of a few items is their largest values, which move with "
                                "every item (it degenerates to a noisy min/max)"),
}


def check_item_count(items: int, calibrator: Calibrator) -> None:
    """Warn (CalibrationWarning) when `items` calibration items are too few for `calibrator`."""
    minimum, why = MIN_ITEMS[calibrator]
    if items < minimum:
        warnings.warn(f"calibration: {items} calibration item(s) for the {calibrator.value} calibrator, which needs at "
                      f"least {minimum}: {why}; add calibration items (the accuracy check after quantizing says "
                      "what it cost)", CalibrationWarning, stacklevel=3)


def ort_method(calibrator: Calibrator):
    from onnxruntime.quantization import CalibrationMethod

    return {
        Calibrator.MINMAX: CalibrationMethod.MinMax,
        Calibrator.ENTROPY: CalibrationMethod.Entropy,
        Calibrator.PERCENTILE: CalibrationMethod.Percentile,
    }[calibrator]


def calibrate_ranges(path: Path, reader, calibrator: Calibrator, cache: Path) -> None:
    """Run `reader`'s batches through `path` and write the activation ranges to `cache` (ORT's JSON format).

    Histogram calibrators cannot bin infinite values (attention masks filled with -inf): they skip
    the op types that touch a tensor MinMax found too wide, and those tensors keep MinMax ranges.
    """
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    batches = read_batches(reader)
    check_item_count(sum(len(next(iter(b.values()))) for b in batches), calibrator)
    reader = FeedsReader(batches)
    minmax = _collect_ranges(path, reader, Calibrator.MINMAX, None)
    if calibrator is Calibrator.MINMAX:
        save_tensors_data(minmax, cache)
        return
    model = load_onnx(path)
    wide = set(_wide(minmax))
    blocked = {n.op_type for n in model.graph.node if wide & {*n.input, *n.output}}
    op_types = sorted({n.op_type for n in model.graph.node} - blocked)
    histogram = _collect_ranges(path, reader, calibrator, op_types)
    merged = {name: histogram.data.get(name, data) for name, data in minmax.data.items()}
    save_tensors_data(TensorsData(ort_method(calibrator), merged), cache)


def _collect_ranges(path: Path, reader, calibrator: Calibrator, op_types):
    from onnxruntime.quantization.calibrate import create_calibrator

    groups = _same_shape_groups(read_batches(reader))
    with tempfile.TemporaryDirectory(prefix="fusionrt-calib-") as tmp, contextlib.redirect_stdout(io.StringIO()):
        collector = create_calibrator(
            path,
            op_types,
            augmented_model_path=str(Path(tmp) / "augmented.onnx"),
            calibrate_method=ort_method(calibrator),
            extra_options=CALIBRATOR_OPTIONS[calibrator],
        )
        for group in groups:
            collector.collect_data(FeedsReader(group))
        return collector.compute_data()


def read_batches(reader) -> list[dict]:
    """Every batch of `reader`, from its start when it can rewind; CalibrationError when there is none."""
    if hasattr(reader, "rewind"):
        reader.rewind()
    batches = []
    while (batch := reader.get_next()) is not None:
        batches.append(batch)
    if not batches:
        raise CalibrationError("the calibration reader gave no batch; static INT8 needs at least one calibration item")
    return batches


def _same_shape_groups(batches: list[dict]) -> list[list[dict]]:
    """Batches grouped by the shapes of their inputs, in first-seen order.

    ORT's histogram calibrators stack every collected output of one `collect_data` call with
    np.asarray, which fails when batches differ in shape (16 items in batches of 8, 8, 4; text of
    another length); its collector merges histograms across calls, so each group is one call.
    """
    groups: dict[tuple, list[dict]] = {}
    for batch in batches:
        key = tuple(sorted((name, np.shape(value)) for name, value in batch.items()))
        groups.setdefault(key, []).append(batch)
    return list(groups.values())


def wide_range_tensors(cache: Path, limit: float = RANGE_LIMIT) -> dict[str, tuple[float, float]]:
    """Tensors whose calibrated range reaches `limit` in magnitude (or is not finite): an 8-bit grid
    over them is too coarse for the values that matter. The usual case is an attention mask filled
    with -inf, the float minimum or -10000 before a Softmax; power spectra are another."""
    from onnxruntime.quantization.calibrate import load_tensors_data

    return _wide(load_tensors_data(cache), limit)


def _wide(tensors_data, limit: float = RANGE_LIMIT) -> dict[str, tuple[float, float]]:
    wide = {}
    for name, data in tensors_data.data.items():
        low, high = (np.asarray(v, dtype=np.float64) for v in data.range_value)
        low_value, high_value = float(low.min()), float(high.max())
        if not (np.isfinite(low_value) and np.isfinite(high_value)) or max(-low_value, high_value) >= limit:
            wide[name] = (low_value, high_value)
    return wide
