"""Power, clocks and temperatures on a Jetson, from NVIDIA's `tegrastats` (no root needed).

`parse_line` turns one tegrastats line into a `TegraSample`; the format differs by module and
L4T release, all of which are understood:
- rails: `VDD_IN 4855mW/4855mW` (Orin NX/Nano, L4T R35+), `VDD_IN 4436/4436` (Xavier NX, R32),
  `POM_5V_IN 1968/1968` (Nano, TX1), `VIN_SYS_5V0 3721mW/3721mW` and `VDD_GPU_SOC ...` (AGX Orin),
  `GPU 0/0 CPU 311/311 SOC 932/932 ... SYS5V 1365/1365` (AGX Xavier): name, instant/average in mW;
- RAM/SWAP in MB, per-core CPU `[load%@MHz|off]`, EMC and GR3D (GPU) load and MHz
  (`GR3D_FREQ 0%@1377`, `0%@[305,305]` per GPC on Orin, just `0%` on a Nano, `@2133` on DriveOS);
- temperatures `name@42.5C` (upper case before R36, lower case from R36; -256C = no sensor, dropped).

`input_power_mw` is the whole module's input rail where the module has one (INPUT_RAILS).

`TegrastatsReader` runs `tegrastats --interval MS` in the background and keeps the latest sample
and a running summary, for `fusionrt bench` reports and the runtime's metrics; `sample()` takes
one reading. Both return None / stay empty when the binary is absent (not a Jetson).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field

INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0", "SYS5V")  # the module's input, first one present wins
NO_SENSOR_C = -256.0

_TIME = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d) ")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_SWAP = re.compile(r"\bSWAP (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_CORE = re.compile(r"(\d+)%@(\d+)")
_FREQ = re.compile(r"\b(EMC_FREQ|GR3D_FREQ) (?:(\d+)%)?(?:@\[?([\d,]+)\]?)?")
_TEMP = re.compile(r"(?<!\S)([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C(?!\w)")
_RAIL = re.compile(r"(?<!\S)([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?=\s|$)")
_NOT_RAILS = {"RAM", "SWAP", "IRAM", "NC"}  # NC: an unconnected monitor channel on AGX Orin


@dataclass(frozen=True)
class TegraSample:
    """One tegrastats line. Rails map name -> (instant mW, average mW since tegrastats started)."""

    time: str | None = None  # tegrastats' own clock (R35+), "MM-DD-YYYY HH:MM:SS"
    ram_used_mb: int | None = None
    ram_total_mb: int | None = None
    swap_used_mb: int | None = None
    swap_total_mb: int | None = None
    cpu_load_pct: tuple[int | None, ...] = ()  # per core; None = core off
    cpu_freq_mhz: tuple[int | None, ...] = ()
    emc_load_pct: int | None = None
    emc_freq_mhz: int | None = None
    gpu_load_pct: int | None = None
    gpu_freq_mhz: int | None = None  # the highest GPC clock on Orin
    temps_c: dict[str, float] = field(default_factory=dict)  # lower-cased sensor names: cpu, gpu, tj, soc0...
    rails_mw: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def input_power_mw(self) -> int | None:
        """Instant power of the module's input rail (INPUT_RAILS), None when it has none (e.g. TX2 NX)."""
        rail = next((name for name in INPUT_RAILS if name in self.rails_mw), None)
        return self.rails_mw[rail][0] if rail else None

    @property
    def cpu_mean_load_pct(self) -> float | None:
        online = [v for v in self.cpu_load_pct if v is not None]
        return sum(online) / len(online) if online else None

    def as_dict(self) -> dict:
        """JSON-ready, with the derived input power and mean CPU load."""
        data = asdict(self)
        data["rails_mw"] = {name: list(v) for name, v in self.rails_mw.items()}
        data["input_power_mw"], data["cpu_mean_load_pct"] = self.input_power_mw, self.cpu_mean_load_pct
        return data


def parse_line(line: str) -> TegraSample:
    """One tegrastats line -> TegraSample; fields the line lacks stay None/empty (never raises on odd text)."""
    line = line.strip()
    values: dict = {}
    if m := _TIME.match(line):
        values["time"] = m.group(1)
    if m := _RAM.search(line):
        values["ram_used_mb"], values["ram_total_mb"] = int(m.group(1)), int(m.group(2))
    if m := _SWAP.search(line):
        values["swap_used_mb"], values["swap_total_mb"] = int(m.group(1)), int(m.group(2))
    if m := _CPU.search(line):
        cores = [_CORE.fullmatch(c.strip()) for c in m.group(1).split(",")]
        values["cpu_load_pct"] = tuple(int(c.group(1)) if c else None for c in cores)
        values["cpu_freq_mhz"] = tuple(int(c.group(2)) if c else None for c in cores)
    for name, load, freqs in _FREQ.findall(line):
        prefix = "emc" if name == "EMC_FREQ" else "gpu"
        values[f"{prefix}_load_pct"] = int(load) if load else None  # DriveOS prints "EMC_FREQ @2133"
        values[f"{prefix}_freq_mhz"] = max(int(f) for f in freqs.split(",") if f) if freqs else None
    temps = {name.lower(): float(c) for name, c in _TEMP.findall(line) if float(c) != NO_SENSOR_C}
    rails = {name: (int(now), int(avg)) for name, now, avg in _RAIL.findall(line) if name not in _NOT_RAILS}
    return TegraSample(**values, temps_c=temps, rails_mw=rails)


def tegrastats_path() -> str | None:
    """Where the tegrastats binary is (on PATH or JetPack's /usr/bin), None off a Jetson."""
    return shutil.which("tegrastats") or shutil.which("tegrastats", path="/usr/bin:/usr/sbin")


class TegrastatsReader:
    """`tegrastats --interval MS` in the background: `latest()` and `summary()` while it runs; a context manager.

    Does nothing (latest() None, summary() {}) where there is no tegrastats binary.
    """

    def __init__(self, interval_ms: int = 500, binary: str | None = None) -> None:
        self.interval_ms = interval_ms
        self.binary = binary or tegrastats_path()
        self._lock = threading.Lock()
        self._latest: TegraSample | None = None
        self._count = 0
        self._power_sum = 0
        self._power_n = 0
        self._power_max: int | None = None
        self._temp_max: dict[str, float] = {}
        self._gpu_load_sum = 0
        self._gpu_n = 0
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> TegrastatsReader:
        if self.binary and self._process is None:
            self._process = subprocess.Popen(
                [self.binary, "--interval", str(self.interval_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
            )  # fmt: skip
            self._thread = threading.Thread(target=self._read, name="tegrastats", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def __enter__(self) -> TegrastatsReader:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def latest(self) -> TegraSample | None:
        with self._lock:
            return self._latest

    def summary(self) -> dict:
        """Samples read, mean/max input power (mW), max temperature per sensor, mean GPU load; {} before any."""
        with self._lock:
            if not self._count:
                return {}
            return {
                "samples": self._count,
                "interval_ms": self.interval_ms,
                "input_power_mean_mw": round(self._power_sum / self._power_n, 1) if self._power_n else None,
                "input_power_max_mw": self._power_max,
                "temps_max_c": dict(self._temp_max),
                "gpu_load_mean_pct": round(self._gpu_load_sum / self._gpu_n, 1) if self._gpu_n else None,
            }

    def add(self, sample: TegraSample) -> None:
        """Fold one sample into latest() and summary() (the reader thread calls it per line)."""
        with self._lock:
            self._latest, self._count = sample, self._count + 1
            power = sample.input_power_mw
            if power is not None:
                self._power_sum, self._power_n = self._power_sum + power, self._power_n + 1
                self._power_max = power if self._power_max is None else max(self._power_max, power)
            for name, c in sample.temps_c.items():
                self._temp_max[name] = max(c, self._temp_max.get(name, c))
            if sample.gpu_load_pct is not None:
                self._gpu_load_sum, self._gpu_n = self._gpu_load_sum + sample.gpu_load_pct, self._gpu_n + 1

    def _read(self) -> None:
        process = self._process
        if process is None or process.stdout is None:
            return
        for line in process.stdout:
            if line.strip():
                self.add(parse_line(line))


def sample(timeout_s: float = 3.0, binary: str | None = None) -> TegraSample | None:
    """One tegrastats reading, or None without the binary or when none arrives within timeout_s."""
    reader = TegrastatsReader(interval_ms=100, binary=binary).start()
    try:
        deadline = time.monotonic() + timeout_s
        while reader.binary and reader.latest() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return reader.latest()
    finally:
        reader.stop()
