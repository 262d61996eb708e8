"""The environment half of `fusionrt doctor` (runtime/doctor.py): numpy vs the compiled cv2, the
onnxruntime and OpenCV install traps, the Jetson (L4T/JetPack, power mode, tegrastats) and the
CUDA/cuDNN/TensorRT/cuda-python stack. Each function returns `Finding`s; nothing here runs a model.
"""

from __future__ import annotations

import importlib.metadata
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fusionrt.runtime import jetson

PIP_OPENCV = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")
JETPACK_CV2 = Path("/usr/lib/python3/dist-packages/cv2")  # apt python3-opencv / nvidia-opencv on JetPack


def environment_findings(facts: dict | None) -> list[Finding]:
    """Every environment check; `facts` is jetson.jetson_facts() (None off a Jetson)."""
    findings = [*numpy_and_opencv(facts), *onnxruntime_install(), *jetson_findings(facts), *gpu_stack(facts)]
    findings += optional_packages()
    findings.append(_image_path())
    return findings


@dataclass(frozen=True)
class Finding:
    """One check: level ("ok", "info", "missing", "warn", "fail"), topic, one-line detail, data for --json."""

    level: str
    topic: str
    detail: str
    data: dict = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return f"[{self.level:>7}] {self.topic}: {self.detail}"

    def as_dict(self) -> dict:
        return {"level": self.level, "topic": self.topic, "detail": self.detail, **({"data": self.data} if self.data else {})}


def _finding(level: str, topic: str, detail: str, **data) -> Finding:
    return Finding(level, topic, detail, data)


def installed(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def install_traps(on_jetson: bool) -> list[str]:
    """The known broken installs, from package metadata only (cheap enough for every start-up):
    onnxruntime beside onnxruntime-gpu, and on a Jetson a pip OpenCV that hides JetPack's."""
    traps = []
    cpu, gpu = installed("onnxruntime"), installed("onnxruntime-gpu")
    if cpu and gpu:
        traps.append(f"both onnxruntime {cpu} and onnxruntime-gpu {gpu} are installed: they share one module and the "
                     "GPU providers can silently vanish; pip uninstall -y onnxruntime onnxruntime-gpu, then install "
                     "onnxruntime-gpu alone")  # fmt: skip
    pip_cv = [d for d in PIP_OPENCV if installed(d)]
    if on_jetson and pip_cv and JETPACK_CV2.exists():
        traps.append(f"pip's {', '.join(pip_cv)} hides JetPack's OpenCV ({JETPACK_CV2}), which has GStreamer for "
                     f"csi:// cameras; pip uninstall {' '.join(pip_cv)}")
    return traps


def cv2_numpy_build(build_information: str) -> str | None:
    """The numpy version cv2 was compiled against, from cv2.getBuildInformation() ('numpy: ... (ver 1.21.5)')."""
    m = re.search(r"numpy:.*\(ver ([\d.]+)\)", build_information)
    return m.group(1) if m else None


def numpy_and_opencv(facts: dict | None) -> list:
    """numpy's version, and an OpenCV that imports and computes with it (required: the camera path uses it)."""
    out = [_finding("ok", "numpy", np.__version__)]
    try:
        import cv2

        cv2.cvtColor(cv2.resize(np.zeros((4, 4, 3), np.uint8), (2, 2)), cv2.COLOR_BGR2RGB)
    except Exception as e:  # ImportError or the numpy ABI error a numpy-1 cv2 raises under numpy 2
        fix = "pip install 'numpy<2'" if np.__version__.startswith("2") else "reinstall OpenCV"
        return [*out, _finding("fail", "opencv", f"cv2 does not work with numpy {np.__version__}: {e}; {fix}")]
    info = cv2.getBuildInformation()
    built = cv2_numpy_build(info)
    where = Path(cv2.__file__).parent
    gstreamer = any("GStreamer:" in line and "YES" in line for line in info.splitlines())
    pip_cv = {d: v for d in PIP_OPENCV if (v := installed(d))}
    detail = f"{cv2.__version__} from {where} (built for numpy {built or '?'}); GStreamer {'yes' if gstreamer else 'no'}"
    data = {"version": cv2.__version__, "path": str(where), "numpy_built": built, "gstreamer": gstreamer, "pip": pip_cv}
    if built and built.split(".")[0] != np.__version__.split(".")[0]:
        out.append(_finding("warn", "numpy", f"{np.__version__} but cv2 was built for numpy {built}: "
                            "keep numpy's major version (pip install 'numpy<2' on a Jetson)"))  # fmt: skip
    hidden = [t for t in install_traps(facts is not None) if "OpenCV" in t]
    if hidden and not str(where).startswith(str(JETPACK_CV2.parent)):
        out.append(_finding("fail", "opencv", f"{detail}: {hidden[0]}", **data))
    elif not gstreamer:
        level = "warn" if facts is not None else "missing"
        out.append(_finding(level, "opencv", f"{detail} (csi:// and gst: cameras need GStreamer: on a Jetson use "
                            "JetPack's OpenCV in a venv made with --system-site-packages)", **data))
    else:
        out.append(_finding("ok", "opencv", detail, **data))
    return out


def onnxruntime_install() -> list:
    """onnxruntime's version and providers; both onnxruntime and onnxruntime-gpu installed is a broken install."""
    try:
        import onnxruntime as ort
    except Exception as e:
        return [_finding("fail", "onnxruntime", f"cannot import onnxruntime ({e}); pip install onnxruntime, or on a "
                         "Jetson NVIDIA's onnxruntime-gpu wheel")]  # fmt: skip
    gpu = installed("onnxruntime-gpu")
    providers = ort.get_available_providers()
    build = _ort_build_info()
    detail = f"{ort.__version__} ({'onnxruntime-gpu' if gpu else 'onnxruntime'}); providers {providers}"
    if build:
        detail += "; built for " + ", ".join(f"{k} {v}" for k, v in build.items())
    out = [_finding("ok" if "CPUExecutionProvider" in providers else "fail", "onnxruntime", detail,
                    version=ort.__version__, providers=providers, **build)]  # fmt: skip
    out += [_finding("fail", "onnxruntime", trap) for trap in install_traps(False) if "onnxruntime-gpu" in trap]
    return out


def _ort_build_info() -> dict:
    """The CUDA/cuDNN versions a GPU build of onnxruntime was compiled for (empty for CPU builds)."""
    try:
        from onnxruntime.capi import build_and_package_info as info
    except ImportError:
        return {}
    return {k: str(getattr(info, f"{k}_version")) for k in ("cuda", "cudnn") if getattr(info, f"{k}_version", None)}


def jetson_findings(facts: dict | None) -> list:
    """Module, L4T/JetPack, power mode and one tegrastats reading; one info line off a Jetson."""
    if facts is None:
        return [_finding("info", "jetson", "not a Jetson (no /etc/nv_tegra_release)")]
    from fusionrt.runtime.tegrastats import sample

    out = [_finding("ok", "jetson", f"{facts['model'] or 'Jetson'}: L4T {facts['l4t']}, JetPack {facts['jetpack'] or '?'}",
                    **facts)]  # fmt: skip
    mode = facts.get("power_mode")
    out.append(_finding("info" if mode else "warn", "power mode", mode or "nvpmodel -q said nothing (is nvpmodel installed?)"))
    reading = sample(timeout_s=3.0)
    if reading is None:
        out.append(_finding("warn", "tegrastats", "no reading from tegrastats within 3 s"))
    else:
        temps = ", ".join(f"{k} {v:.0f}C" for k, v in sorted(reading.temps_c.items()))
        power = f"{reading.input_power_mw} mW in" if reading.input_power_mw is not None else "no input rail"
        out.append(_finding("info", "tegrastats", f"{power}; GPU {reading.gpu_load_pct}%; {temps}", **reading.as_dict()))
    return out


def gpu_stack(facts: dict | None) -> list:
    """CUDA, cuDNN, TensorRT and cuda-python versions, and whether the loader finds their libraries."""
    libraries = jetson.loadable_libraries()
    versions = {"cuda": jetson.cuda_version(), "cudnn": jetson.cudnn_version(),
                "tensorrt": jetson.tensorrt_version(), "cuda-python": jetson.cuda_python_version()}  # fmt: skip
    if not any(libraries.values()) and not any(versions.values()):
        level = "fail" if facts is not None else "info"
        return [_finding(level, "cuda", "no CUDA, cuDNN or TensorRT libraries found" +
                         (" on a Jetson: install JetPack's CUDA stack (sudo apt install nvidia-jetpack)" if facts else ""))]
    out = []
    for name, version in versions.items():
        lib = libraries.get({"cuda": "cudart", "tensorrt": "nvinfer"}.get(name, name))
        if version or lib:
            out.append(_finding("ok", name, f"{version or 'version unknown'}" + (f"; loads {lib}" if lib else ""),
                                version=version, library=lib))  # fmt: skip
        else:
            hint = "JetPack installs it (python3-libnvinfer for TensorRT)" if facts else "needed only for GPU providers"
            out.append(_finding("missing", name, f"not found ({hint})"))
    return out


def optional_packages() -> list:
    """torch (export and --backend torch), tensorrt bindings (--backend tensorrt), sounddevice (live microphones)."""
    out = []
    torch_version = installed("torch")  # not imported: the runtime never loads torch
    out.append(_finding("ok", "torch", torch_version) if torch_version else
               _finding("missing", "torch", "only export and --backend torch need it (pip install 'fusionrt[export]')"))
    for module, fix in (("tensorrt", "JetPack's python3-libnvinfer on a Jetson, else pip install 'fusionrt[tensorrt]'"),
                        ("sounddevice", "pip install 'fusionrt[audio]'; it needs libportaudio2 from apt")):  # fmt: skip
        try:
            version = getattr(__import__(module), "__version__", "?")
            out.append(_finding("ok", module, version))
        except Exception as e:  # OSError from missing shared libraries as well as ImportError
            out.append(_finding("missing", module, f"{e} ({fix})"))
    return out


def _image_path():
    """Which path turns camera frames into model-size images."""
    from fusionrt.runtime.native import native_available, native_status

    capture = ("cameras deliver BGR (OpenCV converts at capture size); realtime-infer --camera-raw hands V4L2 YUYV "
               "and csi:// NV12 to the kernel instead")
    return _finding("ok" if native_available() else "info", "image path", f"{native_status()}; {capture}")
