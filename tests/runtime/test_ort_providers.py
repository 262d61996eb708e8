"""ONNX Runtime's GPU providers configured from real bundles, checked without a GPU: the TensorRT
options each component variant gets, the session's provider list, IO binding and profiling on CPU."""

import json
from dataclasses import replace

import numpy as np
import pytest
from runtime_models import IMAGE_SIZE, LABELS, MAX_LENGTH, WINDOW, write_bundle

from fusionrt.bundle import load
from fusionrt.runtime.backend import open_engine
from fusionrt.runtime.engine import CPU, OrtEngine
from fusionrt.runtime.ort_providers import (
    CUDA,
    TENSORRT,
    prepare_cache,
    session_providers,
    tensorrt_config,
)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load(write_bundle(tmp_path_factory.mktemp("bundle") / "b"))


def with_variant(component, name, precision, scheme):
    """The component with one more variant (the fp32 file under another precision and scheme)."""
    fp32 = component.variant("fp32")
    extra = replace(fp32, name=name, precision=precision, scheme=scheme, sha256="0" * 64)
    return replace(component, variants={**component.variants, name: extra})


def test_tensorrt_options_per_component_of_a_real_bundle(bundle, tmp_path):
    expected = {  # component -> (min, max) profile shapes, dynamic inputs only
        "text_encoder": ("input_ids:1x1,attention_mask:1x1", f"input_ids:8x{MAX_LENGTH},attention_mask:8x{MAX_LENGTH}"),
        "image_encoder": (f"image:1x{IMAGE_SIZE}x{IMAGE_SIZE}x3", f"image:8x{IMAGE_SIZE}x{IMAGE_SIZE}x3"),
        "audio_encoder": (f"audio:1x{WINDOW}", f"audio:8x{WINDOW}"),
    }
    e = bundle.encoder("image").embedding_dim
    expected["fusion"] = (f"text:1x{e},image:1x{e},audio:1x{e},presence:1x3", f"text:8x{e},image:8x{e},audio:8x{e},presence:8x3")
    for name, (low, high) in expected.items():
        options = tensorrt_config(bundle.components[name], "fp32", cache_root=tmp_path).options()
        assert (options["trt_profile_min_shapes"], options["trt_profile_max_shapes"]) == (low, high), name
        assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "True"
        assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"]
        assert options["trt_engine_cache_path"].startswith(str(tmp_path / "ort-tensorrt" / f"{name}.fp32."))
        assert (options["trt_fp16_enable"], options["trt_int8_enable"]) == ("False", "False")
    text = tensorrt_config(bundle.components["text_encoder"], "fp32").options()
    assert text["trt_profile_opt_shapes"] == f"input_ids:1x{MAX_LENGTH},attention_mask:1x{MAX_LENGTH}"


def test_precision_flags_follow_the_variant(bundle, tmp_path):
    image = bundle.encoder("image")
    image = with_variant(with_variant(with_variant(image, "fp16", "fp16", "fp16"), "int8", "int8", "qdq-static"),
                         "int8-dynamic", "int8", "dynamic")  # fmt: skip
    flags = {}
    for variant in ("fp32", "fp16", "int8", "int8-dynamic"):
        options = tensorrt_config(image, variant, cache_root=tmp_path).options()
        flags[variant] = (options["trt_fp16_enable"], options["trt_int8_enable"])
    assert flags == {"fp32": ("False", "False"), "fp16": ("True", "False"), "int8": ("True", "True"),
                     "int8-dynamic": ("True", "False")}  # fmt: skip  (TensorRT has no dynamic-INT8 kernels)


def test_cache_folder_is_per_variant_content_and_outside_the_bundle(bundle, tmp_path, monkeypatch):
    image = bundle.encoder("image")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    first = tensorrt_config(image, "fp32")
    assert first.cache_dir.parent == tmp_path / "xdg" / "fusionrt" / "ort-tensorrt"
    assert bundle.root not in first.cache_dir.parents  # a read-only bundle still caches
    assert tensorrt_config(image, "fp32") == first  # stable across starts
    changed = replace(image, variants={"fp32": replace(image.variant("fp32"), sha256="f" * 64)})
    assert tensorrt_config(changed, "fp32").cache_dir != first.cache_dir  # a new ONNX file never loads a stale engine


def test_session_providers_carry_the_options(bundle, tmp_path):
    config = tensorrt_config(bundle.fusion, "fp32", cache_root=tmp_path)
    providers = session_providers([TENSORRT, CUDA, CPU], tensorrt=config)
    assert providers[0] == (TENSORRT, {"device_id": "0", **config.options()})
    assert providers[1:] == [(CUDA, {"device_id": "0"}), CPU]
    assert session_providers([CPU], tensorrt=config) == [CPU]


def test_unwritable_cache_is_reported_not_fatal(bundle, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    config = tensorrt_config(bundle.fusion, "fp32", cache_root=blocker)
    assert "cannot create the TensorRT engine cache" in prepare_cache(config)
    assert prepare_cache(tensorrt_config(bundle.fusion, "fp32", cache_root=tmp_path / "ok")) is None


def test_open_engine_on_cpu_ignores_tensorrt_settings(bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    engine = open_engine(bundle, bundle.fusion, "fp32", "ort-cpu")
    assert engine.providers == [CPU] and not (tmp_path / "fusionrt").exists()


def test_io_binding_keeps_what_the_host_does_not_need_on_the_device(bundle):
    """On CPU the "device" is the host, but the path is the one CUDA takes: an encoder's embedding stays
    an OrtValue and feeds the fusion head directly; the answer equals the plain run's."""
    image = bundle.encoder("image")
    frames = np.random.default_rng(0).integers(0, 255, (2, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    plain = OrtEngine(image.variant().path, providers=[CPU], threads=1)
    bound = OrtEngine(image.variant().path, providers=[CPU], threads=1, io_binding=True, host_outputs=())
    kept = bound.run({"image": frames})["embedding"]
    assert not isinstance(kept, np.ndarray) and kept.device_name().lower() == "cpu"
    np.testing.assert_array_equal(kept.numpy(), plain.run({"image": frames})["embedding"])

    head = OrtEngine(bundle.fusion.variant().path, providers=[CPU], threads=1, io_binding=True)
    zeros = np.zeros_like(kept.numpy())
    feeds = {"image": kept, "text": zeros, "audio": zeros, "presence": np.array([[0, 1, 0]] * 2, np.float32)}
    logits = head.run(feeds)["logits"]
    assert isinstance(logits, np.ndarray) and logits.shape == (2, len(LABELS))
    expected = OrtEngine(bundle.fusion.variant().path, providers=[CPU]).run({**feeds, "image": kept.numpy()})["logits"]
    np.testing.assert_allclose(logits, expected, rtol=1e-6)


def test_io_binding_checks_device_inputs_and_output_names(bundle):
    from fusionrt.errors import EngineError

    with pytest.raises(EngineError, match="host_outputs"):
        OrtEngine(bundle.fusion.variant().path, io_binding=True, host_outputs=["nope"])
    image = bundle.encoder("image")
    bound = OrtEngine(image.variant().path, providers=[CPU], io_binding=True, host_outputs=())
    kept = bound.run({"image": np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)})["embedding"]
    with pytest.raises(EngineError, match="input 'image' is an OrtValue float32"):
        bound.run({"image": kept})


def test_profiling_says_which_provider_ran_each_node(bundle, tmp_path):
    engine = OrtEngine(bundle.fusion.variant().path, providers=[CPU], profile_prefix=str(tmp_path / "p"))
    e = bundle.encoder("image").embedding_dim
    engine.run({m: np.ones((1, e), np.float32) for m in ("text", "image", "audio")} | {"presence": np.ones((1, 3), np.float32)})
    events = json.loads(engine.end_profiling().read_text())
    providers = {ev["args"]["provider"] for ev in events if ev.get("cat") == "Node" and "provider" in ev.get("args", {})}
    assert providers == {CPU}
