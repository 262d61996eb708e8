"""`realtime-infer`: stream camera, microphone and text sources through a bundle."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from fusionrt.errors import ConfigError, FusionRTError

DEFAULT_BUNDLE = Path("bundles") / "demo"
EPILOG = """\
sources:  --camera 0 | /dev/video0 | v4l2:///dev/video0 | FILE.mp4 | DIR | 'frames/*.png' | rtsp://... |
                   gst:PIPELINE | csi://0 | test://digits
          --mic default | INDEX | NAME | FILE.wav | FILE.flac | test://dtmf
          --text "a literal message" | - (stdin lines) | FILE.txt (optionally t_ms<TAB>text) | test://digits
examples:
  realtime-infer --camera 0 --mic default --text -
  realtime-infer --bundle bundles/demo --camera test://digits --mic test://dtmf --text test://digits --duration 20
  realtime-infer --camera clip.mp4 --mic clip.wav --replay deterministic --json out.jsonl --save-video out.mp4
"""


@dataclass
class GroundTruth:
    """Accuracy of the fused answers against the labels the test:// sources know."""

    labels: tuple[str, ...]
    seen: int = 0
    right: int = 0

    def __call__(self, result) -> None:
        if result.label is not None and result.top_k:
            self.seen += 1
            self.right += result.top_label == self.labels[result.label]

    def line(self) -> str | None:
        if not self.seen:
            return None
        return f"accuracy against the sources' ground truth: {self.right / self.seen:.3f} ({self.right}/{self.seen})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="realtime-infer",
        description="Run a fusionrt bundle on live or recorded camera, microphone and text sources.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bundle", default=None, help=f"bundle directory (default: {DEFAULT_BUNDLE}, made by `fusionrt demo`)")
    p.add_argument("--camera", help="camera URI (see below)")
    p.add_argument("--mic", help="microphone URI (see below)")
    p.add_argument("--text", help="text source (see below)")
    p.add_argument("--budget-ms", type=float, default=33.0, help="end-to-end deadline from capture (default 33)")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: until the sources end or Ctrl-C)")
    p.add_argument("--json", dest="jsonl", help="write one JSON line per fused result to OUT.jsonl")
    p.add_argument("--save-video", help="write the camera with the answer overlaid to OUT.mp4")
    p.add_argument("--trace", help="write Chrome trace events of each result's path to OUT.json")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("--summary-json", help="write the final metrics as JSON to this file")
    p.add_argument("--backend", default="ort", choices=["ort", "torch", "tensorrt"],
                   help="inference backend: ONNX Runtime (default), the bundle's reference PyTorch model "
                   "(needs torch: pip install 'fusionrt[export]') or the bundle's TensorRT engines (built on "
                   "this device by `fusionrt engine`; needs tensorrt and cuda-python)")
    p.add_argument("--precision", default="fp16", choices=["fp16", "int8", "fp32"],
                   help="which TensorRT engines the tensorrt backend runs (default fp16)")
    p.add_argument("--providers", help="comma-separated ONNX Runtime providers in priority order "
                   "(default: TensorRT, CUDA, CPU as available)")
    p.add_argument("--fail-on-fallback", action="store_true", help="exit when a requested provider is not the one running")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per stage (default 1)")
    p.add_argument("--variant", help="variant for every component that has it (default: the manifest's choice)")
    p.add_argument("--replay", choices=["realtime", "deterministic"], default="realtime",
                   help="files: replay at native rate (drops allowed) or as fast as possible, bit-identical")
    p.add_argument("--trigger", default=None, help="fuse on every input of image|audio|text, or at a rate in Hz")
    p.add_argument("--audio-hop-ms", type=float, default=None, help="cut an audio window every N ms (default: the bundle's)")
    p.add_argument("--width", type=int, help="camera capture width")
    p.add_argument("--height", type=int, help="camera capture height")
    p.add_argument("--fps", type=float, help="camera capture rate")
    p.add_argument("--loop", action="store_true", help="loop video/audio files")
    p.add_argument("--seed", type=int, default=0, help="seed of the test:// sources")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    return p


def run(args: argparse.Namespace) -> int:
    from fusionrt.bundle import load
    from fusionrt.runtime import (
        Budget,
        ConsoleSink,
        JsonlSink,
        Pipeline,
        PrometheusSink,
        SourceOptions,
        TraceSink,
        VideoSink,
        open_source,
    )

    if not (args.camera or args.mic or args.text):
        raise ConfigError("no source: give at least one of --camera, --mic, --text (e.g. --camera 0)")
    bundle_path = Path(args.bundle) if args.bundle else DEFAULT_BUNDLE
    if args.bundle is None and not (bundle_path / "manifest.json").is_file():
        raise ConfigError(f"no --bundle given and {DEFAULT_BUNDLE} does not exist; run `fusionrt demo` or pass --bundle")
    bundle = load(bundle_path)

    options = SourceOptions(
        width=args.width,
        height=args.height,
        fps=args.fps,
        loop=args.loop,
        replay=args.replay,
        sample_rate=bundle.encoder("audio").preprocessing["sample_rate"] if "audio" in bundle.modalities else 16000,
        seed=args.seed,
    )
    wanted = {"image": args.camera, "audio": args.mic, "text": args.text}
    sources = {}
    try:
        for modality, uri in wanted.items():
            if uri is None:
                continue
            if modality not in bundle.modalities:
                raise ConfigError(f"--{_flag(modality)} given but bundle {bundle.root} has no {modality} encoder "
                                  f"(it fuses {list(bundle.modalities)})")
            sources[modality] = open_source(uri, modality, options=options)

        sinks = [] if args.quiet else [ConsoleSink(stream=sys.stderr)]
        if args.jsonl:
            sinks.append(JsonlSink(args.jsonl))
        if args.trace:
            sinks.append(TraceSink(args.trace))
        if args.save_video:
            sinks.append(VideoSink(args.save_video))
        if args.metrics_port is not None:
            sinks.append(PrometheusSink(args.metrics_port))

        providers = [p.strip() for p in args.providers.split(",")] if args.providers else None
        pipeline = Pipeline.from_bundle(
            bundle,
            sources,
            budget=Budget(deadline_ms=args.budget_ms),
            trigger=_trigger(args.trigger),
            variant=args.variant,
            providers=providers,
            fail_on_fallback=args.fail_on_fallback,
            threads=args.threads,
            sinks=sinks,
            audio_hop_s=args.audio_hop_ms / 1000 if args.audio_hop_ms else None,
            backend=args.backend,
            precision=args.precision,  # only the tensorrt backend reads it
        )
    except BaseException:
        for source in sources.values():
            source.close()
        raise
    truth = GroundTruth(bundle.labels)
    summary = pipeline.run(duration_s=args.duration, on_result=truth)
    print(summary.table)
    accuracy = truth.line()
    if accuracy:
        print(accuracy)
    if args.summary_json:
        extra = {"accuracy": truth.right / truth.seen} if truth.seen else {}
        Path(args.summary_json).write_text(json.dumps({**summary.metrics, **extra, "stopped_by": summary.stopped_by}, indent=2))
    return 0


def _trigger(spec: str | None):
    from fusionrt.runtime import Trigger

    if spec is None:
        return None
    if spec in ("image", "audio", "text"):
        return Trigger.on(spec)
    try:
        return Trigger.at_rate(float(spec))
    except ValueError:
        raise ConfigError(f"--trigger {spec!r}; expected image, audio, text or a rate in Hz") from None


def _flag(modality: str) -> str:
    return {"image": "camera", "audio": "mic", "text": "text"}[modality]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="realtime-infer: %(message)s")
    try:
        return run(args)
    except FusionRTError as e:
        print(f"realtime-infer: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
