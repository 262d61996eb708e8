"""CLI conventions of both programs: --version, a default in every option's help, realtime-infer's help
on one screen in four groups, engine --precision explained, the deprecated --json spelling still working."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from fusionrt import __version__
from fusionrt.cli import build_parser as fusionrt_parser
from fusionrt.realtime_cli import build_parser as realtime_parser


def parsers():
    yield "realtime-infer", realtime_parser()
    top = fusionrt_parser()
    yield "fusionrt", top
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from ((f"fusionrt {name}", p) for name, p in action.choices.items())


FLAGS = (argparse._HelpAction, argparse._VersionAction, argparse._StoreTrueAction, argparse._StoreFalseAction,
         argparse._SubParsersAction)


def off_unless_given(parser) -> set:
    """Options of a group whose title says they are off unless given (realtime-infer's sources and outputs)."""
    return {id(a) for g in parser._action_groups if "unless given" in (g.title or "") or "not given" in (g.title or "")
            for a in g._group_actions}


def test_every_option_says_its_default():
    missing = []
    for name, parser in parsers():
        formatter = parser._get_formatter()
        exempt = off_unless_given(parser)
        for action in parser._actions:
            if id(action) in exempt:
                continue
            if not action.option_strings or action.required or isinstance(action, FLAGS):
                continue
            if action.help == argparse.SUPPRESS:
                continue
            text = formatter._expand_help(action) if action.help else ""
            if "default" not in text:
                missing.append(f"{name} {action.option_strings[0]}")
    assert not missing, missing


def test_every_option_has_help():
    bare = [f"{name} {a.option_strings[0] if a.option_strings else a.dest}"
            for name, parser in parsers() for a in parser._actions if not a.help]
    assert not bare, bare


@pytest.mark.parametrize("module,prog", [("fusionrt.cli", "fusionrt"), ("fusionrt.realtime_cli", "realtime-infer")])
def test_version(module, prog):
    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith(f"{prog} {__version__} (Python ")


def test_realtime_help_fits_one_screen_in_groups(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    text = realtime_parser().format_help()
    lines = text.rstrip("\n").splitlines()
    assert len(lines) <= 40, len(lines)
    assert max(map(len, lines)) <= 100
    headings = [line for line in lines if line and not line.startswith(" ") and line.endswith(":")]
    assert [h.split(" ")[0].rstrip(":") for h in headings] == ["sources", "run", "outputs", "advanced"]
    assert "--bundle DIR" in text and "(default: bundles/demo" in text
    assert "--metrics-host HOST" in text and "(default: 127.0.0.1)" in text
    assert "--jsonl PATH" in text and "--json PATH" not in text  # the old spelling works but is not advertised


def test_engine_precision_is_explained():
    sub = next(a for a in fusionrt_parser()._actions if isinstance(a, argparse._SubParsersAction))
    help_text = sub.choices["engine"].format_help()
    assert "fp16: FP16 engines" in help_text and "int8-static" in help_text


def test_deprecated_json_spelling_still_writes_jsonl(capsys):
    args = realtime_parser().parse_args(["--camera", "test://digits", "--json", "out.jsonl"])
    assert str(args.jsonl) == "out.jsonl"
    assert "--json is deprecated; use --jsonl" in capsys.readouterr().err
    assert str(realtime_parser().parse_args(["--jsonl", "a.jsonl"]).jsonl) == "a.jsonl"


def test_output_flag_scheme():
    """--jsonl writes JSON Lines, --json one JSON document, in every program."""
    realtime = {s for a in realtime_parser()._actions for s in a.option_strings if a.help != argparse.SUPPRESS}
    assert "--jsonl" in realtime and "--json" not in realtime
    sub = next(a for a in fusionrt_parser()._actions if isinstance(a, argparse._SubParsersAction))
    bench = {s: a for a in sub.choices["bench"]._actions for s in a.option_strings}
    assert "report" in bench["--json"].help
