"""The torch backend: a bundle exported from a checkpoint carries its reference model, and
TorchEngine answers like the ONNX files, component by component and through realtime-infer."""

import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")

from tokenizers import Tokenizer  # noqa: E402

from fusionrt import realtime_cli  # noqa: E402
from fusionrt.bundle import load, write_manifest  # noqa: E402
from fusionrt.config import config_from_dict  # noqa: E402
from fusionrt.data import digits_from_config  # noqa: E402
from fusionrt.errors import BundleError, ConfigError, EngineError  # noqa: E402
from fusionrt.export.from_checkpoint import export_checkpoint  # noqa: E402
from fusionrt.models import build_tokenizer  # noqa: E402
from fusionrt.runtime.budget import Budget, OverrunPolicy, StageBudget  # noqa: E402
from fusionrt.runtime.engine import OrtEngine  # noqa: E402
from fusionrt.runtime.pipeline import Pipeline  # noqa: E402
from fusionrt.runtime.sources import SourceOptions, open_source  # noqa: E402
from fusionrt.runtime import torch_engine  # noqa: E402
from fusionrt.runtime.torch_engine import TorchEngine  # noqa: E402
from fusionrt.models.train import train  # noqa: E402

TINY = yaml.safe_load((Path(__file__).parents[1] / "tiny.yaml").read_text())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("torch_backend")
    config = config_from_dict(TINY)
    result = train(config, root / "run", progress=lambda line: None)
    bundle = export_checkpoint(config, result.checkpoint, root / "bundle", progress=lambda line: None)
    return config, bundle


def without_reference(bundle, out):
    shutil.copytree(bundle.root, out)
    shutil.rmtree(out / "reference")
    manifest = copy.deepcopy(bundle.manifest)
    del manifest["reference"]
    write_manifest(out, manifest)
    return load(out)


def test_bundle_carries_the_reference_model(exported):
    config, bundle = exported
    reloaded = load(bundle.root)
    assert reloaded.manifest["reference"] == {"config": "reference/config.yaml", "weights": "reference/model.safetensors"}
    assert {"reference/config.yaml", "reference/model.safetensors"} <= set(reloaded.manifest["files"])
    assert reloaded.reference.weights == bundle.root / "reference" / "model.safetensors"
    # the runtime sizes the text vocabulary from tokenizer.json; training used the transformers tokenizer
    runtime_vocab = Tokenizer.from_file(str(bundle.tokenizer_dir / "tokenizer.json")).get_vocab_size()
    assert runtime_vocab == len(build_tokenizer(config.model.text))

    manifest = json.loads((bundle.root / "manifest.json").read_text())
    manifest["reference"]["weights"] = "../model.safetensors"
    (bundle.root / "manifest.json").write_text(json.dumps(manifest))
    try:
        with pytest.raises(BundleError, match="reference.weights"):
            load(bundle.root)
    finally:
        write_manifest(bundle.root, reloaded.manifest)


def test_torch_engine_matches_onnx_runtime(exported):
    config, bundle = exported
    data = digits_from_config(config, "test")
    encoded = Tokenizer.from_file(str(bundle.tokenizer_dir / "tokenizer.json")).encode_batch(list(data.texts))
    feeds = {
        "text": {"input_ids": np.array([e.ids for e in encoded], np.int64),
                 "attention_mask": np.array([e.attention_mask for e in encoded], np.int64)},
        "image": {"image": data.images},
        "audio": {"audio": data.audio},
    }  # fmt: skip
    embeddings = {}
    for modality in bundle.modalities:
        name = bundle.encoder(modality).name
        torch_engine = TorchEngine(bundle, name)
        assert torch_engine.providers[0] in ("torch-cpu", "torch-cuda") and torch_engine.fallback is None
        ort = OrtEngine(bundle.encoder(modality).variant("fp32").path).run(feeds[modality])
        assert sorted(torch_engine.input_names) == sorted(feeds[modality])
        np.testing.assert_allclose(torch_engine.run(feeds[modality])["embedding"], ort["embedding"], atol=1e-4)
        embeddings[modality] = ort["embedding"]
    presence = np.array([[1, 1, 1], [0, 1, 1], [1, 0, 0], [1, 1, 0]] * 10, np.float32)
    fusion_feeds = {**embeddings, "presence": presence}
    expected = OrtEngine(bundle.fusion.variant("fp32").path).run(fusion_feeds)["logits"]
    np.testing.assert_allclose(TorchEngine(bundle, "fusion").run(fusion_feeds)["logits"], expected, atol=1e-4)


def test_realtime_infer_torch_backend_agrees_with_ort(exported, tmp_path):
    config, bundle = exported
    labels = {}
    for backend in ("ort", "torch"):
        out = tmp_path / f"{backend}.jsonl"
        args = ["--bundle", str(bundle.root), "--camera", "test://digits", "--mic", "test://dtmf",
                "--text", "test://digits", "--replay", "deterministic", "--duration", "3", "--json", str(out),
                "--backend", backend, "--quiet"]  # fmt: skip
        assert realtime_cli.main(args) == 0
        labels[backend] = [r["top_k"][0]["label"] for r in map(json.loads, out.read_text().splitlines())]
    assert len(labels["ort"]) == len(labels["torch"]) > 30
    same = sum(a == b for a, b in zip(labels["ort"], labels["torch"]))
    assert same >= 0.99 * len(labels["ort"])


def test_bundle_without_reference_says_how_to_get_it(exported, tmp_path):
    config, bundle = exported
    bare = without_reference(bundle, tmp_path / "bare")
    assert bare.reference is None
    with pytest.raises(EngineError, match=r"bare.*fusionrt export"):
        TorchEngine(bare, "fusion")
    with pytest.raises(EngineError, match="fusionrt export"):
        Pipeline.from_bundle(bare, {}, backend="torch")


def test_without_torch_the_error_says_what_to_install(exported, monkeypatch):
    config, bundle = exported
    torch_engine._rebuild.cache_clear()
    monkeypatch.setitem(sys.modules, "torch", None)
    try:
        with pytest.raises(EngineError, match=r"needs PyTorch: pip install 'fusionrt\[export\]'"):
            TorchEngine(bundle, "fusion")
    finally:
        torch_engine._rebuild.cache_clear()


def test_torch_pipeline_has_one_variant_and_says_degrade_cannot_act(exported):
    config, bundle = exported
    camera = open_source("test://digits", "image", options=SourceOptions(replay="deterministic"))
    budget = Budget(image=StageBudget(policy=OverrunPolicy.DEGRADE))
    pipeline = Pipeline.from_bundle(bundle, {"image": camera}, budget=budget, backend="torch")
    assert pipeline.encoders["image"].variant == pipeline.fusion.variant == "reference"
    assert sum("DEGRADE" in note for note in pipeline.metrics.notes) == 1
    camera.close()
    with pytest.raises(ConfigError, match="torch backend"):
        Pipeline.from_bundle(bundle, {}, variant="fp16", backend="torch")
    with pytest.raises(ConfigError, match="backend 'onnx'"):
        Pipeline.from_bundle(bundle, {}, backend="onnx")


def test_bench_times_the_torch_backend_with_its_host_copy_apart(exported):
    from fusionrt.runtime.bench import BenchSettings, bench_bundle

    config, bundle = exported
    report = bench_bundle(bundle, components=["fusion", "model"], backends=["torch", "ort-cpu"], variants=["fp32"],
                          threads=[1], batches=[1], settings=BenchSettings(window_ms=2, max_windows=3, warmup_ms=1,
                                                                           gemm_size=32), progress=lambda line: None)  # fmt: skip
    torch_rows = [r for r in report["rows"] if r["backend"] == "torch"]
    assert [(r["target"], r["variant"], r["status"]) for r in torch_rows] == [("fusion", "reference", "ok"),
                                                                              ("model", "reference", "ok")]
    for row in torch_rows:
        assert row["device"] in ("torch-cpu", "torch-cuda")
        assert 0 < row["copy_ms"]["p50"] < row["latency_ms"]["p50"]  # tensor conversion, timed apart
        assert row["compute_ms"]["count"] == row["latency_ms"]["count"]
        ort_row = next(r for r in report["rows"] if (r["target"], r["backend"]) == (row["target"], "ort-cpu"))
        assert row["macs"] == ort_row["macs"] > 0  # counted from the fp32 graph the reference computes
    assert {(s["target"], s["baseline"], s["candidate"]) for s in report["ratios"]} == {
        ("fusion", "torch reference", "ort-cpu fp32"), ("model", "torch reference", "ort-cpu fp32")}
