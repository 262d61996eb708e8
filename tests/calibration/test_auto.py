from __future__ import annotations

import json

import pytest
from calibration_models import Items

from fusionrt.bundle import load
from fusionrt.calibration import CalibrationSet, QuantMode, cpu_target, quantize_bundle
from fusionrt.calibration.auto import MIN_SPEEDUP
from fusionrt.errors import CalibrationError


@pytest.fixture(scope="module")
def calib(bundle):
    return CalibrationSet.from_data(bundle, Items(32, seed=1), source="synthetic calibration")


def test_auto_measures_every_candidate_and_keeps_the_fastest_inside_the_budget(bundle_dir, calib, heldout):
    lines = []
    report = quantize_bundle(bundle_dir, calib, QuantMode.AUTO, heldout=heldout, latency_runs=5, progress=lines.append)
    assert report["criterion"].startswith("accuracy within") and report["baseline"]["accuracy"] == 1.0
    reloaded = load(bundle_dir)
    for name, entry in report["components"].items():
        rows = {r["candidate"]: r for r in entry["candidates"]}
        assert set(rows) == {"int8-minmax", "int8-entropy", "int8-percentile", "int8-dynamic", "fp16"}
        for row in rows.values():
            assert row["cosine"] > 0.99 and row["median_ms"] > 0 and row["p99_ms"] >= row["median_ms"]
            assert row["within_budget"] == (row["accuracy_delta_pts"] <= 0.5 + 1e-9 and row["cosine"] >= 0.99)
        chosen = entry["chosen"]
        assert reloaded.components[name].default_variant == chosen
        if chosen == "fp32":
            assert not any(r["within_budget"] and r["speedup"] >= MIN_SPEEDUP for r in rows.values())
            assert set(reloaded.components[name].variants) == {"fp32"}
        else:
            fitting = [r for r in rows.values() if r["within_budget"] and r["speedup"] >= MIN_SPEEDUP]
            assert chosen == min(fitting, key=lambda r: r["median_ms"])["variant"]
            assert set(reloaded.components[name].variants) == {"fp32", chosen}
            variant = reloaded.components[name].variants[chosen]
            assert variant.target == report["target"] == cpu_target()
            assert variant.scheme == {"int8": "qdq-static", "int8-dynamic": "dynamic", "fp16": "fp16"}[chosen]
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
    assert variant.scheme == "qdq-static" and variant.target == cpu_target()
    assert {"scheme", "target"} <= set(load(bundle_dir).manifest["components"]["image_encoder"]["variants"]["int8"])
    assert "excluded_nodes" in variant.info
    assert component.default_variant == ("int8" if entry["candidates"][0]["within_budget"] else "fp32")


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
    assert fp16.scheme == "fp16" and fp16.target == cpu_target()


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
