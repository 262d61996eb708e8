"""What `pip install .` pulls where: pyproject's environment markers resolved for a Jetson (JetPack 6:
Linux aarch64, Python 3.10) and for an x86 box, and the files the wheel must carry. No install is run."""

import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
JETSON = {"platform_machine": "aarch64", "sys_platform": "linux", "python_version": "3.10",
          "python_full_version": "3.10.12", "platform_system": "Linux", "implementation_name": "cpython"}
X86 = {**JETSON, "platform_machine": "x86_64", "python_version": "3.12", "python_full_version": "3.12.3"}


def resolved(requirements: list[str], environment: dict, extra: str = "") -> dict[str, Requirement]:
    """name -> requirement, for those whose marker holds in `environment`."""
    out = {}
    for text in requirements:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate({**environment, "extra": extra}):
            assert requirement.name not in out, f"{requirement.name} is required twice for {environment}"
            out[requirement.name] = requirement
    return out


def test_jetson_base_install_keeps_numpy_1_and_pulls_no_onnxruntime_or_opencv():
    base = resolved(PYPROJECT["project"]["dependencies"], JETSON)
    assert not base["numpy"].specifier.contains("2.0.0") and base["numpy"].specifier.contains("1.26.4")
    assert not {"onnxruntime", "onnxruntime-gpu", "opencv-python", "opencv-python-headless"} & set(base)
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not resolved(extras["gpu"], JETSON, "gpu") and not resolved(extras["tensorrt"], JETSON, "tensorrt")
    assert "scikit-learn" not in base and "torch" not in base  # the runtime-only install


def test_x86_base_install_pulls_onnxruntime_opencv_and_any_numpy():
    base = resolved(PYPROJECT["project"]["dependencies"], X86)
    assert base["numpy"].specifier.contains("2.2.6")
    assert {"onnxruntime", "opencv-python-headless"} <= set(base)
    assert "tensorrt" in resolved(PYPROJECT["project"]["optional-dependencies"]["tensorrt"], X86, "tensorrt")


def test_install_needs_no_compiler():
    """A failed CMake configure (no compiler) builds the pure-Python wheel instead of failing."""
    overrides = PYPROJECT["tool"]["scikit-build"]["overrides"]
    assert {"if": {"failed": True}, "wheel": {"cmake": False}} in overrides


@pytest.mark.parametrize("data_file", ["fusionrt/digits_8x8.npz"])
def test_package_data_is_tracked_and_inside_a_wheel_package(data_file):
    """scikit-build-core puts every file under a wheel.packages folder into the wheel (checked by
    `pip wheel --no-deps . -w /tmp/w`: fusionrt/digits_8x8.npz is in it); git must not ignore it."""
    assert (ROOT / data_file).is_file()
    ignored = subprocess.run(["git", "check-ignore", "-q", data_file], cwd=ROOT).returncode == 0
    assert not ignored, f"{data_file} is git-ignored, so a fresh clone would lack it"
    packages = PYPROJECT["tool"]["scikit-build"]["wheel"]["packages"]
    assert any(data_file.startswith(folder + "/") for folder in packages.values())
