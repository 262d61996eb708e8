"""What this machine is, as far as the GPU stack goes: Jetson module, L4T/JetPack release and power
mode, and the CUDA, cuDNN, TensorRT and cuda-python versions. Read from files, package metadata and
two small tools (`nvpmodel -q`, `dpkg-query`), never by importing a GPU library, so it is cheap and
safe everywhere; each function returns None where the fact does not exist (not a Jetson, no CUDA).
`fusionrt doctor` and the benchmark machine fingerprint report them.
"""

from __future__ import annotations

import ctypes
import importlib.metadata
import json
import re
import subprocess
from pathlib import Path

L4T_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_MODEL = Path("/proc/device-tree/model")
CUDA_ROOT = Path("/usr/local/cuda")
CUDNN_HEADERS = (Path("/usr/include/cudnn_version.h"), Path("/usr/include/aarch64-linux-gnu/cudnn_version_v9.h"),
                 Path("/usr/include/aarch64-linux-gnu/cudnn_version_v8.h"), Path("/usr/include/x86_64-linux-gnu/cudnn_version_v9.h"))  # fmt: skip
JETPACK_OF_L4T = {"36": "6", "35": "5", "34": "5 (developer preview)", "32": "4"}
# sonames ONNX Runtime's CUDA/TensorRT providers load, newest first
LIBRARIES = {
    "cudart": ("libcudart.so.12", "libcudart.so.11.0"),
    "cublas": ("libcublas.so.12", "libcublas.so.11"),
    "cudnn": ("libcudnn.so.9", "libcudnn.so.8"),
    "nvinfer": ("libnvinfer.so.10", "libnvinfer.so.8"),
}


def l4t_line(path: Path = L4T_RELEASE) -> str | None:
    """The first line of /etc/nv_tegra_release, e.g. '# R36 (release), REVISION: 3.0, GCID: ...'."""
    try:
        return path.read_text(errors="replace").splitlines()[0].strip() or None
    except (OSError, IndexError):
        return None


def l4t_release(path: Path = L4T_RELEASE) -> str | None:
    """'36.3.0' from '# R36 (release), REVISION: 3.0, ...'; None off a Jetson."""
    m = re.match(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", l4t_line(path) or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def jetpack_version(l4t: str | None = None) -> str | None:
    """The nvidia-jetpack package's version where installed (e.g. '6.0+b106'), else the JetPack major
    that the L4T major implies (R36 -> 6, R35 -> 5, R32 -> 4)."""
    try:
        out = subprocess.run(["dpkg-query", "--showformat=${Version}", "--show", "nvidia-jetpack"],
                             capture_output=True, text=True, timeout=5)  # fmt: skip
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    l4t = l4t or l4t_release()
    return JETPACK_OF_L4T.get(l4t.split(".")[0]) if l4t else None


def device_model(path: Path = DEVICE_MODEL) -> str | None:
    """The board name from the device tree, e.g. 'NVIDIA Jetson AGX Orin Developer Kit'."""
    try:
        return path.read_bytes().rstrip(b"\0").decode(errors="replace").strip() or None
    except OSError:
        return None


def parse_nvpmodel(text: str) -> str | None:
    """'MAXN (mode 0)' from `nvpmodel -q` output ('NV Power Mode: MAXN' then the mode number)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        m = re.match(r"NV Power Mode:\s*(.+)", line)
        if m:
            number = lines[i + 1] if i + 1 < len(lines) and lines[i + 1].isdigit() else None
            return f"{m.group(1)} (mode {number})" if number else m.group(1)
    return None


def power_mode() -> str | None:
    """The nvpmodel power mode, None where nvpmodel is absent or says nothing."""
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvpmodel(out.stdout)


def cuda_version(root: Path = CUDA_ROOT) -> str | None:
    """The CUDA toolkit's version from /usr/local/cuda/version.json (CUDA 11.1+) or version.txt."""
    try:
        return json.loads((root / "version.json").read_text())["cuda"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        m = re.search(r"CUDA Version ([\d.]+)", (root / "version.txt").read_text())
        return m.group(1) if m else None
    except OSError:
        return None


def cudnn_version(headers=CUDNN_HEADERS) -> str | None:
    """cuDNN's version from its header (JetPack and the CUDA repos install it), else None."""
    for header in headers:
        try:
            text = header.read_text(errors="replace")
        except OSError:
            continue
        parts = [re.search(rf"#define CUDNN_{k}\s+(\d+)", text) for k in ("MAJOR", "MINOR", "PATCHLEVEL")]
        if all(parts):
            return ".".join(p.group(1) for p in parts)
    return None


def loadable_libraries() -> dict[str, str | None]:
    """For each library the GPU providers need, the soname the dynamic loader found, else None."""
    found = {}
    for name, sonames in LIBRARIES.items():
        found[name] = None
        for soname in sonames:
            try:
                ctypes.CDLL(soname)
            except OSError:
                continue
            found[name] = soname
            break
    return found


def distribution_version(*names: str) -> str | None:
    """The first installed distribution's version among `names` (package metadata; nothing imported)."""
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def tensorrt_version() -> str | None:
    """TensorRT's Python bindings (pip wheel, or JetPack's python3-libnvinfer) from their metadata."""
    return distribution_version("tensorrt", "tensorrt-cu12", "tensorrt_libs", "tensorrt-cu12-libs")


def cuda_python_version() -> str | None:
    return distribution_version("cuda-python", "cuda-bindings")


def jetson_facts() -> dict | None:
    """Module, L4T, JetPack and power mode, or None off a Jetson (no /etc/nv_tegra_release)."""
    l4t = l4t_release()
    if l4t is None:
        return None
    return {"model": device_model(), "l4t": l4t, "jetpack": jetpack_version(l4t), "power_mode": power_mode()}
