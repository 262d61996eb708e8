"""Which INT8 kernels this CPU runs: the `target` an INT8 variant is quantized for and checked against.

ONNX Runtime multiplies u8 activations by s8 weights. On x86 without VNNI, its GEMM and dense
convolution kernels (AVX2 `vpmaddubsw`) keep the sum of two u8 x s8 products in 16 bits, which can
saturate (2 x 255 x 127 > 32767); its depthwise kernels widen first and do not; VNNI (AVX-512 VNNI,
AVX-VNNI) and AMX accumulate in 32 bits and do not; aarch64 runs other kernels again.
A variant quantized and judged for one family may lose accuracy on another, so variants record
their target and the runtime compares it with this machine's (`int8_family`).
"""

from __future__ import annotations

import platform
from pathlib import Path

from fusionrt.bundle import GPU_TARGETS

# The first x86 flag present names the target, best kernel first.
X86_TARGETS = (
    ("amx_int8", "x86-amx"),
    ("avx512_vnni", "x86-avx512-vnni"),
    ("avx_vnni", "x86-avx-vnni"),
    ("avx2", "x86-avx2"),
)
X86_MACHINES = ("x86_64", "amd64", "i386", "i686", "x86")
ARM64_MACHINES = ("aarch64", "arm64")

# INT8 kernel families: CPU targets whose INT8 numbers agree (the quantizer's --target names).
VNNI = "x86-vnni"
AVX2 = "x86-avx2"
AARCH64 = "aarch64"
CUDA, TENSORRT = GPU_TARGETS  # not CPU kernel families: the runtime's CPU check leaves them alone
FAMILIES = {
    "x86-amx": VNNI, "x86-avx512-vnni": VNNI, "x86-avx-vnni": VNNI, VNNI: VNNI,
    "x86-avx2": AVX2, "x86": AVX2,  # no AVX2: the SSE kernels, no VNNI either (assume they saturate)
    AARCH64: AARCH64, TENSORRT: TENSORRT, CUDA: CUDA,
}  # fmt: skip
KERNELS = {
    VNNI: "u8s8 with 32-bit accumulation (VNNI/AMX): no saturation",
    AVX2: "u8s8 via AVX2 vpmaddubsw: GEMM/dense-conv 16-bit pair sums saturate unless weights are 7-bit "
          "(reduce_range); depthwise kernels widen to 32 bits and stay exact with 8-bit weights",
    AARCH64: "ARM64 integer dot-product kernels (u8s8/u8u8)",
}


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The first `flags` line of /proc/cpuinfo; empty outside Linux."""
    try:
        text = cpuinfo.read_text()
    except OSError:  # not Linux: the baseline target, which claims nothing
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_target(cpuinfo: Path = Path("/proc/cpuinfo"), machine: str | None = None, *,
               flags: set[str] | None = None) -> str:
    """"x86-amx", "x86-avx512-vnni", "x86-avx-vnni", "x86-avx2" or "x86" from the CPU flags (`flags`,
    else those of `cpuinfo`); "aarch64" on 64-bit ARM; else platform.machine() in lower case."""
    machine = (machine or platform.machine()).lower()
    if machine in ARM64_MACHINES:
        return AARCH64
    if machine not in X86_MACHINES:
        return machine or "unknown"
    flags = cpu_flags(cpuinfo) if flags is None else set(flags)
    return next((target for flag, target in X86_TARGETS if flag in flags), "x86")


def int8_family(target: str | None) -> str | None:
    """The INT8 kernel family of a CPU target or a --target name (None when unknown or not given)."""
    return FAMILIES.get(target or "")


def int8_kernels(target: str | None = None) -> dict:
    """What the bench fingerprint and doctor say about this machine's (or `target`'s) INT8 kernels."""
    target = target or cpu_target()
    family = int8_family(target)
    return {"cpu_target": target, "family": family, "kernels": KERNELS.get(family, "unknown")}


def target_mismatch(variant_target: str | None, machine_target: str | None = None) -> str | None:
    """A one-line warning when an INT8 variant quantized for one kernel family runs on another; else None."""
    machine_target = machine_target or cpu_target()
    wanted, here = int8_family(variant_target), int8_family(machine_target)
    if wanted is None or wanted in GPU_TARGETS or here is None or wanted == here:
        return None
    if wanted == AVX2 and here == VNNI:  # the AVX2 scheme cannot saturate: VNNI computes the same integers
        return (f"this INT8 variant was quantized for {variant_target} ({wanted}): {machine_target} ({here}) computes "
                f"the same numbers (no x86 kernel saturates that scheme), but its 7-bit weights give up accuracy "
                f"these kernels would keep; `fusionrt quantize --target auto` re-quantizes for this machine")
    return (f"this INT8 variant was quantized for {variant_target} ({wanted}) but runs on {machine_target} "
            f"({here}): its accuracy was not judged with these kernels; `fusionrt eval` measures what it loses "
            f"here, `fusionrt quantize --target auto` re-quantizes for this machine")
