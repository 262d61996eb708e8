"""The seed system (scaled down) through the normal commands: train, export, quantize auto, eval,
realtime-infer; every one of them on a binary task with one sigmoid output."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fusionrt.bundle import load
from fusionrt.calibration import evaluate_bundle
from fusionrt.cli import main
from fusionrt.data import BINARY_LABELS
from seed_small import CROSS_ATTENTION, SEED_CONFIG, SEED_SMALL

REALTIME = [sys.executable, "-m", "fusionrt.realtime_cli"]


def _overrides(extra=()):
    return [arg for o in (*SEED_SMALL, *extra) for arg in ("--set", o)]


@pytest.fixture(scope="module", params=["early", "cross_attention"])
def seed_bundle(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"seed-{request.param}")
    extra = (CROSS_ATTENTION,) if request.param == "cross_attention" else ()
    assert main(["train", "--config", str(SEED_CONFIG), *_overrides(extra), "--out", str(root / "run")]) in (0, None)
    run = root / "run"
    assert main(["export", "--config", str(run / "config.yaml"), "--checkpoint", str(run / "model.safetensors"),
                 "--out", str(root / "bundle")]) in (0, None)
    return root / "bundle", json.loads((run / "metrics.json").read_text())


def test_training_reports_accuracy_recall_and_f1(seed_bundle):
    _, metrics = seed_bundle
    for split in ("val", "test"):
        m = metrics[split]
        assert set(m["per_class_recall"]) == set(BINARY_LABELS)
        assert m["recall"] == m["per_class_recall"][BINARY_LABELS[1]]
        if m["precision"] + m["recall"]:
            assert m["f1"] == pytest.approx(2 * m["precision"] * m["recall"] / (m["precision"] + m["recall"]))


def test_bundle_is_binary_with_one_logit_and_passes_parity(seed_bundle):
    bundle = load(seed_bundle[0])
    assert bundle.task == "binary" and tuple(bundle.labels) == BINARY_LABELS
    assert bundle.fusion.outputs[0].shape[1] == 1
    parity = json.loads((seed_bundle[0] / "reports" / "export.json").read_text())
    assert set(parity["components"]) == {"text_encoder", "image_encoder", "audio_encoder", "fusion"}
    for component in parity["components"].values():
        check = component["export_parity"]
        for output in check["outputs"].values():
            assert output["cosine"] >= check["tolerance"]["cosine"]
            assert output["max_abs"] <= check["tolerance"]["max_abs"]


def test_eval_gives_recall_and_f1_that_match_its_confusion_matrix(seed_bundle, capsys):
    bundle, _ = seed_bundle
    assert main(["eval", str(bundle), "--count", "60"]) in (0, None)
    assert "recall" in capsys.readouterr().out
    fp32 = json.loads((bundle / "reports" / "eval.json").read_text())["variants"]["fp32"]
    (tn, fp), (fn, tp) = fp32["confusion_matrix"]
    assert fp32["accuracy"] == pytest.approx((tp + tn) / 60)
    assert fp32["recall"] == pytest.approx(tp / (tp + fn) if tp + fn else 0.0)
    assert fp32["count"] == 60


def test_quantize_auto_then_eval_reports_every_variant(seed_bundle):
    bundle, _ = seed_bundle
    assert main(["quantize", str(bundle), "--calib", "builtin", "--mode", "auto", "--count", "32"]) in (0, None)
    chosen = {name: c.default_variant for name, c in load(bundle).components.items()}
    report = evaluate_bundle(bundle, "builtin", ("fp32", "default"), n=60)
    for variant in ("fp32", "default"):
        metrics = report["variants"][variant]
        assert 0.0 <= metrics["recall"] <= 1.0 and 0.0 <= metrics["f1"] <= 1.0
    assert report["variants"]["default"]["components"] == chosen


def test_realtime_infer_prints_a_label_and_sigmoid_score(seed_bundle, tmp_path):
    bundle, _ = seed_bundle
    out = tmp_path / "out.jsonl"
    proc = subprocess.run(REALTIME + ["--bundle", str(bundle), "--camera", "test://digits", "--mic", "test://dtmf",
                                      "--text", "test://digits", "--duration", "3", "--budget-ms", "200",
                                      "--jsonl", str(out), "--quiet"], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert records
    for r in records:
        (best, best_p), (other, other_p) = ((k["label"], k["score"]) for k in r["top_k"])
        assert {best, other} == set(BINARY_LABELS)
        assert best_p >= 0.5 and best_p + other_p == pytest.approx(1.0)
        assert r.get("ground_truth", best) in BINARY_LABELS
    assert any("ground_truth" in r for r in records)
    assert np.isfinite([r["e2e_ms"] for r in records]).all()


def test_study_runs_on_the_binary_task(tmp_path):
    from fusionrt.config import load_config
    from fusionrt.study import run_study

    config = load_config(SEED_CONFIG, SEED_SMALL)
    results = run_study(config, (0,), tmp_path / "out", kinds=("image", "early"), work_dir=tmp_path / "work",
                        noise_levels=(1.0,), progress=lambda line: None)
    for kind in ("image", "early"):
        summary = results["summary"][kind]
        assert set(summary["per_class_recall"]) == set(BINARY_LABELS)
        assert 0.0 <= summary["accuracy"]["mean"] <= 1.0
    assert "five_or_more" in (tmp_path / "out" / "study.md").read_text()
