"""`convert_resize`: a camera frame in its capture pixel format -> uint8 HxWx3 at model size, in one
pass through the native kernel `fusionrt._native` when it was built, else through OpenCV (the
conversion, then `INTER_AREA`/`INTER_LINEAR`). Both paths check their inputs here and agree within
2 levels. Which path runs is `native_status()`; `fusionrt doctor` reports it.
"""

from __future__ import annotations

import numpy as np

PIXEL_FORMATS = ("bgr", "rgb", "yuyv", "uyvy", "nv12", "i420")
ALIASES = {"yuy2": "yuyv", "yuv422": "yuyv"}
CHANNEL_ORDERS = ("bgr", "rgb")

try:
    from fusionrt import _native
except ImportError as e:  # built without a compiler (pure-Python wheel), or a broken build
    _native = None
    _MISSING = str(e)
else:
    _MISSING = ""


def native_available() -> bool:
    return _native is not None


def native_status() -> str:
    """One line: which image path is active and why."""
    if _native is not None:
        return f"native kernel fusionrt._native ({', '.join(PIXEL_FORMATS)} -> model size in one pass)"
    return (f"OpenCV fallback (fusionrt._native not built: {_MISSING}); reinstall with a C++ compiler "
            f"and CMake present (pip install -e .) for the one-pass kernel")


def pixel_format(fmt: object) -> str:
    """The canonical name of a pixel format ("yuy2" -> "yuyv"); ValueError naming `fmt` otherwise."""
    name = ALIASES.get(str(fmt).lower(), str(fmt).lower()) if isinstance(fmt, str) else None
    if name not in PIXEL_FORMATS:
        raise ValueError(f"fmt: unknown pixel format {fmt!r}; expected one of {', '.join(PIXEL_FORMATS)} (or yuy2)")
    return name


def expected_shape(fmt: str, height: int, width: int) -> tuple[int, ...]:
    """The array shape a frame of this format and picture size has (OpenCV's conventions)."""
    fmt = pixel_format(fmt)
    if fmt in ("bgr", "rgb"):
        return (height, width, 3)
    if fmt in ("yuyv", "uyvy"):
        return (height, width, 2)
    return (height * 3 // 2, width)


def picture_size(src: object, fmt: str) -> tuple[int, int]:
    """(height, width) of the picture in `src`; ValueError naming `src` and the expected shape."""
    fmt = pixel_format(fmt)
    if not isinstance(src, np.ndarray) or src.dtype != np.uint8:
        found = f"{src.dtype} array" if isinstance(src, np.ndarray) else type(src).__name__
        raise ValueError(f"src: expected a uint8 array for {fmt}, found {found}")
    shape = src.shape
    if fmt in ("nv12", "i420"):
        ok = src.ndim == 2 and shape[0] % 3 == 0 and shape[0] > 0 and shape[1] > 0
        height, width = (shape[0] * 2 // 3, shape[1]) if ok else (0, 0)
        ok = ok and height % 2 == 0 and width % 2 == 0
        wanted = "(H*3/2, W) with H and W even (Y plane, then chroma)"
    else:
        channels = 3 if fmt in ("bgr", "rgb") else 2
        ok = src.ndim == 3 and shape[2] == channels and shape[0] > 0 and shape[1] > 0
        height, width = (shape[0], shape[1]) if ok else (0, 0)
        ok = ok and (channels == 3 or width % 2 == 0)
        wanted = "(H, W, 3)" if channels == 3 else "(H, W, 2) with W even (4:2:2 pairs)"
    if not ok:
        raise ValueError(f"src: a {fmt} frame has shape {wanted}; found {list(shape)}")
    if not src.flags.c_contiguous:
        raise ValueError(f"src: expected a C-contiguous {fmt} array of shape {list(shape)}; found a strided view "
                         f"(pass np.ascontiguousarray(src))")
    return height, width


def convert_resize(src: np.ndarray, fmt: str, out_h: int, out_w: int, *, out_order: str = "bgr",
                   letterbox: bool = False, pad: int = 0, threads: int = 1,
                   out: np.ndarray | None = None, use_native: bool | None = None) -> np.ndarray:
    """uint8 [out_h, out_w, 3] in `out_order` from a `fmt` frame: area-averaged when both axes shrink,
    else bilinear; `letterbox` keeps the aspect ratio and fills the rest with `pad`. The native
    kernel releases the GIL and may split rows over `threads`. `src` is only read (read-only
    buffers are fine); `out`, when given, must be a writable C-contiguous uint8 [out_h, out_w, 3]."""
    fmt = pixel_format(fmt)
    height, width = picture_size(src, fmt)
    out = _checked_out(out, out_h, out_w)
    if out_order not in CHANNEL_ORDERS:
        raise ValueError(f"out_order: expected 'bgr' or 'rgb', found {out_order!r}")
    if not 0 <= int(pad) <= 255 or not int(threads) >= 1:
        raise ValueError(f"pad/threads: expected pad in 0..255 and threads >= 1, found {pad} and {threads}")
    if use_native is None:
        use_native = _native is not None
    if use_native:
        if _native is None:
            raise ValueError(f"use_native: the native kernel is unavailable: {_MISSING}")
        _native.convert_resize_into(src, fmt, height, width, out, out_order == "rgb", bool(letterbox), int(pad),
                                    int(threads))
        return out
    out[...] = _opencv_path(src, fmt, out_h, out_w, out_order, letterbox, int(pad))
    return out


def _checked_out(out: np.ndarray | None, out_h: object, out_w: object) -> np.ndarray:
    if not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in (out_h, out_w)):
        raise ValueError(f"out_h/out_w: expected positive integers (the model's input size), found {out_h!r}, {out_w!r}")
    if out is None:
        return np.empty((out_h, out_w, 3), np.uint8)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint8 or out.shape != (out_h, out_w, 3):
        found = f"{out.dtype} {list(out.shape)}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ValueError(f"out: expected uint8 [{out_h}, {out_w}, 3], found {found}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"out: expected a writable C-contiguous uint8 [{out_h}, {out_w}, 3] array")
    return out


def to_bgr(src: np.ndarray, fmt: str) -> np.ndarray:
    """The full-size uint8 HxWx3 BGR picture of a frame (OpenCV's conversion; for sinks that draw)."""
    import cv2

    fmt = pixel_format(fmt)
    picture_size(src, fmt)
    if fmt == "bgr":
        return src
    codes = {"rgb": cv2.COLOR_RGB2BGR, "yuyv": cv2.COLOR_YUV2BGR_YUYV, "uyvy": cv2.COLOR_YUV2BGR_UYVY,
             "nv12": cv2.COLOR_YUV2BGR_NV12, "i420": cv2.COLOR_YUV2BGR_I420}
    return cv2.cvtColor(src, codes[fmt])


def _opencv_path(src, fmt, out_h, out_w, out_order, letterbox, pad) -> np.ndarray:
    """Today's chain: conversion at capture size, then INTER_AREA (both axes shrink) or INTER_LINEAR."""
    import cv2

    bgr = to_bgr(src, fmt)
    height, width = bgr.shape[:2]
    inner_h, inner_w, top, left = out_h, out_w, 0, 0
    if letterbox:
        scale = min(out_h / height, out_w / width)
        inner_h = min(max(1, int(height * scale + 0.5)), out_h)
        inner_w = min(max(1, int(width * scale + 0.5)), out_w)
        top, left = (out_h - inner_h) // 2, (out_w - inner_w) // 2
    if (height, width) != (inner_h, inner_w):
        shrink = height >= inner_h and width >= inner_w
        bgr = cv2.resize(bgr, (inner_w, inner_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if out_order == "rgb":
        bgr = bgr[:, :, ::-1]
    if not letterbox:
        return bgr
    canvas = np.full((out_h, out_w, 3), pad, np.uint8)
    canvas[top : top + inner_h, left : left + inner_w] = bgr
    return canvas
