"""`fusionrt doctor` on real tiny bundles, without a GPU: real profiled inferences per component and
provider, exit codes for what is requested or required, the install traps (simulated where this
machine does not have them: a Jetson, onnxruntime beside onnxruntime-gpu, pip OpenCV over JetPack's)."""

import json
import sys
from collections import Counter

import pytest
from runtime_models import write_bundle

from fusionrt.cli import main
from fusionrt.runtime import doctor as doctor_module
from fusionrt.runtime import doctor_env
from fusionrt.runtime.doctor import diagnose, doctor, nodes_per_provider
from fusionrt.runtime.engine import CPU, TENSORRT
from fusionrt.runtime.tegrastats import parse_line

ORIN_NANO = {"model": "NVIDIA Jetson Orin Nano Developer Kit", "l4t": "36.3.0", "jetpack": "6.0+b106",
             "power_mode": "15W (mode 0)"}  # fmt: skip
LINE = ("RAM 2351/7620MB (lfb 4x4MB) SWAP 0/3810MB (cached 0MB) CPU [1%@729,0%@729] EMC_FREQ 0%@2133 "
        "GR3D_FREQ 0%@[305] cpu@46.218C gpu@45.781C tj@46.218C VDD_IN 4855mW/4855mW VDD_SOC 1451mW/1451mW")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_bundle(tmp_path_factory.mktemp("doctor") / "b")


def by_topic(report):
    return {f.topic: f for f in report.findings}


def test_every_component_runs_once_per_provider_and_says_where_nodes_ran(bundle):
    import onnxruntime as ort

    report = doctor(bundle)
    topics = by_topic(report)
    assert report.exit_code == 0, report.text()
    for component in ("text_encoder", "image_encoder", "audio_encoder", "fusion"):
        finding = topics[f"{component} on {CPU}"]
        assert finding.level == "ok" and "all" in finding.detail and finding.data["nodes"][CPU] > 0
    assert not any("Azure" in t for t in topics)  # listed by ORT, runs nothing here
    assert ort.__version__ in topics["onnxruntime"].detail
    assert {"numpy", "opencv", "jetson", "cuda", "torch", "tensorrt", "sounddevice", "image path"} <= set(topics)
    assert [f.topic for f in diagnose(bundle)] == [f.topic for f in report.findings]


def test_without_a_bundle_no_inference_and_exit_zero():
    report = doctor(None)
    assert report.exit_code == 0 and by_topic(report)["inference"].level == "info"


def test_a_requested_missing_provider_fails(bundle):
    report = doctor(bundle, "cpu,tensorrt")
    failed = [f for f in report.findings if f.level == "fail"]
    assert report.exit_code == 1 and [f.topic for f in failed] == [TENSORRT]
    assert by_topic(report)[f"fusion on {CPU}"].level == "ok"  # the requested CPU still ran everything


def test_a_failing_inference_fails_the_report(bundle, monkeypatch):
    monkeypatch.setattr(doctor_module, "component_feeds", lambda component: {})
    report = doctor(bundle)
    assert report.exit_code == 1
    assert all(f.level == "fail" and "missing inputs" in f.detail for f in report.findings if " on " in f.topic)


def test_a_broken_bundle_fails(tmp_path):
    report = doctor(tmp_path / "nothing-here")
    assert report.exit_code == 1 and by_topic(report)["bundle"].level == "fail"


def test_nodes_elsewhere_than_the_provider_are_reported(bundle, monkeypatch):
    monkeypatch.setattr(doctor_module, "nodes_per_provider", lambda profile: Counter({CPU: 0, "Other": 3}))
    finding = by_topic(doctor(bundle, "cpu"))[f"fusion on {CPU}"]
    assert finding.level == "fail" and "no node ran on CPUExecutionProvider (3 on Other" in finding.detail
    monkeypatch.setattr(doctor_module, "nodes_per_provider", lambda profile: Counter({CPU: 2, TENSORRT: 5}))
    finding = by_topic(doctor(bundle))[f"fusion on {CPU}"]
    assert finding.level == "warn" and "2/7 nodes ran on CPUExecutionProvider" in finding.detail


def test_profile_nodes_are_counted_per_provider(tmp_path):
    """The event layout of ONNX Runtime's profiler; the TensorRT subgraph is one fused node."""
    events = [
        {"cat": "Session", "name": "model_run", "args": {}},
        {"cat": "Node", "name": "TRTKernel_graph_main_0_kernel_time", "args": {"op_name": "TRTKernel_graph_main_0",
                                                                              "provider": TENSORRT}},
        {"cat": "Node", "name": "Gather_3_fence_before", "args": {"op_name": "Gather"}},
        {"cat": "Node", "name": "Gather_3_kernel_time", "args": {"op_name": "Gather", "provider": CPU}},
        {"cat": "Node", "name": "Cast_4_kernel_time", "args": {"op_name": "Cast", "provider": CPU}},
    ]  # fmt: skip
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps(events))
    assert nodes_per_provider(profile) == Counter({CPU: 2, TENSORRT: 1}) and not profile.exists()


def test_on_a_jetson_cpu_only_onnxruntime_and_no_cuda_fail(monkeypatch):
    monkeypatch.setattr("fusionrt.runtime.jetson.jetson_facts", lambda: dict(ORIN_NANO))
    monkeypatch.setattr("fusionrt.runtime.tegrastats.sample", lambda timeout_s=3.0: parse_line(LINE))
    report = doctor(None)
    topics = by_topic(report)
    assert topics["jetson"].level == "ok" and "L4T 36.3.0, JetPack 6.0+b106" in topics["jetson"].detail
    assert topics["power mode"].detail == "15W (mode 0)"
    assert topics["tegrastats"].data["input_power_mw"] == 4855 and "tj 46C" in topics["tegrastats"].detail
    failed = {f.topic: f.detail for f in report.findings if f.level == "fail"}
    assert "no CUDAExecutionProvider on a Jetson" in failed["onnxruntime"] and "nvidia-jetpack" in failed["cuda"]
    assert report.exit_code == 1


def test_onnxruntime_beside_onnxruntime_gpu_fails(monkeypatch):
    versions = {"onnxruntime": "1.20.1", "onnxruntime-gpu": "1.20.0"}
    monkeypatch.setattr(doctor_env, "installed", versions.get)
    report = doctor(None)
    trap = [f for f in report.findings if f.topic == "onnxruntime" and f.level == "fail"]
    assert trap and "pip uninstall -y onnxruntime onnxruntime-gpu" in trap[0].detail and report.exit_code == 1


def test_pip_opencv_hiding_jetpacks_fails_on_a_jetson(monkeypatch, tmp_path):
    jetpack_cv2 = tmp_path / "dist-packages" / "cv2"
    jetpack_cv2.mkdir(parents=True)
    monkeypatch.setattr(doctor_env, "JETPACK_CV2", jetpack_cv2)
    monkeypatch.setattr(doctor_env, "installed", {"opencv-python-headless": "4.10.0.84"}.get)
    findings = doctor_env.numpy_and_opencv(dict(ORIN_NANO))
    trap = [f for f in findings if f.topic == "opencv"][0]
    assert trap.level == "fail" and "hides JetPack's OpenCV" in trap.detail
    assert "pip uninstall opencv-python-headless" in trap.detail
    off_jetson = [f for f in doctor_env.numpy_and_opencv(None) if f.topic == "opencv"][0]
    assert off_jetson.level in ("ok", "missing")  # no GStreamer on a desktop is not an error


def test_an_opencv_that_does_not_work_with_this_numpy_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises, as a numpy-1 cv2 does under numpy 2
    findings = doctor_env.numpy_and_opencv(None)
    assert findings[-1].level == "fail" and "cv2 does not work with numpy" in findings[-1].detail


def test_cv2_build_information_names_its_numpy():
    """The line as JetPack 6's OpenCV 4.8 prints it in cv2.getBuildInformation()."""
    info = ("  Python 3:\n    Interpreter:                 /usr/bin/python3 (ver 3.10.12)\n"
            "    numpy:                       /usr/lib/python3/dist-packages/numpy/core/include (ver 1.21.5)\n")
    assert doctor_env.cv2_numpy_build(info) == "1.21.5" and doctor_env.cv2_numpy_build("") is None


def test_cli_json_and_exit_codes(bundle, capsys):
    assert main(["doctor", "--bundle", str(bundle), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["counts"]["fail"] == 0 and any(" on " in f["topic"] for f in report["findings"])
    assert main(["doctor", "--providers", "tensorrt"]) == 1
    assert capsys.readouterr().out.splitlines()[-1].startswith("doctor: FAILED")
    assert main(["doctor", "--providers", "gpu"]) == 1
    assert "provider 'gpu'" in capsys.readouterr().err


def test_engines_warn_about_install_traps_at_start_up(bundle, monkeypatch, caplog):
    from fusionrt.runtime.engine import OrtEngine, warn_install_traps

    monkeypatch.setattr(doctor_env, "installed", {"onnxruntime": "1.20.1", "onnxruntime-gpu": "1.20.0"}.get)
    warn_install_traps.cache_clear()
    try:
        with caplog.at_level("WARNING", logger="fusionrt.runtime"):
            OrtEngine(bundle / "fusion.fp32.onnx", providers=[CPU])
            OrtEngine(bundle / "fusion.fp32.onnx", providers=[CPU])
        traps = [r.getMessage() for r in caplog.records if "INSTALL TRAP" in r.getMessage()]
        assert len(traps) == 1 and "onnxruntime-gpu 1.20.0" in traps[0]  # once per process
    finally:
        warn_install_traps.cache_clear()
