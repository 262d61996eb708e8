"""The effectiveness study end to end on the tiny config: real training, real exports, real ONNX Runtime."""

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from fusionrt.cli import main
from fusionrt.config import Task, config_from_dict
from fusionrt.data import LABELS, digits_from_config
from fusionrt.errors import ConfigError
from fusionrt.study import (
    FUSION_KINDS,
    NONE,
    STUDY_VARIANTS,
    aggregate,
    parse_kinds,
    parse_seeds,
    run_study,
    study_kinds,
)

TINY = yaml.safe_load((Path(__file__).parent / "tiny.yaml").read_text())
SEEDS = (0, 1)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    config = config_from_dict(TINY)
    results = run_study(config, SEEDS, root / "out", work_dir=root / "work", command="pytest", progress=lambda line: None)
    return root, config, results


def test_writes_json_markdown_and_charts(study):
    root, config, results = study
    out = root / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "study.json", "study.md", "study_accuracy.png", "study_missing.png", "study_noise.png",
    ]  # fmt: skip
    saved = json.loads((out / "study.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["kinds"] == list(study_kinds(config)) == ["text", "image", "audio", *FUSION_KINDS]
    for kind in saved["kinds"]:
        assert sorted(saved["runs"][kind]) == ["0", "1"]
        grid = saved["summary"][kind]["grid"]
        assert sorted(grid) == ["audio", "image", "text"]
        assert all(list(levels) == ["0", "1", "2", "3"] for levels in grid.values())
        assert all(sorted(cells) == sorted([NONE, "text", "image", "audio"]) for lv in grid.values() for cells in lv.values())
        assert set(saved["summary"][kind]["per_class_recall"]) == set(LABELS)
    for png in ("study_accuracy.png", "study_missing.png", "study_noise.png"):
        image = cv2.imread(str(out / png))
        assert image is not None and image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 10
    text = (out / "study.md").read_text()
    for heading in ("## Claims", "## Accuracy at default noise", "## Missing modality", "## Noise", "## Precision"):
        assert heading in text
    for png in ("study_accuracy.png", "study_missing.png", "study_noise.png"):
        assert f"]({png})" in text
    assert "`pytest`" in text


def test_aggregate_is_mean_and_sample_std():
    agg = aggregate([0.5, 0.7, 0.9])
    assert agg["mean"] == pytest.approx(0.7) and agg["std"] == pytest.approx(0.2) and agg["n"] == 3
    assert aggregate([0.25]) == {"mean": 0.25, "std": None, "n": 1, "values": [0.25]}


def test_summaries_aggregate_the_seed_runs(study):
    _, _, results = study
    for kind, summary in results["summary"].items():
        runs = [results["runs"][kind][str(s)] for s in SEEDS]
        accuracy = [r["test"]["accuracy"] for r in runs]
        assert summary["accuracy"]["values"] == accuracy
        assert summary["accuracy"]["mean"] == pytest.approx(np.mean(accuracy))
        assert summary["accuracy"]["std"] == pytest.approx(np.std(accuracy, ddof=1))
        cell = [r["grid"]["image"]["3"]["audio"] for r in runs]
        assert summary["grid"]["image"]["3"]["audio"]["mean"] == pytest.approx(np.mean(cell))
        # the grid's default-noise, nothing-missing cell is the headline accuracy
        assert all(r["grid"]["text"]["1"][NONE] == r["test"]["accuracy"] for r in runs)


def test_missing_modality_is_dropped_through_the_presence_mask(study):
    _, config, results = study
    labels = digits_from_config(config, "test").labels
    assert len(set(np.bincount(labels, minlength=len(LABELS)))) == 1  # balanced: a constant answer scores 1/10
    for modality in ("text", "image", "audio"):
        for run in results["runs"][modality].values():
            assert run["missing"][modality] == pytest.approx(1 / len(LABELS))  # its only input gone: constant output
            others = [m for m in ("text", "image", "audio") if m != modality]
            assert all(run["missing"][m] == run["missing"][NONE] for m in others)  # not its input: no effect
            noisy_other = others[0]
            assert len({run["grid"][noisy_other][lv][NONE] for lv in ("0", "1", "2", "3")}) == 1


def test_claims_are_judged_from_the_numbers(study):
    root, _, results = study
    summary = results["summary"]
    claims = {c["id"]: c for c in results["claims"]}
    fusion = max(FUSION_KINDS, key=lambda k: summary[k]["accuracy"]["mean"])
    single = max(("text", "image", "audio"), key=lambda k: summary[k]["accuracy"]["mean"])
    margin = 100 * (summary[fusion]["accuracy"]["mean"] - summary[single]["accuracy"]["mean"])
    assert claims[1]["numbers"]["margin_pts"] == pytest.approx(margin)
    assert claims[1]["passed"] is (margin >= 5.0)

    above = []
    for x in ("text", "image", "audio"):
        rival = max(summary[k]["accuracy"]["mean"] for k in ("text", "image", "audio") if k != x)
        above.append(summary[fusion]["missing"][x]["mean"] > rival)
    assert claims[2]["passed"] is all(above)

    seeds = results["precision"]["seeds"].values()
    drops = [100 * (s["variants"]["fp32"]["accuracy"] - s["variants"]["int8"]["accuracy"]) for s in seeds]
    assert claims[3]["passed"] is bool(np.mean(drops) <= 0.5)

    text = (root / "out" / "study.md").read_text()
    for c in claims.values():
        assert f"| {c['id']} | {c['statement']} | **{'PASS' if c['passed'] else 'FAIL'}** |" in text


def test_precision_runs_every_component_in_each_precision_from_the_exported_files(study):
    _, _, results = study
    precision = results["precision"]
    assert precision["kind"] == results["best"]["fusion"]
    assert STUDY_VARIANTS == ("fp32", "fp16", "int8", "default")
    assert list(precision["variants"]) == list(STUDY_VARIANTS)
    for seed, entry in precision["seeds"].items():
        assert list(entry["variants"]) == list(STUDY_VARIANTS)
        bundle = Path(entry["bundle"])
        for variant in ("fp32", "fp16", "int8"):
            assert set(entry["variants"][variant]["components"].values()) == {variant}
            assert all((bundle / f"{c}.{variant}.onnx").is_file() for c in entry["variants"][variant]["components"])
        assert set(entry["variants"]["default"]["components"].values()) <= {"fp32", "int8"}
        # FP32 through ONNX Runtime answers like the PyTorch model it was exported from (40 items: one may differ)
        pytorch = results["runs"][precision["kind"]][seed]["test"]["accuracy"]
        assert abs(entry["variants"]["fp32"]["accuracy"] - pytorch) <= 1 / 40 + 1e-9


def test_cli_study_without_fusion_kinds_states_what_it_could_not_evaluate(tmp_path, capsys):
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    argv = ["study", "--config", str(config_path), "--seeds", "3", "--kinds", "text,audio",
            "--out", str(out), "--work", str(tmp_path / "work")]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "study.json").read_text())
    assert results["kinds"] == ["text", "audio"] and results["seeds"] == [3]
    assert results["summary"]["text"]["accuracy"]["std"] is None  # one seed: no spread to report
    assert [c["verdict"] for c in results["claims"]] == ["NOT EVALUATED"] * 3
    assert results["precision"] is None
    assert results["command"].startswith("fusionrt study --config")
    assert "claim 1 NOT EVALUATED" in capsys.readouterr().out


def test_eval_study_is_an_alias_of_the_study_verb(tmp_path, monkeypatch):
    """`fusionrt eval --study` and `fusionrt study` reach run_study with the same arguments."""
    import fusionrt.study

    calls = []
    monkeypatch.setattr(fusionrt.study, "run_study", lambda *args, **kwargs: calls.append((args, kwargs)))
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(TINY))
    options = ["--config", str(config_path), "--seeds", "2,0", "--kinds", "image,late", "--out", "o", "--work", "w"]
    assert main(["study", *options]) == 0
    assert main(["eval", "--study", *options]) == 0
    (verb_args, verb_kwargs), (alias_args, alias_kwargs) = calls
    assert verb_args == alias_args and verb_args[1:] == ((2, 0), "o")
    assert verb_args[0] == config_from_dict(TINY)
    tail = f"--config {config_path} --kinds image,late --seeds 2,0 --out o --work w"
    assert verb_kwargs.pop("command") == f"fusionrt study {tail}"
    assert alias_kwargs.pop("command") == f"fusionrt eval --study {tail}"
    assert verb_kwargs == alias_kwargs == {"kinds": ("image", "late"), "work_dir": "w"}


def test_both_spellings_document_the_same_options(capsys):
    helps = {}
    for argv in (["study", "--help"], ["eval", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 0
        helps[argv[0]] = capsys.readouterr().out
    for option in ("--config", "--seeds", "--kinds", "--out", "--work"):
        assert option in helps["study"] and option in helps["eval"]
    assert "--study" in helps["eval"] and "fusionrt study" in helps["eval"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "--study", "--seeds", "0,x"], "--seeds '0,x': expected distinct comma-separated non-negative integers"),
        (["eval", "--study", "--seeds", "1,1"], "--seeds '1,1'"),
        (["eval", "--study", "--kinds", "text,bogus"], "--kinds 'text,bogus': unknown kind 'bogus'; expected"),
        (["eval", "--study", "bundles/demo"], "--study trains and evaluates its own models; drop the bundle"),
        (["eval"], "no bundle given"),
    ],
)
def test_bad_input_is_a_one_line_error(argv, message, capsys):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"fusionrt eval: error: {message}") and err.count("\n") == 1


@pytest.mark.parametrize(
    "options, message",
    [
        (["--seeds", "0,x"], "--seeds '0,x': expected distinct comma-separated non-negative integers"),
        (["--seeds", "1,1"], "--seeds '1,1'"),
        (["--kinds", "text,bogus"], "--kinds 'text,bogus': unknown kind 'bogus'; expected"),
        (["--config", "no/such/config.yaml"], ""),
    ],
)
def test_both_spellings_give_the_same_one_line_error(options, message, capsys):
    errors = {}
    for verb, argv in (("study", ["study", *options]), ("eval", ["eval", "--study", *options])):
        assert main(argv) == 1
        err = capsys.readouterr().err
        prefix = f"fusionrt {verb}: error: "
        assert err.startswith(prefix + message) and err.count("\n") == 1
        errors[verb] = err[len(prefix) :]
    assert errors["study"] == errors["eval"]


def test_api_rejects_what_the_study_cannot_run(tmp_path):
    config = config_from_dict(TINY)
    with pytest.raises(ConfigError, match="unknown kind 'vision'"):
        parse_kinds("text,vision", config)
    with pytest.raises(ConfigError, match="--seeds ''"):
        parse_seeds("")
    regression = dataclasses.replace(config, model=dataclasses.replace(config.model, task=Task.REGRESSION))
    with pytest.raises(ConfigError, match="expected classification with 10 outputs"):
        run_study(regression, (0,), tmp_path, progress=lambda line: None)
    with pytest.raises(ConfigError, match="noise levels"):
        run_study(config, (0,), tmp_path, noise_levels=(-1.0,), progress=lambda line: None)


def test_the_default_noise_level_is_always_in_the_grid(tmp_path):
    config = config_from_dict(TINY)
    results = run_study(config, (0,), tmp_path / "out", kinds=("text",), work_dir=tmp_path / "work", noise_levels=(2.0,),
                        progress=lambda line: None)  # fmt: skip
    assert results["noise_levels"] == ["1", "2"]
    grid = results["runs"]["text"]["0"]["grid"]["text"]
    assert grid["1"][NONE] == results["runs"]["text"]["0"]["test"]["accuracy"]
    assert grid["1"]["text"] == pytest.approx(0.1)
