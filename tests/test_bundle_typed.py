"""The typed bundle contract: per-modality input specs parsed once at load with errors naming the
manifest field, version 1 compatibility, the one variant-resolution rule, and the edit transaction."""

import json
import os
from pathlib import Path

import pytest

from fusionrt.bundle import (
    FORMAT_VERSION,
    AudioInput,
    ImageInput,
    TextInput,
    edit,
    load,
    resolve_variants,
    write_manifest,
)
from fusionrt.errors import BundleError, ConfigError
from test_bundle import make_bundle, rewrite


def audio_text_bundle(root: Path, *, version: int = FORMAT_VERSION, text_inputs=("input_ids", "attention_mask"),
                      audio_pre=None, text_pre=None) -> Path:
    """Image + audio + text encoders and a fusion head, written by hand (the loader never parses ONNX)."""
    make_bundle(root)
    (root / "audio_encoder.fp32.onnx").write_bytes(b"audio graph")
    (root / "text_encoder.fp32.onnx").write_bytes(b"text graph")
    (root / "text_encoder.int8.onnx").write_bytes(b"text int8 graph")
    manifest = json.loads((root / "manifest.json").read_text())
    out = [{"name": "embedding", "dtype": "float32", "shape": ["batch", 8]}]
    manifest["version"] = version
    manifest["modalities"] = ["image", "audio", "text"]
    manifest["components"]["audio_encoder"] = {
        "role": "encoder", "modality": "audio", "rate_hz": 10.0,
        "inputs": [{"name": "audio", "dtype": "float32", "shape": ["batch", 1600]}], "outputs": out,
        "preprocessing": {"sample_rate": 16000, "hop_s": 0.05} if audio_pre is None else audio_pre,
        "variants": {"fp32": {"file": "audio_encoder.fp32.onnx", "precision": "fp32"}}, "default_variant": "fp32",
    }
    manifest["components"]["text_encoder"] = {
        "role": "encoder", "modality": "text", "rate_hz": 1.0,
        "inputs": [{"name": n, "dtype": "int64", "shape": ["batch", "sequence"]} for n in text_inputs], "outputs": out,
        "preprocessing": {"max_length": 24} if text_pre is None else text_pre,
        "variants": {"fp32": {"file": "text_encoder.fp32.onnx", "precision": "fp32"},
                     "int8": {"file": "text_encoder.int8.onnx", "precision": "int8", "target": "x86-avx2",
                              "scheme": "dynamic", "kept_float": ["mm_in"]}},
        "default_variant": "int8",
    }
    manifest["components"]["fusion"]["inputs"] = [
        {"name": m, "dtype": "float32", "shape": ["batch", 8]} for m in ("image", "audio", "text")
    ] + [{"name": "presence", "dtype": "float32", "shape": ["batch", 3]}]
    write_manifest(root, manifest)
    return root


def test_typed_specs_are_parsed_once_at_load(tmp_path):
    bundle = load(audio_text_bundle(tmp_path / "b"))
    assert bundle.encoder("image").input == ImageInput("image", 16, 16, "bgr")
    audio = bundle.encoder("audio").input
    assert audio == AudioInput("audio", 16000, 1600, 0.05) and audio.hop_samples == 800
    text = bundle.encoder("text").input
    assert text == TextInput(("input_ids", "attention_mask"), 24, "max_length", bundle.tokenizer_dir / "tokenizer.json")
    assert [c.name for c in bundle.encoders] == ["image_encoder", "audio_encoder", "text_encoder"]
    assert bundle.embedding_dim("audio") == 8
    int8 = bundle.encoder("text").variant("int8")
    assert (int8.target, int8.scheme, int8.info) == ("x86-avx2", "dynamic", {"kept_float": ["mm_in"]})


def test_text_encoder_may_take_token_type_ids(tmp_path):
    bundle = load(audio_text_bundle(tmp_path / "b", text_inputs=("input_ids", "attention_mask", "token_type_ids")))
    assert bundle.encoder("text").input.input_names == ("input_ids", "attention_mask", "token_type_ids")


@pytest.mark.parametrize(("change", "message"), [
    (lambda m: m["components"]["image_encoder"]["preprocessing"].pop("channel_order"),
     "components.image_encoder.preprocessing.channel_order is missing; say which order the model was trained on"),
    (lambda m: m["components"]["image_encoder"]["preprocessing"].update(channel_order="RGBA"),
     "components.image_encoder.preprocessing.channel_order is 'RGBA'; expected one of"),
    (lambda m: m["components"]["image_encoder"]["preprocessing"].update(height="abc"),
     r"components.image_encoder.preprocessing.height is 'abc'; expected an integer in \[1, 8192\]"),
    (lambda m: m["components"]["image_encoder"]["preprocessing"].update(height=32),
     "components.image_encoder.preprocessing.height is 32 but the model input takes 16"),
    (lambda m: m["components"]["image_encoder"]["inputs"][0].update(name="frame"),
     r"components.image_encoder.inputs are \['frame'\]; an image encoder takes one input named 'image'"),
    (lambda m: m["components"]["audio_encoder"]["preprocessing"].pop("sample_rate"),
     "components.audio_encoder.preprocessing.sample_rate is missing"),
    (lambda m: m["components"]["audio_encoder"]["preprocessing"].update(sample_rate=10**15),
     "components.audio_encoder.preprocessing.sample_rate is 1000000000000000; expected an integer"),
    (lambda m: m["components"]["audio_encoder"]["preprocessing"].update(hop_s=1e12),
     "components.audio_encoder.preprocessing.hop_s is 1000000000000.0; expected seconds"),
    (lambda m: m["components"]["text_encoder"]["preprocessing"].pop("max_length"),
     "components.text_encoder.preprocessing.max_length is missing and the model's dimension is dynamic"),
    (lambda m: m["components"]["text_encoder"]["preprocessing"].update(max_length=10**9),
     "components.text_encoder.preprocessing.max_length is 1000000000; expected an integer in"),
    (lambda m: m["components"]["text_encoder"]["outputs"][0].update(name="pooled"),
     "components.text_encoder.outputs are \\['pooled'\\]; an encoder has one output named 'embedding'"),
    (lambda m: m["components"]["fusion"]["inputs"][0].update(shape=["batch", 9]),
     "components.fusion.inputs.image takes \\[batch, 9\\] but components.image_encoder gives \\[batch, 8\\]"),
    (lambda m: m["components"]["fusion"]["outputs"][0].update(shape=["batch", 5]),
     "components.fusion returns 5 logits but task.labels has 2 labels"),
    (lambda m: m["components"]["image_encoder"].update(rate_hz="thirty"),
     "components.image_encoder.rate_hz is 'thirty'"),
    (lambda m: m.update(tokenizer=None),
     "the text encoder needs the bundle's tokenizer"),
])  # fmt: skip
def test_contract_errors_name_the_manifest_field(tmp_path, change, message):
    root = audio_text_bundle(tmp_path / "b")
    rewrite(root, change)
    with pytest.raises(BundleError, match=message):
        load(root)


def test_version_1_bundles_load_with_the_v1_defaults(tmp_path):
    root = audio_text_bundle(tmp_path / "b", version=1)
    rewrite(root, lambda m: m["components"]["image_encoder"]["preprocessing"].pop("channel_order"))
    bundle = load(root)
    assert bundle.version == 1 and bundle.encoder("image").input.channel_order == "bgr"


def test_deeply_nested_manifest_is_refused_without_recursion(tmp_path):
    root = audio_text_bundle(tmp_path / "b")
    (root / "manifest.json").write_text('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(BundleError, match="nests"):
        load(root)


def test_one_variant_resolution_rule(tmp_path):
    bundle = load(audio_text_bundle(tmp_path / "b"))
    defaults = {"image_encoder": "fp32", "audio_encoder": "fp32", "text_encoder": "int8", "fusion": "fp32"}
    assert resolve_variants(bundle) == resolve_variants(bundle, "default") == defaults
    # a name: that variant where a component has it, fp32 elsewhere
    assert resolve_variants(bundle, "fp16") == {"image_encoder": "fp16", "audio_encoder": "fp32",
                                               "text_encoder": "fp32", "fusion": "fp32"}
    # a mapping by component or modality: exactly those, defaults elsewhere
    assert resolve_variants(bundle, {"text": "fp32", "image_encoder": "fp16"}) == {**defaults, "text_encoder": "fp32",
                                                                                 "image_encoder": "fp16"}
    with pytest.raises(BundleError, match="no component of bundle .* has a variant 'int4'"):
        resolve_variants(bundle, "int4")
    with pytest.raises(BundleError, match="component audio_encoder has no variant 'int8'"):
        resolve_variants(bundle, {"audio": "int8"})
    with pytest.raises(ConfigError, match="neither a component"):
        resolve_variants(bundle, {"lidar": "fp32"})


def staging_leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.parent.iterdir() if p.name.startswith(f".{root.name}."))


def test_edit_commits_changed_files_and_manifest_atomically(tmp_path):
    root = audio_text_bundle(tmp_path / "b")
    before = json.loads((root / "manifest.json").read_text())["files"]
    with edit(root) as change:
        change.write_json("reports/eval.json", {"accuracy": 0.9})
        change.write_text("text_encoder.int8.onnx", "new int8 graph")
        change.remove("image_encoder.fp16.onnx")
        del change.manifest["components"]["image_encoder"]["variants"]["fp16"]
        change.manifest["components"]["text_encoder"]["default_variant"] = "fp32"
    bundle = load(root)  # every hash verified
    assert change.bundle.components["text_encoder"].default_variant == "fp32"
    assert bundle.report("eval") == {"accuracy": 0.9}
    assert (root / "text_encoder.int8.onnx").read_text() == "new int8 graph"
    assert not (root / "image_encoder.fp16.onnx").exists() and "fp16" not in bundle.encoder("image").variants
    after = json.loads((root / "manifest.json").read_text())["files"]
    assert after["fusion.fp32.onnx"] == before["fusion.fp32.onnx"] and after["text_encoder.int8.onnx"] != \
        before["text_encoder.int8.onnx"]
    assert staging_leftovers(root) == []


def test_an_error_inside_an_edit_leaves_the_old_bundle_complete(tmp_path):
    root = audio_text_bundle(tmp_path / "b")
    manifest_before = (root / "manifest.json").read_bytes()
    with pytest.raises(RuntimeError, match="killed half-way"):
        with edit(root) as change:
            change.write_text("text_encoder.int8.onnx", "half-written")
            change.manifest["components"]["text_encoder"]["default_variant"] = "fp32"
            raise RuntimeError("killed half-way")
    assert (root / "manifest.json").read_bytes() == manifest_before
    assert (root / "text_encoder.int8.onnx").read_bytes() == b"text int8 graph"
    assert load(root).encoder("text").default_variant == "int8"
    assert staging_leftovers(root) == []


def test_an_edit_that_breaks_the_contract_is_not_swapped_in(tmp_path):
    root = audio_text_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="default_variant 'int4' is not one of the variants"):
        with edit(root) as change:
            change.manifest["components"]["text_encoder"]["default_variant"] = "int4"
    assert load(root).encoder("text").default_variant == "int8"
    assert staging_leftovers(root) == []


def test_edit_refuses_paths_outside_and_the_manifest_as_a_file(tmp_path):
    root = audio_text_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="leaves the bundle"):
        with edit(root) as change:
            change.stage("../elsewhere.onnx")
    with pytest.raises(BundleError, match="through BundleEdit.manifest"):
        with edit(root) as change:
            change.stage("manifest.json")
    assert staging_leftovers(root) == [] and load(root)


def test_edit_keeps_unchanged_files_as_the_same_content(tmp_path):
    root = audio_text_bundle(tmp_path / "b")
    inode_before = os.stat(root / "fusion.fp32.onnx").st_ino
    with edit(root) as change:
        change.write_json("reports/bench.json", {})
    assert (root / "fusion.fp32.onnx").read_bytes() == b"fusion graph"
    assert os.stat(root / "fusion.fp32.onnx").st_ino == inode_before  # hard-linked, not rewritten


def test_edit_keeps_the_bundle_directory_permissions(tmp_path):
    root = audio_text_bundle(tmp_path / "b")
    os.chmod(root, 0o755)
    with edit(root) as change:
        change.write_json("reports/eval.json", {})
    assert oct(os.stat(root).st_mode & 0o777) == oct(0o755)


def test_a_precision_name_finds_each_components_variant_of_that_precision(tmp_path):
    bundle = load(audio_text_bundle(tmp_path / "b"))
    with edit(bundle) as change:
        change.copy_in(bundle.root / "text_encoder.int8.onnx", "text_encoder.int8-minmax.onnx")
        variants = change.manifest["components"]["text_encoder"]["variants"]
        variants["int8-minmax"] = {**variants.pop("int8"), "file": "text_encoder.int8-minmax.onnx"}
        change.manifest["components"]["text_encoder"]["default_variant"] = "int8-minmax"
        change.remove("text_encoder.int8.onnx")
    bundle = load(bundle.root)
    assert resolve_variants(bundle, "int8") == {"image_encoder": "fp32", "audio_encoder": "fp32",
                                               "text_encoder": "int8-minmax", "fusion": "fp32"}
    assert resolve_variants(bundle, {"text": "int8"})["text_encoder"] == "int8-minmax"
    assert resolve_variants(bundle, "fp16")["image_encoder"] == "fp16"
