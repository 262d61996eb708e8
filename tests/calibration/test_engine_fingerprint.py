from __future__ import annotations

import importlib.util
from dataclasses import replace

import pytest
from calibration_models import IMAGE, MAX_LENGTH

from fusionrt.bundle import Component, TensorSpec
from fusionrt.calibration import engine_bundle
from fusionrt.errors import EngineError
from fusionrt.runtime.engine_fingerprint import (
    EngineFingerprint,
    ProfileLimits,
    changed_fields,
    check_fingerprint,
    ort_tensorrt_options,
    profiles_from_manifest,
)
from fusionrt.runtime.tensorrt_engine import import_tensorrt

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _fingerprint(bundle) -> EngineFingerprint:
    text = bundle.components["text_encoder"]
    return EngineFingerprint(
        onnx_sha256=text.variants["fp32"].sha256,
        precision="fp16",
        profiles=profiles_from_manifest(text),
        tensorrt_version="10.3.0",
        gpu_name="Orin",
        compute_capability="8.7",
    )


def test_profiles_come_from_the_manifest(bundle):
    text = profiles_from_manifest(bundle.components["text_encoder"], ProfileLimits(max_batch=4))
    assert [p.input for p in text] == ["input_ids", "attention_mask"]
    assert text[0].min == (1, 1) and text[0].opt == (1, MAX_LENGTH) and text[0].max == (4, MAX_LENGTH)
    (image,) = profiles_from_manifest(bundle.components["image_encoder"])
    assert image.min == (1, IMAGE, IMAGE, 3) and image.max == (8, IMAGE, IMAGE, 3)


def test_a_dynamic_axis_without_a_bound_is_refused():
    component = Component("image_encoder", "encoder", "image", 30.0,
                          (TensorSpec("image", "uint8", ("batch", "height", "width", 3)),), (), {}, {}, "fp32")
    with pytest.raises(EngineError, match="image axis 1 is dynamic"):
        profiles_from_manifest(component)


def test_the_mismatch_names_exactly_the_fields_that_changed(bundle):
    recorded = _fingerprint(bundle)
    assert EngineFingerprint.from_dict(recorded.as_dict()) == recorded
    check_fingerprint(recorded, _fingerprint(bundle), "text_encoder.fp16.orin.plan")  # same: no error
    moved = replace(recorded, gpu_name="NVIDIA H200", compute_capability="9.0")
    assert set(changed_fields(recorded, moved)) == {"gpu_name", "compute_capability"}
    with pytest.raises(EngineError) as error:
        check_fingerprint(recorded, moved, "text_encoder.fp16.orin.plan")
    message = str(error.value)
    assert "gpu_name: built for 'Orin', now 'NVIDIA H200'" in message and "compute_capability" in message
    assert "tensorrt_version" not in message and "onnx_sha256" not in message and "text_encoder.fp16.orin.plan" in message
    upgraded = replace(recorded, tensorrt_version="10.4.0")
    with pytest.raises(EngineError, match=r"^engine .*\(tensorrt_version: built for '10.3.0', now '10.4.0'\)"):
        check_fingerprint(recorded, upgraded, "x.plan")
    bigger_batch = profiles_from_manifest(bundle.components["text_encoder"], ProfileLimits(max_batch=16))
    longer = replace(recorded, profiles=bigger_batch)
    assert list(changed_fields(recorded, longer)) == ["profiles"]
    assert recorded.key != longer.key and recorded.key == _fingerprint(bundle).key


def test_the_same_fingerprint_configures_ort_tensorrt_provider(bundle):
    options = ort_tensorrt_options(_fingerprint(bundle), "/cache")
    assert options["trt_fp16_enable"] == "True" and options["trt_int8_enable"] == "False"
    assert options["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"
    assert options["trt_profile_max_shapes"] == f"input_ids:8x{MAX_LENGTH},attention_mask:8x{MAX_LENGTH}"
    assert options["trt_engine_cache_path"] == "/cache" and options["trt_engine_cache_prefix"] == _fingerprint(bundle).key


def test_incomplete_recorded_fingerprint_is_an_engine_error():
    with pytest.raises(EngineError, match="incomplete"):
        EngineFingerprint.from_dict({"precision": "fp16"})


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_without_tensorrt_the_error_says_so(pristine_bundle):
    with pytest.raises(EngineError, match="^TensorRT is not available: "):
        import_tensorrt()
    with pytest.raises(EngineError, match="^TensorRT is not available: "):
        engine_bundle(pristine_bundle, "fp16")
