"""ONNX Runtime's GPU providers configured from the bundle, so a Jetson does not rebuild an FP32
TensorRT engine at every start.

TensorRT provider (`OrtTensorrtConfig`, built by `tensorrt_config(component, variant)`):
- engine and timing caches in a per-variant folder of the user's cache, not inside the bundle
  (a bundle may sit on a read-only mount or be shared between machines):
  `$XDG_CACHE_HOME/fusionrt/ort-tensorrt/<component>.<variant>.<key>` (default `~/.cache/...`),
  the key a digest of the variant's ONNX sha256 (from the manifest), its precision, the shape
  profiles, the onnxruntime and TensorRT versions and the L4T release, so a changed bundle or an
  upgraded JetPack never loads a stale engine (ONNX Runtime itself adds the GPU's sm_XY to the
  file names, not the TensorRT version);
- FP16 for an fp16 variant; INT8 (+FP16 fallback) for an int8 variant quantized as static QDQ
  (TensorRT's explicit quantization; dynamic INT8 has no TensorRT kernels, ORT hands it to CUDA/CPU);
- explicit min/opt/max shape profiles for the dynamic inputs, from the manifest
  (`engine_fingerprint.profiles_from_manifest`: batch 1..8, the text length up to max_length).

`session_providers` turns the requested provider names and these configs into what
`onnxruntime.InferenceSession(providers=...)` takes; pure, so it is tested without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fusionrt.bundle import Component
from fusionrt.errors import EngineError
from fusionrt.runtime.engine_fingerprint import Profile, ProfileLimits, profiles_from_manifest
from fusionrt.runtime.jetson import distribution_version, l4t_line, tensorrt_version

log = logging.getLogger("fusionrt.runtime")

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
STATIC_INT8_SCHEMES = (None, "qdq-static")  # None: a bundle from before schemes were recorded


@dataclass(frozen=True)
class OrtTensorrtConfig:
    """How ONNX Runtime's TensorRT provider builds and caches the engine of one component variant."""

    cache_dir: Path
    fp16: bool
    int8: bool
    profiles: tuple[Profile, ...]  # the dynamic inputs only; static inputs need none

    def options(self) -> dict[str, str]:
        """The provider options (ORT's string-keyed dict), e.g. for providers=[(TENSORRT, options), ...]."""

        def shapes(which: str) -> str:
            return ",".join(f"{p.input}:{'x'.join(str(d) for d in getattr(p, which))}" for p in self.profiles)

        options = {
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(self.cache_dir),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(self.cache_dir),
            "trt_fp16_enable": str(self.fp16),
            "trt_int8_enable": str(self.int8),
        }
        if self.profiles:
            options |= {f"trt_profile_{w}_shapes": shapes(w) for w in ("min", "opt", "max")}
        return options


def default_cache_root() -> Path:
    """$XDG_CACHE_HOME/fusionrt, else ~/.cache/fusionrt (the XDG default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fusionrt"


def tensorrt_config(
    component: Component, variant: str, *, cache_root: str | Path | None = None, limits: ProfileLimits = ProfileLimits()
) -> OrtTensorrtConfig:
    """The TensorRT provider's configuration for `variant` of `component` (see the module docstring)."""
    chosen = component.variant(variant)
    dynamic = {s.name for s in component.inputs if any(not isinstance(d, int) for d in s.shape)}
    try:
        profiles = tuple(p for p in profiles_from_manifest(component, limits) if p.input in dynamic)
    except EngineError as e:  # a dynamic axis the manifest gives no bound for: TensorRT then profiles what it sees
        log.warning("%s.%s: no explicit TensorRT shape profiles: %s", component.name, variant, e)
        profiles = ()
    int8 = chosen.precision == "int8" and chosen.scheme in STATIC_INT8_SCHEMES
    fp16 = chosen.precision in ("fp16", "int8")
    identity = {
        "onnx_sha256": chosen.sha256, "fp16": fp16, "int8": int8, "profiles": [p.__dict__ for p in profiles],
        "onnxruntime": distribution_version("onnxruntime-gpu", "onnxruntime"), "tensorrt": tensorrt_version(),
        "l4t": l4t_line(),
    }  # fmt: skip
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=list).encode()).hexdigest()[:16]
    root = Path(cache_root) if cache_root is not None else default_cache_root()
    return OrtTensorrtConfig(root / "ort-tensorrt" / f"{component.name}.{variant}.{key}", fp16, int8, profiles)


def session_providers(
    usable: Sequence[str], *, tensorrt: OrtTensorrtConfig | None = None, device_id: int = 0
) -> list[str | tuple[str, dict[str, str]]]:
    """`usable` provider names (in priority order) with their options where fusionrt configures them."""
    out: list[str | tuple[str, dict[str, str]]] = []
    for name in usable:
        if name == TENSORRT and tensorrt is not None:
            out.append((name, {"device_id": str(device_id), **tensorrt.options()}))
        elif name == CUDA:
            out.append((name, {"device_id": str(device_id)}))
        else:
            out.append(name)
    return out


def prepare_cache(config: OrtTensorrtConfig) -> str | None:
    """Create the cache folder; the reason when it cannot be written (the engine is then rebuilt each start)."""
    try:
        config.cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return f"cannot create the TensorRT engine cache {config.cache_dir} ({e.strerror})"
    if not os.access(config.cache_dir, os.W_OK):
        return f"the TensorRT engine cache {config.cache_dir} is not writable"
    return None
