"""What a TensorRT engine is tied to, so a stale engine is detected and the message says why.

An engine (.plan) only runs on the GPU model and TensorRT version it was built with, for the ONNX
file, precision and shape profiles it was built from. Pure Python: no TensorRT needed here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Mapping

from fusionrt.bundle import Component, TextInput
from fusionrt.errors import EngineError

BATCH_DIM = "batch"


@dataclass(frozen=True)
class Profile:
    """Min/opt/max shape of one input for a TensorRT optimization profile."""

    input: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class ProfileLimits:
    """Bounds for the dynamic dimensions: batch, and the text length (up to the manifest's max_length)."""

    min_batch: int = 1
    opt_batch: int = 1
    max_batch: int = 8
    min_sequence: int = 1


@dataclass(frozen=True)
class EngineFingerprint:
    onnx_sha256: str
    precision: str
    profiles: tuple[Profile, ...]
    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" (Orin), "9.0" (H100/H200)...

    def as_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping) -> EngineFingerprint:
        try:
            profiles = tuple(
                Profile(p["input"], tuple(p["min"]), tuple(p["opt"]), tuple(p["max"])) for p in data["profiles"]
            )
            return cls(
                str(data["onnx_sha256"]), str(data["precision"]), profiles, str(data["tensorrt_version"]),
                str(data["gpu_name"]), str(data["compute_capability"]),
            )  # fmt: skip
        except (KeyError, TypeError) as e:
            raise EngineError(f"engine fingerprint {dict(data)} is incomplete ({e}); rebuild the engine") from e

    @property
    def key(self) -> str:
        """Short stable digest, used in engine file names (<component>.<variant>.<key>.plan)."""
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:16]


def changed_fields(recorded: EngineFingerprint, current: EngineFingerprint) -> dict[str, tuple]:
    """Field -> (recorded value, current value) for every field that differs."""
    a, b = recorded.as_dict(), current.as_dict()
    return {name: (a[name], b[name]) for name in a if a[name] != b[name]}


def check_fingerprint(recorded: EngineFingerprint, current: EngineFingerprint, what: str) -> None:
    """Raise EngineError naming exactly which fields changed since `what` (an engine file) was built."""
    changes = changed_fields(recorded, current)
    if changes:
        detail = "; ".join(f"{name}: built for {old!r}, now {new!r}" for name, (old, new) in changes.items())
        raise EngineError(
            f"engine {what} does not match this machine or bundle ({detail}); rebuild it with "
            "`fusionrt engine BUNDLE --precision ...` on this device"
        )


def profiles_from_manifest(component: Component, limits: ProfileLimits = ProfileLimits()) -> tuple[Profile, ...]:
    """One profile per input of a bundle component: "batch" dims from `limits`, the text length
    from the text input's max_length (opt = max = max_length, as the host pads to it), fixed dims as is."""
    max_length = component.input.max_length if isinstance(component.input, TextInput) else None
    profiles = []
    for spec in component.inputs:
        low, opt, high = [], [], []
        for axis, dim in enumerate(spec.shape):
            if isinstance(dim, int):
                bounds = (dim, dim, dim)
            elif dim == BATCH_DIM:
                bounds = (limits.min_batch, limits.opt_batch, limits.max_batch)
            elif isinstance(max_length, int) and spec.dtype.startswith("int"):
                bounds = (min(limits.min_sequence, max_length), max_length, max_length)
            else:
                raise EngineError(
                    f"component {component.name}: input {spec.name} axis {axis} is dynamic ({dim!r}) and the manifest "
                    "gives no bound for it (only 'batch' and the text length from preprocessing.max_length are known)"
                )
            low.append(bounds[0])
            opt.append(bounds[1])
            high.append(bounds[2])
        profiles.append(Profile(spec.name, tuple(low), tuple(opt), tuple(high)))
    return tuple(profiles)


def ort_tensorrt_options(fingerprint: EngineFingerprint, cache_dir: str) -> dict[str, str]:
    """Provider options for ONNX Runtime's TensorRT execution provider, from the same fingerprint:
    engine and timing caches in `cache_dir`, precision flags and explicit shape profiles."""

    def shapes(which: str) -> str:
        return ",".join(f"{p.input}:{'x'.join(str(d) for d in getattr(p, which))}" for p in fingerprint.profiles)

    return {
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": cache_dir,
        "trt_engine_cache_prefix": fingerprint.key,
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": cache_dir,
        "trt_fp16_enable": str(fingerprint.precision in ("fp16", "int8")),
        "trt_int8_enable": str(fingerprint.precision == "int8"),
        "trt_profile_min_shapes": shapes("min"),
        "trt_profile_opt_shapes": shapes("opt"),
        "trt_profile_max_shapes": shapes("max"),
    }
