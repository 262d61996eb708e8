"""The camera path: native one-pass convert_resize vs today's OpenCV chain (conversion at capture size,
INTER_AREA resize, RGB flip), per capture size, pixel format and model size; 1 thread, interleaved.

    .venv/bin/python benchmarks/preprocess.py [--repeats 100] [--out benchmarks/results/preprocess]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from fusionrt.runtime.native import convert_resize, native_available, native_status

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "native"))
from native_scenes import TO_BGR, encode, scene  # noqa: E402  (camera-like pictures shared with the tests)

SIZES = ((480, 640), (720, 1280), (1080, 1920))
FORMATS = ("bgr", "yuyv", "uyvy", "nv12", "i420")
OUTPUTS = ((224, 224), (64, 64))


def opencv_chain(src: np.ndarray, fmt: str, out_h: int, out_w: int) -> np.ndarray:
    bgr = src if fmt == "bgr" else cv2.cvtColor(src, TO_BGR[fmt])
    return np.ascontiguousarray(cv2.resize(bgr, (out_w, out_h), interpolation=cv2.INTER_AREA)[:, :, ::-1])


def measure(src, fmt, out_h, out_w, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per call of each path, alternating calls so both see the same machine state."""
    out = np.empty((out_h, out_w, 3), np.uint8)
    paths = {"opencv": lambda: opencv_chain(src, fmt, out_h, out_w),
             "native": lambda: convert_resize(src, fmt, out_h, out_w, out_order="rgb", out=out, use_native=True)}
    times = {name: [] for name in paths}
    for name, call in paths.items():
        call()  # warm caches and allocations
    for _ in range(repeats):
        for name, call in paths.items():
            t0 = time.perf_counter_ns()
            call()
            times[name].append((time.perf_counter_ns() - t0) / 1e6)
    return times


def cpu_line() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [name for name in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "asimd") if name in flags]
    return f"{model}, {platform.machine()}, SIMD: {', '.join(simd) or 'unknown'}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--out", default="benchmarks/results/preprocess")
    args = parser.parse_args(argv)
    if not native_available():
        print(f"nothing to compare: {native_status()}", file=sys.stderr)
        return 1
    cv2.setNumThreads(1)
    rows = []
    for height, width in SIZES:
        picture = scene(height, width)
        for fmt in FORMATS:
            src = encode(picture, fmt)
            for out_h, out_w in OUTPUTS:
                times = measure(src, fmt, out_h, out_w, args.repeats)
                row = {"capture": f"{width}x{height}", "format": fmt, "model": f"{out_w}x{out_h}"}
                for name, values in times.items():
                    row[f"{name}_median_ms"] = round(float(np.median(values)), 3)
                    row[f"{name}_p99_ms"] = round(float(np.percentile(values, 99)), 3)
                row["speedup"] = round(row["opencv_median_ms"] / row["native_median_ms"], 2)
                rows.append(row)
                print(f"{row['capture']:>9} {fmt:>4} -> {row['model']:>7}: opencv {row['opencv_median_ms']:.3f} ms, "
                      f"native {row['native_median_ms']:.3f} ms, x{row['speedup']}", flush=True)
    write(rows, Path(args.out), args.repeats)
    return 0


def write(rows: list[dict], out: Path, repeats: int) -> None:
    meta = {"cpu": cpu_line(), "opencv": cv2.__version__, "threads": 1, "repeats": repeats,
            "opencv_chain": "cvtColor to BGR at capture size + resize INTER_AREA + RGB flip",
            "native": "fusionrt._native convert_resize (one pass, out_order rgb)"}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [f"CPU: {meta['cpu']}; OpenCV {meta['opencv']}; 1 thread; {repeats} interleaved calls per cell.", "",
             "| capture | format | model | OpenCV chain median / p99 (ms) | native median / p99 (ms) | speed-up |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['capture']} | {r['format']} | {r['model']} | {r['opencv_median_ms']:.3f} / {r['opencv_p99_ms']:.3f} "
              f"| {r['native_median_ms']:.3f} / {r['native_p99_ms']:.3f} | {r['speedup']:.2f}x |" for r in rows]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
