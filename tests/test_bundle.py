import json
import subprocess
import sys
from pathlib import Path

import pytest

from fusionrt.bundle import FORMAT_VERSION, Bundle, TensorSpec, describe, load, write_manifest
from fusionrt.errors import BundleError


def make_bundle(root: Path) -> dict:
    """A small valid bundle written by hand: the loader reads JSON and hashes bytes, it never parses ONNX."""
    root.mkdir()
    (root / "image_encoder.fp32.onnx").write_bytes(b"fp32 image graph")
    (root / "image_encoder.fp16.onnx").write_bytes(b"fp16 image graph")
    (root / "fusion.fp32.onnx").write_bytes(b"fusion graph")
    (root / "tokenizer").mkdir()
    (root / "tokenizer" / "tokenizer.json").write_text("{}")
    (root / "reports").mkdir()
    parity = {"inputs": 9, "outputs": {"embedding": {"cosine": 0.999998, "max_abs": 2.5e-07, "argmax_agreement": None}}}
    report = {"components": {"image_encoder": {"variants": {"fp32": {"parity": parity}}}}}
    (root / "reports" / "export.json").write_text(json.dumps(report))
    image_io = {"inputs": [{"name": "image", "dtype": "uint8", "shape": ["batch", 16, 16, 3]}],
                "outputs": [{"name": "embedding", "dtype": "float32", "shape": ["batch", 8]}]}  # fmt: skip
    manifest = {
        "format": "fusionrt-bundle",
        "version": 1,
        "created": "2026-01-01T00:00:00+00:00",
        "task": {"kind": "classification", "labels": ["zero", "one"]},
        "modalities": ["image"],
        "components": {
            "image_encoder": {
                "role": "encoder", "modality": "image", "rate_hz": 30.0, **image_io,
                "preprocessing": {"height": 16, "width": 16, "channel_order": "bgr"},
                "variants": {
                    "fp32": {"file": "image_encoder.fp32.onnx", "precision": "fp32", "exporter": "dynamo",
                             "optimization": "basic"},
                    "fp16": {"file": "image_encoder.fp16.onnx", "precision": "fp16", "exporter": "dynamo",
                             "optimization": "basic"},
                },
                "default_variant": "fp32",
            },
            "fusion": {
                "role": "fusion", "modality": None, "rate_hz": None,
                "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", 8]},
                           {"name": "presence", "dtype": "float32", "shape": ["batch", 1]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", 2]}],
                "preprocessing": {},
                "variants": {"fp32": {"file": "fusion.fp32.onnx", "precision": "fp32"}},
                "default_variant": "fp32",
            },
        },
        "tokenizer": "tokenizer",
        "tools": {"fusionrt": "0.1.0"},
    }  # fmt: skip
    write_manifest(root, manifest)
    return json.loads((root / "manifest.json").read_text())


def rewrite(root: Path, change) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    change(manifest)
    (root / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    make_bundle(tmp_path / "bundle")
    return tmp_path / "bundle"


def test_load_reads_components_variants_and_hashes(bundle_dir):
    bundle = load(bundle_dir)
    assert isinstance(bundle, Bundle)
    assert (bundle.task, bundle.labels, bundle.modalities) == ("classification", ("zero", "one"), ("image",))
    assert bundle.tokenizer_dir == bundle_dir / "tokenizer"
    image = bundle.encoder("image")
    assert image.inputs == (TensorSpec("image", "uint8", ("batch", 16, 16, 3)),)
    assert image.rate_hz == 30.0 and image.preprocessing["channel_order"] == "bgr"
    assert sorted(image.variants) == ["fp16", "fp32"]
    fp16 = image.variant("fp16")
    assert fp16.path == bundle_dir / "image_encoder.fp16.onnx"
    assert fp16.info == {"exporter": "dynamo", "optimization": "basic"}
    assert len(fp16.sha256) == 64
    assert image.variant().name == "fp32"
    assert bundle.fusion.outputs[0].name == "logits"
    assert bundle.report("export")["components"]["image_encoder"]["variants"]["fp32"]["parity"]["inputs"] == 9
    assert bundle.report("calibration") is None
    with pytest.raises(BundleError, match="no variant 'int8'"):
        image.variant("int8")
    with pytest.raises(BundleError, match="no encoder for modality 'audio'"):
        bundle.encoder("audio")


def test_write_manifest_lists_every_file_but_the_manifest(bundle_dir):
    files = json.loads((bundle_dir / "manifest.json").read_text())["files"]
    assert sorted(files) == [
        "fusion.fp32.onnx", "image_encoder.fp16.onnx", "image_encoder.fp32.onnx",
        "reports/export.json", "tokenizer/tokenizer.json",
    ]  # fmt: skip
    (bundle_dir / "link.onnx").symlink_to(bundle_dir / "fusion.fp32.onnx")
    with pytest.raises(BundleError, match="link.onnx is a symlink"):
        write_manifest(bundle_dir, json.loads((bundle_dir / "manifest.json").read_text()))


def test_import_loads_no_torch_or_onnx():
    code = "import sys, fusionrt.bundle; bad = [m for m in ('torch', 'onnx', 'transformers') if m in sys.modules]; print(bad)"
    result = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert result.stdout.strip() == "[]"


def test_tampered_file_is_named_with_both_hashes(bundle_dir):
    expected = json.loads((bundle_dir / "manifest.json").read_text())["files"]["image_encoder.fp16.onnx"]
    (bundle_dir / "image_encoder.fp16.onnx").write_bytes(b"fp16 image graph, patched")
    with pytest.raises(BundleError) as caught:
        load(bundle_dir)
    message = str(caught.value)
    assert "image_encoder.fp16.onnx" in message and expected[:12] in message
    assert "the file was modified after export; re-export" in message


@pytest.mark.parametrize("bad_path", ["../outside.onnx", "/etc/passwd", "tokenizer/../../outside.onnx"])
def test_paths_leaving_the_bundle_are_refused(bundle_dir, bad_path):
    (bundle_dir.parent / "outside.onnx").write_bytes(b"x")
    rewrite(bundle_dir, lambda m: m["files"].update({bad_path: "0" * 64}))
    with pytest.raises(BundleError, match=f"path '{bad_path}' .*leaves the bundle"):
        load(bundle_dir)


def test_variant_file_pointing_outside_is_refused(bundle_dir):
    def escape(m):
        m["components"]["fusion"]["variants"]["fp32"]["file"] = "../fusion.fp32.onnx"
        m["files"]["../fusion.fp32.onnx"] = m["files"]["fusion.fp32.onnx"]

    rewrite(bundle_dir, escape)
    with pytest.raises(BundleError, match="'../fusion.fp32.onnx'"):
        load(bundle_dir)


def test_symlink_out_of_the_bundle_is_refused(bundle_dir, tmp_path):
    secret = tmp_path / "secret.onnx"
    secret.write_bytes(b"not yours")
    (bundle_dir / "extra.onnx").symlink_to(secret)
    rewrite(bundle_dir, lambda m: m["files"].update({"extra.onnx": "0" * 64}))
    with pytest.raises(BundleError, match="path 'extra.onnx' .*resolves outside the bundle"):
        load(bundle_dir)


def test_variant_file_must_be_listed(bundle_dir):
    rewrite(bundle_dir, lambda m: m["files"].pop("image_encoder.fp16.onnx"))
    with pytest.raises(BundleError, match="variants.fp16.file 'image_encoder.fp16.onnx' is not listed in files"):
        load(bundle_dir)


def test_listed_file_missing(bundle_dir):
    (bundle_dir / "fusion.fp32.onnx").unlink()
    with pytest.raises(BundleError, match="file 'fusion.fp32.onnx' listed in the manifest is missing"):
        load(bundle_dir)


def test_newer_version_names_both_versions(bundle_dir):
    rewrite(bundle_dir, lambda m: m.update(version=FORMAT_VERSION + 1))
    with pytest.raises(BundleError) as caught:
        load(bundle_dir)
    assert f"has format version {FORMAT_VERSION + 1}; this fusionrt reads versions [1, 2]" in str(caught.value)


def test_wrong_format_and_missing_or_malformed_manifest(bundle_dir, tmp_path):
    rewrite(bundle_dir, lambda m: m.update(format="something-else"))
    with pytest.raises(BundleError, match="format is 'something-else'"):
        load(bundle_dir)
    (bundle_dir / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json is not valid JSON"):
        load(bundle_dir)
    (bundle_dir / "manifest.json").unlink()
    with pytest.raises(BundleError, match="has no manifest.json"):
        load(bundle_dir)
    with pytest.raises(BundleError, match="does not exist"):
        load(tmp_path / "nowhere")


def test_missing_field_is_named(bundle_dir):
    rewrite(bundle_dir, lambda m: m["components"]["image_encoder"]["variants"]["fp32"].pop("precision"))
    with pytest.raises(BundleError, match="field 'components.image_encoder.variants.fp32.precision' is missing"):
        load(bundle_dir)
    rewrite(bundle_dir, lambda m: m.pop("task"))
    with pytest.raises(BundleError, match="field 'task' is missing"):
        load(bundle_dir)


def test_describe_shows_components_io_and_parity(bundle_dir):
    text = describe(load(bundle_dir))
    assert "image_encoder  role=encoder  modality=image  rate=30 Hz" in text
    assert "in  image            uint8    [batch, 16, 16, 3]" in text
    assert "preprocessing: height=16 width=16 channel_order=bgr" in text
    fp32_row = next(line for line in text.splitlines() if line.strip().startswith("fp32*"))
    assert "embedding: cos=0.999998 max_abs=2.5e-07 (9 input sets)" in fp32_row and "dynamo" in fp32_row
    assert "fusion  role=fusion" in text


def test_describe_keeps_columns_aligned_with_long_variant_names():
    from fusionrt.bundle.describe import table

    rows = [["variant", "precision", "size", "parity"], ["fp32*", "fp32", "1.0 KB", "-"],
            ["int8-dynamic-repaired", "int8", "300 B", "cos=1"]]
    lines = table(rows, right=(2,), min_widths=(10, 9, 10))
    starts = {line.index(word) for line, word in zip(lines, ("precision", "fp32 ", "int8 "))}
    assert len(starts) == 1  # the precision column starts at the same place on every row
    assert len({len(line) - len(row[-1]) for line, row in zip(lines, rows)}) == 1
