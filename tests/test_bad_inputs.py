"""The bad-input corpus (tests/bad_inputs.py) run against the bundle loader, `fusionrt inspect`, the
sources, both CLIs' parsers and the Python API: every case gets a one-line error (never a
traceback), a counted drop, or legal acceptance. In-process and hand-written bundles keep it fast;
the contract check (`fusionrt inspect`) runs on a few real ONNX bundles."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bad_inputs
from bad_inputs import ACCEPT, DROP, ERROR, Case
from fusionrt.errors import DataError, FusionRTError
from test_bundle_typed import audio_text_bundle

sys.path.insert(0, str(Path(__file__).parent / "runtime"))
import runtime_models  # noqa: E402


def _params(cases):
    return [pytest.param(c, id=c.id) for c in cases]


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return audio_text_bundle(tmp_path_factory.mktemp("corpus") / "base")


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("media")
    for name, data in bad_inputs.text_file_contents().items():
        (root / name).write_bytes(data)
    (root / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    (root / "garbage.png").write_bytes(b"\x89PNG not really")
    (root / "garbage.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 cut")
    return root


def _fill(text: str, tmp: Path) -> str:
    return text.replace("{tmp}", str(tmp)).replace("{missing}", str(tmp / "missing")).replace("{dir}", str(tmp))


# ----------------------------------------------------------------------------------------- bundles


@pytest.mark.parametrize("case", _params(bad_inputs.manifest_cases()))
def test_manifest_mutation(case: Case, base, tmp_path, capsys):
    from fusionrt.cli import main

    root = tmp_path / "b"
    shutil.copytree(base, root)
    manifest = json.loads((root / "manifest.json").read_text())
    case.make(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))
    code = main(["inspect", "--no-check", str(root)])
    err = capsys.readouterr().err
    if case.expect == ACCEPT:
        assert code == 0, err
        return
    assert code == 1
    line = _one_line(err)
    assert line.startswith("fusionrt inspect: error: ") and case.needle in line, line


@pytest.mark.parametrize(("name", "raw", "needle"), bad_inputs.RAW_MANIFESTS,
                         ids=[r[0] for r in bad_inputs.RAW_MANIFESTS])
def test_raw_manifest_bytes(name, raw, needle, base, tmp_path):
    from fusionrt.bundle import load

    root = tmp_path / "b"
    shutil.copytree(base, root)
    (root / "manifest.json").write_bytes(raw)
    with pytest.raises(FusionRTError) as e:
        load(root)
    assert needle in _one_line(str(e.value))


def _rehash(root: Path, change=None) -> None:
    from fusionrt.bundle import hash_tree

    manifest = json.loads((root / "manifest.json").read_text())
    if change:
        change(manifest)
    manifest["files"] = hash_tree(root)
    (root / "manifest.json").write_text(json.dumps(manifest))


def _fewer_labels(root: Path) -> None:
    def change(m):
        m["task"]["labels"] = ["zero", "one"]
        m["components"]["fusion"]["outputs"][0]["shape"] = ["batch", "classes"]

    _rehash(root, change)


REAL_CASES = {  # name -> (break the real bundle, needle of the check's problem or None: passes)
    "pristine": (lambda r: None, None),
    "garbage-onnx": (lambda r: ((r / "image_encoder.fp32.onnx").write_bytes(b"\x08garbage"), _rehash(r)),
                     "onnxruntime could not load"),
    "swapped-onnx": (lambda r: (shutil.copy(r / "audio_encoder.fp32.onnx", r / "image_encoder.fp32.onnx"), _rehash(r)),
                     "the model file has inputs ['audio']"),
    "text-as-image": (lambda r: (shutil.copy(r / "image_encoder.fp32.onnx", r / "text_encoder.fp32.onnx"), _rehash(r)),
                      "the model file has inputs ['image']"),
    "tokenizer-not-json": (lambda r: ((r / "tokenizer" / "tokenizer.json").write_bytes(b"\xff\x00"), _rehash(r)),
                           "is not a tokenizers tokenizer.json"),
    "tokenizer-not-a-tokenizer": (lambda r: ((r / "tokenizer" / "tokenizer.json").write_text('{"a": 1}'), _rehash(r)),
                                  "is not a tokenizers tokenizer.json"),
    "fusion-two-modalities": (lambda r: (runtime_models.fusion_head(r / "fusion.fp32.onnx", ("text", "image")),
                                         _rehash(r)), "the model file has inputs"),
    "too-few-labels": (_fewer_labels, "returns 3 logits but the bundle has 2 labels"),
}


@pytest.fixture(scope="module")
def real(tmp_path_factory) -> Path:
    return runtime_models.write_bundle(tmp_path_factory.mktemp("real") / "bundle")


@pytest.mark.parametrize("name", list(REAL_CASES))
def test_inspect_never_passes_what_realtime_refuses(name, real, tmp_path, capsys):
    """`fusionrt inspect` (check on by default) fails exactly where building the realtime pipeline fails."""
    from fusionrt.bundle import load
    from fusionrt.cli import main
    from fusionrt.runtime import Pipeline, SourceOptions, open_source

    root = tmp_path / "b"
    shutil.copytree(real, root)
    breaker, needle = REAL_CASES[name]
    breaker(root)
    code = main(["inspect", str(root)])
    captured = capsys.readouterr()
    options = SourceOptions(replay="deterministic", sample_rate=runtime_models.SAMPLE_RATE)
    sources = {m: open_source(u, m, options=options) for m, u in
               (("image", "test://digits"), ("audio", "test://dtmf"), ("text", "test://digits"))}
    try:
        pipeline = Pipeline.from_bundle(load(root), sources)
    except FusionRTError as e:
        refused = str(e)
        for source in sources.values():
            source.close()
    else:
        refused = None
        pipeline.close()
    if needle is None:
        assert code == 0 and "check: OK" in captured.out and refused is None, (captured.err, refused)
        return
    assert code == 1 and refused is not None, (captured.out, refused)
    errors = captured.err.strip().splitlines()
    assert errors and all(e.startswith("fusionrt inspect: error: components.") for e in errors), captured.err
    assert any(needle in e for e in errors), captured.err
    assert "Traceback" not in captured.err


# ----------------------------------------------------------------------------------------- sources


@pytest.mark.parametrize("case", _params(bad_inputs.uri_cases()))
def test_source_uri(case: Case, media):
    from fusionrt.runtime import SourceOptions, open_source

    uri, modality = case.make
    uri = _fill(uri, media) if isinstance(uri, str) else uri
    options = SourceOptions(replay="deterministic", duration_s=1.0)
    if case.expect == ERROR:
        with pytest.raises(FusionRTError) as e:
            source = open_source(uri, modality, options=options)
            list(source.frames())  # a source may refuse while reading
        assert case.needle in _one_line(str(e.value)), str(e.value)
        return
    source = open_source(uri, modality, options=options)
    try:
        frames = list(source.frames())
    finally:
        source.close()
    if case.expect == DROP:
        assert source.stats[case.needle] >= 1 and frames, source.stats
    else:
        assert frames and all(f.t_ns >= 0 for f in frames)


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("case", _params(bad_inputs.cli_cases()))
def test_cli_value(case: Case, base, tmp_path, capsys):
    from fusionrt import cli, realtime_cli

    which, args = case.make
    args = [_fill(a, tmp_path) for a in args]
    if which == "realtime":
        parser, argv = realtime_cli.build_parser(), ["--bundle", str(base), "--camera", "test://digits", *args]
    else:
        parser, argv = cli.build_parser(), [str(base) if a == "B" else a for a in args]
    if case.expect == ACCEPT:
        parsed = parser.parse_args(argv)
        realtime_cli.check_outputs(parsed)
        return
    with pytest.raises(SystemExit) as e:
        parser.parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]  # argparse: the usage, then one error line
    assert ": error: " in line and case.needle in line, err


def test_cli_processes_exit_with_one_line(tmp_path):
    """As a user runs them: a real process, a one-line reason, no traceback."""
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    for argv, code, needle in (
        (["-m", "fusionrt.cli", "train", "--config", str(binary), "--out", str(tmp_path / "run")], 1, "not UTF-8"),
        (["-m", "fusionrt.realtime_cli", "--camera", "test://digits", "--duration", "inf"], 2, "argument --duration"),
        (["-m", "fusionrt.cli", "inspect", str(tmp_path)], 1, "has no manifest.json"),
    ):
        proc = subprocess.run([sys.executable, *argv], capture_output=True, text=True, timeout=60)
        assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
        assert needle in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_two_outputs_on_one_file_are_refused(base, tmp_path):
    from fusionrt import realtime_cli
    from fusionrt.errors import ConfigError

    out = str(tmp_path / "out.json")
    args = realtime_cli.build_parser().parse_args(["--camera", "test://digits", "--jsonl", out, "--trace", out])
    with pytest.raises(ConfigError, match="--jsonl and --trace both write"):
        realtime_cli.check_outputs(args)


# ---------------------------------------------------------------------------------------------- API


def _api_call(name: str, base: Path, tmp: Path):
    from fusionrt.bundle import load
    from fusionrt.config import load_config
    from fusionrt.frame import Frame
    from fusionrt.runtime import Budget, Outputs, Pipeline, SourceOptions, Trigger, open_source, run_realtime
    from fusionrt.runtime.check import check_bundle
    from fusionrt.runtime.preprocess import TextTokenizer, clean_audio, resize_image
    from fusionrt.values import count, duration, output_path, port

    runtime_models.write_tokenizer(tmp / "tok")
    tokenizer = tmp / "tok" / "tokenizer.json"
    (tmp / "file").write_text("x")
    (tmp / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    (tmp / "list.yaml").write_text("- 1\n- 2\n")
    calls = {
        "load-none": lambda: load(None), "load-int": lambda: load(3), "load-missing": lambda: load(tmp / "nope"),
        "load-file": lambda: load(tmp / "file"), "load-no-manifest": lambda: load(tmp),
        "frame-t-none": lambda: Frame("text", None, 0, "hi"), "frame-t-float": lambda: Frame("text", 1.5, 0, "hi"),
        "frame-seq-str": lambda: Frame("text", 0, "1", "hi"), "frame-modality": lambda: Frame("smell", 0, 0, "hi"),
        "options-width-0": lambda: SourceOptions(width=0), "options-fps-inf": lambda: SourceOptions(fps=math.inf),
        "options-seed-neg": lambda: SourceOptions(seed=-1),
        "budget-nan": lambda: Budget(deadline_ms=math.nan), "budget-inf": lambda: Budget(deadline_ms=math.inf),
        "trigger-inf": lambda: Trigger.at_rate(math.inf), "trigger-tiny": lambda: Trigger.at_rate(1e-300),
        "text-surrogate": lambda: _surrogate_is_repaired(tokenizer),
        "text-empty": lambda: TextTokenizer(tokenizer, 8)(" "),
        "text-bytes": lambda: TextTokenizer(tokenizer, 8)(b"hi"),
        "image-wrong-dtype": lambda: resize_image(np.zeros((4, 4, 3), np.float32), 8, 8),
        "image-empty": lambda: resize_image(np.zeros((0, 4, 3), np.uint8), 8, 8),
        "audio-nan": lambda: _nan_audio_is_repaired(clean_audio),
        "values-duration-inf": lambda: duration(math.inf, "duration_s"), "values-port-bool": lambda: port(True, "port"),
        "values-count-huge": lambda: count(10**400, "count", high=10),
        "values-output-dir": lambda: output_path(tmp, "out"),
        "run-realtime-no-source": lambda: run_realtime(base),
        "from-bundle-unknown-modality": lambda: Pipeline.from_bundle(
            base, {"smell": open_source("test://digits", "image")}),
        "run-duration-inf": lambda: _run_forever(),
        "run-realtime-summary-dir": lambda: run_realtime(
            runtime_models.write_bundle(tmp / "rb", modalities=("text",)), text="red", duration_s=0.5,
            outputs=Outputs(summary_json=tmp, console=False, echo=False)),
        "config-binary": lambda: load_config(tmp / "binary.yaml"),
        "config-list": lambda: load_config(tmp / "list.yaml"),
        "check-missing-bundle": lambda: _raise_problems(check_bundle(tmp / "nope")),
    }
    return calls[name]


def _surrogate_is_repaired(tokenizer: Path):
    from fusionrt.runtime.preprocess import TextTokenizer
    from fusionrt.runtime.sources.text import repair_text

    text, repairs = repair_text("red \udcff\udcfe")
    assert repairs == {"lone_surrogates": 2}
    TextTokenizer(tokenizer, 8)(text)  # the repaired text tokenizes


def _nan_audio_is_repaired(clean_audio):
    cleaned, repaired = clean_audio(np.array([0.1, np.nan, np.inf], np.float32))
    assert repaired and np.isfinite(cleaned).all()


def _run_forever():
    from fusionrt.runtime import Pipeline

    bundle = runtime_models.write_bundle(Path(_run_forever.tmp) / "rf", modalities=("text",))
    source = runtime_models.ListSource("text", [(0.0, "red", None)])
    pipeline = Pipeline.from_bundle(bundle, {"text": source})
    try:
        pipeline.run(duration_s=math.inf)
    finally:
        pipeline.close()


def _raise_problems(result):
    from fusionrt.errors import BundleError

    assert not result.ok and len(result.problems) == 1
    raise BundleError(result.problems[0])


@pytest.mark.parametrize(("name", "expect", "needle"), bad_inputs.api_cases(),
                         ids=[c[0] for c in bad_inputs.api_cases()])
def test_python_api(name, expect, needle, base, tmp_path):
    _run_forever.tmp = tmp_path
    call = _api_call(name, base, tmp_path)
    if expect == ERROR:
        with pytest.raises(FusionRTError) as e:
            call()
        assert needle in _one_line(str(e.value)), str(e.value)
    elif needle:  # a DROP the pipeline counts as bad_input
        with pytest.raises(DataError, match=needle):
            call()
    else:  # a DROP repaired and counted where it happens
        call()


def test_corpus_size():
    cases = (len(bad_inputs.manifest_cases()) + len(bad_inputs.RAW_MANIFESTS) + len(REAL_CASES)
             + len(bad_inputs.uri_cases()) + len(bad_inputs.cli_cases()) + len(bad_inputs.api_cases()))
    assert cases >= 150
