"""runtime/tegrastats.py on tegrastats lines of each Jetson family (tests/runtime/data/tegrastats.txt),
and the background reader on a stand-in `tegrastats` script that prints those lines."""

import os
import stat
import sys
from pathlib import Path

import pytest

from fusionrt.runtime.tegrastats import TegrastatsReader, parse_line, sample

DATA = Path(__file__).parent / "data" / "tegrastats.txt"


def families() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    current = None
    for line in DATA.read_text().splitlines():
        if line.startswith("## "):
            current = groups.setdefault(line[3:].strip(), [])
        elif line.strip() and not line.startswith("#"):
            current.append(line)
    return groups


LINES = families()
INPUT_RAIL = {"nano-r32": "POM_5V_IN", "xavier-nx-r32": "VDD_IN", "agx-xavier-r35": "SYS5V",
              "agx-orin-r35": "VIN_SYS_5V0", "orin-nano-r36": "VDD_IN"}  # fmt: skip
CORES = {"nano-r32": 4, "xavier-nx-r32": 6, "agx-xavier-r35": 8, "agx-orin-r35": 12, "orin-nano-r36": 6}


@pytest.mark.parametrize("family", sorted(INPUT_RAIL))
def test_every_family_parses_memory_cpu_gpu_temps_and_rails(family):
    assert len(LINES[family]) >= 2
    for line in LINES[family]:
        s = parse_line(line)
        assert 0 < s.ram_used_mb < s.ram_total_mb and s.swap_total_mb > 0
        assert len(s.cpu_load_pct) == len(s.cpu_freq_mhz) == CORES[family]
        assert s.cpu_mean_load_pct is not None and s.gpu_load_pct is not None and s.emc_load_pct is not None
        assert s.temps_c and all(-40 < c < 120 for c in s.temps_c.values())  # -256C (no sensor) dropped
        assert "cpu" in s.temps_c
        rail = INPUT_RAIL[family]
        assert s.input_power_mw == s.rails_mw[rail][0] > 0
        assert not {"RAM", "SWAP", "IRAM", "NC"} & set(s.rails_mw)
        assert s.as_dict()["input_power_mw"] == s.input_power_mw


def test_values_are_read_exactly():
    nano = parse_line(LINES["nano-r32"][0])
    assert (nano.ram_used_mb, nano.ram_total_mb, nano.swap_used_mb, nano.swap_total_mb) == (1738, 3956, 0, 1978)
    assert nano.cpu_load_pct == (7, 0, 3, 7) and nano.cpu_freq_mhz == (1224,) * 4
    assert (nano.gpu_load_pct, nano.gpu_freq_mhz, nano.emc_freq_mhz) == (0, None, None)
    assert nano.temps_c == {"pll": 29.0, "cpu": 31.0, "pmic": 100.0, "gpu": 31.5, "ao": 37.0, "thermal": 31.25}
    assert nano.rails_mw == {"POM_5V_IN": (1997, 2089), "POM_5V_GPU": (40, 57), "POM_5V_CPU": (203, 289)}
    assert nano.time is None

    xnx = parse_line(LINES["xavier-nx-r32"][0])
    assert xnx.cpu_load_pct[-2:] == (None, None) and xnx.cpu_mean_load_pct == pytest.approx(6.5)

    orin = parse_line(LINES["agx-orin-r35"][1])
    assert orin.time == "08-21-2023 14:02:12"
    assert (orin.gpu_load_pct, orin.gpu_freq_mhz, orin.emc_load_pct, orin.emc_freq_mhz) == (71, 1300, 9, 3199)
    assert "cv0" not in orin.temps_c and orin.temps_c["tj"] == 47.5
    assert orin.rails_mw["VDD_GPU_SOC"] == (9876, 6336)

    xavier = parse_line(LINES["agx-xavier-r35"][1])
    assert xavier.rails_mw["GPU"] == (3566, 1783) and xavier.rails_mw["CPU"] == (622, 466)

    nano36 = parse_line(LINES["orin-nano-r36"][1])
    assert (nano36.gpu_load_pct, nano36.gpu_freq_mhz) == (92, 1020) and nano36.temps_c["gpu"] == 52.1


def test_odd_lines_give_empty_fields_not_errors():
    assert parse_line("") == parse_line("garbage 12 @@ %") and parse_line("").input_power_mw is None
    drive = parse_line("RAM 264/28409MB (lfb 7004x4MB) CPU [0%@1817,0%@1817] EMC_FREQ @2133 GR3D_FREQ 0%@1109 tj@41C")
    assert (drive.emc_load_pct, drive.emc_freq_mhz, drive.gpu_freq_mhz, drive.swap_total_mb) == (None, 2133, 1109, None)


@pytest.fixture
def fake_tegrastats(tmp_path):
    """An executable that, like tegrastats --interval MS, prints the Orin Nano lines (then sleeps)."""
    lines = LINES["orin-nano-r36"]
    script = tmp_path / "tegrastats"
    script.write_text(
        f"#!{sys.executable}\nimport sys, time\n"
        f"assert sys.argv[1] == '--interval'\n"
        f"for line in {lines!r}:\n    print(line, flush=True)\n    time.sleep(0.01)\ntime.sleep(30)\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_reader_follows_a_running_tegrastats(fake_tegrastats):
    with TegrastatsReader(interval_ms=10, binary=fake_tegrastats) as reader:
        for _ in range(500):
            if reader.summary().get("samples") == 2:
                break
            __import__("time").sleep(0.01)
        summary = reader.summary()
        assert summary["samples"] == 2 and summary["input_power_max_mw"] == 11280
        assert summary["input_power_mean_mw"] == pytest.approx((4855 + 11280) / 2)
        assert summary["temps_max_c"]["tj"] == 52.1 and summary["gpu_load_mean_pct"] == 46.0
        assert reader.latest().gpu_load_pct == 92
        process = reader._process
    assert process.poll() is not None  # stopped with the context


def test_without_tegrastats_nothing_runs(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr("fusionrt.runtime.tegrastats.tegrastats_path", lambda: None)
    with TegrastatsReader() as reader:
        assert reader.latest() is None and reader.summary() == {}
    assert sample(timeout_s=0.1) is None


def test_sample_takes_one_reading(fake_tegrastats):
    one = sample(timeout_s=10, binary=fake_tegrastats)
    assert one is not None and one.input_power_mw in (4855, 11280)
    assert os.path.exists(fake_tegrastats)
