"""runtime/native.py's convert_resize: parity with today's OpenCV chain, bad inputs, threads, fallback."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from fusionrt.runtime import native
from fusionrt.runtime.native import PIXEL_FORMATS, convert_resize

from native_scenes import encode, reference, scene

needs_native = pytest.mark.skipif(not native.native_available(), reason="fusionrt._native was not built")
PATHS = [pytest.param(True, marks=needs_native, id="native"), pytest.param(False, id="opencv")]


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize("fmt", PIXEL_FORMATS)
@pytest.mark.parametrize(("size", "out"), [((480, 640), (224, 224)), ((720, 1280), (64, 64)),
                                           ((120, 160), (224, 300)), ((240, 320), (200, 400))])
def test_matches_opencv_conversion_then_resize_within_2_levels(use_native, fmt, size, out):
    src = encode(scene(*size), fmt)
    for order in ("bgr", "rgb"):
        got = convert_resize(src, fmt, *out, out_order=order, use_native=use_native)
        assert got.shape == (*out, 3) and got.dtype == np.uint8
        assert np.abs(got.astype(int) - reference(src, fmt, *out, order)).max() <= 2


@pytest.mark.parametrize("use_native", PATHS)
def test_letterbox_keeps_the_aspect_ratio_and_pads(use_native):
    src = encode(scene(480, 640), "nv12")
    got = convert_resize(src, "nv12", 224, 224, letterbox=True, pad=114, use_native=use_native)
    assert (got[:28] == 114).all() and (got[-28:] == 114).all()  # 640x480 -> 224x168, centred
    assert np.abs(got[28:-28].astype(int) - reference(src, "nv12", 168, 224)).max() <= 2


@needs_native
def test_native_and_fallback_agree_and_yuy2_is_yuyv():
    src = encode(scene(360, 640, seed=3), "yuyv")
    a = convert_resize(src, "yuy2", 96, 128, use_native=True)
    b = convert_resize(src, "yuyv", 96, 128, use_native=False)
    assert np.abs(a.astype(int) - b).max() <= 2


@needs_native
def test_reads_read_only_buffers_and_writes_into_out():
    src = encode(scene(240, 320), "nv12")
    src.flags.writeable = False  # e.g. a mapped V4L2 buffer: only read
    out = np.zeros((32, 48, 3), np.uint8)
    assert convert_resize(src, "nv12", 32, 48, out=out) is out and out.any()


BAD = [
    (np.zeros((480, 640, 3), np.uint8), "nv12", {}, "src: a nv12 frame has shape"),
    (np.zeros((480, 640, 3), np.uint8), "yuyv", {}, r"src: a yuyv frame has shape \(H, W, 2\)"),
    (np.zeros((480, 641, 2), np.uint8), "yuyv", {}, "W even"),
    (np.zeros((721, 640), np.uint8), "nv12", {}, "H and W even"),
    (np.zeros((720, 641), np.uint8), "i420", {}, "H and W even"),
    (np.zeros((480, 640, 3), np.uint16), "bgr", {}, "src: expected a uint8 array"),
    (np.zeros((480, 1280, 3), np.uint8)[:, ::2], "bgr", {}, "C-contiguous"),
    (np.zeros((0, 640, 3), np.uint8), "bgr", {}, r"src: a bgr frame has shape \(H, W, 3\)"),
    ("not a frame", "bgr", {}, "src: expected a uint8 array"),
    (np.zeros((48, 64, 3), np.uint8), "rgba", {}, "fmt: unknown pixel format 'rgba'"),
    (np.zeros((48, 64, 3), np.uint8), "bgr", {"out_h": 0}, "out_h/out_w: expected positive"),
    (np.zeros((48, 64, 3), np.uint8), "bgr", {"out_order": "bgra"}, "out_order"),
    (np.zeros((48, 64, 3), np.uint8), "bgr", {"out": np.zeros((8, 8, 3), np.uint8)}, r"out: expected uint8 \[16, 16, 3\]"),
    (np.zeros((48, 64, 3), np.uint8), "bgr", {"pad": 300}, "pad"),
    (np.zeros((48, 64, 3), np.uint8), "bgr", {"threads": 0}, "threads"),
]


@pytest.mark.parametrize("use_native", PATHS)
@pytest.mark.parametrize(("src", "fmt", "kwargs", "message"), BAD)
def test_bad_input_raises_value_error_naming_the_argument(use_native, src, fmt, kwargs, message):
    kwargs = {"out_h": 16, "out_w": 16, **kwargs}
    with pytest.raises(ValueError, match=message):
        convert_resize(src, fmt, kwargs.pop("out_h"), kwargs.pop("out_w"), use_native=use_native, **kwargs)


@pytest.mark.parametrize("use_native", PATHS)
def test_read_only_out_is_refused(use_native):
    out = np.zeros((16, 16, 3), np.uint8)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="out: expected a writable"):
        convert_resize(np.zeros((48, 64, 3), np.uint8), "bgr", 16, 16, out=out, use_native=use_native)


@needs_native
def test_the_extension_itself_refuses_sizes_that_do_not_match_the_buffer():
    from fusionrt import _native

    out = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="src: holds"):
        _native.convert_resize_into(np.zeros((10, 10), np.uint8), "nv12", 480, 640, out, False, False, 0, 1)
    with pytest.raises(ValueError, match="fmt: unknown"):
        _native.convert_resize_into(np.zeros((10, 10), np.uint8), "xyz", 10, 10, out, False, False, 0, 1)


@needs_native
@pytest.mark.parametrize("threads", [1, 3])
def test_many_python_threads_at_once_give_the_single_thread_result(threads):
    frames = {fmt: encode(scene(240, 320, seed=i), fmt) for i, fmt in enumerate(PIXEL_FORMATS)}
    expected = {fmt: convert_resize(src, fmt, 56, 72) for fmt, src in frames.items()}
    failures = []

    def work(fmt):
        for _ in range(20):
            if not np.array_equal(convert_resize(frames[fmt], fmt, 56, 72, threads=threads), expected[fmt]):
                failures.append(fmt)

    workers = [threading.Thread(target=work, args=(fmt,)) for fmt in PIXEL_FORMATS for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []


def test_without_the_extension_everything_falls_back_to_opencv(monkeypatch):
    monkeypatch.setattr(native, "_native", None)
    monkeypatch.setattr(native, "_MISSING", "No module named 'fusionrt._native'")
    assert not native.native_available() and "OpenCV fallback" in native.native_status()
    src = encode(scene(480, 640), "yuyv")
    np.testing.assert_array_equal(convert_resize(src, "yuyv", 64, 64), reference(src, "yuyv", 64, 64))
    with pytest.raises(ValueError, match="use_native: the native kernel is unavailable"):
        convert_resize(src, "yuyv", 64, 64, use_native=True)


def test_the_package_imports_when_the_extension_is_missing(tmp_path):
    import subprocess
    import sys

    blocker = "import sys; sys.modules['fusionrt._native'] = None\n"  # what a pure-Python wheel looks like
    code = (blocker + "from fusionrt.runtime import native, preprocess\n"
            "import numpy as np\n"
            "assert not native.native_available()\n"
            "print(preprocess.resize_image(np.zeros((48, 64, 2), np.uint8), 8, 8, 'rgb', 'yuyv').shape)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(1, 8, 8, 3)"


def test_built_wherever_a_compiler_was_present():
    """CI builds on a machine with gcc + cmake: the extension must be there, not silently skipped."""
    import shutil

    if not (shutil.which("c++") or shutil.which("g++")) or not shutil.which("cmake"):
        pytest.skip("no C++ compiler or cmake here: the pure-Python fallback is expected")
    assert native.native_available(), native.native_status()
