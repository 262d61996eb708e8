"""`fusionrt engine`: TensorRT engines from a bundle's ONNX files, keyed by an `EngineFingerprint`.

TensorRT and the CUDA runtime bindings are imported only inside these functions, so a CPU machine
imports the package fine and gets EngineError("TensorRT is not available: <reason>") when it asks
for an engine. INT8 comes from the bundle's QDQ "int8" variant when there is one (explicit
quantization), else from an entropy calibration of the FP32 graph with a calibration cache file.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fusionrt.calibration.engine_fingerprint import (
    EngineFingerprint,
    ProfileLimits,
    check_fingerprint,
    profiles_from_manifest,
)
from fusionrt.errors import EngineError

PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_BYTES = 2 << 30


def import_tensorrt():
    """The tensorrt module, or EngineError saying why it cannot be used here."""
    try:
        import tensorrt
    except ImportError as e:
        raise EngineError(
            f"TensorRT is not available: {e}; install fusionrt[tensorrt] on a CUDA machine, or on Jetson use "
            "JetPack's python3-libnvinfer from a venv created with --system-site-packages"
        ) from e
    return tensorrt


def gpu_identity() -> tuple[str, str]:
    """(GPU name, compute capability "major.minor") of device 0, from the CUDA runtime or nvidia-smi."""
    try:
        from cuda import cudart

        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
            return name.strip("\x00 "), f"{props.major}.{props.minor}"
    except ImportError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.splitlines()  # fmt: skip
    except (OSError, subprocess.SubprocessError) as e:
        raise EngineError(f"TensorRT is not available: no CUDA GPU found (cuda-python missing, nvidia-smi: {e})") from e
    if not out:
        raise EngineError("TensorRT is not available: nvidia-smi lists no GPU")
    name, capability = (part.strip() for part in out[0].split(","))
    return name, capability


def current_fingerprint(onnx_path: Path, sha256: str, precision: str, profiles) -> EngineFingerprint:
    trt = import_tensorrt()
    name, capability = gpu_identity()
    return EngineFingerprint(sha256, precision, tuple(profiles), trt.__version__, name, capability)


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
    from cuda import cudart

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
    """`fusionrt engine`: build one engine per component, record them (with fingerprints) in the manifest."""
    import copy

    from fusionrt.bundle import load, write_manifest

    if precision not in PRECISIONS:
        raise EngineError(f"precision {precision!r}; expected one of {list(PRECISIONS)}")
    import_tensorrt()
    bundle = load(bundle_path)
    manifest = copy.deepcopy(bundle.manifest)
    timing_cache = bundle.root / "tensorrt.timing.cache"
    built = {}
    for name in components or bundle.components:
        component = bundle.components[name]
        source = "int8" if precision == "int8" and "int8" in component.variants else "fp32"
        variant = component.variants[source]
        fingerprint = current_fingerprint(variant.path, variant.sha256, precision, profiles_from_manifest(component, limits))
        plan = bundle.root / plan_name(name, precision, fingerprint)
        feeds = calib.feeds(name) if precision == "int8" and source == "fp32" and calib is not None else ()
        cache = bundle.root / f"{name}.int8.calibration.cache" if precision == "int8" and source == "fp32" else None
        progress(f"{name}: building {plan.name} from {variant.path.name}")
        build_engine(variant.path, plan, fingerprint, calibration_feeds=feeds, calibration_cache=cache,
                     timing_cache=timing_cache)
        engines = manifest["components"][name].setdefault("engines", {})
        engines[precision] = {"file": plan.name, "source_variant": source, "fingerprint": fingerprint.as_dict()}
        built[name] = engines[precision]
    write_manifest(bundle.root, manifest)
    return built


def check_engine(bundle, component: str, precision: str, limits: ProfileLimits = ProfileLimits()) -> Path:
    """The recorded engine file of a component, after checking its fingerprint against this machine
    and the bundle; EngineError names the fields that changed when it must be rebuilt."""
    entry = (bundle.manifest["components"][component].get("engines") or {}).get(precision)
    if entry is None:
        raise EngineError(f"bundle {bundle.root} has no {precision} engine for {component}; run `fusionrt engine` first")
    recorded = EngineFingerprint.from_dict(entry["fingerprint"])
    variant = bundle.components[component].variants[entry["source_variant"]]
    profiles = profiles_from_manifest(bundle.components[component], limits)
    current = current_fingerprint(variant.path, variant.sha256, precision, profiles)
    check_fingerprint(recorded, current, f"{bundle.root / entry['file']}")
    return bundle.root / entry["file"]
