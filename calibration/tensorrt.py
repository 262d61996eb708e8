"""`fusionrt engine`: TensorRT engines from a bundle's ONNX files, keyed by an `EngineFingerprint`.

TensorRT and the CUDA runtime bindings are imported only inside these functions, so a CPU machine
imports the package fine and gets EngineError("TensorRT is not available: <reason>") when it asks
for an engine. INT8 comes from the bundle's QDQ "int8" variant when it was made for TensorRT
(`fusionrt quantize --target tensorrt`: symmetric s8 activations and weights, explicit
quantization; a CPU target's u8 activations are not what TensorRT takes), else from an entropy
calibration of the FP32 graph with a calibration cache file.
Checking a recorded engine against this machine (`check_engine`) and running it (`TensorRTEngine`)
live in fusionrt.runtime.tensorrt_engine.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fusionrt.bundle import PRECISIONS
from fusionrt.errors import EngineError
from fusionrt.runtime.engine_fingerprint import EngineFingerprint, ProfileLimits, profiles_from_manifest
from fusionrt.runtime.tensorrt_engine import current_fingerprint, import_cudart, import_tensorrt

WORKSPACE_BYTES = 2 << 30
TIMING_CACHE = "tensorrt.timing.cache"


def plan_name(component: str, variant: str, fingerprint: EngineFingerprint) -> str:
    gpu = re.sub(r"[^a-z0-9]+", "-", fingerprint.gpu_name.lower()).strip("-")
    return f"{component}.{variant}.{gpu}-sm{fingerprint.compute_capability.replace('.', '')}.plan"


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    fingerprint: EngineFingerprint,
    *,
    calibration_feeds: Sequence[dict[str, np.ndarray]] = (),
    calibration_cache: Path | None = None,
    timing_cache: Path | None = None,
) -> Path:
    """ONNX -> serialized TensorRT engine at `plan_path`, as the fingerprint's precision and profiles say."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    explicit_batch = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    network = builder.create_network(0 if explicit_batch is None else 1 << int(explicit_batch))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if fingerprint.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for p in fingerprint.profiles:
        profile.set_shape(p.input, p.min, p.opt, p.max)
    config.add_optimization_profile(profile)
    if fingerprint.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        if calibration_feeds or (calibration_cache and calibration_cache.is_file()):
            config.int8_calibrator = entropy_calibrator(trt, calibration_feeds, calibration_cache)
            config.set_calibration_profile(profile)
    cache = None
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f"TensorRT failed to build an engine from {onnx_path.name} ({fingerprint.precision}); see its log above"
        )
    plan_path.write_bytes(bytes(serialized))
    if cache is not None:
        timing_cache.write_bytes(bytes(cache.serialize()))
    return plan_path


def entropy_calibrator(trt, feeds: Sequence[dict[str, np.ndarray]], cache_file: Path | None):
    """A trt.IInt8EntropyCalibrator2 over equal-sized batches; reads/writes `cache_file`."""
    cudart = import_cudart()

    batch_size = len(next(iter(feeds[0].values()))) if feeds else 1
    batches = [f for f in feeds if len(next(iter(f.values()))) == batch_size]

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.position = 0
            self.buffers = {}
            for name, array in (batches[0].items() if batches else ()):
                err, pointer = cudart.cudaMalloc(array.nbytes)
                if int(err) != 0:
                    raise EngineError(f"cudaMalloc of {array.nbytes} bytes for calibration input {name} failed: {err}")
                self.buffers[name] = pointer

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            if self.position >= len(batches):
                return None
            batch = batches[self.position]
            self.position += 1
            for name in names:
                array = np.ascontiguousarray(batch[name])
                cudart.cudaMemcpy(self.buffers[name], array.ctypes.data, array.nbytes,
                                  cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
            return [int(self.buffers[name]) for name in names]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file is not None and cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            if cache_file is not None:
                cache_file.write_bytes(bytes(cache))

    return EntropyCalibrator()


def engine_bundle(
    bundle_path,
    precision: str,
    *,
    components: Sequence[str] | None = None,
    limits: ProfileLimits = ProfileLimits(),
    calib=None,
    progress: Callable[[str], None] = print,
) -> dict:
    """`fusionrt engine`: build one engine per component and record them (with fingerprints) in the manifest.

    Plans, the timing cache and INT8 calibration caches are written into an edit transaction's
    staging, so a failed or killed build leaves the bundle as it was.
    """
    from fusionrt.bundle import edit, load

    if precision not in PRECISIONS:
        raise EngineError(f"precision {precision!r}; expected one of {list(PRECISIONS)}")
    import_tensorrt()
    bundle = load(bundle_path)
    built = {}
    with edit(bundle) as change:
        timing_cache = _staged_copy(change, bundle.root, TIMING_CACHE)
        for name in components or bundle.components:
            component = bundle.components[name]
            source = "int8" if precision == "int8" and _tensorrt_qdq(component.variants.get("int8")) else "fp32"
            variant = component.variants[source]
            fingerprint = current_fingerprint(variant.path, variant.sha256, precision,
                                              profiles_from_manifest(component, limits))
            plan = plan_name(name, precision, fingerprint)
            calibrating = precision == "int8" and source == "fp32"
            feeds = calib.feeds(name) if calibrating and calib is not None else ()
            cache_name = f"{name}.int8.calibration.cache"
            cache = _staged_copy(change, bundle.root, cache_name) if calibrating else None
            progress(f"{name}: building {plan} from {variant.path.name}")
            build_engine(variant.path, change.stage(plan), fingerprint, calibration_feeds=feeds,
                         calibration_cache=cache, timing_cache=timing_cache)
            if cache is not None and not cache.is_file():  # nothing calibrated (no feeds): no cache to keep
                change.remove(cache_name)
            engines = change.manifest["components"][name].setdefault("engines", {})
            engines[precision] = {"file": plan, "source_variant": source, "fingerprint": fingerprint.as_dict()}
            built[name] = engines[precision]
        if not timing_cache.is_file():  # no component built
            change.remove(TIMING_CACHE)
    return built


def _staged_copy(change, root: Path, relative: str) -> Path:
    """Where the new version of `relative` is staged, starting as a copy of the bundle's, if any."""
    if (root / relative).is_file():
        return change.copy_in(root / relative, relative)
    return change.stage(relative)


def _tensorrt_qdq(variant) -> bool:
    """Whether an int8 variant is a QDQ graph TensorRT takes: made for --target tensorrt, or (bundles
    older than targets) one whose manifest says nothing of its target or activations but int8."""
    if variant is None:
        return False
    if variant.target is not None:
        return variant.target == "tensorrt"
    return variant.info.get("format") == "qdq" and variant.info.get("activations") == "int8"
