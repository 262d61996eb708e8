import json
import os

import numpy as np
import onnx
import pytest
import torch
from export_modules import (
    SymmetricEigenvalues,
    TinyConvEncoder,
    TinyFusion,
    fusion_inputs,
    image_inputs,
    tiny_tokenizer,
    token_inputs,
)

from fusionrt.bundle import describe
from fusionrt.errors import BundleError, ExportError
from fusionrt.export import export_bundle
from fusionrt.runtime.engine import OrtEngine


def test_bundle_has_every_component_variant_and_report(exported_bundle):
    bundle, lines, *_ = exported_bundle
    assert sorted(bundle.components) == ["fusion", "image_encoder", "text_encoder"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(bundle.root).st_mode & 0o777 == 0o777 & ~umask  # not the staging directory's 0700
    assert bundle.modalities == ("text", "image") and bundle.labels == ("zero", "one", "two", "three")
    files = sorted(p.relative_to(bundle.root).as_posix() for p in bundle.root.rglob("*") if p.is_file())
    assert files == [
        "fusion.fp16.onnx", "fusion.fp32.onnx", "image_encoder.fp16.onnx", "image_encoder.fp32.onnx",
        "manifest.json", "reports/export.json", "text_encoder.fp16.onnx", "text_encoder.fp32.onnx",
        "tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json",
    ]  # fmt: skip
    assert sorted(bundle.manifest["files"]) == [f for f in files if f != "manifest.json"]
    assert not [p for p in bundle.root.parent.iterdir() if p.name.startswith(".")]  # no staging left

    text = bundle.encoder("text")
    assert [(s.name, s.dtype, s.shape) for s in text.inputs] == [
        ("input_ids", "int64", ("batch", "sequence")), ("attention_mask", "int64", ("batch", "sequence")),
    ]  # fmt: skip
    assert [(s.name, s.shape) for s in text.outputs] == [("embedding", ("batch", 8))]
    assert (text.rate_hz, text.preprocessing) == (1.0, {"max_length": 16, "lowercase": True})
    image = bundle.encoder("image")
    assert image.rate_hz == 30.0 and image.preprocessing["channel_order"] == "bgr"
    assert image.variant("fp32").info == {"exporter": "dynamo", "optimization": "basic", "opset": 17}
    assert [s.name for s in bundle.fusion.inputs] == ["text", "image", "presence"]
    assert bundle.fusion.outputs[0].name == "logits" and bundle.fusion.rate_hz is None
    assert set(bundle.manifest["tools"]) == {"fusionrt", "torch", "onnx", "onnxruntime", "transformers"}

    report = bundle.report("export")["components"]
    for name in bundle.components:
        for variant in ("fp32", "fp16"):
            entry = report[name]["variants"][variant]
            assert entry["parity"]["inputs"] == 9 and entry["optimization"] == "basic"
            assert entry["parity"]["outputs"][bundle.components[name].outputs[0].name]["cosine"] >= 0.999
            assert entry["seconds"]
        assert (report[name]["exporter"], report[name]["fallback_reason"], report[name]["opset"]) == ("dynamo", None, 17)

    assert [line.split(":")[0] for line in lines[:3]] == ["[1/3] text_encoder", "[2/3] image_encoder", "[3/3] fusion"]
    assert "exported (dynamo), parity cos=" in lines[0] and "; fp16 cos=" in lines[0]
    assert lines[-1].startswith("bundle written to")


def test_bundle_text_encoder_runs_on_tokenizers_output(exported_bundle):
    from tokenizers import Tokenizer

    bundle, _, encoders, *_ = exported_bundle
    tokenizer = Tokenizer.from_file(str(bundle.tokenizer_dir / "tokenizer.json"))
    sentences = ["the digit is three", "one two", "zero one two three four the digit"]
    expected_ids = tiny_tokenizer()(sentences)["input_ids"]
    tokenizer.enable_padding(pad_id=0)
    encodings = tokenizer.encode_batch(sentences)
    assert [[i for i, m in zip(e.ids, e.attention_mask) if m] for e in encodings] == expected_ids
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    assert ids.shape == (3, 9)
    with torch.no_grad():
        expected = encoders["text"].eval()(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    for variant, atol in (("fp32", 1e-5), ("fp16", 2e-2)):
        got = OrtEngine(bundle.encoder("text").variant(variant).path).run({"input_ids": ids, "attention_mask": mask})
        np.testing.assert_allclose(got["embedding"], expected, atol=atol)


def test_text_encoder_exports_with_dynamic_batch_and_sequence(exported_bundle):
    """As Optimum does: every integer input of a text encoder is [batch, sequence] in the ONNX file itself."""
    bundle, _, encoders, *_ = exported_bundle
    text = bundle.encoder("text")
    assert (text.input.input_names, text.input.max_length) == (("input_ids", "attention_mask"), 16)
    feeds = {k: v.numpy() for k, v in token_inputs(batch=3, length=13).items()}  # the example is 2 x 6
    with torch.no_grad():
        expected = encoders["text"].eval()(*(torch.from_numpy(v) for v in feeds.values())).numpy()
    for variant, atol in (("fp32", 1e-5), ("fp16", 2e-2)):
        graph = onnx.load(text.variant(variant).path).graph
        dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in graph.input}
        assert dims == {"input_ids": ["batch", "sequence"], "attention_mask": ["batch", "sequence"]}
        got = OrtEngine(text.variant(variant).path).run(feeds)["embedding"]
        np.testing.assert_allclose(got, expected, atol=atol)


def test_describe_lists_components_and_parity(exported_bundle):
    bundle, *_ = exported_bundle
    text = describe(bundle)
    report = bundle.report("export")["components"]["image_encoder"]["variants"]["fp16"]["parity"]["outputs"]
    for name in ("text_encoder", "image_encoder", "fusion"):
        assert f"\n{name}  role=" in text
    assert f"embedding: cos={report['embedding']['cosine']:.6f}" in text
    assert "in  input_ids        int64    [batch, sequence]" in text


def small_bundle_args():
    modalities = ("image",)
    examples = {"image_encoder": image_inputs(), "fusion": fusion_inputs(modalities)}
    return {"image": TinyConvEncoder()}, TinyFusion(modalities), examples


def test_non_empty_out_dir_is_refused_and_force_replaces_it(tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / "old.txt").write_text("keep me unless forced")
    encoders, fusion, examples = small_bundle_args()
    with pytest.raises(BundleError, match="is not empty; pass force=True"):
        export_bundle(encoders, fusion, out, example_inputs=examples, labels=["a", "b", "c", "d"], progress=None)
    assert (out / "old.txt").exists()

    bundle = export_bundle(
        encoders, fusion, out, example_inputs=examples, labels=["a", "b", "c", "d"], force=True, fp16=False,
        rates={"image": 15.0}, preprocessing={"image_encoder": {"height": 16, "channel_order": "rgb"}},
        progress=lambda line: None,
    )  # fmt: skip
    assert not (out / "old.txt").exists()
    assert sorted(bundle.encoder("image").variants) == ["fp32"] and bundle.tokenizer_dir is None
    image = bundle.encoder("image")
    assert image.rate_hz == 15.0 and image.preprocessing == {"height": 16, "channel_order": "rgb"}
    assert (image.input.height, image.input.width, image.input.channel_order) == (16, 16, "rgb")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_failure_mid_export_leaves_nothing_behind(tmp_path):
    encoders, _, examples = small_bundle_args()
    examples["fusion"] = {"image": torch.randn(2, 8), "presence": torch.ones(2, 1)}

    class BrokenFusion(SymmetricEigenvalues):  # keeps the contract (logits [batch, 2]) but cannot be exported
        def forward(self, image, presence):
            return super().forward(image.view(-1, 2, 4)) * presence

    lines = []
    out = tmp_path / "bundles" / "demo"
    with pytest.raises(ExportError, match="cannot export fusion to fusion.fp32.onnx: op aten._linalg_eigh"):
        export_bundle(encoders, BrokenFusion(), out, example_inputs=examples, labels=["a", "b"], progress=lines.append)
    assert lines and lines[0].startswith("[1/2] image_encoder: exported")  # the encoder was done when it failed
    assert not out.exists()
    assert list((tmp_path / "bundles").iterdir()) == []


def test_arguments_are_checked_before_any_export(tmp_path):
    encoders, fusion, examples = small_bundle_args()
    run = dict(example_inputs=examples, labels=["a"], progress=None)
    with pytest.raises(ExportError, match="encoders are keyed by modality"):
        export_bundle({"camera": encoders["image"]}, fusion, tmp_path / "a", **run)
    with pytest.raises(ExportError, match=r"example_inputs names \['fusoin'\]; expected components among"):
        export_bundle(encoders, fusion, tmp_path / "b", **{**run, "example_inputs": {**examples, "fusoin": {}}})
    with pytest.raises(ExportError, match=r"example_inputs\['fusion'\] is named \['presence', 'image'\]"):
        swapped = {**examples, "fusion": {"presence": torch.ones(2, 1), "image": torch.randn(2, 8)}}
        export_bundle(encoders, fusion, tmp_path / "c", **{**run, "example_inputs": swapped})
    with pytest.raises(ExportError, match="needs its labels"):
        export_bundle(encoders, fusion, tmp_path / "d", **{**run, "labels": []})
    with pytest.raises(ExportError, match="text encoder needs its tokenizer"):
        export_bundle({"text": encoders["image"]}, fusion, tmp_path / "e", **run)
    assert list(tmp_path.iterdir()) == []


def test_report_json_is_plain_json(exported_bundle):
    bundle, *_ = exported_bundle
    report = json.loads((bundle.root / "reports" / "export.json").read_text())
    fp16 = report["components"]["text_encoder"]["variants"]["fp16"]
    assert fp16["file"] == "text_encoder.fp16.onnx" and fp16["precision"] == "fp16"
    assert isinstance(fp16["fp32_ops"], list)
    assert report["components"]["fusion"]["export_parity"]["outputs"]["logits"]["argmax_agreement"] == 1.0
