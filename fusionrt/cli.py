"""`fusionrt` command line: each verb is a thin layer over a Python function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusionrt.errors import FusionRTError


def cmd_train(args: argparse.Namespace) -> None:
    from fusionrt.config import load_config
    from fusionrt.models.train import train

    train(load_config(args.config), args.out)


def cmd_export(args: argparse.Namespace) -> None:
    from fusionrt.bundle import describe
    from fusionrt.config import load_config
    from fusionrt.export.from_checkpoint import export_checkpoint

    bundle = export_checkpoint(load_config(args.config), args.checkpoint, args.out, force=args.force)
    print(describe(bundle))


def cmd_inspect(args: argparse.Namespace) -> None:
    from fusionrt.bundle import describe, load

    print(describe(load(args.bundle)))


def cmd_quantize(args: argparse.Namespace) -> None:
    from fusionrt.calibration import CalibrationSet, quantize_bundle

    if args.calib == "builtin":
        calib = CalibrationSet.from_digits(args.bundle, "val", args.count)
    else:
        calib = CalibrationSet.from_directory(args.calib, args.bundle, n=args.count)
    quantize_bundle(
        args.bundle,
        calib,
        args.mode,
        accuracy_budget=args.accuracy_budget,
        calibrator=args.calibrator,
        strict=args.strict,
    )


def cmd_eval(args: argparse.Namespace) -> None:
    from fusionrt.calibration import evaluate_bundle

    report = evaluate_bundle(args.bundle, args.data, tuple(args.variants.split(",")), n=args.count)
    for variant, metrics in report["variants"].items():
        print(f"{variant:<14} accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  ({metrics['count']} items)")


def cmd_engine(args: argparse.Namespace) -> None:
    from fusionrt.calibration import engine_bundle

    engine_bundle(args.bundle, args.precision)


def cmd_doctor(args: argparse.Namespace) -> None:
    from fusionrt.runtime.doctor import diagnose

    for finding in diagnose(args.bundle):
        print(finding)


def cmd_demo(args: argparse.Namespace) -> None:
    from fusionrt.demo import run_demo

    run_demo(Path(args.work), config_path=args.config, retrain=args.retrain, stream_s=args.stream)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionrt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train the reference model on the built-in digits data")
    p.add_argument("--config", required=True, help="YAML or JSON config (e.g. configs/demo.yaml)")
    p.add_argument("--out", required=True, help="run directory for weights, config, tokenizer, metrics")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a trained run to a bundle (per-component ONNX + parity report)")
    p.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    p.add_argument("--checkpoint", required=True, help="model.safetensors written by `fusionrt train`")
    p.add_argument("--out", required=True, help="bundle directory to create")
    p.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="show a bundle's components, variants, IO and parity figures")
    p.add_argument("bundle", help="bundle directory")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("quantize", help="add INT8/FP16 variants, or pick the fastest inside an accuracy budget")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--calib", required=True, help="calibration directory (images/, audio/, text.txt) or 'builtin'")
    p.add_argument("--mode", required=True, choices=["int8-static", "int8-dynamic", "fp16", "auto"])
    p.add_argument("--calibrator", default="minmax", choices=["minmax", "entropy", "percentile"])
    p.add_argument("--accuracy-budget", type=float, default=0.5, help="accuracy points a variant may lose (auto)")
    p.add_argument("--count", type=int, default=128, help="calibration items per modality")
    p.add_argument("--strict", action="store_true", help="exit non-zero when a component misses the budget")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("eval", help="task metrics per variant, run through the exported ONNX files")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--data", default="builtin", help="labelled directory (labels.txt + images/ audio/ text.txt) or 'builtin'")
    p.add_argument("--variants", default="fp32", help="comma-separated: fp32,fp16,int8,int8-dynamic,default")
    p.add_argument("--count", type=int, default=500, help="items of the built-in test split")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("engine", help="build TensorRT engines for a bundle (needs a GPU and TensorRT)")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--precision", required=True, choices=["fp16", "int8"])
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("doctor", help="what this machine can run: providers checked by a real inference, install traps")
    p.add_argument("--bundle", default=None, help="bundle to run the provider checks with")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("demo", help="the whole chain on the built-in data: train, export, quantize, inspect, stream")
    p.add_argument("--config", default=None, help="config (default: the built-in demo config)")
    p.add_argument("--work", default=".", help="where runs/demo and bundles/demo go (default: .)")
    p.add_argument("--retrain", action="store_true", help="train even if runs/demo matches the config")
    p.add_argument("--stream", type=float, default=20.0, help="seconds to stream the test sources (0: skip)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except FusionRTError as e:
        print(f"fusionrt {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"fusionrt {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
