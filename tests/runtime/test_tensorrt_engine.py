"""The tensorrt backend: engines recorded in the manifest, checked against this machine before they
are opened, and run through the pipeline. Without TensorRT the errors are one line; the run path is
exercised on the CPU with stand-in `tensorrt` and `cuda` modules whose "engine" is the ONNX file run
by ONNX Runtime on host memory posing as device memory."""

from __future__ import annotations

import copy
import ctypes
import dataclasses
import importlib.util
import re
import subprocess
import sys
import types

import numpy as np
import pytest
from runtime_models import ListSource, camera_items, write_bundle

from fusionrt.bundle import TensorSpec, load, write_manifest
from fusionrt.errors import ConfigError, EngineError
from fusionrt.runtime.engine_fingerprint import EngineFingerprint, changed_fields, profiles_from_manifest
from fusionrt.runtime.pipeline import Pipeline
from fusionrt.runtime.sources import Replay
from fusionrt.runtime.tensorrt_engine import TensorRTEngine, check_engine

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
no_tensorrt = pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
RECORDED = {"tensorrt_version": "10.3.0", "gpu_name": "Orin", "compute_capability": "8.7"}


def camera(count=4):
    return {"image": ListSource("image", camera_items(count, 0.1), replay=Replay.DETERMINISTIC)}


def record_engines(root, precision="fp16"):
    """Record a `precision` engine per component as `fusionrt engine` would on an Orin; the plan file
    holds the path of the ONNX file it stands for (what the fake TensorRT below "deserializes")."""
    bundle = load(root)
    manifest = copy.deepcopy(bundle.manifest)
    for name, component in bundle.components.items():
        variant = component.variants["fp32"]
        fingerprint = EngineFingerprint(variant.sha256, precision, profiles_from_manifest(component), **RECORDED)
        plan = f"{name}.{precision}.orin-sm87.plan"
        (root / plan).write_text(str(variant.path.resolve()))
        manifest["components"][name]["engines"] = {
            precision: {"file": plan, "source_variant": "fp32", "fingerprint": fingerprint.as_dict()}
        }
    write_manifest(root, manifest)
    return root


@pytest.fixture(scope="module")
def plain_bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("plain") / "b")


@pytest.fixture(scope="module")
def engined_bundle(tmp_path_factory):
    return record_engines(write_bundle(tmp_path_factory.mktemp("engined") / "b"))


# -- stand-ins for tensorrt and cuda-python -----------------------------------------------------------


class FakeCudart:
    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = 1
        cudaMemcpyDeviceToHost = 2

    def __init__(self, gpu=("Orin", 8, 7)):
        self.memory, self.mallocs, self.fail, self.gpu = {}, 0, None, gpu

    def _result(self, call, *values):
        return (1 if call == self.fail else 0, *values)

    def cudaGetDeviceProperties(self, device):
        name, major, minor = self.gpu
        return 0, types.SimpleNamespace(name=name.encode(), major=major, minor=minor)

    def cudaMalloc(self, nbytes):
        buffer = np.zeros(nbytes, np.uint8)
        self.memory[buffer.ctypes.data] = buffer
        self.mallocs += 1
        return self._result("cudaMalloc", buffer.ctypes.data)

    def cudaFree(self, pointer):
        self.memory.pop(pointer)
        return self._result("cudaFree")

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        ctypes.memmove(dst, src, nbytes)
        return self._result("cudaMemcpyAsync")

    def cudaStreamCreate(self):
        return self._result("cudaStreamCreate", 7)

    def cudaStreamSynchronize(self, stream):
        return self._result("cudaStreamSynchronize")

    def cudaStreamDestroy(self, stream):
        return (0,)


def device_array(pointer, dtype, shape):
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_uint8 * nbytes).from_address(pointer), dtype).reshape(shape)


class FakeContext:
    def __init__(self, session):
        self.session, self.shapes, self.addresses = session, {}, {}

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def set_tensor_address(self, name, pointer):
        self.addresses[name] = pointer

    def get_tensor_shape(self, name):
        (shape,) = [o.shape for o in self.session.get_outputs() if o.name == name]
        batch = next(iter(self.shapes.values()))[0]
        return [d if isinstance(d, int) else batch for d in shape]

    def execute_async_v3(self, stream):
        dtypes = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(int64)": np.int64}
        feeds = {i.name: device_array(self.addresses[i.name], dtypes[i.type], self.shapes[i.name]).copy()
                 for i in self.session.get_inputs()}  # fmt: skip
        for output, value in zip(self.session.get_outputs(), self.session.run(None, feeds)):
            value = np.ascontiguousarray(value, np.float32)
            ctypes.memmove(self.addresses[output.name], value.ctypes.data, value.nbytes)
        return True


def fake_tensorrt(version="10.3.0"):
    import onnxruntime as ort

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, data):
            session = ort.InferenceSession(data.decode(), providers=["CPUExecutionProvider"])
            io = {arg.name: arg for arg in [*session.get_inputs(), *session.get_outputs()]}
            dtypes = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(int64)": np.int64}
            return types.SimpleNamespace(  # TensorRT reports a dynamic dimension as -1
                create_execution_context=lambda: FakeContext(session),
                get_tensor_dtype=lambda name: dtypes[io[name].type],
                get_tensor_shape=lambda name: [d if isinstance(d, int) else -1 for d in io[name].shape],
            )

    logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    return types.SimpleNamespace(__version__=version, Logger=logger, Runtime=Runtime, nptype=np.dtype)


@pytest.fixture
def fake_gpu(monkeypatch):
    """Install fake tensorrt + cuda modules; returns a function to change the TensorRT version / GPU."""
    cudart = FakeCudart()

    def install(version="10.3.0", gpu=("Orin", 8, 7)):
        cudart.gpu = gpu
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version))
        monkeypatch.setitem(sys.modules, "cuda", types.SimpleNamespace(cudart=cudart))
        monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # an old cuda-python: `from cuda import cudart`
        return cudart

    return install


# -- without TensorRT -------------------------------------------------------------------------------


def test_a_bundle_without_engines_says_how_to_build_them(plain_bundle):
    with pytest.raises(EngineError, match=r"has no fp16 TensorRT engine for image_encoder; build it on this device "
                                          r"with `fusionrt engine .*b --precision fp16`"):  # fmt: skip
        Pipeline.from_bundle(plain_bundle, camera(), backend="tensorrt")


def test_an_engine_of_another_precision_is_not_taken(engined_bundle):
    with pytest.raises(EngineError, match=r"no int8 TensorRT engine for image_encoder.* --precision int8`"):
        Pipeline.from_bundle(engined_bundle, camera(), backend="tensorrt", precision="int8")
    with pytest.raises(ConfigError, match="precision 'bf16'"):
        Pipeline.from_bundle(engined_bundle, camera(), backend="tensorrt", precision="bf16")
    with pytest.raises(ConfigError, match="tensorrt backend"):
        Pipeline.from_bundle(engined_bundle, camera(), backend="tensorrt", variant="fp32")


@no_tensorrt
def test_without_tensorrt_the_pipeline_says_so(engined_bundle):
    with pytest.raises(EngineError, match="^TensorRT is not available: "):
        Pipeline.from_bundle(engined_bundle, camera(), backend="tensorrt")
    with pytest.raises(EngineError, match="^TensorRT is not available: "):
        TensorRTEngine(engined_bundle / "fusion.fp16.orin-sm87.plan", component=load(engined_bundle).fusion)


@no_tensorrt
@pytest.mark.parametrize(("extra", "message"), [
    ([], "TensorRT is not available: "),
    (["--precision", "int8"], "bundle .* has no int8 TensorRT engine for image_encoder; build it on this device"),
])  # fmt: skip
def test_realtime_infer_without_tensorrt_fails_in_one_line(engined_bundle, extra, message):
    proc = subprocess.run(
        [sys.executable, "-m", "fusionrt.realtime_cli", "--bundle", str(engined_bundle), "--camera", "test://digits",
         "--backend", "tensorrt", "--quiet", *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert re.match(f"realtime-infer: error: {message}", proc.stderr) and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_tensorrt_without_cuda_python_says_what_to_install(engined_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt())
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    with pytest.raises(EngineError, match=r"^TensorRT is not available: the TensorRT backend needs cuda-python "
                                          r"\(pip install cuda-python\)$"):  # fmt: skip
        TensorRTEngine(engined_bundle / "fusion.fp16.orin-sm87.plan", component=load(engined_bundle).fusion)


# -- fingerprints -----------------------------------------------------------------------------------------


def test_an_engine_from_another_gpu_and_tensorrt_names_the_changed_fields(engined_bundle, fake_gpu):
    fake_gpu(version="10.4.0", gpu=("NVIDIA H200", 9, 0))
    with pytest.raises(EngineError) as error:
        Pipeline.from_bundle(engined_bundle, camera(), backend="tensorrt")
    message = str(error.value)
    assert "image_encoder.fp16.orin-sm87.plan does not match this machine or bundle" in message
    assert "tensorrt_version: built for '10.3.0', now '10.4.0'" in message
    assert "gpu_name: built for 'Orin', now 'NVIDIA H200'" in message
    assert "compute_capability: built for '8.7', now '9.0'" in message
    assert "onnx_sha256" not in message and "profiles" not in message and "rebuild it" in message


def test_a_changed_onnx_file_is_named_alone(engined_bundle, fake_gpu, tmp_path):
    fake_gpu()
    bundle = load(engined_bundle)
    plan = bundle.fusion.engines["fp16"]  # the typed EnginePlan the manifest's entry was parsed into
    recorded = EngineFingerprint.from_dict(plan.fingerprint)
    assert check_engine(bundle, "fusion", "fp16") == engined_bundle / "fusion.fp16.orin-sm87.plan" == plan.path
    stale = EngineFingerprint.from_dict({**plan.fingerprint, "onnx_sha256": "0" * 64})
    assert list(changed_fields(stale, recorded)) == ["onnx_sha256"]
    stale_plan = dataclasses.replace(plan, fingerprint=stale.as_dict())
    fusion = dataclasses.replace(bundle.fusion, engines={"fp16": stale_plan})
    bundle = dataclasses.replace(bundle, components={**bundle.components, "fusion": fusion})
    with pytest.raises(EngineError, match=r"\(onnx_sha256: built for '0000"):
        check_engine(bundle, "fusion", "fp16")


# -- the run path, on stand-ins -----------------------------------------------------------------------------


def test_the_tensorrt_backend_answers_like_onnxruntime(engined_bundle, fake_gpu):
    cudart = fake_gpu()
    results = {}
    for backend in ("ort", "tensorrt"):
        found = []
        pipeline = Pipeline.from_bundle(engined_bundle, camera(6), backend=backend)
        pipeline.run(on_result=found.append)
        results[backend] = found
    assert cudart.mallocs > 0 and not cudart.memory  # the pipeline closed its engines: every buffer freed
    assert len(results["tensorrt"]) == 6
    for ort_result, trt_result in zip(results["ort"], results["tensorrt"]):
        np.testing.assert_allclose(trt_result.outputs, ort_result.outputs, rtol=1e-6, atol=1e-6)
        assert trt_result.top_label == ort_result.top_label
    assert pipeline.encoders[next(iter(pipeline.encoders))].engine.providers == ["tensorrt"]
    assert pipeline.encoders[next(iter(pipeline.encoders))].variant == "tensorrt-fp16"


def test_device_buffers_are_reused_grown_and_every_cuda_call_checked(engined_bundle, fake_gpu):
    cudart = fake_gpu()
    bundle = load(engined_bundle)
    engine = TensorRTEngine(engined_bundle / "image_encoder.fp16.orin-sm87.plan", component=bundle.encoder("image"))
    assert (engine.input_names, engine.output_names, engine.fallback) == (["image"], ["embedding"], None)
    assert engine.input_specs() == (TensorSpec("image", "uint8", ("?", 8, 8, 3)),)  # as the engine reports it
    assert engine.output_specs() == (TensorSpec("embedding", "float32", ("?", 4)),)
    frames = np.stack([item[1] for item in camera_items(2, 0.1)])
    one = engine.run({"image": frames[:1]})["embedding"]
    assert one.shape[0] == 1 and one.dtype == np.float32 and cudart.mallocs == 2
    engine.run({"image": frames[:1]})
    assert cudart.mallocs == 2  # same sizes: the buffers are reused
    two = engine.run({"image": frames})["embedding"]
    assert cudart.mallocs == 4 and len(cudart.memory) == 2  # grown: the smaller ones were freed
    np.testing.assert_array_equal(two[:1], one)
    with pytest.raises(EngineError, match="input 'image' is float32; the engine expects uint8"):
        engine.run({"image": frames.astype(np.float32)})
    with pytest.raises(EngineError, match="missing inputs"):
        engine.run({})
    cudart.fail = "cudaStreamSynchronize"
    with pytest.raises(EngineError, match=r"^image_encoder \(tensorrt\): cudaStreamSynchronize failed"):
        engine.run({"image": frames})
    cudart.fail = None
    engine.close()
    assert not cudart.memory
    with pytest.raises(EngineError, match=r"^image_encoder \(tensorrt\): the engine is closed"):
        engine.run({"image": frames})


# -- on a machine with TensorRT and an NVIDIA GPU ----------------------------------------------------------


def test_a_real_engine_answers_like_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT and an NVIDIA GPU")
    from fusionrt.calibration import engine_bundle

    root = write_bundle(tmp_path / "b")
    engine_bundle(root, "fp16", progress=lambda line: None)
    results = {}
    for backend in ("ort", "tensorrt"):
        found = []
        Pipeline.from_bundle(root, camera(6), backend=backend).run(on_result=found.append)
        results[backend] = found
    for ort_result, trt_result in zip(results["ort"], results["tensorrt"], strict=True):
        np.testing.assert_allclose(trt_result.outputs, ort_result.outputs, rtol=2e-2, atol=2e-2)
