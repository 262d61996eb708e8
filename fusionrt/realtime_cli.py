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
from fusionrt.stopping import quiet_pipes, sigterm_as_interrupt, stop_code
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
from fusionrt.clihelp import DeprecatedAlias, help_formatter, version_line

DEFAULT_BUNDLE = Path("bundles") / "demo"
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


def backend_name(text: str, what: str) -> str:
    """--backend: a `Backend` value or a Triton address (checked here, used as given)."""
    Backend.parse(text)
    return text


def check_outputs(args: argparse.Namespace) -> None:
    """Two outputs naming one file would overwrite each other: refused before the run."""
    named = [(flag, getattr(args, key)) for flag, key in OUTPUT_FLAGS if getattr(args, key) is not None]
    seen: dict[str, str] = {}
    for flag, path in named:
        key = str(Path(path).resolve())
        if key in seen:
            raise ConfigError(f"{seen[key]} and {flag} both write {str(path)!r}; give each output its own file")
        seen[key] = flag


OUTPUT_FLAGS = (("--jsonl", "jsonl"), ("--save-video", "save_video"), ("--trace", "trace"),
                ("--summary-json", "summary_json"))


def build_parser() -> argparse.ArgumentParser:
    """Four groups, one line per option at 100 columns, so `--help` fits one screen (a test holds it)."""
    p = argparse.ArgumentParser(
        prog="realtime-infer", usage="%(prog)s [--camera URI] [--mic URI] [--text SOURCE] [--bundle DIR] [options]",
        description="Run a fusionrt bundle on live or recorded camera, microphone and text sources (README).",
        formatter_class=help_formatter(), add_help=False,
    )  # fmt: skip
    add_source_options(p.add_argument_group("sources (at least one; a source not given is not used)"))
    add_run_options(p.add_argument_group("run"))
    add_output_options(p.add_argument_group("outputs (each off unless given; --json: old spelling of --jsonl)"))
    add_advanced_options(p.add_argument_group("advanced"))
    return p


def add_source_options(g) -> None:
    g.add_argument("--camera", metavar="URI", help="0 | /dev/video0 | FILE.mp4 | DIR | 'x/*.png' | rtsp://.. | test://digits")
    g.add_argument("--mic", metavar="URI", help="default | INDEX | NAME | FILE.wav | FILE.flac | test://dtmf")
    g.add_argument("--text", metavar="SOURCE", help="\"literal text\" | - (stdin lines) | FILE.txt | test://digits")
    g.add_argument("--bundle", metavar="DIR", default=None,
                   help=f"bundle directory (default: {DEFAULT_BUNDLE}, made by `fusionrt demo`)")


def add_run_options(g) -> None:
    g.add_argument("--duration", metavar="S", type=arg_type(duration, "--duration"), default=None,
                   help="stop after S seconds (default: at the sources' end, Ctrl-C or SIGTERM)")
    g.add_argument("--budget-ms", metavar="MS", type=arg_type(duration, "--budget-ms", high=3.6e6), default=33.0,
                   help="end-to-end deadline from capture")
    g.add_argument("--replay", metavar="MODE", choices=["realtime", "deterministic"], default="realtime",
                   help="realtime | deterministic (files, bit-identical)")
    g.add_argument("--trigger", metavar="WHEN", default=None, type=trigger_spec,
                   help="fuse on each image|audio|text input or at a rate in Hz (default: bundle's)")
    g.add_argument("--variant", metavar="NAME",
                   help="variant for every component that has it (default: the manifest's choice)")
    g.add_argument("--backend", metavar="NAME", default=Backend.ORT.value, type=arg_type(backend_name, "--backend"),
                   help=f"{'|'.join(b.value for b in Backend)}|triton://..")  # Triton: README "Scaling out"


def add_output_options(g) -> None:
    g.add_argument("--jsonl", metavar="PATH", type=arg_type(output_path, "--jsonl"),
                   help="write one JSON line per fused result")
    g.add_argument("--json", dest="jsonl", action=DeprecatedAlias, use="--jsonl", help=argparse.SUPPRESS,
                   type=arg_type(output_path, "--json"))
    g.add_argument("--summary-json", metavar="PATH", type=arg_type(output_path, "--summary-json"),
                   help="write the final metrics as one JSON document")
    g.add_argument("--trace", metavar="PATH", type=arg_type(output_path, "--trace"),
                   help="write Chrome trace events (chrome://tracing, Perfetto)")
    g.add_argument("--save-video", metavar="PATH", type=arg_type(output_path, "--save-video"),
                   help="write the camera with the answer overlaid (mp4)")
    g.add_argument("--metrics-port", metavar="PORT", type=arg_type(port, "--metrics-port"),
                   help="serve Prometheus metrics on HOST:PORT/metrics (needs prometheus_client)")
    g.add_argument("--metrics-host", metavar="HOST", default="127.0.0.1",
                   help="bind address; 0.0.0.0 exposes metrics to the network")
    g.add_argument("--quiet", action="store_true", help="no live status line")


def add_advanced_options(g) -> None:
    g.add_argument("--providers", metavar="LIST", help="ONNX Runtime providers in order (default: TensorRT,CUDA,CPU "
                   "as available)")  # fmt: skip
    g.add_argument("--fail-on-fallback", action="store_true", help="exit when a requested provider is not the one running")
    g.add_argument("--precision", metavar="P", default="fp16", choices=list(PRECISIONS),
                   help=f"tensorrt backend's engines: {' | '.join(PRECISIONS)}")
    g.add_argument("--threads", metavar="N", type=arg_type(count, "--threads", high=MAX_THREADS), default=1,
                   help="ONNX Runtime threads per stage")
    g.add_argument("--audio-hop-ms", metavar="MS", type=arg_type(duration, "--audio-hop-ms", high=60_000), default=None,
                   help="cut an audio window every MS (default: the bundle's)")
    g.add_argument("--width", metavar="PX", type=arg_type(count, "--width", high=MAX_CAPTURE_SIDE),
                   help="camera capture width (default: the camera's)")
    g.add_argument("--height", metavar="PX", type=arg_type(count, "--height", high=MAX_CAPTURE_SIDE),
                   help="camera capture height (default: the camera's)")
    g.add_argument("--fps", metavar="HZ", type=arg_type(duration, "--fps", high=1000),
                   help="camera capture rate (default: the camera's)")
    g.add_argument("--camera-raw", action="store_true",
                   help="capture YUYV (V4L2) / NV12 (csi://), convert at model size natively")
    g.add_argument("--loop", action="store_true", help="loop video/audio files")
    g.add_argument("--seed", metavar="N", type=arg_type(number, "--seed", low=0, high=2**32 - 1, integer=True),
                   default=0, help="seed of the test:// sources")
    g.add_argument("-h", "--help", action="help", help=argparse.SUPPRESS)  # 40 lines: -h goes without saying
    g.add_argument("--version", action="version", version=version_line("realtime-infer"))


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
                        metrics_host=args.metrics_host, summary_json=args.summary_json, console=not args.quiet),
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
    """Ctrl-C and SIGTERM stop a run cleanly (summary printed and written, files closed): exit 0.
    Either signal before the run starts exits 130/143; a closed stdout/stderr pipe is quiet."""
    with quiet_pipes(), sigterm_as_interrupt():
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING, format="realtime-infer: %(message)s")
        logging.getLogger("fusionrt.triton").setLevel(logging.INFO)  # a Triton engine's timing split, at its close
        try:
            return run(args)
        except FusionRTError as e:
            print(f"realtime-infer: error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:
            print("realtime-infer: stopped before the run started", file=sys.stderr)
            return stop_code(e)


if __name__ == "__main__":
    sys.exit(main())
