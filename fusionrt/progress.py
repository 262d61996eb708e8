"""Progress with an ETA for long verbs (train, export, quantize, eval, bench), and quiet third-party logs.

    with progress(300, "quantize image_encoder") as bar:
        for item in items:
            ...
            bar.advance()          # or bar.advance(n), bar.note("int8-dynamic: 0.97")

On a terminal (stderr is a TTY) one line is redrawn in place: ``label  42/300  14%  1.2 it/s  ETA 3m35s``.
Otherwise (a log, a pipe, CI) plain lines are printed, at most one every ``every_s`` seconds plus
the last one, so a log file gets a readable trail instead of carriage returns. ``total=None`` counts
without a percentage or ETA. Nothing here needs a dependency; the bar writes to stderr only, so
stdout stays the verb's result.

``quiet_third_party(verbose)`` routes what ONNX Runtime's quantizer, ONNX shape inference and the
torch exporter print through Python logging/warnings into one line of ours per distinct message
(``fusionrt: note: <first line> (x34)`` at exit) unless ``verbose`` is set, where they pass through.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from collections import Counter
from typing import IO, Iterator

__all__ = ["Progress", "progress", "format_duration", "eta_text", "quiet_third_party"]


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``: short enough for a progress line."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def eta_text(elapsed_s: float, done: int, total: int) -> str:
    """``elapsed 1m02s, ETA 3m05s`` for callers that print their own lines (one per epoch, component, point)."""
    text = f"elapsed {format_duration(elapsed_s)}"
    if 0 < done < total:
        text += f", ETA {format_duration(elapsed_s / done * (total - done))}"
    return text


class Progress:
    """Counts done items against ``total`` and reports rate and ETA; see the module docstring."""

    def __init__(self, total: int | None, label: str, *, stream: IO[str] | None = None,
                 every_s: float = 10.0, clock=time.monotonic, tty: bool | None = None) -> None:
        self.total = total if total and total > 0 else None
        self.label = label
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.every_s = every_s
        self.clock = clock
        self.tty = _isatty(self.stream) if tty is None else tty
        self._start = clock()
        self._last_print = -float("inf")
        self._note = ""
        self._width = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._render(final=False)

    def note(self, text: str) -> None:
        """A short status shown after the counts (e.g. the current variant or loss)."""
        self._note = text
        self._render(final=False, force=self.tty)

    def line(self) -> str:
        elapsed = self.clock() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        parts = [self.label]
        if self.total:
            parts.append(f"{self.done}/{self.total} {100 * self.done // self.total:3d}%")
        else:
            parts.append(f"{self.done}")
        parts.append(f"{rate:.2f} it/s" if rate < 10 else f"{rate:.0f} it/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if self.total and self.done and self.done < self.total:
            parts.append(f"ETA {format_duration((self.total - self.done) / rate)}")
        if self._note:
            parts.append(self._note)
        return "  ".join(parts)

    def close(self) -> None:
        self._render(final=True, force=True)
        if self.tty:
            self._write("\n")

    def _render(self, *, final: bool, force: bool = False) -> None:
        now = self.clock()
        if self.tty:
            if not force and now - self._last_print < 0.1:
                return
            text = self.line()
            pad = max(0, self._width - len(text))
            self._width = len(text)
            self._write("\r" + text + " " * pad)
        else:
            if not (final or force or now - self._last_print >= self.every_s):
                return
            self._write(self.line() + "\n")
        self._last_print = now

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # progress is best effort: a closed stderr never fails the verb


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(total: int | None, label: str, **kwargs) -> Iterator[Progress]:
    """A :class:`Progress` that prints its final line (and a newline on a TTY) when the block ends."""
    bar = Progress(total, label, **kwargs)
    try:
        yield bar
    finally:
        bar.close()


# Loggers whose chatter is not ours: ORT's quantizer logs through the root logger ("WARNING:root:").
THIRD_PARTY_LOGGERS = ("onnxruntime", "onnx", "torch.onnx", "torch._dynamo", "torch.export")


OURS = ("fusionrt",)  # logger names and module paths that are ours: shown at once, never folded


class _Collect(logging.Handler):
    """Third-party records counted by first line; ours printed at once as ``fusionrt: message``."""

    def __init__(self, seen: Counter, out: IO[str]) -> None:
        super().__init__(logging.WARNING)
        self.seen = seen
        self.out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().strip()
        except Exception:  # noqa: BLE001 - a bad third-party format string must not break us
            text = str(record.msg)
        if record.name.split(".")[0] in OURS:
            _say(self.out, f"fusionrt: {text}")
        elif text:
            self.seen[f"{record.name or 'root'}: {text.splitlines()[0][:160]}"] += 1


def _say(out: IO[str], line: str) -> None:
    with contextlib.suppress(BrokenPipeError, ValueError, OSError):
        print(line, file=out, flush=True)


OUR_PACKAGES = ("fusionrt", "fusionrt.runtime", "fusionrt.export", "fusionrt.calibration", "fusionrt.study")


def _is_ours(filename: str) -> bool:
    """Whether a warning comes from our source (the stage folders are mapped packages: each has its own root)."""
    for name in OUR_PACKAGES:
        where = getattr(sys.modules.get(name), "__file__", None)
        if where and os.path.abspath(filename).startswith(os.path.dirname(os.path.abspath(where)) + os.sep):
            return True
    return False


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False, *, stream: IO[str] | None = None) -> Iterator[Counter]:
    """Collect third-party warnings and log records (WARNING and up); at the end print one
    ``fusionrt: note: <first line> (xN)`` per distinct message. Our own warnings and ``fusionrt.*``
    log records still show at once. With ``verbose`` everything passes through untouched. Yields the
    Counter of collected messages. The warning filters are left as they are (what Python hides by
    default, e.g. DeprecationWarning, stays hidden)."""
    seen: Counter = Counter()
    if verbose:
        yield seen
        return
    out = stream if stream is not None else sys.stderr
    root = logging.getLogger()
    saved = [(name, logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
             for name in THIRD_PARTY_LOGGERS]
    root_handlers = root.handlers[:]
    root.handlers = [_Collect(seen, out)]
    for name, _, _ in saved:
        logger = logging.getLogger(name)
        logger.handlers, logger.propagate = [], True
    shown = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None) -> None:
        if _is_ours(filename):
            shown(message, category, filename, lineno, file, line)
        else:
            first = str(message).strip().splitlines()
            seen[f"{category.__name__}: {first[0][:160] if first else ''}"] += 1

    warnings.showwarning = showwarning
    try:
        yield seen
    finally:
        warnings.showwarning = shown
        root.handlers = root_handlers
        for name, handlers, propagate in saved:
            logger = logging.getLogger(name)
            logger.handlers, logger.propagate = handlers, propagate
        for text, n in seen.items():
            _say(out, f"fusionrt: note: {text}{f' (x{n})' if n > 1 else ''} (--verbose shows each)")
