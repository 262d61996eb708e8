"""`fusionrt` command line: each verb is a thin layer over a Python function."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fusionrt.clihelp import help_formatter, version_line
from fusionrt.errors import FusionRTError
from fusionrt.progress import quiet_third_party
from fusionrt.stopping import quiet_pipes, sigterm_as_interrupt, stop_code
from fusionrt.values import MAX_DURATION_S, arg_type, count, duration, number, output_path

QUANT_TARGETS = ("auto", "x86-vnni", "x86-avx2", "aarch64", "tensorrt", "cuda")  # = fusionrt.calibration.target.TARGETS
MAX_ITEMS = 10_000_000  # --count: more items than any dataset here; a typo otherwise


def cmd_train(args: argparse.Namespace) -> None:
    from fusionrt.config import load_config
    from fusionrt.models.train import train

    train(load_config(args.config, args.set), args.out)


def cmd_export(args: argparse.Namespace) -> None:
    from fusionrt.bundle import describe
    from fusionrt.config import load_config
    from fusionrt.export.from_checkpoint import export_checkpoint

    bundle = export_checkpoint(load_config(args.config, args.set), args.checkpoint, args.out, force=args.force)
    print(describe(bundle))


def cmd_inspect(args: argparse.Namespace) -> int:
    """The bundle's table, then (unless --no-check) every variant opened and run as realtime-infer would."""
    from fusionrt.bundle import describe, load

    bundle = load(args.bundle)
    print(describe(bundle))
    if not args.check:
        return 0
    from fusionrt.runtime.check import check_bundle

    result = check_bundle(bundle)
    if result.ok:
        print(result)
        return 0
    for problem in result.problems:
        print(f"fusionrt inspect: error: {problem}", file=sys.stderr)
    return 1


def cmd_quantize(args: argparse.Namespace) -> None:
    from fusionrt.bundle import load
    from fusionrt.calibration import CalibrationSet, quantize_bundle

    bundle = load(args.bundle)  # loaded and hash-checked once
    if args.calib == "builtin":
        calib = CalibrationSet.from_digits(bundle, "val", args.count)
    else:
        calib = CalibrationSet.from_directory(args.calib, bundle, n=args.count)
    quantize_bundle(
        bundle,
        calib,
        args.mode,
        accuracy_budget=args.accuracy_budget,
        calibrator=args.calibrator,
        strict=args.strict,
        target=args.target,
    )


def cmd_eval(args: argparse.Namespace) -> None:
    if args.study:
        return cmd_study(args)  # the alias of `fusionrt study`: the same code path
    from fusionrt.errors import BundleError

    if args.bundle is None:
        raise BundleError("no bundle given: expected `fusionrt eval BUNDLE`, or `fusionrt study` for the effectiveness study")
    from fusionrt.calibration import evaluate_bundle

    report = evaluate_bundle(args.bundle, args.data, tuple(args.variants.split(",")), n=args.count)
    print(f"INT8 kernels of this machine: {report['machine']['cpu_target']} ({report['machine']['kernels']})")
    for variant, metrics in report["variants"].items():
        scores = f"recall {metrics['recall']:.4f}  F1 {metrics['f1']:.4f}" if "f1" in metrics else \
            f"macro-F1 {metrics['macro_f1']:.4f}"
        print(f"{variant:<14} accuracy {metrics['accuracy']:.4f}  {scores}  ({metrics['count']} items)")
        for note in metrics.get("target_mismatch", {}).values():
            print(f"{'':<14} note: {note}")


def cmd_study(args: argparse.Namespace) -> None:
    """`fusionrt study`, and its alias `fusionrt eval --study`."""
    from fusionrt.config import Config, load_config
    from fusionrt.errors import ConfigError
    from fusionrt.study import parse_kinds, parse_seeds, run_study

    if getattr(args, "bundle", None) is not None:
        raise ConfigError(f"--study trains and evaluates its own models; drop the bundle argument {args.bundle!r}")
    config = load_config(args.config) if args.config else Config()
    options = [f"--{k} {v}" for k, v in (("config", args.config), ("kinds", args.kinds)) if v]
    verb = "fusionrt study" if args.command == "study" else "fusionrt eval --study"
    command = " ".join([verb, *options, f"--seeds {args.seeds} --out {args.out} --work {args.work}"])
    kinds = parse_kinds(args.kinds, config) if args.kinds else None
    run_study(config, parse_seeds(args.seeds), args.out, kinds=kinds, work_dir=args.work, command=command)


def cmd_engine(args: argparse.Namespace) -> None:
    from fusionrt.calibration import engine_bundle

    engine_bundle(args.bundle, args.precision)


def cmd_bench(args: argparse.Namespace) -> None:
    from fusionrt.bundle import load
    from fusionrt.runtime.bench import BenchSettings, bench_bundle, format_table, save

    bundle = load(args.bundle)
    given = {"window_ms": args.window_ms, "max_windows": args.max_windows, "warmup_ms": args.warmup_ms,
             "gemm_size": args.gemm_size}  # fmt: skip
    report = bench_bundle(
        bundle,
        components=_names(args.component),
        variants=_names(args.variants),
        backends=_names(args.backends),
        threads=_numbers(args.threads, "--threads"),
        batches=_numbers(args.batches, "--batches"),
        settings=BenchSettings(**{k: v for k, v in given.items() if v is not None}),
    )
    print(format_table(report))
    options = [f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k in _BENCH_OPTIONS and v is not None]
    written = save(report, bundle=bundle, json_path=args.json, csv_path=args.csv, markdown_path=args.markdown,
                   png_path=args.png, command=" ".join(["fusionrt bench", args.bundle, *options]))
    for path in written:
        print(f"wrote {path}")


_BENCH_OPTIONS = ("component", "variants", "backends", "threads", "batches", "window_ms", "max_windows", "warmup_ms",
                  "gemm_size")  # fmt: skip


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def _numbers(text: str | None, flag: str) -> list[int] | None:
    from fusionrt.errors import ConfigError

    if not text:
        return None
    try:
        return [int(n) for n in text.split(",")]  # bench_bundle checks that they are positive
    except ValueError:
        raise ConfigError(f"{flag} {text!r:.60}: expected comma-separated whole numbers, e.g. 1,2,4") from None


def cmd_doctor(args: argparse.Namespace) -> int:
    """Every check printed (or --json); exit 1 when something requested or required fails."""
    from fusionrt.runtime.doctor import doctor

    report = doctor(args.bundle, args.providers)
    print(report.json() if args.json else report.text())
    return report.exit_code


def cmd_triton_export(args: argparse.Namespace) -> None:
    from fusionrt.triton import Serving, write_repository

    serving = Serving(max_batch=args.max_batch, instances=args.instances, delay_us=args.dynamic_batching_delay_us,
                      threads=args.threads)  # fmt: skip
    repository = write_repository(args.bundle, args.out, variant=args.variant, serving=serving)
    for model, variant in repository.variants.items():
        print(f"{model:<20} {variant}")
    print(f"{repository.ensemble:<20} ensemble: encoders -> fusion head (inputs: every encoder's + presence)")
    print(f"wrote {repository.root}; serve it with tritonserver --model-repository={repository.root.resolve()}")


def cmd_demo(args: argparse.Namespace) -> None:
    from fusionrt.demo import run_demo

    run_demo(Path(args.work), config_path=args.config, retrain=args.retrain, stream_s=args.stream)


STUDY_HELP = (
    "train text/image/audio-only and early/late/cross-attention fusion models per seed; "
    "robustness grid, FP32/FP16/INT8, claims; writes study.json/.md/PNGs"
)


def add_study_options(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """The study's options, shared by `fusionrt study` and its alias `fusionrt eval --study`."""
    p.add_argument("--config", default=None, help=f"{prefix}config (default: the built-in demo config)")
    p.add_argument("--seeds", default="0,1,2", help=f"{prefix}train seeds (default 0,1,2)")
    p.add_argument("--kinds", default=None,
                   help=f"{prefix}subset of text,image,audio,early,late,cross_attention (default: all)")
    p.add_argument("--out", default="reports/study", help=f"{prefix}where the results go (default reports/study)")
    p.add_argument("--work", default="runs/study",
                   help=f"{prefix}where trained runs and bundles go (default runs/study)")


def add_bench_settings(p: argparse.ArgumentParser) -> None:
    """bench's measurement options; their defaults are BenchSettings' (one place), shown in the help."""
    from fusionrt.runtime.bench.run import DEFAULT_BATCHES
    from fusionrt.runtime.bench.timing import BenchSettings

    d = BenchSettings()
    p.add_argument("--batches", default=None, help=f"batch sweep (default: {','.join(map(str, DEFAULT_BATCHES))})")
    p.add_argument("--window-ms", type=arg_type(duration, "--window-ms", high=3.6e6), default=None,
                   help=f"measurement window, ms (default: {d.window_ms:g})")
    p.add_argument("--max-windows", type=arg_type(count, "--max-windows", high=100_000), default=None,
                   help=f"windows before a point is flagged unstable (default: {d.max_windows})")
    p.add_argument("--warmup-ms", type=arg_type(number, "--warmup-ms", low=0, high=3.6e6), default=None,
                   help=f"warm-up per point, ms (default: {d.warmup_ms:g})")
    p.add_argument("--gemm-size", type=arg_type(count, "--gemm-size", high=16384), default=None,
                   help=f"N of the N x N x N peak GEMM (default: {d.gemm_size})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fusionrt", description=__doc__, formatter_class=help_formatter())
    parser.add_argument("--version", action="version", version=version_line("fusionrt"))
    sub = _Subparsers(parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                            help="`fusionrt COMMAND -h` shows its options"))

    p = sub.add_parser("train", help="train the reference model on the built-in digits data")
    p.add_argument("--config", required=True, help="YAML or JSON config (e.g. configs/demo.yaml)")
    p.add_argument("--out", required=True, help="run directory for weights, config, tokenizer, metrics")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, value in YAML (e.g. model.fusion.kind=cross_attention); repeatable")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a trained run to a bundle (per-component ONNX + parity report)")
    p.add_argument("--config", required=True, help="the config the checkpoint was trained with")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="the same overrides the run was trained with (or pass RUN_DIR/config.yaml as --config)")
    p.add_argument("--checkpoint", required=True, help="model.safetensors written by `fusionrt train`")
    p.add_argument("--out", required=True, help="bundle directory to create")
    p.add_argument("--force", action="store_true", help="replace a non-empty output directory")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("inspect", help="show a bundle's components, variants, IO and parity figures")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                   help="open and run every variant in ONNX Runtime and check the whole runtime contract: model IO "
                   "against the manifest, tokenizer, embedding and fusion widths, labels (default: on; "
                   "--no-check shows the manifest only)")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("quantize", help="add INT8/FP16 variants, or pick the fastest inside an accuracy budget")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--calib", required=True, help="calibration directory (images/, audio/, text.txt) or 'builtin'")
    p.add_argument("--mode", required=True, choices=["int8-static", "int8-dynamic", "fp16", "auto"],
                   help="the variant to add, or auto: the fastest variant inside --accuracy-budget")
    p.add_argument("--calibrator", default="minmax", choices=["minmax", "entropy", "percentile"],
                   help="how int8-static activation ranges are chosen")
    p.add_argument("--target", default="auto", choices=QUANT_TARGETS,
                   help="what the INT8 variants are for, which picks their scheme: auto (this CPU), x86-vnni "
                   "(u8s8 per-channel), x86-avx2 (7-bit weights, 8-bit in depthwise convolutions: no saturation "
                   "without VNNI), aarch64 (u8s8), "
                   "tensorrt (static QDQ s8s8 symmetric; no dynamic INT8), cuda (fp16 only); a GPU target's choice "
                   "is its own default (defaults_by_target), the CPU default stays")
    p.add_argument("--accuracy-budget", type=arg_type(number, "--accuracy-budget", low=0, high=100), default=0.5,
                   help="accuracy points a variant may lose (auto)")
    p.add_argument("--count", type=arg_type(count, "--count", high=MAX_ITEMS), default=128,
                   help="calibration items per modality")
    p.add_argument("--strict", action="store_true", help="exit non-zero when a component misses the budget")
    p.set_defaults(func=cmd_quantize)

    p = sub.add_parser("eval", help="task metrics per variant, run through the exported ONNX files; --study: the effectiveness study")
    p.add_argument("bundle", nargs="?", help="bundle directory (not with --study)")
    p.add_argument("--data", default="builtin",
                   help="labelled directory (labels.txt + images/ audio/ text.txt) or 'builtin'")
    p.add_argument("--variants", default="fp32", help="comma-separated: fp32,fp16,int8,int8-dynamic,default")
    p.add_argument("--count", type=arg_type(count, "--count", high=MAX_ITEMS), default=500,
                   help="items of the built-in test split")
    p.add_argument("--study", action="store_true", help=f"the same as `fusionrt study`: {STUDY_HELP}")
    add_study_options(p, "--study: ")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("study", help=f"the effectiveness study: {STUDY_HELP}",
                       description=f"The effectiveness study: {STUDY_HELP}. Alias: fusionrt eval --study.")  # fmt: skip
    add_study_options(p)
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("engine", help="build TensorRT engines for a bundle (needs a GPU and TensorRT)")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--precision", required=True, choices=["fp16", "int8"],
                   help="fp16: FP16 engines from the fp32 ONNX; int8: INT8 engines from the bundle's static QDQ "
                   "variants (quantize --mode int8-static first)")
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("bench", help="latency per component and whole model, variant, backend, threads and batch, "
                       "against this machine's GEMM peak")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--component", default=None, help="comma-separated components and/or 'model' (default: all + model)")
    p.add_argument("--variants", default=None,
                   help="comma-separated ONNX variants / TensorRT precisions (default: all; "
                   "the torch backend always runs the reference weights)")
    p.add_argument("--backends", default=None, help="comma-separated backends: torch,ort-cpu,ort-cuda,ort-tensorrt,"
                   "tensorrt (default: all; those that cannot run here are listed as skipped; plain 'ort' is refused: "
                   "bench pins one provider per backend)")
    p.add_argument("--threads", default=None, help="thread sweep, e.g. 1,2 (default: 1, 2, 4, ... cores)")
    add_bench_settings(p)
    p.add_argument("--json", default=None, type=arg_type(output_path, "--json"), metavar="PATH",
                   help="write the JSON report here (default: BUNDLE/reports/bench.json)")
    p.add_argument("--csv", default=None, type=arg_type(output_path, "--csv"), metavar="PATH",
                   help="also write a CSV row per point (default: not written)")
    p.add_argument("--markdown", default=None, type=arg_type(output_path, "--markdown"), metavar="PATH",
                   help="also write Markdown tables (default: not written)")
    p.add_argument("--png", default=None, type=arg_type(output_path, "--png"), metavar="PATH",
                   help="also write latency CDFs (and accuracy vs latency) as a PNG (default: not written)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("doctor", help="what this machine can run: providers checked by a real inference, install traps; "
                       "exits 1 when something requested or required fails")
    p.add_argument("--bundle", default=None,
                   help="run each component once on each provider and report where its nodes ran (default: none)")
    p.add_argument("--providers", default=None,
                   help="providers that must exist and run the bundle, e.g. cuda,tensorrt (default: none required)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object (default: text)")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("triton-export", help="write the bundle as a Triton Inference Server model repository: a model "
                       "per component and an ensemble (README \"Scaling out with Triton\")")
    p.add_argument("bundle", help="bundle directory")
    p.add_argument("--out", required=True, help="repository folder to create (must not exist or be empty)")
    p.add_argument("--variant", default="auto",
                   help="auto (each component's default) | a variant or precision, e.g. fp32, int8 (fp32 where a "
                   "component lacks it) | tensorrt-fp16, tensorrt-int8 (the bundle's TensorRT plans)")
    p.add_argument("--max-batch", type=arg_type(count, "--max-batch", high=65536), default=8,
                   help="max_batch_size of each model: the largest batch dynamic batching forms")
    p.add_argument("--instances", type=arg_type(count, "--instances", high=256), default=1,
                   help="instances of each model (instance_group count, KIND_AUTO)")
    p.add_argument("--dynamic-batching-delay-us", type=arg_type(number, "--dynamic-batching-delay-us", low=0,
                   high=10_000_000, integer=True), default=100,
                   help="how long the server waits to fill a batch (max_queue_delay_microseconds)")
    p.add_argument("--threads", type=arg_type(count, "--threads", high=256), default=1,
                   help="ONNX Runtime intra-op threads per instance (intra_op_thread_count)")
    p.set_defaults(func=cmd_triton_export)

    p = sub.add_parser("demo", help="the whole chain on the built-in data: train, export, quantize, inspect, stream")
    p.add_argument("--config", default=None, help="config (default: the built-in demo config)")
    p.add_argument("--work", default=".", help="where runs/demo and bundles/demo go (default: .)")
    p.add_argument("--retrain", action="store_true", help="train even if runs/demo matches the config")
    p.add_argument("--stream", type=arg_type(number, "--stream", low=0, high=MAX_DURATION_S), default=20.0,
                   help="seconds to stream the test sources (0: skip)")
    p.set_defaults(func=cmd_demo)
    return parser


class _Subparsers:
    """add_parser with the shared conventions: defaults shown in every help, and --verbose on the long
    verbs (third-party warnings shown as they come instead of folded into one line each at the end)."""

    LONG_VERBS = ("train", "export", "quantize", "eval", "study", "engine", "bench", "demo")

    def __init__(self, action) -> None:
        self.action = action

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        p = self.action.add_parser(name, formatter_class=help_formatter(), **kwargs)
        if name in self.LONG_VERBS:
            p.add_argument("--verbose", action="store_true",
                           help="show third-party warnings and logs (ONNX Runtime, ONNX, torch) as they come")
        return p


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 on a FusionRTError, 130/143 when Ctrl-C/SIGTERM cut the work short
    (fusionrt/stopping.py). A reader that closes the pipe (`fusionrt inspect | head`) ends the output quietly."""
    with quiet_pipes(), sigterm_as_interrupt():
        args = build_parser().parse_args(argv)
        try:
            with quiet_third_party(getattr(args, "verbose", True)):
                code = args.func(args)
        except FusionRTError as e:
            print(f"fusionrt {args.command}: error: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt as e:
            what = "terminated (SIGTERM)" if stop_code(e) == 143 else "interrupted"
            print(f"fusionrt {args.command}: {what}; a bundle being changed keeps its previous state", file=sys.stderr)
            return stop_code(e)
        return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
