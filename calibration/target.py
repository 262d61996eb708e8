"""Targets the quantizer knows and the INT8 scheme each one gets.

`--target auto` is this CPU (`cpu_target()`, from fusionrt.runtime.cpu_kernels, mapped to its INT8
kernel family). The scheme per family:

- x86-vnni (AVX-512 VNNI, AVX-VNNI, AMX): u8 activations x s8 weights, per-channel; the kernels
  accumulate in 32 bits and do not saturate.
- x86-avx2 (no VNNI): the AVX2 u8s8 GEMM and dense-convolution kernels (`vpmaddubsw`) add two
  u8 x s8 products in 16 bits, which saturates (2 x 255 x 127 = 64770 > 32767). Their weights are
  7-bit (`reduce_range`, s8 in [-64, 63]): the pair sum is at most 2 x 255 x 64 = 32640. Depthwise
  convolutions keep 8-bit weights (`full_range_depthwise`): ORT's depthwise kernels widen each
  product to 16/32 bits before adding (MLAS ConvSymKernelAvx2.S's depthwise kernel: vpmovzxbd/vpmovsxbd
  + vpmaddwd; qdwconv_avx2.cpp: 16-bit multiplies, 32-bit sums), so they cannot saturate, and a
  depthwise channel has only 9-25 weights, where 7 bits cost most (minmax, against all 7-bit:
  EfficientNet-Lite0 output cosine 0.9947 -> 0.9964, FP32's top-1 kept on 96.4 -> 97.6 % of the
  noise-stable views; Lite1 97.3 -> 98.2 %: benchmarks/results/real_cnn_int8.md).
  Every x86 kernel computes this scheme exactly, so the accuracy judged on a VNNI machine holds on
  an AVX2 one. ORT's other remedy, U8U8 (uint8 weights, `QuantConfig.unsigned_weights`), keeps
  8 bits everywhere and VNNI's accuracy (Lite0 97.9 %, Lite1 98.4 %), but its kernels (vpmaddwd on
  16-bit values, and the general depthwise path) ran EfficientNet-Lite0/-Lite1 1.0x FP32 on an AVX-512
  VNNI machine against 2.0x for u8s8, and are the slower x86 INT8 kernels on AVX2 as well, so it is
  measured in the benchmark, not the default.
- aarch64: u8s8 per-channel (ORT: on ARM64 U8S8 can be faster than U8U8 on low-end cores and
  there is no accuracy difference; ARM kernels do not have the x86 saturation).
- tensorrt: static QDQ with symmetric int8 activations and weights (s8s8) only; TensorRT takes
  explicit-quantization graphs, and dynamic INT8 is a CPU-only choice.
- cuda (ONNX Runtime's CUDA provider): no INT8 at all; its INT8 kernels are QuantizeLinear,
  DequantizeLinear and MatMulInteger only, so a QDQ graph runs dequantized or falls back to the
  CPU. FP16 is the variant it runs faster.

A GPU target's candidates are judged for accuracy on this machine's CPU (the QDQ and FP16 numbers do
not depend on the kernels beyond rounding) but chosen by precision, not by CPU timing, and the
choice is recorded as that target's default (`defaults_by_target` in the manifest).
"""

from __future__ import annotations

from dataclasses import dataclass

from fusionrt.errors import CalibrationError
from fusionrt.runtime.cpu_kernels import AARCH64, AVX2, CUDA, GPU_TARGETS, TENSORRT, VNNI, cpu_target, int8_family

AUTO = "auto"
TARGETS = (AUTO, VNNI, AVX2, AARCH64, TENSORRT, CUDA)


@dataclass(frozen=True)
class Scheme:
    """How INT8 computes for one target: activation/weight types, 7-bit weights (but for depthwise
    convolutions), static only."""

    target: str
    symmetric_activations: bool = False  # int8 activations (TensorRT) instead of uint8 (CPU kernels)
    reduce_range: bool = False  # 7-bit weights: no 16-bit saturation on AVX2
    unsigned_weights: bool = False  # U8U8: uint8 weights (symmetric, zero point 128), no saturation on any x86 kernel
    full_range_depthwise: bool = False  # with reduce_range: depthwise Conv weights keep 8 bits (their kernels widen)
    static_only: bool = False  # no dynamic INT8 (TensorRT)
    int8: bool = True  # False: the target runs no INT8 (ORT's CUDA provider)

    @property
    def gpu(self) -> bool:
        """Chosen by precision, its default kept per target, not as the CPU default."""
        return self.target in GPU_TARGETS


SCHEMES = {
    VNNI: Scheme(VNNI),
    AVX2: Scheme(AVX2, reduce_range=True, full_range_depthwise=True),
    AARCH64: Scheme(AARCH64),
    TENSORRT: Scheme(TENSORRT, symmetric_activations=True, static_only=True),
    CUDA: Scheme(CUDA, static_only=True, int8=False),
}


def resolve_target(name: str | None = AUTO, *, flags: set[str] | None = None, machine: str | None = None) -> str:
    """A --target name -> the INT8 family it quantizes for; "auto" (or None) is this CPU's
    (`flags`/`machine` stand in for /proc/cpuinfo and platform.machine() in tests)."""
    name = (name or AUTO).lower()
    if name == AUTO:
        found = cpu_target(machine=machine, flags=flags)
        family = int8_family(found)
        if family is None:
            raise CalibrationError(f"this CPU ({found}) has no INT8 target the quantizer knows; "
                                   f"name one with --target ({', '.join(TARGETS[1:])})")
        return family
    if name not in TARGETS:
        raise CalibrationError(f"unknown --target {name!r}; expected one of {', '.join(TARGETS)}")
    return name


def scheme_for(target: str) -> Scheme:
    """The INT8 scheme of a target family (see the module docstring)."""
    return SCHEMES[resolve_target(target)]


__all__ = ["AUTO", "CUDA", "SCHEMES", "TARGETS", "TENSORRT", "Scheme", "cpu_target", "resolve_target", "scheme_for"]
