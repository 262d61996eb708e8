"""Text sources (modality text): a literal string, stdin lines, a .txt file, test://digits.

Text is emitted on change only: a message equal to the previous one is skipped and counted in
`stats["unchanged"]`. Empty (whitespace-only) lines are skipped and counted in
`stats["empty_lines"]`; lines with invalid UTF-8 are decoded with U+FFFD replacements and counted
in `stats["decode_errors"]`; the pipeline repairs (and counts) lone surrogates and control
characters with `repair_text` before tokenizing. A stream that ends just ends.
"""

from __future__ import annotations

import os
import re
import select
import sys
import time
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from fusionrt.errors import SourceError
from fusionrt.frame import Frame, Modality
from fusionrt.runtime.sources.base import BaseSource, Replay, SourceOptions, synthetic_offset_ns

UNTIMED_LINE_INTERVAL_S = 1.0  # a .txt line without a time is released this long after the previous
TEST_TEXT_RATE_HZ = 1.0
STDIN_POLL_S = 0.1  # how often a blocked stdin read checks for close()
MAX_LINE_TIME_MS = 30 * 86_400_000.0  # a release time past 30 days is a typo (and overflows timers)
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TIMED_LINE = re.compile(r"^\s*(\d+(?:\.\d*)?)\t(.*)$", re.DOTALL)


class ScheduledLine(NamedTuple):
    offset_ns: int  # release time from the stream start
    text: str
    line: int  # 1-based line number in the file
    timed: bool  # the line gave its own time ("t_ms<TAB>text")


def repair_text(text: str) -> tuple[str, dict[str, int]]:
    """`text` fit for a tokenizer and what was repaired: lone surrogates (e.g. undecodable argv bytes,
    which Python keeps as U+DC80..U+DCFF) become U+FFFD; NUL and other control characters (but tab,
    newline and carriage return) are removed."""
    repairs = {}
    text, n = _SURROGATE.subn("\ufffd", text)
    if n:
        repairs["lone_surrogates"] = n
    text, n = _CONTROL.subn("", text)
    if n:
        repairs["control_chars"] = n
    return text, repairs


def decode_line(raw: bytes) -> tuple[str, bool]:
    """The line as text and whether it held invalid UTF-8 (replaced by U+FFFD)."""
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace"), True


def parse_text_file(path: str) -> tuple[list[ScheduledLine], dict[str, int]]:
    """Release schedule of a .txt file: one message per line, optionally "t_ms<TAB>text".

    A line without a time comes UNTIMED_LINE_INTERVAL_S after the previous line (the first at
    0). Times that go backwards raise SourceError naming the line.
    """
    try:
        with open(path, "rb") as f:
            raw_lines = f.read().splitlines()
    except OSError as e:
        raise SourceError(f"text file {path} cannot be read: {e}") from None
    counts = {"empty_lines": 0, "decode_errors": 0}
    schedule: list[ScheduledLine] = []
    previous: int | None = None
    for number, raw in enumerate(raw_lines, start=1):
        text, bad = decode_line(raw)
        counts["decode_errors"] += bad
        if number == 1:
            text = text.removeprefix("\ufeff")
        timed = _TIMED_LINE.match(text)
        if timed:
            if float(timed.group(1)) > MAX_LINE_TIME_MS:
                raise SourceError(
                    f"text file {path}, line {number}: release time {timed.group(1):.20} ms is beyond "
                    f"{MAX_LINE_TIME_MS:.0f} ms ({MAX_LINE_TIME_MS / 86_400_000:.0f} days); expected 't_ms<TAB>text' "
                    f"with t_ms in milliseconds from the start"
                )
            offset = round(float(timed.group(1)) * 1e6)
            text = timed.group(2)
            if previous is not None and offset < previous:
                raise SourceError(
                    f"text file {path}, line {number}: release time {timed.group(1)} ms is before the "
                    f"previous message's {previous / 1e6:g} ms; times must not decrease"
                )
        else:
            offset = 0 if previous is None else previous + round(UNTIMED_LINE_INTERVAL_S * 1e9)
        text = text.strip()
        if not text:
            counts["empty_lines"] += 1
            continue
        schedule.append(ScheduledLine(offset, text, number, bool(timed)))
        previous = offset
    return schedule, counts


def open_text_file(uri: str, path: str, options: SourceOptions) -> TextFileSource:
    if not os.path.isfile(path):
        raise SourceError(f"text file {path} does not exist")
    return TextFileSource(uri, path, options)


class TextSource(BaseSource):
    """Emit-on-change for the text sources below."""

    counters = ("empty_lines", "decode_errors", "unchanged")

    def __init__(self, uri: str, rate_hz: float) -> None:
        super().__init__(Modality.TEXT, uri, rate_hz)
        self._previous: str | None = None

    def _changed(self, text: str) -> bool:
        if text == self._previous:
            self.stats["unchanged"] += 1
            return False
        self._previous = text
        return True


class LiteralText(TextSource):
    """One message, emitted once (at 0 in DETERMINISTIC replay, at monotonic now in REALTIME)."""

    def __init__(self, uri: str, text: str, options: SourceOptions) -> None:
        super().__init__(uri, 0.0)
        self.text = text
        self.options = options

    def _generate(self) -> Iterator[Frame]:
        t_ns = self._due(0, self.options.replay)
        if t_ns is not None:
            yield self._frame(self.text, t_ns)


class TextFileSource(TextSource):
    """A .txt file replayed on its schedule (see `parse_text_file`); parsed and checked at open."""

    def __init__(self, uri: str, path: str, options: SourceOptions) -> None:
        schedule, counts = parse_text_file(path)
        timed = any(line.timed for line in schedule)
        super().__init__(uri, 0.0 if timed else 1.0 / UNTIMED_LINE_INTERVAL_S)
        self.path = path
        self.options = options
        self.schedule = schedule
        self.stats.update(counts)

    def _generate(self) -> Iterator[Frame]:
        for line in self.schedule:
            if not self._changed(line.text):
                continue
            t_ns = self._due(line.offset_ns, self.options.replay)
            if t_ns is None:
                return
            yield self._frame(line.text, t_ns)


class StdinText(TextSource):
    """Lines from standard input, live: t_ns = `monotonic_ns()` when the line was read."""

    def __init__(self, uri: str, options: SourceOptions) -> None:
        if options.replay is Replay.DETERMINISTIC:
            raise SourceError(
                "text from stdin ('-') is live and cannot run with replay=deterministic; "
                "put the lines in a .txt file (optionally 't_ms<TAB>text') for deterministic replay"
            )
        super().__init__(uri, 0.0)

    def _generate(self) -> Iterator[Frame]:
        for raw, t_ns in self._lines():
            text, bad = decode_line(raw.rstrip(b"\r"))
            self.stats["decode_errors"] += bad
            text = text.strip()
            if not text:
                self.stats["empty_lines"] += 1
            elif self._changed(text):
                yield self._frame(text, t_ns)

    def _lines(self) -> Iterator[tuple[bytes, int]]:
        """(line without newline, read time); polls so that close() ends a blocked read."""
        stream = sys.stdin.buffer
        try:
            fd = stream.fileno()
        except (OSError, ValueError, AttributeError):
            fd = None
        if fd is None or os.name == "nt":  # select() works on sockets only there
            for raw in stream:
                yield raw.rstrip(b"\n"), time.monotonic_ns()
            return
        pending = b""
        while not self._closed.is_set():
            ready, _, _ = select.select([fd], [], [], STDIN_POLL_S)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                break
            t_ns = time.monotonic_ns()
            *lines, pending = (pending + data).split(b"\n")
            for raw in lines:
                yield raw, t_ns
        if pending and not self._closed.is_set():
            yield pending, time.monotonic_ns()


class TestDigitsText(TextSource):
    """Chat messages (`fusionrt.data.digit_text`) about the scene's digit of each second
    (`fusionrt.data.scene_digit`, shared with the other test:// sources); label = the digit."""

    __test__ = False  # not a pytest class

    def __init__(self, uri: str, options: SourceOptions) -> None:
        from fusionrt import data

        super().__init__(uri, TEST_TEXT_RATE_HZ)
        self.options = options
        self._text = data.digit_text
        self._scene = data.scene_digit
        self._total = None if options.duration_s is None else round(options.duration_s * TEST_TEXT_RATE_HZ)

    def _generate(self) -> Iterator[Frame]:
        rng = np.random.default_rng(self.options.seed)
        tick = 0
        while self._total is None or tick < self._total:
            label = self._scene(tick, self.options.seed)
            text = self._text(label, rng)
            offset = synthetic_offset_ns(tick, TEST_TEXT_RATE_HZ)
            tick += 1
            if not self._changed(text):
                continue
            t_ns = self._due(offset, self.options.replay)
            if t_ns is None:
                return
            yield self._frame(text, t_ns, label)
