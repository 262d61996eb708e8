"""`fusionrt` command line: each verb is a thin layer over a Python function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusionrt.errors import FusionRTError


def cmd_train(args: argparse.Namespace) -> None:
    from fusionrt.config import load_config
    from fusionrt.train import train

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


def cmd_demo(args: argparse.Namespace) -> None:
    from fusionrt.demo import run_demo

    run_demo(Path(args.work), config_path=args.config, retrain=args.retrain)


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

    p = sub.add_parser("demo", help="the whole chain on the built-in data: train, export, inspect")
    p.add_argument("--config", default=None, help="config (default: the built-in demo config)")
    p.add_argument("--work", default=".", help="where runs/demo and bundles/demo go (default: .)")
    p.add_argument("--retrain", action="store_true", help="train even if runs/demo matches the config")
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
