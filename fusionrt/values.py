"""Checks of user-given values, shared by the CLIs (at parse time) and the Python API (before a run
starts): finite numbers in range, counts, ports, and output paths that can be written.

Each raises ConfigError naming the setting (`what`, e.g. "--duration" or "duration_s"), what it
expected, what it found and the fix. The CLIs wrap them as argparse types (`arg_type`) so a bad
value is argparse's one-line "argument --flag: ..." error before anything heavy is imported.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Callable

from fusionrt.errors import ConfigError

MAX_PORT = 65535
MAX_DURATION_S = 366 * 24 * 3600.0  # a year: longer is a typo (1e300) that would overflow a timer
MAX_TRIGGER_HZ = 1000.0  # fusion at more than 1 kHz cannot be met by any stage; likely a typo
MIN_TRIGGER_HZ = 1e-3  # one result every 1000 s; smaller overflows the scheduler's period
MAX_THREADS = 1024


def number(value: object, what: str, *, low: float | None = None, high: float | None = None,
           low_open: bool = False, integer: bool = False) -> float | int:
    """`value` (a number or its text) as a finite float (or int with `integer`) in [low, high]
    ((low, high] with `low_open`); ConfigError otherwise."""
    kind = "a whole number" if integer else "a finite number"
    if isinstance(value, bool):
        raise ConfigError(f"{what} is {value!r}; expected {kind}")
    try:
        parsed = _parse(value, integer)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what} is {value!r:.60}; expected {kind}{_range(low, high, low_open)}") from None
    if not integer and not math.isfinite(parsed):
        raise ConfigError(f"{what} is {value!r:.60}; expected {kind}{_range(low, high, low_open)}")
    below = low is not None and (parsed <= low if low_open else parsed < low)
    if below or (high is not None and parsed > high):
        raise ConfigError(f"{what} is {value!r:.60}; expected {kind}{_range(low, high, low_open)}")
    return parsed


def count(value: object, what: str, *, high: int | None = None) -> int:
    """A whole number >= 1 (items, windows, threads)."""
    return number(value, what, low=1, high=high, integer=True)


def port(value: object, what: str) -> int:
    """A TCP port, 0 (any free port) to 65535."""
    return number(value, what, low=0, high=MAX_PORT, integer=True)


def duration(value: object, what: str, *, high: float = MAX_DURATION_S) -> float:
    """Seconds, finite and > 0 (at most a year)."""
    return float(number(value, what, low=0, high=high, low_open=True))


def output_path(path: object, what: str) -> Path:
    """A file path the run will write: not a directory, in an existing writable directory.

    Checked before a run starts, so no result is lost to a bad output path at the end."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ConfigError(f"{what} is {path!r}; expected a file path to write")
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a directory; expected a file path inside it, e.g. "
                          f"{str(target / 'out')!r}")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ConfigError(f"{what} {str(path)!r}: directory {str(parent)!r} does not exist; create it first "
                          f"(mkdir -p {parent})")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigError(f"{what} {str(path)!r} cannot be written (permission denied); choose another path")
    return target


def arg_type(check: Callable[..., object], what: str, **bounds) -> Callable[[str], object]:
    """An argparse `type=` from a check: a ConfigError becomes argparse's one-line error for the flag."""

    def convert(text: str):
        try:
            return check(text, what, **bounds)
        except ConfigError as e:
            message = str(e).removeprefix(f"{what} ")
            raise argparse.ArgumentTypeError(message.removeprefix("is ")) from None

    convert.__name__ = what.lstrip("-").replace("-", "_")  # argparse names the type in some messages
    return convert


def _parse(value: object, integer: bool) -> float | int:
    if integer:
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(value)
            return int(value)
        return int(str(value).strip())
    return float(value)


def _range(low, high, low_open: bool) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {_num(low)}"
    if low is None:
        return f" <= {_num(high)}"
    return f" in {'(' if low_open else '['}{_num(low)}, {_num(high)}]"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"
