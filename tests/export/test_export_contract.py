"""export_bundle refuses, before exporting anything, what the runtime would refuse at load or run time."""

import json

import pytest
from export_modules import (
    VOCAB,
    MaskedMeanEmbedding,
    TinyConvEncoder,
    TinyFusion,
    fusion_inputs,
    image_inputs,
    tiny_tokenizer,
    token_inputs,
)

from fusionrt.bundle import Reference
from fusionrt.errors import ExportError
from fusionrt.export import export_bundle
from fusionrt.export.contract import write_checked_manifest

LABELS = ["zero", "one", "two", "three"]


class PlainConv(TinyConvEncoder):
    preprocessing = None  # a user's module: no preprocessing() method


class TokenStates(MaskedMeanEmbedding):
    """Returns per-token states [batch, sequence, E] instead of one embedding per input."""

    def forward(self, input_ids, attention_mask):
        return self.embedding(input_ids) * attention_mask.unsqueeze(-1)


def refused(tmp_path, encoders, examples, match, *, fusion=None, labels=LABELS, **kwargs) -> str:
    """The ExportError export_bundle raises (matching `match`), checked to come before any export."""
    modalities = tuple(encoders)
    examples = {"fusion": fusion_inputs(modalities), **examples}
    lines = []
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match=match) as caught:
        export_bundle(encoders, fusion or TinyFusion(modalities), out, example_inputs=examples, labels=labels,
                      progress=lines.append, **kwargs)  # fmt: skip
    assert lines == [] and not out.exists() and list(tmp_path.iterdir()) == []
    return str(caught.value)


def test_text_encoder_without_preprocessing_lists_the_keys(tmp_path):
    message = refused(tmp_path, {"text": MaskedMeanEmbedding(len(VOCAB))}, {"text_encoder": token_inputs()},
                      "text_encoder: no preprocessing", tokenizer=tiny_tokenizer())  # fmt: skip
    assert "MaskedMeanEmbedding has no preprocessing() method" in message
    assert "max_length (required: the sequence axis is dynamic)" in message and "padding (" in message
    assert "preprocessing={'text_encoder': {'max_length': 128, 'padding': 'max_length'}}" in message


def test_image_encoder_without_preprocessing_lists_the_keys(tmp_path):
    message = refused(tmp_path, {"image": PlainConv()}, {"image_encoder": image_inputs()}, "image_encoder: no preprocessing")
    assert "height and width" in message and "channel_order ('rgb' or 'bgr', required" in message


def test_image_input_named_frame_is_refused_at_export(tmp_path):
    message = refused(
        tmp_path, {"image": TinyConvEncoder()}, {"image_encoder": {"frame": image_inputs()["image"]}},
        r"image_encoder: export_bundle: components\.image_encoder\.inputs are \['frame'\]; an image encoder takes one "
        r"input named 'image'",
    )  # fmt: skip
    assert "named by the keys of example_inputs['image_encoder']" in message


def test_channel_order_is_required_and_sizes_must_match(tmp_path):
    message = refused(tmp_path, {"image": TinyConvEncoder()}, {"image_encoder": image_inputs()},
                      r"image_encoder: .*preprocessing\.channel_order is missing",
                      preprocessing={"image_encoder": {"height": 16, "width": 16}})  # fmt: skip
    assert "'rgb' (torchvision, PIL) or 'bgr' (OpenCV)" in message
    refused(tmp_path, {"image": TinyConvEncoder()}, {"image_encoder": image_inputs()},
            r"preprocessing\.height is 32 but the model input takes 16",
            preprocessing={"image_encoder": {"height": 32, "channel_order": "rgb"}})  # fmt: skip
    refused(tmp_path, {"image": TinyConvEncoder()}, {"image_encoder": image_inputs()},
            r"preprocessing\.channel_order is 'RGB'; expected one of \['bgr', 'rgb'\]",
            preprocessing={"image_encoder": {"channel_order": "RGB"}})  # fmt: skip


def test_encoder_outputs_and_fusion_head_are_checked(tmp_path):
    text = {"text_encoder": token_inputs()}
    refused(tmp_path, {"text": TokenStates(len(VOCAB))}, text,
            r"text_encoder: .*outputs\.embedding is float32 \['batch', 6, 8\]; the runtime feeds/reads float32 with 2",
            tokenizer=tiny_tokenizer(), preprocessing={"text_encoder": {"max_length": 16}})  # fmt: skip
    image = {"image_encoder": image_inputs()}
    refused(tmp_path, {"image": TinyConvEncoder()}, image, "fusion: .*returns 4 logits but task.labels has 3 labels",
            labels=["a", "b", "c"])  # fmt: skip
    narrow = {**image, "fusion": fusion_inputs(("image",), dim=6)}
    message = refused(tmp_path, {"image": TinyConvEncoder()}, narrow,
                      r"fusion: its input 'image' is \[batch, 6\] but image_encoder returns \[batch, 8\]",
                      fusion=TinyFusion(("image",), embed_dim=6))  # fmt: skip
    assert "'presence' float32 [batch, M]" in message


def test_rates_and_reference_are_checked_before_export(tmp_path):
    image = {"image_encoder": image_inputs()}
    refused(tmp_path, {"image": TinyConvEncoder()}, image, r"rates names \['audio'\], which have no encoder",
            rates={"audio": 10.0})  # fmt: skip
    refused(tmp_path, {"image": TinyConvEncoder()}, image, r"rates\['image'\] is 0; expected", rates={"image": 0})
    missing = Reference(config=tmp_path.parent / "none.yaml", weights=tmp_path.parent / "none.safetensors")
    refused(tmp_path, {"image": TinyConvEncoder()}, image, r"reference\.config .*none\.yaml does not exist",
            reference=missing)  # fmt: skip


def test_a_manifest_the_runtime_would_refuse_is_an_export_error(tmp_path):
    """After the exports, the real manifest goes through the loader's parse; its errors name the bundle, not the staging."""
    staging, out = tmp_path / ".demo.partial", tmp_path / "demo"
    staging.mkdir()
    for name in ("image_encoder", "fusion"):
        (staging / f"{name}.fp32.onnx").write_bytes(b"onnx")

    def entry(name, modality, inputs, outputs):
        return {"role": "fusion" if modality is None else "encoder", "modality": modality, "rate_hz": None,
                "inputs": inputs, "outputs": outputs, "preprocessing": {"channel_order": "rgb"},
                "variants": {"fp32": {"file": f"{name}.fp32.onnx", "precision": "fp32"}}, "default_variant": "fp32"}

    tensor = lambda name, dtype, *shape: {"name": name, "dtype": dtype, "shape": ["batch", *shape]}  # noqa: E731
    manifest = {
        "format": "fusionrt-bundle", "version": 2, "task": {"kind": "classification", "labels": ["a", "b"]},
        "modalities": ["image"], "tokenizer": None,
        "components": {
            "image_encoder": entry("image_encoder", "image", [tensor("frame", "uint8", 16, 16, 3)],
                                   [tensor("embedding", "float32", 8)]),
            "fusion": entry("fusion", None, [tensor("image", "float32", 8), tensor("presence", "float32", 1)],
                            [tensor("logits", "float32", 2)]),
        },
    }  # fmt: skip
    with pytest.raises(ExportError) as caught:
        write_checked_manifest(staging, manifest, out, {"image_encoder": "image", "fusion": None})
    message = str(caught.value)
    assert message.startswith(f"image_encoder: the bundle would not load: {out}/manifest.json: components.image_encoder")
    assert str(staging) not in message and "example_inputs['image_encoder']" in message
    assert not (staging / "manifest.json").exists()
    manifest["components"]["image_encoder"]["inputs"][0]["name"] = "image"
    bundle = write_checked_manifest(staging, manifest, out, {"image_encoder": "image", "fusion": None})
    assert bundle.encoder("image").input.channel_order == "rgb"
    assert json.loads((staging / "manifest.json").read_text())["files"] == bundle.manifest["files"]
