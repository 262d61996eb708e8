from runtime_models import write_bundle

from fusionrt.runtime.doctor import diagnose


def test_doctor_runs_a_real_inference_per_provider(tmp_path):
    import onnxruntime as ort

    findings = diagnose(write_bundle(tmp_path / "b"))
    topics = {f.topic: f for f in findings}
    assert topics["onnxruntime"].level == "ok" and ort.__version__ in topics["onnxruntime"].detail
    for provider in ort.get_available_providers():
        assert provider in topics and "ran fusion on" in topics[provider].detail
    assert topics["CPUExecutionProvider"].level == "ok"
    assert {"tensorrt", "sounddevice", "torch", "opencv"} <= set(topics)


def test_doctor_without_a_bundle_says_what_it_skipped():
    findings = diagnose(None)
    assert any(f.topic == "inference" and "skipped" in f.detail for f in findings)
