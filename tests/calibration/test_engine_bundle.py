"""`fusionrt engine`'s bookkeeping on the CPU: plans, the timing cache and INT8 calibration caches go
into the bundle through one edit transaction. TensorRT's builder and the CUDA runtime are stood in
for (a "plan" here names the ONNX file it was built from); what is tested is what engine_bundle
records and that a failed build leaves the bundle as it was."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import pytest
from calibration_models import Items

from fusionrt.bundle import load
from fusionrt.calibration import CalibrationSet, engine_bundle
from fusionrt.errors import EngineError

tensorrt_module = importlib.import_module("fusionrt.calibration.tensorrt")


@pytest.fixture
def builds(monkeypatch):
    """Stand-in TensorRT 10.3 on an Orin; returns the list of builds, whose `fail_at` makes one raise."""
    properties = SimpleNamespace(name=b"Orin", major=8, minor=7)
    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0"))
    monkeypatch.setitem(sys.modules, "cuda", SimpleNamespace(cudart=SimpleNamespace(
        cudaGetDeviceProperties=lambda device: (0, properties))))
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    log = SimpleNamespace(calls=[], fail_at=None)

    def build(onnx_path, plan_path, fingerprint, *, calibration_feeds=(), calibration_cache=None, timing_cache=None):
        if len(log.calls) == log.fail_at:
            raise EngineError(f"TensorRT failed to build an engine from {onnx_path.name}")
        log.calls.append((onnx_path.name, plan_path.name, len(calibration_feeds)))
        plan_path.write_text(str(onnx_path))
        old = timing_cache.read_bytes() if timing_cache.is_file() else b""
        timing_cache.write_bytes(old + b"+")
        if calibration_feeds:
            calibration_cache.write_bytes(b"ranges of " + onnx_path.name.encode())
        return plan_path

    monkeypatch.setattr(tensorrt_module, "build_engine", build)
    return log


def test_plans_and_caches_are_recorded_in_one_edit(bundle_dir, bundle, builds):
    calib = CalibrationSet.from_data(bundle, Items(8, seed=1))
    built = engine_bundle(bundle_dir, "int8", calib=calib, progress=lambda line: None)
    reloaded = load(bundle_dir)  # every hash verified, plans and caches included
    assert set(built) == set(reloaded.components)
    for name, component in reloaded.components.items():
        plan = component.engine("int8")
        assert plan.source_variant == "fp32" and plan.fingerprint["gpu_name"] == "Orin"
        assert plan.path.read_text().endswith(f"{name}.fp32.onnx")
        assert (bundle_dir / f"{name}.int8.calibration.cache").read_bytes() == f"ranges of {name}.fp32.onnx".encode()
    assert all(feeds > 0 for _, _, feeds in builds.calls)
    files = reloaded.manifest["files"]
    assert "tensorrt.timing.cache" in files and "text_encoder.int8.calibration.cache" in files
    assert (bundle_dir / "tensorrt.timing.cache").read_bytes() == b"+" * 4  # one cache, carried from build to build

    engine_bundle(bundle_dir, "fp16", components=("fusion",), progress=lambda line: None)
    again = load(bundle_dir)
    assert set(again.components["fusion"].engines) == {"int8", "fp16"}
    assert (bundle_dir / "tensorrt.timing.cache").read_bytes() == b"+" * 5  # the bundle's cache was reused


def test_a_failed_build_leaves_the_bundle_as_it_was(bundle_dir, builds):
    before = {p.relative_to(bundle_dir): p.read_bytes() for p in bundle_dir.rglob("*") if p.is_file()}
    builds.fail_at = 2
    with pytest.raises(EngineError, match="failed to build"):
        engine_bundle(bundle_dir, "fp16", progress=lambda line: None)
    assert len(builds.calls) == 2  # two plans were built (into the staging) before the third failed
    assert {p.relative_to(bundle_dir): p.read_bytes() for p in bundle_dir.rglob("*") if p.is_file()} == before
    assert not any(c.engines for c in load(bundle_dir).components.values())
    assert sorted(p.name for p in bundle_dir.parent.iterdir()) == [bundle_dir.name]


def test_tensorrt_builds_int8_only_from_a_variant_quantized_for_it():
    from types import SimpleNamespace

    from fusionrt.calibration.tensorrt import _tensorrt_qdq

    variant = lambda target, **info: SimpleNamespace(target=target, info=info)  # noqa: E731
    assert _tensorrt_qdq(variant("tensorrt"))
    assert not _tensorrt_qdq(variant("x86-vnni", format="qdq", activations="uint8"))  # u8 activations: not for TensorRT
    assert _tensorrt_qdq(variant(None, format="qdq", activations="int8"))  # a bundle from before targets
    assert not _tensorrt_qdq(variant(None, format="qdq", activations="uint8")) and not _tensorrt_qdq(None)
