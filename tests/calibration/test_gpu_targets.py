"""GPU targets: `auto` offers only what ONNX Runtime's CUDA and TensorRT providers run, keeps a
default per target, and the runtime picks the default of the provider that runs the sessions."""

from __future__ import annotations

import json

import pytest
from calibration_models import Items

from fusionrt.bundle import default_variant, load, resolve_variants
from fusionrt.calibration import CalibrationSet, QuantMode, quantize_bundle
from fusionrt.calibration.auto import candidates
from fusionrt.calibration.graphs import int8_nodes, load_onnx
from fusionrt.errors import BundleError, CalibrationError
from fusionrt.runtime.backend import Backend


@pytest.fixture(scope="module")
def calib(bundle):
    return CalibrationSet.from_data(bundle, Items(32, seed=1), source="synthetic calibration")


def test_auto_offers_each_gpu_target_only_what_its_provider_runs():
    assert [c.variant for c in candidates(QuantMode.AUTO, target="cuda")] == ["fp16"]
    trt = candidates(QuantMode.AUTO, target="tensorrt")
    assert [c.variant for c in trt] == ["int8-tensorrt"] * 3 + ["fp16"]
    assert all(c.symmetric_activations and not c.reduce_range for c in trt if c.precision == "int8")
    with pytest.raises(CalibrationError, match="--target cuda runs no INT8.*fp16"):
        candidates(QuantMode.INT8_STATIC, target="cuda")
    with pytest.raises(CalibrationError, match="--target tensorrt runs static QDQ INT8 and FP16 only"):
        candidates(QuantMode.INT8_DYNAMIC, target="tensorrt")


def test_a_gpu_target_gets_its_own_default_and_the_cpu_default_stays(bundle_dir, calib, heldout):
    options = dict(heldout=heldout, components=("image_encoder",), latency_runs=3, progress=lambda m: None)
    quantize_bundle(bundle_dir, calib, QuantMode.INT8_STATIC, target="x86-avx2", min_speedup=0.0, **options)
    cpu_default = load(bundle_dir).components["image_encoder"].default_variant

    report = quantize_bundle(bundle_dir, calib, QuantMode.AUTO, target="tensorrt", **options)
    entry = report["components"]["image_encoder"]
    assert {r["candidate"] for r in entry["candidates"]} == {"int8-minmax", "int8-entropy", "int8-percentile", "fp16"}
    assert "chosen by precision" in entry["reason"] or entry["chosen"] == "fp32"
    component = load(bundle_dir).components["image_encoder"]
    assert component.default_variant == cpu_default
    assert component.defaults_by_target == {"tensorrt": entry["chosen"]}
    if entry["chosen"] == "int8-tensorrt":
        variant = component.variants["int8-tensorrt"]
        assert variant.scheme == "qdq-static:s8s8-symmetric" and variant.target == "tensorrt"
        assert int8_nodes(load_onnx(variant.path))
        assert "int8" in component.variants  # the CPU's int8 variant sits beside it

    report = quantize_bundle(bundle_dir, calib, QuantMode.AUTO, target="cuda", **options)
    assert [r["candidate"] for r in report["components"]["image_encoder"]["candidates"]] == ["fp16"]
    reloaded = load(bundle_dir)
    component = reloaded.components["image_encoder"]
    assert component.defaults_by_target["cuda"] == report["components"]["image_encoder"]["chosen"]
    assert component.default_variant == cpu_default
    assert resolve_variants(reloaded)["image_encoder"] == cpu_default
    assert resolve_variants(reloaded, target="cuda")["image_encoder"] == component.defaults_by_target["cuda"]
    assert resolve_variants(reloaded, target="tensorrt")["image_encoder"] == component.defaults_by_target["tensorrt"]
    saved = json.loads((bundle_dir / "reports" / "calibration.json").read_text())
    assert saved["target"] == "cuda"


def test_without_a_gpu_default_a_cpu_int8_default_gives_way_to_fp32_on_the_gpu(bundle_dir, calib, heldout):
    quantize_bundle(bundle_dir, calib, QuantMode.INT8_STATIC, target="x86-avx2", min_speedup=0.0, heldout=heldout,
                    components=("audio_encoder",), latency_runs=3, progress=lambda m: None)
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["components"]["audio_encoder"]["default_variant"] = "int8"
    manifest_path.write_text(json.dumps(manifest))
    component = load(bundle_dir).components["audio_encoder"]
    assert default_variant(component) == "int8"
    assert default_variant(component, "cuda") == default_variant(component, "tensorrt") == "fp32"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"rocm": "fp32"}, "defaults_by_target has target 'rocm'; expected one of \\['cuda', 'tensorrt'\\]"),
        ({"cuda": "int4"}, "defaults_by_target.cuda is 'int4', which is not one of the variants"),
        (["fp16"], "defaults_by_target must be an object"),
    ],
)
def test_a_bad_defaults_by_target_is_refused_naming_the_field(bundle_dir, value, message):
    manifest_path = bundle_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["components"]["fusion"]["defaults_by_target"] = value
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"components.fusion.{message}"):
        load(bundle_dir)


def test_backends_name_the_gpu_target_whose_defaults_they_run():
    assert Backend.ORT_CUDA.gpu_target() == "cuda"
    assert Backend.ORT_TENSORRT.gpu_target() == "tensorrt"
    assert Backend.ORT_CPU.gpu_target() is None and Backend.TORCH.gpu_target() is None
    assert Backend.ORT.gpu_target(["CUDAExecutionProvider", "CPUExecutionProvider"]) == "cuda"
    assert Backend.ORT.gpu_target(["CPUExecutionProvider"]) is None
