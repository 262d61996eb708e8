"""`fusionrt doctor`: what this machine can run, proved by running it, and the known install traps.

Each check is a `Finding` (level, topic, detail, data). Levels: "ok"; "info" (a fact); "missing"
(something optional is absent: sounddevice, torch, GStreamer on a desktop); "warn" (works, but not
as it should); "fail" (something requested or required is broken). `Report.exit_code` is 1 when any
finding fails, so scripts and CI can gate on it:
- required everywhere: onnxruntime with its CPU provider, and an OpenCV that works with this numpy;
- required on a Jetson: onnxruntime's CUDA provider (the documented install), JetPack's OpenCV not
  hidden by a pip one, numpy < 2 where cv2 was built against numpy 1.x;
- requested: every provider named in `providers` must exist and run nodes; with a bundle, every
  component must run one real inference on every provider checked.

Where nodes ran comes from ONNX Runtime's profiler (the provider of each node event), not from the
session's provider list (which always ends with CPU and says nothing about placement).
"""

from __future__ import annotations

import json
import platform
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from fusionrt.errors import ConfigError, FusionRTError
from fusionrt.runtime import jetson
from fusionrt.runtime.doctor_env import Finding, environment_findings
from fusionrt.runtime.engine import CPU, CUDA, TENSORRT

LEVELS = ("ok", "info", "missing", "warn", "fail")
SHORT_NAMES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}
NOT_LOCAL = ("AzureExecutionProvider",)  # listed by ORT, but runs nothing on this machine


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def exit_code(self) -> int:
        return 1 if any(f.level == "fail" for f in self.findings) else 0

    def as_dict(self) -> dict:
        counts = Counter(f.level for f in self.findings)
        return {"ok": self.exit_code == 0, "exit_code": self.exit_code, "counts": {k: counts[k] for k in LEVELS},
                "findings": [f.as_dict() for f in self.findings]}  # fmt: skip

    def text(self) -> str:
        counts = Counter(f.level for f in self.findings)
        verdict = "FAILED" if self.exit_code else "ok"
        tally = ", ".join(f"{counts[k]} {k}" for k in LEVELS if counts[k])
        return "\n".join([*map(str, self.findings), f"doctor: {verdict} ({tally})"])

    def json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)


def parse_providers(text: str | Sequence[str] | None) -> list[str]:
    """'cuda,tensorrt' or full names -> ONNX Runtime provider names; ConfigError for an unknown one."""
    if not text:
        return []
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    out = []
    for name in names:
        full = SHORT_NAMES.get(name.lower(), name)
        if not full.endswith("ExecutionProvider"):
            raise ConfigError(f"provider {name!r}; expected one of {sorted(SHORT_NAMES)} or a full ONNX Runtime name "
                              "such as CUDAExecutionProvider")  # fmt: skip
        out.append(full)
    return out


def doctor(bundle_path: str | Path | None = None, providers: str | Sequence[str] | None = None) -> Report:
    """Every check; `providers` (e.g. "cuda,tensorrt") are requested: their absence or failure fails the report."""
    requested = parse_providers(providers)
    facts = jetson.jetson_facts()
    findings = [Finding("info", "python", f"{platform.python_version()} on {platform.machine()}")]
    findings += environment_findings(facts)
    findings += provider_findings(bundle_path, requested, on_jetson=facts is not None)
    return Report(tuple(findings))


def diagnose(bundle_path: str | Path | None = None, providers: str | Sequence[str] | None = None) -> list[Finding]:
    """The findings of `doctor` as a list."""
    return list(doctor(bundle_path, providers).findings)


# -------------------------------------------------------------------------------- providers
def provider_findings(bundle_path, requested: list[str], *, on_jetson: bool) -> list[Finding]:
    """Which providers exist; with a bundle, one profiled inference per component per provider."""
    import onnxruntime as ort

    available = [p for p in ort.get_available_providers() if p not in NOT_LOCAL]
    findings = []
    for name in requested:
        if name not in available:
            findings.append(Finding("fail", name, f"requested but not in this onnxruntime build (it offers {available})"))
    if on_jetson and CUDA not in available:
        findings.append(Finding("fail", "onnxruntime", "no CUDAExecutionProvider on a Jetson: install NVIDIA's "
                                "onnxruntime-gpu wheel for your JetPack (README 'On a Jetson'), not the registry's CPU-only onnxruntime"))
    if bundle_path is None:
        findings.append(Finding("info", "inference", "no bundle given (--bundle BUNDLE): no inference was run"))
        return findings
    try:
        from fusionrt.bundle import load

        bundle = load(bundle_path)
    except FusionRTError as e:
        return [*findings, Finding("fail", "bundle", str(e))]
    for provider in [p for p in (requested or available) if p in available]:
        for component in bundle.components.values():
            findings.append(_run_on(bundle, component, provider, requested=provider in requested))
    return findings


def component_feeds(component) -> dict[str, np.ndarray]:
    """Inputs of the manifest's dtype and shape: a dynamic batch of 1; another dynamic axis as long as
    the text's max_length or the audio window."""
    length = getattr(component.input, "max_length", None) or getattr(component.input, "window_samples", None) or 1
    feeds = {}
    for spec in component.inputs:
        shape = [d if isinstance(d, int) else (length if axis else 1) for axis, d in enumerate(spec.shape)]
        feeds[spec.name] = np.ones(shape, np.dtype(spec.dtype))
    return feeds


def _run_on(bundle, component, provider: str, *, requested: bool) -> Finding:
    """One profiled inference of the component's default variant with `provider` first."""
    from fusionrt.runtime.engine import OrtEngine
    from fusionrt.runtime.ort_providers import tensorrt_config

    topic = f"{component.name} on {provider}"
    variant = component.default_variant
    try:
        with tempfile.TemporaryDirectory(prefix="fusionrt-doctor-") as tmp:
            trt = tensorrt_config(component, variant) if provider == TENSORRT else None
            engine = OrtEngine(component.variant(variant).path, providers=[provider], tensorrt=trt,
                               profile_prefix=str(Path(tmp) / "profile"))  # fmt: skip
            try:
                engine.run(component_feeds(component))
                nodes = nodes_per_provider(engine.end_profiling())
            finally:
                engine.close()
    except FusionRTError as e:
        return Finding("fail", topic, f"{variant}: {e}")
    total = sum(nodes.values())
    placed = ", ".join(f"{n} on {p}" for p, n in nodes.most_common())
    data = {"variant": variant, "nodes": dict(nodes)}
    if nodes.get(provider, 0) == 0:
        level = "fail" if requested else "warn"
        return Finding(level, topic, f"{variant}: no node ran on {provider} ({placed or 'no node events'})", data)
    if nodes[provider] == total:
        return Finding("ok", topic, f"{variant}: all {total} nodes ran on {provider}", data)
    return Finding("warn", topic, f"{variant}: {nodes[provider]}/{total} nodes ran on {provider} ({placed})", data)


def nodes_per_provider(profile: Path) -> Counter:
    """Kernel events per provider in an ONNX Runtime profile (one event per node run)."""
    try:
        events = json.loads(Path(profile).read_text())
    finally:
        Path(profile).unlink(missing_ok=True)
    return Counter(
        e["args"]["provider"] for e in events
        if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time") and "provider" in e.get("args", {})
    )  # fmt: skip
