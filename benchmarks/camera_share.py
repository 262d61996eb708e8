"""The camera stage's share of end to end in a realtime run at 1080p: a YUYV camera converted to BGR
at capture size then resized (the OpenCV path every V4L2 capture takes by default) against the raw
frame handed to the image stage and converted once at model size (`--camera-raw`).

    .venv/bin/python benchmarks/camera_share.py --bundle bundles/demo [--seconds 20] [--fps 30]

A synthetic 1080p YUYV camera (camera-like scenes, tests/native/native_scenes.py) stands in for a
device: same frames, same rate, capture time taken before any conversion, so end to end includes
it. Runs alternate (raw, bgr, raw, bgr...). Camera stage = capture conversion + image.preprocess.
Results: benchmarks/results/camera_share.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from fusionrt.frame import Frame, Modality
from fusionrt.runtime import Budget, Pipeline, SourceOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "native"))
from native_scenes import encode, scene  # noqa: E402
from preprocess import cpu_line  # noqa: E402  (benchmarks/preprocess.py: CPU model and SIMD flags)

RESULTS = Path(__file__).resolve().parent / "results"


class YuyvCamera:
    """A 1080p YUYV camera at `fps`: raw frames, or converted to BGR at capture size as OpenCV does."""

    modality = Modality.IMAGE

    def __init__(self, frames: list[np.ndarray], fps: float, seconds: float, raw: bool) -> None:
        self.yuyv, self.fps, self.seconds, self.raw = frames, fps, seconds, raw
        self.uri = "synthetic://yuyv-1080p"
        self.options = SourceOptions(fps=fps)
        self.rate_hz = fps
        self.convert_ms: list[float] = []
        self._closed = threading.Event()

    def frames(self):
        start = time.monotonic_ns()
        for seq in range(int(self.seconds * self.fps)):
            if self._closed.wait(max(0.0, (start + seq * 1e9 / self.fps - time.monotonic_ns()) / 1e9)):
                return
            t_ns = time.monotonic_ns()
            data = self.yuyv[seq % len(self.yuyv)]
            if self.raw:
                yield Frame(Modality.IMAGE, t_ns, seq, data, pixel_format="yuyv")
                continue
            t0 = time.perf_counter_ns()
            bgr = cv2.cvtColor(data, cv2.COLOR_YUV2BGR_YUYV)
            self.convert_ms.append((time.perf_counter_ns() - t0) / 1e6)
            yield Frame(Modality.IMAGE, t_ns, seq, bgr)

    def close(self) -> None:
        self._closed.set()


def one_run(bundle: str, frames, fps: float, seconds: float, raw: bool) -> dict:
    camera = YuyvCamera(frames, fps, seconds, raw)
    pipeline = Pipeline.from_bundle(bundle, {"image": camera}, budget=Budget(deadline_ms=1000.0 / fps))
    metrics = pipeline.run().metrics
    stages = metrics["stages_ms"]
    convert = float(np.median(camera.convert_ms)) if camera.convert_ms else 0.0
    preprocess, e2e = stages["image.preprocess"]["p50"], metrics["e2e_ms"]["p50"]
    return {"path": "raw yuyv -> native" if raw else "yuyv -> bgr at capture -> resize", "results": metrics["results"],
            "convert_p50_ms": convert, "preprocess_p50_ms": preprocess, "encode_p50_ms": stages["image.encode"]["p50"],
            "e2e_p50_ms": e2e, "e2e_p99_ms": metrics["e2e_ms"]["p99"],
            "camera_share": (convert + preprocess) / e2e}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default="bundles/demo")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    frames = [encode(scene(1080, 1920, seed=k), "yuyv") for k in range(8)]
    runs = [one_run(args.bundle, frames, args.fps, args.seconds, raw) for _ in range(args.pairs) for raw in (True, False)]
    report = {"command": " ".join(["python", *sys.argv]), "machine": cpu_line(), "bundle": args.bundle, "runs": runs}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "camera_share.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Camera stage share at 1080p YUYV, {args.fps:g} fps", "", f"`{report['command']}`", "",
             f"Machine: {report['machine']}. Bundle: {args.bundle}.", "",
             "| path | results | capture conversion p50 ms | image.preprocess p50 ms | image.encode p50 ms | "
             "e2e p50 ms | e2e p99 ms | camera share of e2e p50 |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['results']} | {r['convert_p50_ms']:.2f} | {r['preprocess_p50_ms']:.2f} | "
              f"{r['encode_p50_ms']:.2f} | {r['e2e_p50_ms']:.2f} | {r['e2e_p99_ms']:.2f} | {r['camera_share']:.0%} |"
              for r in runs]
    (RESULTS / "camera_share.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
