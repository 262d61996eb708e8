import subprocess
import sys


def test_runtime_imports_without_torch():
    code = (
        "import sys, fusionrt.runtime, fusionrt.bundle;"
        "bad = [m for m in ('torch', 'transformers') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_stage_folders_map_into_package():
    import fusionrt.calibration
    import fusionrt.export
    import fusionrt.runtime

    assert fusionrt.export.__name__ == "fusionrt.export"
    assert fusionrt.runtime.OrtEngine.__module__ == "fusionrt.runtime.engine"
    assert fusionrt.calibration.__doc__
