"""`realtime-infer`: stream camera, microphone and text sources through a bundle. Argument parsing
only; the work is `fusionrt.runtime.run_realtime`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from fusionrt.bundle import PRECISIONS
from fusionrt.errors import ConfigError, FusionRTError
from fusionrt.frame import Modality
from fusionrt.runtime.backend import Backend
from fusionrt.values import (
    MAX_TRIGGER_HZ,
    MIN_TRIGGER_HZ,
    arg_type,
    count,
    duration,
    number,
    output_path,
    port,
)

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
MAX_CAPTURE_SIDE = 16384
MAX_THREADS = 256


def trigger_spec(text: str) -> str:
    """--trigger: a modality name, or a finite rate in Hz within [MIN_TRIGGER_HZ, MAX_TRIGGER_HZ]."""
    if text in tuple(m.value for m in Modality):
        return text
    try:
        rate = number(text, "--trigger", low=MIN_TRIGGER_HZ, high=MAX_TRIGGER_HZ)
    except ConfigError:
        raise argparse.ArgumentTypeError(
            f"{text!r:.40}: expected image, audio, text or a rate in Hz in [{MIN_TRIGGER_HZ:g}, {MAX_TRIGGER_HZ:g}]"
        ) from None
    return repr(float(rate))


def check_outputs(args: argparse.Namespace) -> None:
    """Two outputs naming one file would overwrite each other: refused before the run."""
    named = [(flag, getattr(args, key)) for flag, key in OUTPUT_FLAGS if getattr(args, key) is not None]
    seen: dict[str, str] = {}
    for flag, path in named:
        key = str(Path(path).resolve())
        if key in seen:
            raise ConfigError(f"{seen[key]} and {flag} both write {str(path)!r}; give each output its own file")
        seen[key] = flag


OUTPUT_FLAGS = (("--json", "jsonl"), ("--save-video", "save_video"), ("--trace", "trace"),
                ("--summary-json", "summary_json"))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="realtime-infer",
        description="Run a fusionrt bundle on live or recorded camera, microphone and text sources.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bundle", default=None,
                   help=f"bundle directory (default: {DEFAULT_BUNDLE}, made by `fusionrt demo`)")
    p.add_argument("--camera", help="camera URI (see below)")
    p.add_argument("--mic", help="microphone URI (see below)")
    p.add_argument("--text", help="text source (see below)")
    p.add_argument("--budget-ms", type=arg_type(duration, "--budget-ms", high=3.6e6), default=33.0,
                   help="end-to-end deadline from capture (default 33)")
    p.add_argument("--duration", type=arg_type(duration, "--duration"), default=None,
                   help="stop after S seconds (default: until the sources end or Ctrl-C)")
    p.add_argument("--json", dest="jsonl", type=arg_type(output_path, "--json"),
                   help="write one JSON line per fused result to OUT.jsonl")
    p.add_argument("--save-video", type=arg_type(output_path, "--save-video"),
                   help="write the camera with the answer overlaid to OUT.mp4")
    p.add_argument("--trace", type=arg_type(output_path, "--trace"),
                   help="write Chrome trace events of each result's path to OUT.json")
    p.add_argument("--metrics-port", type=arg_type(port, "--metrics-port"),
                   help="serve Prometheus metrics on 127.0.0.1:PORT")
    p.add_argument("--summary-json", type=arg_type(output_path, "--summary-json"),
                   help="write the final metrics as JSON to this file")
    p.add_argument("--backend", default=Backend.ORT.value, choices=[b.value for b in Backend],
                   help="inference backend: ONNX Runtime with providers in priority order (default), ONNX Runtime "
                   "pinned to one provider (ort-cpu, ort-cuda, ort-tensorrt: no fallback), the bundle's reference "
                   "PyTorch model (needs torch: pip install 'fusionrt[export]') or the bundle's TensorRT engines "
                   "(built on this device by `fusionrt engine`; needs tensorrt and cuda-python)")
    p.add_argument("--precision", default="fp16", choices=list(PRECISIONS),
                   help="which TensorRT engines the tensorrt backend runs (default fp16)")
    p.add_argument("--providers", help="comma-separated ONNX Runtime providers in priority order "
                   "(default: TensorRT, CUDA, CPU as available)")
    p.add_argument("--fail-on-fallback", action="store_true",
                   help="exit when a requested provider is not the one running")
    p.add_argument("--threads", type=arg_type(count, "--threads", high=MAX_THREADS), default=1,
                   help="ONNX Runtime threads per stage (default 1)")
    p.add_argument("--variant", help="variant for every component that has it (default: the manifest's choice)")
    p.add_argument("--replay", choices=["realtime", "deterministic"], default="realtime",
                   help="files: replay at native rate (drops allowed) or as fast as possible, bit-identical")
    p.add_argument("--trigger", default=None, type=trigger_spec,
                   help="fuse on every input of image|audio|text, or at a rate in Hz")
    p.add_argument("--audio-hop-ms", type=arg_type(duration, "--audio-hop-ms", high=60_000), default=None,
                   help="cut an audio window every N ms (default: the bundle's)")
    p.add_argument("--width", type=arg_type(count, "--width", high=MAX_CAPTURE_SIDE), help="camera capture width")
    p.add_argument("--height", type=arg_type(count, "--height", high=MAX_CAPTURE_SIDE),
                   help="camera capture height")
    p.add_argument("--fps", type=arg_type(duration, "--fps", high=1000), help="camera capture rate")
    p.add_argument("--loop", action="store_true", help="loop video/audio files")
    p.add_argument("--camera-raw", action="store_true",
                   help="V4L2 cameras: capture YUYV, csi://: NV12, and convert once at model size in the native "
                        "kernel (check the device still gives its frame rate in YUYV: USB webcams often give "
                        "1080p30 only as MJPG)")
    p.add_argument("--seed", type=arg_type(number, "--seed", low=0, high=2**32 - 1, integer=True), default=0,
                   help="seed of the test:// sources")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    return p


def run(args: argparse.Namespace) -> int:
    from fusionrt.runtime import Budget, Outputs, SourceOptions, Trigger, run_realtime

    check_outputs(args)
    bundle = Path(args.bundle) if args.bundle else DEFAULT_BUNDLE
    if args.bundle is None and not (bundle / "manifest.json").is_file():
        raise ConfigError(f"no --bundle given and {DEFAULT_BUNDLE} does not exist; run `fusionrt demo` or pass --bundle")
    run_realtime(
        bundle,
        camera=args.camera,
        mic=args.mic,
        text=args.text,
        duration_s=args.duration,
        budget=Budget(deadline_ms=args.budget_ms),
        trigger=Trigger.parse(args.trigger, what="--trigger"),
        options=SourceOptions(width=args.width, height=args.height, fps=args.fps, loop=args.loop, replay=args.replay,
                              seed=args.seed, raw_capture=args.camera_raw),
        outputs=Outputs(jsonl=args.jsonl, trace=args.trace, video=args.save_video, metrics_port=args.metrics_port,
                        summary_json=args.summary_json, console=not args.quiet),
        backend=args.backend,
        precision=args.precision,  # only the tensorrt backend reads it
        variant=args.variant,
        providers=[p.strip() for p in args.providers.split(",")] if args.providers else None,
        fail_on_fallback=args.fail_on_fallback,
        threads=args.threads,
        audio_hop_s=args.audio_hop_ms / 1000 if args.audio_hop_ms is not None else None,
    )
    return 0


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
