from __future__ import annotations

import json

import pytest
from calibration_models import Items

from fusionrt.bundle import load
from fusionrt.calibration import CalibrationSet, Latency, QuantMode, choose, cpu_target, faster_beyond_noise, quantize_bundle
from fusionrt.calibration.auto import MIN_SPEEDUP
from fusionrt.errors import CalibrationError


@pytest.fixture(scope="module")
def calib(bundle):
    return CalibrationSet.from_data(bundle, Items(32, seed=1), source="synthetic calibration")


def test_auto_measures_every_candidate_and_keeps_the_fastest_inside_the_budget(bundle_dir, calib, heldout):
    lines = []
    # x86-avx2's 7-bit weights give the same integers on every x86 kernel: the cosines hold on AVX2 and VNNI
    report = quantize_bundle(bundle_dir, calib, QuantMode.AUTO, heldout=heldout, latency_runs=5, progress=lines.append,
                             target="x86-avx2")
    assert report["criterion"].startswith("accuracy within") and report["baseline"]["accuracy"] == 1.0
    assert report["target"] == "x86-avx2" and report["judged_on"] == cpu_target()
    reloaded = load(bundle_dir)
    for name, entry in report["components"].items():
        rows = {r["candidate"]: r for r in entry["candidates"]}
        assert set(rows) == {"int8-minmax", "int8-entropy", "int8-percentile", "int8-dynamic", "fp16"}
        skipped = {label for label, row in rows.items() if "skipped" in row}
        # an int8 file in which repair kept every quantizable node float is no int8 variant
        assert all(label.startswith("int8") and "not an int8 variant" in rows[label]["skipped"] for label in skipped)
        rows = {label: row for label, row in rows.items() if label not in skipped}
        for row in rows.values():
            assert row["cosine"] > 0.99 and row["median_ms"] > 0 and row["p99_ms"] >= row["median_ms"]
            assert row["p25_ms"] <= row["median_ms"] <= row["p75_ms"]
            assert row["faster_beyond_noise"] == (row["speedup"] >= MIN_SPEEDUP and row["p75_ms"] < entry["fp32"]["p25_ms"])
            assert row["within_budget"] == (row["accuracy_delta_pts"] <= 0.5 + 1e-9 and row["cosine"] >= 0.99)
        chosen = entry["chosen"]
        assert reloaded.components[name].default_variant == chosen
        if chosen == "fp32":
            assert not any(r["within_budget"] and r["faster_beyond_noise"] for r in rows.values())
            assert set(reloaded.components[name].variants) == {"fp32"}
        else:
            fitting = [r for r in rows.values() if r["within_budget"] and r["faster_beyond_noise"]]
            assert chosen == min(fitting, key=lambda r: r["median_ms"])["variant"]
            assert set(reloaded.components[name].variants) == {"fp32", chosen}
            variant = reloaded.components[name].variants[chosen]
            assert variant.target == "x86-avx2" and variant.info["judged_on"] == cpu_target()
            assert variant.scheme == {"int8": "qdq-static:u8s8-reduce-range-dw8", "int8-dynamic": "dynamic:u8s8-reduce-range",
                                      "fp16": "fp16"}[chosen]
    saved = json.loads((bundle_dir / "reports" / "calibration.json").read_text())
    assert saved["components"].keys() == report["components"].keys()
    assert "speed-up" in report["table"] and report["table"] in lines


def test_explicit_int8_static_adds_the_variant_with_its_recipe(bundle_dir, calib, heldout):
    report = quantize_bundle(bundle_dir, calib, "int8-static", calibrator="entropy", heldout=heldout,
                             components=("image_encoder",), latency_runs=3, min_speedup=0.0, progress=lambda m: None)
    entry = report["components"]["image_encoder"]
    assert [r["candidate"] for r in entry["candidates"]] == ["int8-entropy"]
    component = load(bundle_dir).components["image_encoder"]
    variant = component.variants["int8"]
    assert variant.path.name == "image_encoder.int8.onnx" and variant.precision == "int8"
    assert variant.info["calibrator"] == "entropy" and variant.info["mode"] == "int8-static"
    assert variant.scheme.startswith("qdq-static:u8s8") and variant.target in ("x86-vnni", "x86-avx2", "aarch64")
    assert {"scheme", "target"} <= set(load(bundle_dir).manifest["components"]["image_encoder"]["variants"]["int8"])
    assert "excluded_nodes" in variant.info
    row = entry["candidates"][0]
    assert component.default_variant == ("int8" if row["within_budget"] and row["faster_beyond_noise"] else "fp32")


def test_a_budget_no_variant_meets_keeps_fp32_and_strict_fails(bundle_dir, calib, heldout):
    options = dict(heldout=heldout, components=("fusion",), latency_runs=2, accuracy_budget=-1.0,
                   repair_nodes=False, progress=lambda m: None)
    report = quantize_bundle(bundle_dir, calib, QuantMode.INT8_DYNAMIC, **options)
    assert report["components"]["fusion"]["chosen"] == "fp32"
    assert report["components"]["fusion"]["budget_missed"] is True
    assert "no candidate meets the budget" in report["components"]["fusion"]["reason"]
    with pytest.raises(CalibrationError, match=r"\['fusion'\].*keep fp32"):
        quantize_bundle(bundle_dir, calib, QuantMode.INT8_DYNAMIC, strict=True, **options)
    assert (bundle_dir / "reports" / "calibration.json").is_file()
    assert load(bundle_dir).components["fusion"].default_variant == "fp32"


def test_without_labelled_data_the_budget_is_cosine(bundle_dir, calib):
    report = quantize_bundle(bundle_dir, calib, QuantMode.FP16, components=("audio_encoder",), latency_runs=2,
                             progress=lambda m: None)
    assert report["criterion"].startswith("cosine >= 0.99")
    row = report["components"]["audio_encoder"]["candidates"][0]
    assert row["within_budget"] and row["cosine"] > 0.9999 and "accuracy" not in row
    assert (bundle_dir / "audio_encoder.fp16.onnx").is_file()
    fp16 = load(bundle_dir).components["audio_encoder"].variants["fp16"]
    assert fp16.scheme == "fp16" and fp16.target in ("x86-vnni", "x86-avx2", "aarch64")


def _latency(p25, median, p75):
    return Latency(median, p75 * 1.2, 50, p25, p75)


def test_a_candidate_is_faster_only_beyond_noise():
    """The rule: median at least MIN_SPEEDUP x faster than fp32 AND p75 below fp32's p25."""
    fp32 = _latency(9.0, 10.0, 11.0)
    assert faster_beyond_noise(_latency(7.0, 8.0, 8.5), fp32, MIN_SPEEDUP)
    assert not faster_beyond_noise(_latency(7.0, 8.0, 9.5), fp32, MIN_SPEEDUP)  # middle halves overlap
    assert not faster_beyond_noise(_latency(8.5, 9.2, 8.9), fp32, MIN_SPEEDUP)  # 1.09x: under the bar
    rows = [
        {"candidate": "int8-dynamic", "variant": "int8-dynamic", "within_budget": True, "median_ms": 8.6,
         "speedup": 1.16, "p75_ms": 9.5, "faster_beyond_noise": False},  # 1.16x on the median, but noise
        {"candidate": "fp16", "variant": "fp16", "within_budget": True, "median_ms": 9.9, "speedup": 1.01,
         "p75_ms": 10.5, "faster_beyond_noise": False},
    ]
    choice = choose(rows, MIN_SPEEDUP)
    assert choice["chosen"] == "fp32" and "beyond noise" in choice["reason"] and not choice["budget_missed"]
    rows.append({"candidate": "int8-minmax", "variant": "int8", "within_budget": True, "median_ms": 5.0,
                 "speedup": 2.0, "p75_ms": 5.5, "faster_beyond_noise": True})
    assert choose(rows, MIN_SPEEDUP)["chosen"] == "int8"


def test_an_int8_file_without_quantized_operators_is_no_int8_variant(bundle_dir, calib, heldout, monkeypatch):
    """Dynamic INT8 of a network with none of the op types it quantizes (a CNN: Conv only) writes the
    FP32 graph again; it used to be timed "1.16x" (noise), chosen and labelled int8-dynamic."""
    import fusionrt.calibration.quantize as quantize

    monkeypatch.setattr(quantize, "DYNAMIC_OP_TYPES", ("LSTM",))  # the image encoder has none
    with pytest.raises(CalibrationError, match=r"int8-dynamic made no variant.*image_encoder.*not an int8 variant"):
        quantize_bundle(bundle_dir, calib, QuantMode.INT8_DYNAMIC, heldout=heldout, components=("image_encoder",),
                        latency_runs=2, progress=lambda m: None)
    assert set(load(bundle_dir).components["image_encoder"].variants) == {"fp32"}


def test_an_explicit_mode_that_fails_exits_with_the_reason(bundle_dir, calib, heldout, monkeypatch):
    import fusionrt.calibration.auto as auto

    def broken(*args, **kwargs):
        raise CalibrationError("onnxruntime could not quantize (percentile): boom")

    monkeypatch.setattr(auto, "repair", broken)
    with pytest.raises(CalibrationError, match=r"int8-static could not make the variant of \['audio_encoder'\].*boom"):
        quantize_bundle(bundle_dir, calib, "int8-static", calibrator="percentile", heldout=heldout,
                        components=("audio_encoder",), latency_runs=2, progress=lambda m: None)
    assert (bundle_dir / "reports" / "calibration.json").is_file()


def test_auto_judges_on_the_validation_split_and_reports_the_test_split_once(bundle_dir, calib, heldout):
    test = CalibrationSet.from_data(load(bundle_dir), Items(40, seed=7), source="synthetic test split")
    test.labels = heldout.labels[:40] * 0
    lines = []
    report = quantize_bundle(bundle_dir, calib, QuantMode.FP16, heldout=heldout, test=test, components=("fusion",),
                             latency_runs=2, min_speedup=0.0, progress=lines.append)
    assert report["heldout"]["source"] == heldout.source and report["heldout_split"].startswith("validation")
    assert report["test"]["data"]["source"] == "synthetic test split"
    assert [line for line in lines if "test split" in line and "reported only" in line] == [lines[-2]]
    assert "validation split" in lines[0]


class Killed(Exception):
    """Stands for a kill arriving while the bundle is being changed."""


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_an_error_inside_the_transaction_leaves_the_old_bundle(bundle_dir, calib):
    before = _tree(bundle_dir)
    staged = {}

    def progress(line: str) -> None:
        if line.startswith("storing "):  # every file and the manifest change staged, nothing swapped in yet
            for directory in bundle_dir.parent.iterdir():
                if directory.name.startswith(f".{bundle_dir.name}."):
                    staged[directory] = _tree(directory)
            raise Killed(line)

    with pytest.raises(Killed):
        quantize_bundle(bundle_dir, calib, QuantMode.INT8_DYNAMIC, components=("audio_encoder",), latency_runs=2,
                        min_speedup=0.0, repair_nodes=False, progress=progress)
    (files,) = staged.values()  # the raise came half-way through the edit: the new files were staged
    assert {"audio_encoder.int8-dynamic.onnx", "reports/calibration.json"} <= set(files)
    assert _tree(bundle_dir) == before  # byte for byte the old bundle
    reloaded = load(bundle_dir)  # every hash verified
    assert set(reloaded.components["audio_encoder"].variants) == {"fp32"}
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == [bundle_dir.name]  # no staging left
