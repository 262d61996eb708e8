import logging

import numpy as np
import pytest
from runtime_models import audio_encoder

from fusionrt.bundle import TensorSpec
from fusionrt.errors import ConfigError, EngineError
from fusionrt.runtime.backend import Backend, Engine, open_engine
from fusionrt.runtime.engine import CPU, CUDA, OrtEngine, fallback_reason, resolve_providers


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    return audio_encoder(tmp_path_factory.mktemp("engine") / "audio.onnx")


def test_default_priority_runs_on_the_best_available_provider(model_path):
    import onnxruntime as ort

    engine = OrtEngine(model_path, threads=1)
    assert engine.providers[0] == resolve_providers(None)[0]
    assert set(engine.providers) <= set(ort.get_available_providers())
    assert engine.fallback is None
    out = engine.run({"audio": np.zeros((2, 200), np.float32)})
    assert out["embedding"].shape[0] == 2


def test_fallback_is_loud_and_can_be_fatal(model_path, caplog):
    import onnxruntime as ort

    if CUDA in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: requesting it does not fall back")
    with caplog.at_level(logging.WARNING, logger="fusionrt.runtime"):
        engine = OrtEngine(model_path, providers=[CUDA, CPU])
    assert engine.providers == [CPU]
    assert "not in this onnxruntime build" in engine.fallback
    assert any("PROVIDER FALLBACK" in r.getMessage() and CUDA in r.getMessage() for r in caplog.records)
    with pytest.raises(EngineError, match=r"running on CPUExecutionProvider, not CUDAExecutionProvider.*fail-on-fallback"):
        OrtEngine(model_path, providers=[CUDA, CPU], fail_on_fallback=True)
    assert fallback_reason([CPU], [CPU]) is None


def test_bad_names_and_files_are_named(model_path, tmp_path):
    with pytest.raises(EngineError, match="'cuda' is not a provider name"):
        OrtEngine(model_path, providers=["cuda"])
    with pytest.raises(EngineError, match="does not exist"):
        OrtEngine(tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(EngineError, match="could not load"):
        OrtEngine(tmp_path / "junk.onnx")
    with pytest.raises(EngineError, match=r"missing inputs \['audio'\]"):
        OrtEngine(model_path).run({})


def test_wrong_shape_or_dtype_is_named_before_onnxruntime_sees_it(model_path):
    engine = OrtEngine(model_path)
    with pytest.raises(EngineError, match=r"input 'audio' is float32 \(2, 16000\); the model expects float32 \[\?, 200\]"):
        engine.run({"audio": np.zeros((2, 16000), np.float32)})
    with pytest.raises(EngineError, match=r"input 'audio' is float64"):
        engine.run({"audio": np.zeros((1, 200))})


def test_the_engine_reports_its_io_and_refuses_to_run_once_closed(model_path):
    engine = OrtEngine(model_path, threads=1)
    assert isinstance(engine, Engine)  # the protocol's members, all of them
    assert engine.input_specs() == (TensorSpec("audio", "float32", ("batch", 200)),)
    assert engine.output_specs() == (TensorSpec("embedding", "float32", ("batch", 4)),)
    providers = engine.providers
    engine.close()
    assert engine.providers == providers  # still says where it ran
    with pytest.raises(EngineError, match="audio.onnx: the engine is closed"):
        engine.run({"audio": np.zeros((1, 200), np.float32)})
    engine.close()  # closing twice is harmless


def test_one_backend_enumeration_pins_providers(tmp_path):
    from runtime_models import write_bundle

    from fusionrt.bundle import load

    assert [b.value for b in Backend] == ["ort", "ort-cpu", "ort-cuda", "ort-tensorrt", "torch", "tensorrt"]
    assert Backend.parse("ort-cpu") is Backend.ORT_CPU and Backend.ORT_CPU.providers == (CPU,)
    with pytest.raises(ConfigError, match="backend 'onnx'; expected one of"):
        Backend.parse("onnx")
    bundle = load(write_bundle(tmp_path / "b", modalities=("image", "audio")))
    engine = open_engine(bundle, bundle.fusion, "fp32", Backend.ORT_CPU, threads=1)
    assert engine.providers == [CPU]
    engine.close()
    with pytest.raises(ConfigError, match="backend ort-cpu runs on CPUExecutionProvider"):
        open_engine(bundle, bundle.fusion, "fp32", "ort-cpu", providers=[CUDA])
