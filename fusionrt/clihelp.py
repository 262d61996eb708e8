"""What the two programs' command lines share: defaults in every option's help, `--version`,
deprecated flag spellings that still work, and the output flag naming scheme.

Output flags are named after what they write: ``--jsonl PATH`` JSON Lines (one record per result),
``--json PATH`` one JSON document (a report: ``fusionrt bench --json``, ``fusionrt doctor --json``),
``--summary-json``, ``--csv``, ``--markdown``, ``--png``, ``--trace`` (Chrome trace JSON),
``--save-video``. ``realtime-infer --json`` (which wrote JSON Lines) is kept as a deprecated alias of
``--jsonl``: it still works and says so once on stderr.
"""

from __future__ import annotations

import argparse
import platform
import sys
from importlib import metadata

__all__ = ["DefaultsFormatter", "RawDescriptionDefaultsFormatter", "help_formatter", "DeprecatedAlias",
           "version_line"]  # fmt: skip

HELP_POSITION = 26  # where option help starts: the longest option string here still fits on its line


class DefaultsFormatter(argparse.HelpFormatter):
    """Like argparse.ArgumentDefaultsHelpFormatter, but says nothing where there is nothing to say:
    no "(default: None)" or "(default: False)", and no second default where the help gives one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (default is None or default is False or default == argparse.SUPPRESS or action.required or "default" in text
                or isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            return text
        return f"{text} (default: %(default)s)"


class RawDescriptionDefaultsFormatter(DefaultsFormatter, argparse.RawDescriptionHelpFormatter):
    """DefaultsFormatter that keeps the description's and epilog's line breaks."""


def help_formatter(cls: type[argparse.HelpFormatter] = DefaultsFormatter):
    """`cls` with the help column at HELP_POSITION (argparse's default 24 pushes long flags' help down a line)."""
    return lambda prog: cls(prog, max_help_position=HELP_POSITION)


class DeprecatedAlias(argparse._StoreAction):
    """A store action for an old spelling: works as before, and says on stderr which flag to use."""

    def __init__(self, option_strings, dest, *, use: str, **kwargs) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.use = use

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog}: note: {option_string} is deprecated; use {self.use} (same output)", file=sys.stderr)
        super().__call__(parser, namespace, values, option_string)


def version_line(prog: str) -> str:
    """`fusionrt 0.1.0 (Python 3.11.2, onnxruntime 1.19.0, numpy 1.26.4)`; no package is imported for it."""
    parts = [f"Python {platform.python_version()}"]
    for name in ("onnxruntime", "onnxruntime-gpu", "numpy"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    try:
        own = metadata.version("fusionrt")
    except metadata.PackageNotFoundError:
        from fusionrt import __version__ as own
    return f"{prog} {own} ({', '.join(parts)})"
