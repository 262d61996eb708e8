"""Which CPU kernels judged a variant's accuracy: the `target` an INT8/FP16 variant records.

x86 without VNNI multiplies u8 x s8 with AVX2 `vpmaddubsw`, which can saturate; VNNI (AVX-512 VNNI,
AVX-VNNI) and AMX do not; aarch64 runs other kernels again. A variant judged on one is not proven
on another, so the manifest says which one it was.
"""

from __future__ import annotations

import platform
from pathlib import Path

# The first x86 flag present names the target, best kernel first.
X86_TARGETS = (
    ("amx_int8", "x86-amx"),
    ("avx512_vnni", "x86-avx512-vnni"),
    ("avx_vnni", "x86-avx-vnni"),
    ("avx2", "x86-avx2"),
)
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
ARM64_MACHINES = ("aarch64", "arm64")


def cpu_target(cpuinfo: Path = Path("/proc/cpuinfo"), machine: str | None = None) -> str:
    """"x86-amx", "x86-avx512-vnni", "x86-avx-vnni", "x86-avx2" or "x86" from the CPU flags in
    /proc/cpuinfo; "aarch64" on 64-bit ARM; else platform.machine() in lower case."""
    machine = (machine or platform.machine()).lower()
    if machine in ARM64_MACHINES:
        return "aarch64"
    if machine not in X86_MACHINES:
        return machine or "unknown"
    flags = _flags(cpuinfo)
    return next((target for flag, target in X86_TARGETS if flag in flags), "x86")


def _flags(cpuinfo: Path) -> set[str]:
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: the baseline x86 target, which claims nothing
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()
