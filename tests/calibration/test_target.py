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


@pytest.mark.parametrize(
    ("flags", "machine", "family"),
    [
        ({"avx2", "avx512f", "avx512_vnni", "amx_int8"}, "x86_64", "x86-vnni"),
        ({"avx2", "avx512_vnni"}, "x86_64", "x86-vnni"),
        ({"avx2", "avx_vnni"}, "x86_64", "x86-vnni"),
        ({"avx2", "fma"}, "x86_64", "x86-avx2"),
        ({"sse2"}, "x86_64", "x86-avx2"),  # no VNNI: the saturation-free scheme (7-bit dense weights)
        (set(), "aarch64", "aarch64"),
    ],
)
def test_auto_target_is_this_cpus_int8_family_and_picks_its_scheme(flags, machine, family):
    from fusionrt.calibration import resolve_target, scheme_for

    assert resolve_target("auto", flags=flags, machine=machine) == family
    scheme = scheme_for(family)
    assert scheme.reduce_range == scheme.full_range_depthwise == (family == "x86-avx2")
    assert not scheme.unsigned_weights  # U8U8 is exact too, but its kernels were no faster than FP32
    assert not scheme.symmetric_activations and not scheme.static_only


def test_tensorrt_is_static_symmetric_int8_only():
    from fusionrt.calibration import scheme_for

    scheme = scheme_for("tensorrt")
    assert scheme.symmetric_activations and scheme.static_only and not scheme.reduce_range


def test_an_unknown_target_lists_the_valid_ones():
    from fusionrt.calibration import resolve_target
    from fusionrt.errors import CalibrationError

    with pytest.raises(CalibrationError, match="unknown --target 'x86-sse'.*auto, x86-vnni, x86-avx2, aarch64, tensorrt"):
        resolve_target("x86-sse")
    with pytest.raises(CalibrationError, match="riscv64.*--target"):
        resolve_target("auto", machine="riscv64")


def test_a_variant_for_other_int8_kernels_is_named_with_both_targets():
    from fusionrt.runtime.cpu_kernels import int8_kernels, target_mismatch

    message = target_mismatch("x86-vnni", "x86-avx2")
    assert "x86-vnni" in message and "x86-avx2" in message and "fusionrt eval" in message
    assert target_mismatch("x86-avx512-vnni", "x86-avx2")  # a recorded CPU target counts by its family
    assert target_mismatch("x86-vnni", "x86-amx") is None  # same kernels
    assert target_mismatch("x86-avx2", "x86-avx2") is None
    same_numbers = target_mismatch("x86-avx2", "x86-avx512-vnni")  # the AVX2 scheme is exact on VNNI too
    assert "same numbers" in same_numbers and "--target auto" in same_numbers
    assert target_mismatch(None, "x86-avx2") is None and target_mismatch("tensorrt", "aarch64") is None
    assert int8_kernels("x86-avx2")["family"] == "x86-avx2" and "saturate" in int8_kernels("x86-avx2")["kernels"]
    assert "depthwise" in int8_kernels("x86-avx2")["kernels"] and "7-bit" in int8_kernels("x86-avx2")["kernels"]


def test_the_runtime_says_once_when_int8_variants_were_quantized_for_other_kernels(bundle_dir, monkeypatch):
    from calibration_models import Items

    import fusionrt.runtime.cpu_kernels as cpu_kernels
    from fusionrt.bundle import load
    from fusionrt.calibration import CalibrationSet, quantize_bundle
    from fusionrt.runtime.assembly import StageEngines
    from fusionrt.runtime.backend import Backend
    from fusionrt.runtime.budget import OverrunPolicy

    calib = CalibrationSet.from_data(load(bundle_dir), Items(16, seed=1))
    quantize_bundle(bundle_dir, calib, "int8-static", target="x86-vnni", components=("audio_encoder", "fusion"),
                    latency_runs=2, repair_nodes=False, progress=lambda m: None)
    bundle = load(bundle_dir)
    assert {bundle.components[n].variants["int8"].target for n in ("audio_encoder", "fusion")} == {"x86-vnni"}

    def notes_on(machine: str) -> list[str]:
        monkeypatch.setattr(cpu_kernels, "cpu_target", lambda *a, **k: machine)
        engines = StageEngines(bundle, Backend.ORT_CPU, variant="int8", precision="fp32", providers=None, threads=1,
                               fail_on_fallback=False)
        try:
            for name in ("audio_encoder", "fusion"):
                engines.for_stage(bundle.components[name], OverrunPolicy.DROP_OLDEST)
        finally:
            engines.close()
        return engines.notes

    (note,) = notes_on("x86-avx2")  # two int8 components, one note
    assert "x86-vnni" in note and "x86-avx2" in note
    assert notes_on("x86-avx512-vnni") == []


def test_the_bench_fingerprint_says_which_int8_kernels_this_machine_has():
    from fusionrt.runtime.bench.machine import fingerprint
    from fusionrt.runtime.cpu_kernels import cpu_target, int8_kernels

    assert fingerprint()["int8_kernels"] == int8_kernels() and int8_kernels()["cpu_target"] == cpu_target()
