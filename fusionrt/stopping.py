"""How a fusionrt program stops: SIGTERM like Ctrl-C, and quietly when its reader goes away.

- SIGTERM (what `docker stop`, systemd and `kill` send) raises :class:`Terminated`, a
  ``KeyboardInterrupt``, in the main thread: every path that stops cleanly on Ctrl-C (the pipeline
  closes sources, sinks and the trace file; the summary is printed and ``--summary-json`` written)
  serves SIGTERM unchanged. A second SIGTERM while stopping is ignored, so clean-up is not cut short.
- Exit codes: ``realtime-infer`` (and the stream of ``fusionrt demo``) treats either signal as a
  requested stop of an open-ended run and exits 0 after its summary. A ``fusionrt`` verb whose work
  is cut short exits 128 + the signal: 130 for SIGINT, 143 for SIGTERM (``stop_code``).
- ``quiet_pipes()``: when stdout or stderr is a pipe whose reader closed (``fusionrt inspect | head``),
  further output is dropped silently instead of a BrokenPipeError traceback, and the verb finishes
  its work (reports it writes to files are still written).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

__all__ = ["Terminated", "sigterm_as_interrupt", "stop_code", "quiet_pipes", "QuietStream"]


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be."""


def stop_code(error: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the work: 143 for SIGTERM, 130 for SIGINT."""
    return 128 + (signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises Terminated in the main thread (no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = False

    def on_term(signum, frame) -> None:
        nonlocal fired
        if fired:
            return  # already stopping: let the clean-up finish
        fired = True
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class QuietStream:
    """A text stream proxy: the first BrokenPipeError points the file descriptor at /dev/null and
    every later write is dropped, so a closed reader ends the output, not the program."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.closed_pipe = False

    def write(self, text: str) -> int:
        if self.closed_pipe:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        if self.closed_pipe:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._drop()

    def _drop(self) -> None:
        self.closed_pipe = True
        with contextlib.suppress(OSError, ValueError, AttributeError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())  # what is still buffered goes nowhere at exit too
            os.close(devnull)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


@contextlib.contextmanager
def quiet_pipes() -> Iterator[None]:
    """sys.stdout and sys.stderr wrapped in QuietStream while inside."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = QuietStream(sys.stdout), QuietStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout.flush()  # while still wrapped: a closed reader found here is quiet too
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved
