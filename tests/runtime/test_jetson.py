"""runtime/jetson.py on the files and tool outputs of real Jetsons (as JetPack 4, 5 and 6 write them)."""

import json

import pytest

from fusionrt.runtime import jetson

NV_TEGRA_RELEASE = {  # the first line of /etc/nv_tegra_release per release
    "36.3.0": "# R36 (release), REVISION: 3.0, GCID: 36923193, BOARD: generic, EABI: aarch64, DATE: Fri Jul 19 23:24:25 UTC 2024",
    "35.4.1": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023",
    "32.7.4": "# R32 (release), REVISION: 7.4, GCID: 33514132, BOARD: t210ref, EABI: aarch64, DATE: Fri Jun  9 04:25:08 UTC 2023",
}  # fmt: skip


@pytest.mark.parametrize("release", sorted(NV_TEGRA_RELEASE))
def test_l4t_release_and_jetpack_major(release, tmp_path, monkeypatch):
    path = tmp_path / "nv_tegra_release"
    path.write_text(NV_TEGRA_RELEASE[release] + "\n# KERNEL_VARIANT: oot\nTARGET_USERSPACE_LIB_DIR=nvidia\n")
    assert jetson.l4t_release(path) == release and jetson.l4t_line(path).startswith("# R")
    monkeypatch.setattr(jetson.subprocess, "run", _no_dpkg)
    assert jetson.jetpack_version(release) == {"36": "6", "35": "5", "32": "4"}[release[:2]]


def _no_dpkg(*args, **kwargs):
    raise FileNotFoundError("dpkg-query")


def test_off_a_jetson_everything_is_none(tmp_path):
    missing = tmp_path / "absent"
    assert jetson.l4t_release(missing) is None and jetson.l4t_line(missing) is None
    assert jetson.device_model(missing) is None and jetson.cuda_version(missing) is None
    assert jetson.cudnn_version([missing]) is None


def test_nvpmodel_query_output():
    assert jetson.parse_nvpmodel("NV Power Mode: MAXN\n0\n") == "MAXN (mode 0)"
    assert jetson.parse_nvpmodel("NVPM WARN: fan mode is not set!\nNV Fan Mode:quiet\nNV Power Mode: 15W\n0\n") == "15W (mode 0)"
    assert jetson.parse_nvpmodel("NV Power Mode: MODE_30W_ALL\n") == "MODE_30W_ALL"
    assert jetson.parse_nvpmodel("nvpmodel: command failed") is None


def test_versions_from_cuda_and_cudnn_files(tmp_path):
    (tmp_path / "version.json").write_text(json.dumps({"cuda": {"name": "CUDA SDK", "version": "12.2.140"}}))
    assert jetson.cuda_version(tmp_path) == "12.2.140"
    header = tmp_path / "cudnn_version.h"
    header.write_text("#define CUDNN_MAJOR 8\n#define CUDNN_MINOR 9\n#define CUDNN_PATCHLEVEL 4\n")
    assert jetson.cudnn_version([tmp_path / "none.h", header]) == "8.9.4"
    old = tmp_path / "old"
    old.mkdir()
    (old / "version.txt").write_text("CUDA Version 10.2.300\n")
    assert jetson.cuda_version(old) == "10.2.300"


def test_device_tree_model(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\0")
    assert jetson.device_model(model) == "NVIDIA Jetson AGX Orin Developer Kit"


def test_bench_machine_fingerprint_carries_the_jetson(monkeypatch):
    from fusionrt.runtime.bench.machine import jetson_fingerprint
    from fusionrt.runtime.tegrastats import parse_line

    monkeypatch.setattr(jetson, "jetson_facts", lambda: None)
    assert jetson_fingerprint() is None
    facts = {"model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.3.0", "jetpack": "6", "power_mode": "15W (mode 0)"}
    monkeypatch.setattr(jetson, "jetson_facts", lambda: dict(facts))
    monkeypatch.setattr("fusionrt.runtime.tegrastats.sample", lambda: parse_line("RAM 2351/7620MB VDD_IN 4855mW/4855mW"))
    got = jetson_fingerprint()
    assert got["l4t"] == "36.3.0" and got["tegrastats"]["input_power_mw"] == 4855
    json.dumps(got)
