"""The machine fingerprint every benchmark report carries: CPU model and the SIMD/matrix flags that
decide INT8 and FP32 speed, cores, memory, GPU, and the versions of the libraries that ran."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

from fusionrt.runtime.cpu_kernels import int8_kernels

# /proc/cpuinfo flag -> what the report calls it
CPU_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX-512 VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "amx_tile": "AMX",
    "amx_int8": "AMX INT8",
    "amx_bf16": "AMX BF16",
}
DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "torch", "tensorrt", "numpy", "onnx", "fusionrt")


def fingerprint() -> dict:
    cpu_model, flags = cpu_info()
    return {
        "cpu": cpu_model,
        "cpu_flags": flags,
        "int8_kernels": int8_kernels(),  # which INT8 kernels ORT runs here (VNNI/AMX, AVX2 saturating, ARM)
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpu": gpu_info(),
        "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
        "python": sys.version.split()[0],
        "versions": {name: _version(name) for name in DISTRIBUTIONS if _version(name)},
        "onnxruntime_providers": _ort_providers(),
        "jetson": jetson_fingerprint(),
    }


def jetson_fingerprint() -> dict | None:
    """On a Jetson: module, L4T/JetPack, power mode, and one tegrastats reading (power, clocks, temperatures)
    before the run; None elsewhere. A run's own power is runtime.tegrastats.TegrastatsReader's summary."""
    from fusionrt.runtime.jetson import jetson_facts
    from fusionrt.runtime.tegrastats import sample

    facts = jetson_facts()
    if facts is None:
        return None
    reading = sample()
    return {**facts, "tegrastats": reading.as_dict() if reading else None}


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """(model name, the CPU_FLAGS it has); outside Linux the platform's processor string and no flags."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or platform.machine()
    present = set((fields.get("flags") or fields.get("Features") or "").split())
    return model, [name for flag, name in CPU_FLAGS.items() if flag in present]


def cpu_summary() -> str:
    """'MODEL, N cores, VNNI: yes|no': the line every benchmark table names its CPU with."""
    model, flags = cpu_info()
    vnni = any("VNNI" in flag or flag.startswith("AMX") for flag in flags)
    return f"{model}, {os.cpu_count()} cores, VNNI: {'yes' if vnni else 'no'}"


def memory_gib(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def gpu_info(device_tree_model: Path = Path("/proc/device-tree/model")) -> list[dict] | str:
    """GPUs from nvidia-smi, else a Jetson's integrated GPU named by its device tree; else why there is none.

    The runtime imports no torch: PyTorch's version comes from the package metadata (DISTRIBUTIONS).
    """
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,compute_cap", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout  # fmt: skip
        keys = ("name", "memory", "driver", "compute_capability")
        return [dict(zip(keys, (p.strip() for p in line.split(",")))) for line in out.splitlines() if line.strip()]
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        model = device_tree_model.read_bytes().rstrip(b"\0").decode(errors="replace").strip()
    except OSError:
        model = ""
    if "jetson" in model.lower():
        return [{"name": f"{model} (integrated GPU)"}]
    return "none (no nvidia-smi, no Jetson device tree)"


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _ort_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())
