"""`fusionrt doctor`: what this machine can run, checked by doing it, and the known install traps."""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fusionrt.errors import FusionRTError


@dataclass(frozen=True)
class Finding:
    level: str  # "ok", "warn" or "missing"
    topic: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.level:>7}] {self.topic}: {self.detail}"


def _installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def diagnose(bundle_path: str | Path | None = None) -> list[Finding]:
    import cv2
    import onnxruntime as ort

    findings = [Finding("ok", "python", f"{platform.python_version()} on {platform.machine()}")]
    cpu_ort, gpu_ort = _installed("onnxruntime"), _installed("onnxruntime-gpu")
    findings.append(Finding("ok", "onnxruntime", f"{ort.__version__}; providers {ort.get_available_providers()}"))
    if cpu_ort and gpu_ort:
        findings.append(Finding("warn", "onnxruntime", f"both onnxruntime {cpu_ort} and onnxruntime-gpu {gpu_ort} are "
                                "installed: one shadows the other and CUDA may silently run on CPU; "
                                "pip uninstall onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"))
    gstreamer = any("GStreamer:" in line and "YES" in line for line in cv2.getBuildInformation().splitlines())
    findings.append(Finding("ok" if gstreamer else "missing", "opencv",
                            f"{cv2.__version__} from {Path(cv2.__file__).parent}; GStreamer {'yes' if gstreamer else 'no'}"
                            + ("" if gstreamer else " (csi:// and gst: cameras need it; on Jetson use JetPack's "
                               "OpenCV and remove pip's opencv-python from the venv)")))
    findings.append(_image_path())
    torch_version = _installed("torch")  # not imported: the runtime never loads torch
    findings.append(Finding("ok", "torch", torch_version) if torch_version else
                    Finding("missing", "torch", "only export and --backend torch need it (pip install 'fusionrt[export]')"))
    for module, extra in (("tensorrt", "tensorrt"), ("sounddevice", "audio")):
        try:
            version = getattr(__import__(module), "__version__", "?")
            findings.append(Finding("ok", module, version))
        except Exception as e:  # OSError from missing shared libraries as well as ImportError
            findings.append(Finding("missing", module, f"{e} (pip install 'fusionrt[{extra}]')"))
    findings += _provider_checks(bundle_path)
    return findings


def _image_path() -> Finding:
    """Which path turns camera frames into model-size images."""
    from fusionrt.runtime.native import native_available, native_status

    capture = ("cameras deliver BGR (OpenCV converts at capture size); realtime-infer --camera-raw hands V4L2 YUYV "
               "and csi:// NV12 to the kernel instead")
    return Finding("ok" if native_available() else "warn", "image path", f"{native_status()}; {capture}")


def _provider_checks(bundle_path) -> list[Finding]:
    """Run one real inference per available provider and report which provider really ran it."""
    import onnxruntime as ort

    from fusionrt.bundle import load
    from fusionrt.runtime.backend import Backend, open_engine

    if bundle_path is None:
        return [Finding("missing", "inference", "no bundle given (--bundle): provider checks skipped")]
    try:
        bundle = load(bundle_path)
        component = bundle.fusion
        feeds = {s.name: np.ones([1 if isinstance(d, str) else d for d in s.shape], np.float32) for s in component.inputs}
    except FusionRTError as e:
        return [Finding("warn", "inference", str(e))]
    findings = []
    for provider in ort.get_available_providers():
        try:
            engine = open_engine(bundle, component, component.default_variant, Backend.ORT, providers=[provider])
            try:
                engine.run(feeds)
            finally:
                engine.close()
            ran = engine.providers[0]
            level = "ok" if ran == provider else "warn"
            findings.append(Finding(level, provider, f"ran {component.name} on {ran}"))
        except FusionRTError as e:
            findings.append(Finding("warn", provider, str(e)))
    return findings
