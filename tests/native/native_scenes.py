"""Camera-like test pictures (gradients, filled shapes, text) rendered with OpenCV, and their raw formats."""

from __future__ import annotations

import cv2
import numpy as np

# OpenCV's conversion from each raw format to BGR: the reference path.
TO_BGR = {"rgb": cv2.COLOR_RGB2BGR, "yuyv": cv2.COLOR_YUV2BGR_YUYV, "uyvy": cv2.COLOR_YUV2BGR_UYVY,
          "nv12": cv2.COLOR_YUV2BGR_NV12, "i420": cv2.COLOR_YUV2BGR_I420}


def scene(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 HxWx3 BGR: smooth gradients with sharp-edged coloured discs, lines and text on top."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width, dtype=np.float32)[None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    image = np.stack(np.broadcast_arrays(x, y, (x + y) / 2), -1).astype(np.uint8)
    for _ in range(25):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(image, center, int(rng.integers(3, max(4, height // 4))), color, -1)
        cv2.line(image, center, (int(rng.integers(0, width)), int(rng.integers(0, height))), color, 2)
        origin = (int(rng.integers(0, max(1, width // 2))), int(rng.integers(10, height)))
        cv2.putText(image, "fusionrt 0123", origin, cv2.FONT_HERSHEY_SIMPLEX, float(rng.uniform(0.4, 2.5)), color, 2)
    return image


def encode(bgr: np.ndarray, fmt: str) -> np.ndarray:
    """The frame a camera delivering `fmt` would give for this picture (chroma subsampled by OpenCV)."""
    if fmt == "bgr":
        return bgr
    if fmt == "rgb":
        return np.ascontiguousarray(bgr[:, :, ::-1])
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    if fmt == "i420":
        return i420
    y = i420[:h]
    u = i420[h : h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4 :].reshape(h // 2, w // 2)
    if fmt == "nv12":
        return np.vstack([y, np.stack([u, v], -1).reshape(h // 2, w)])
    u, v = np.repeat(u, 2, 0), np.repeat(v, 2, 0)
    packed = np.empty((h, w, 2), np.uint8)
    luma, chroma = (0, 1) if fmt == "yuyv" else (1, 0)
    packed[..., luma] = y
    packed[:, 0::2, chroma] = u
    packed[:, 1::2, chroma] = v
    return packed


def reference(src: np.ndarray, fmt: str, out_h: int, out_w: int, out_order: str = "bgr") -> np.ndarray:
    """Today's chain: OpenCV's conversion at capture size, then runtime/preprocess.py's resize rule."""
    bgr = src if fmt == "bgr" else cv2.cvtColor(src, TO_BGR[fmt])
    shrink = bgr.shape[0] >= out_h and bgr.shape[1] >= out_w
    out = cv2.resize(bgr, (out_w, out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return out[:, :, ::-1] if out_order == "rgb" else out
