from __future__ import annotations

import copy
import json
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from calibration_models import Items

from fusionrt.bundle import load
from fusionrt.calibration import (CalibrationSet, FeedsReader, Latency, QuantMode, Speedup, choose, cpu_target,
                                  quantize_bundle, quantize_int8_static)
from fusionrt.calibration.auto import MIN_SPEEDUP, Made, Search, _fit_whole_model, _try_candidates
from fusionrt.calibration.evaluate import BundleRunner
from fusionrt.calibration.measure import time_rounds
from fusionrt.calibration.sensitivity import cosine_judge
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
    assert report["latency"] == {"threads": 1, "runs": 5, "batch": 1}  # as realtime-infer runs each stage
    reloaded = load(bundle_dir)
    for name, entry in report["components"].items():
        rows = {r["candidate"]: r for r in entry["candidates"]}
        assert set(rows) == {"int8-minmax", "int8-entropy", "int8-percentile", "int8-dynamic", "fp16"}
        skipped = {label for label, row in rows.items() if "skipped" in row}
        # an int8 file in which repair kept every quantizable node float is no int8 variant
        assert all(label.startswith("int8") and "not an int8 variant" in rows[label]["skipped"] for label in skipped)
        rows = {label: row for label, row in rows.items() if label not in skipped}
        for row in rows.values():
            if "not_repaired" in row:  # a candidate of its variant was inside the budget already
                first = row["not_repaired"].split()[0]
                assert rows[first]["within_budget"] and rows[first]["variant"] == row["variant"]
            else:
                assert row["cosine"] > 0.99
            assert row["median_ms"] > 0 and row["p99_ms"] >= row["median_ms"]
            assert row["p25_ms"] <= row["median_ms"] <= row["p75_ms"]
            sign_test = row["faster_rounds"] >= row["rounds"] / 2 + math.sqrt(row["rounds"])
            assert row["faster_beyond_noise"] == (row["speedup"] >= MIN_SPEEDUP and sign_test)
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


def test_a_candidate_is_faster_only_beyond_noise():
    """The rule, on rounds timed together: the median per-round speed-up at least MIN_SPEEDUP AND the
    candidate faster in at least n/2 + sqrt(n) of the n rounds."""
    rng = np.random.default_rng(0)
    load = np.tile([1.0, 3.0], 25) * rng.uniform(0.95, 1.05, 50)  # load that comes and goes, round by round
    fp32 = Latency.of(10.0 * load)
    twice = Latency.of(5.0 * load)
    assert twice.p75_ms > fp32.p25_ms  # the quartiles overlap at 2x under this load ...
    assert Speedup.of(twice, fp32).beyond_noise(MIN_SPEEDUP)  # ... the rounds do not
    assert Speedup.of(twice, fp32).faster_rounds == 50 and abs(Speedup.of(twice, fp32).paired - 2.0) < 0.15
    same_ops = Latency.of(10.0 * load * rng.uniform(0.9, 1.1, 50))
    assert not Speedup.of(same_ops, fp32).beyond_noise(MIN_SPEEDUP)
    assert not Speedup.of(Latency.of(10.0 * load / 1.09), fp32).beyond_noise(MIN_SPEEDUP)  # 1.09x: under the bar
    # 1.3x in 28 rounds, slower in 22: the median ratio clears the bar, the sign test (33 of 50) does not
    mixed = Latency.of(10.0 * load * np.r_[np.full(28, 1 / 1.3), np.full(22, 1.25)])
    assert Speedup.of(mixed, fp32).paired >= 1.3 and Speedup.of(mixed, fp32).faster_rounds == 28
    assert not Speedup.of(mixed, fp32).beyond_noise(MIN_SPEEDUP)
    with pytest.raises(ValueError, match="same measure_latency call"):
        Speedup.of(Latency.of(10.0 * load[:40]), fp32)
    rows = [
        {"candidate": "int8-dynamic", "variant": "int8-dynamic", "within_budget": True, "median_ms": 8.6,
         "speedup": 1.16, "faster_rounds": 28, "rounds": 50, "faster_beyond_noise": False},  # 1.16x, but noise
        {"candidate": "fp16", "variant": "fp16", "within_budget": True, "median_ms": 9.9, "speedup": 1.01,
         "faster_rounds": 26, "rounds": 50, "faster_beyond_noise": False},
    ]
    choice = choose(rows, MIN_SPEEDUP)
    assert choice["chosen"] == "fp32" and "beyond noise" in choice["reason"] and not choice["budget_missed"]
    rows.append({"candidate": "int8-minmax", "variant": "int8", "within_budget": True, "median_ms": 5.0,
                 "speedup": 2.0, "faster_rounds": 50, "rounds": 50, "faster_beyond_noise": True})
    choice = choose(rows, MIN_SPEEDUP)
    assert choice["chosen"] == "int8" and "faster in 50 of 50 rounds" in choice["reason"]
    assert choice["candidate"] == "int8-minmax"


def test_time_rounds_takes_turns_run_by_run_or_in_blocks_with_an_untimed_first_run():
    order = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    samples = time_rounds(fns, runs=4, warmup=1)
    assert order == ["a", "b", "a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then each round starts one further
    assert [len(v) for v in samples.values()] == [4, 4] and all(t >= 0 for v in samples.values() for t in v)
    order.clear()
    samples = time_rounds(fns, runs=5, warmup=0, block=2)  # 3 rounds of 1 untimed + 2 timed runs per side
    assert order == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3 + ["a"] * 3 + ["b"] * 3
    assert [len(v) for v in samples.values()] == [6, 6]


def test_of_equally_fast_candidates_the_most_accurate_wins():
    """Two calibrators make the same 'int8' variant at the same speed (medians within SAME_SPEED):
    the one that lost less accuracy is chosen, and it is named, so its file is the one stored."""
    row = {"variant": "int8", "within_budget": True, "faster_beyond_noise": True, "faster_rounds": 50, "rounds": 50,
           "speedup": 2.2}
    rows = [{**row, "candidate": "int8-minmax", "median_ms": 15.3, "accuracy_delta_pts": 0.0, "cosine": 0.9986},
            {**row, "candidate": "int8-percentile", "median_ms": 15.2, "accuracy_delta_pts": 0.33, "cosine": 0.9986},
            {**row, "candidate": "int8-dynamic", "variant": "int8-dynamic", "median_ms": 20.0,
             "accuracy_delta_pts": -0.5, "cosine": 0.9999}]  # more accurate, but clearly slower
    choice = choose(rows, MIN_SPEEDUP)
    assert (choice["chosen"], choice["candidate"]) == ("int8", "int8-minmax")
    assert "the most accurate of 2 within 5% of the fastest" in choice["reason"]
    rows[1]["median_ms"] = 12.0  # now clearly the fastest
    assert choose(rows, MIN_SPEEDUP)["candidate"] == "int8-percentile"


def test_the_whole_model_keeps_the_budget_by_sending_the_costliest_choice_back(bundle, calib, heldout, tmp_path):
    """Each component's variant met the budget alone; together they must too. With a budget the real
    whole-model loss exceeds, choices go back to fp32 one at a time, the largest own loss first
    (then the smallest speed-up), re-measuring the whole model each time."""
    names = ("image_encoder", "audio_encoder", "fusion")
    kept, entries = {}, {}
    for name, (loss, speedup) in zip(names, [(0.3, 2.0), (0.3, 1.5), (0.6, 3.0)]):
        out = tmp_path / f"{name}.int8.onnx"
        result = quantize_int8_static(bundle.components[name].variant("fp32").path, out, FeedsReader(calib.feeds(name)))
        kept[name] = {"int8": Made(out, result.config, result.info())}
        entries[name] = {"chosen": "int8", "candidate": "int8-minmax", "reason": "fastest",
                         "candidates": [{"candidate": "int8-minmax", "accuracy_delta_pts": loss, "speedup": speedup}]}
    runner = BundleRunner(bundle, heldout)
    baseline = runner.metrics(runner.logits())
    whole = runner.metrics(runner.logits({n: kept[n]["int8"].path for n in names}))["accuracy"]
    lost = round((baseline["accuracy"] - whole) * 100.0, 4)

    report, lines = {"baseline": baseline, "components": copy.deepcopy(entries)}, []
    _fit_whole_model(report, runner, dict(kept), Search(QuantMode.AUTO, accuracy_budget=lost), lines.append)
    assert report["final"] == {"components": {n: "int8" for n in names}, "accuracy": whole,
                               "accuracy_delta_pts": lost, "reverted": []} and not lines

    report, remaining = {"baseline": baseline, "components": copy.deepcopy(entries)}, dict(kept)
    _fit_whole_model(report, runner, remaining, Search(QuantMode.AUTO, accuracy_budget=lost - 100.0), lines.append)
    assert report["final"]["reverted"] == ["fusion", "audio_encoder", "image_encoder"]  # loss 0.6; then 1.5x < 2x
    assert all(e["chosen"] == "fp32" and "went back to fp32" in e["reason"] for e in report["components"].values())
    assert remaining == {name: {} for name in names} and len(lines) == 3


def test_a_calibrator_is_not_repaired_once_a_candidate_of_its_variant_is_inside_the_budget(bundle, calib, tmp_path):
    """Repair keeps nodes float, so a repaired file could not be faster than the file of the same
    variant already inside the budget: later calibrators are judged as made, and their rows say why."""
    component = bundle.components["text_encoder"]
    fp32, feeds = component.variant("fp32").path, calib.feeds("text_encoder")
    search = Search(QuantMode.AUTO, target="x86-avx2")  # 7-bit weights: the same integers on every x86 kernel
    quiet = lambda message: None  # noqa: E731
    first, _ = _try_candidates(component, fp32, feeds, cosine_judge(fp32, feeds[:8], 0.0),
                               replace(search, repair_nodes=False), tmp_path, quiet)
    cosine = {r["candidate"]: r["cosine"] for r in first}
    assert cosine["int8-minmax"] > cosine["int8-entropy"] + 1e-4  # entropy clips this model's ranges
    judged, real = [], cosine_judge(fp32, feeds[:8], (cosine["int8-minmax"] + cosine["int8-entropy"]) / 2)

    def judge(path):
        judged.append(Path(path).name)
        return real(path)

    rows, made = _try_candidates(component, fp32, feeds, judge, search, tmp_path, quiet)
    rows = {r["candidate"]: r for r in rows}
    assert rows["int8-minmax"]["within_budget"] and "repair" not in rows["int8-minmax"]
    entropy = rows["int8-entropy"]
    assert not entropy["within_budget"] and entropy["not_repaired"] == "int8-minmax is inside the budget already"
    assert "repair" not in entropy and "int8-entropy" in made
    at = judged.index("text_encoder.int8-entropy.onnx")
    assert judged[at - 1] == "text_encoder.int8-minmax.onnx"  # no repair round was made and judged in between
    assert "not_repaired" not in rows["int8-dynamic"]  # another variant: repaired as before when it misses


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
