from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
from calibration_models import LABELS, Items

from fusionrt.bundle import load
from fusionrt.calibration import BundleRunner, CalibrationSet, evaluate, evaluate_bundle
from fusionrt.errors import BundleError, CalibrationError


def test_evaluation_runs_the_onnx_files_and_writes_reports(bundle_dir, heldout):
    report = evaluate_bundle(bundle_dir, heldout, ["fp32", "default"])
    fp32 = report["variants"]["fp32"]
    assert fp32["accuracy"] == 1.0 and fp32["macro_f1"] == 1.0 and fp32["count"] == len(heldout.labels)
    assert set(fp32["per_class_recall"]) == set(LABELS)
    matrix = np.array(fp32["confusion_matrix"])
    assert matrix.sum() == len(heldout.labels) and np.trace(matrix) == matrix.sum()
    assert np.array_equal(matrix.sum(axis=1), np.bincount(heldout.labels, minlength=len(LABELS)))
    assert fp32["components"] == {"text_encoder": "fp32", "image_encoder": "fp32", "audio_encoder": "fp32", "fusion": "fp32"}
    png = bundle_dir / fp32["confusion_png"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((bundle_dir / "reports" / "eval.json").read_text())["variants"]["fp32"]["accuracy"] == 1.0
    reloaded = load(bundle_dir)  # every hash checked: the manifest lists the new report files
    assert {"reports/eval.json", "reports/confusion_fp32.png"} <= set(reloaded.manifest["files"])


def test_a_missing_modality_degrades_instead_of_failing(bundle, heldout):
    no_audio = CalibrationSet(bundle, images=heldout.images, texts=heldout.texts, labels=heldout.labels)
    runner = BundleRunner(bundle, no_audio)
    logits = runner.logits()
    assert logits.shape == (len(heldout.labels), len(LABELS))
    assert runner.metrics(logits)["accuracy"] < 1.0  # the labels came from the full model


def test_bad_requests_are_named(bundle, heldout):
    with pytest.raises(BundleError, match=r"no component of bundle .* has a variant 'int4'; it has \['default', 'fp32'\]"):
        evaluate(bundle, heldout, ["fp32", "int4"], write=False)  # refused before anything runs
    unlabelled = CalibrationSet.from_data(bundle, Items(4, seed=0))
    unlabelled.labels = None
    with pytest.raises(CalibrationError, match="no labels"):
        evaluate(bundle, unlabelled, ["fp32"], write=False)
    short = CalibrationSet(bundle, images=heldout.images[:3], labels=heldout.labels)
    with pytest.raises(CalibrationError, match="3 image items for 120 labels"):
        BundleRunner(bundle, short)


def test_a_failure_while_writing_the_reports_leaves_the_bundle_as_it_was(bundle_dir, heldout, monkeypatch):
    evaluate_module = importlib.import_module("fusionrt.calibration.evaluate")  # the package's `evaluate` is the function
    before = {p.relative_to(bundle_dir): p.read_bytes() for p in bundle_dir.rglob("*") if p.is_file()}
    drawn = []

    def draw_then_fail(matrix, labels, path, title):
        if drawn:
            raise OSError("disk full")
        path.write_bytes(b"\x89PNG partial")
        drawn.append(path)

    monkeypatch.setattr(evaluate_module, "save_confusion_png", draw_then_fail)
    with pytest.raises(OSError, match="disk full"):
        evaluate_bundle(bundle_dir, heldout, ["fp32", "default"])
    assert drawn and not drawn[0].exists()  # the first PNG was staged, then discarded
    assert {p.relative_to(bundle_dir): p.read_bytes() for p in bundle_dir.rglob("*") if p.is_file()} == before
    load(bundle_dir)
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == [bundle_dir.name]


def test_eval_records_this_machines_int8_kernels_and_each_int8_files_target(bundle_dir, heldout, monkeypatch):
    import fusionrt.runtime.cpu_kernels as cpu_kernels
    from fusionrt.calibration import quantize_bundle

    calib = CalibrationSet.from_data(load(bundle_dir), Items(16, seed=1))
    quantize_bundle(bundle_dir, calib, "int8-static", target="x86-vnni", components=("audio_encoder",), heldout=heldout,
                    latency_runs=2, repair_nodes=False, progress=lambda m: None)
    monkeypatch.setattr(cpu_kernels, "cpu_target", lambda *a, **k: "x86-avx2")  # run "on" an AVX2-only machine
    report = evaluate(load(bundle_dir), heldout, ["fp32", "int8"], write=False)
    assert report["machine"] == {"cpu_target": "x86-avx2", "family": "x86-avx2",
                                 "kernels": cpu_kernels.KERNELS["x86-avx2"]}
    int8 = report["variants"]["int8"]
    assert int8["int8_targets"] == {"audio_encoder": "x86-vnni"}
    assert "x86-vnni" in int8["target_mismatch"]["audio_encoder"] and "x86-avx2" in int8["target_mismatch"]["audio_encoder"]
    assert "int8_targets" not in report["variants"]["fp32"]
