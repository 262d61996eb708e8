from __future__ import annotations

import pytest

from fusionrt.calibration import cpu_target


@pytest.mark.parametrize(
    ("flags", "target"),
    [
        ("fpu sse2 avx2 fma avx512f avx512_vnni amx_tile amx_int8", "x86-amx"),
        ("fpu sse2 avx2 fma avx512f avx512_vnni", "x86-avx512-vnni"),
        ("fpu sse2 avx2 avx_vnni", "x86-avx-vnni"),
        ("fpu sse2 avx2 fma", "x86-avx2"),
        ("fpu sse2", "x86"),
    ],
)
def test_the_x86_target_is_the_best_int8_kernel_the_flags_allow(tmp_path, flags, target):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    assert cpu_target(cpuinfo, machine="x86_64") == target


def test_arm_and_other_machines_are_named_by_the_machine(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\n")
    assert cpu_target(cpuinfo, machine="aarch64") == "aarch64"
    assert cpu_target(cpuinfo, machine="arm64") == "aarch64"
    assert cpu_target(tmp_path / "missing", machine="AMD64") == "x86"  # no /proc/cpuinfo: no claim beyond x86
    assert cpu_target(cpuinfo, machine="riscv64") == "riscv64"


def test_this_machine_has_a_target():
    assert cpu_target() and cpu_target() == cpu_target()
