"""fusionrt.progress: ETA lines on a TTY and plain lines in a log; third-party chatter folded into one line."""

import io
import logging
import warnings

from fusionrt.progress import format_duration, progress, quiet_third_party


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_plain_lines_when_not_a_tty_with_eta():
    out, clock = io.StringIO(), Clock()
    with progress(10, "train", stream=out, clock=clock, every_s=5.0) as bar:
        for _ in range(10):
            clock.t += 1.0
            bar.advance()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert lines[0].startswith("train  1/10  10%") and "ETA 9s" in lines[0]  # the first item at once
    assert lines[1].startswith("train  6/10  60%") and "ETA 4s" in lines[1]  # then every 5 s
    assert lines[-1].startswith("train  10/10 100%") and "ETA" not in lines[-1]
    assert len(lines) == 3


def test_tty_redraws_one_line():
    out, clock = io.StringIO(), Clock()
    with progress(4, "export", stream=out, clock=clock, tty=True) as bar:
        for _ in range(4):
            clock.t += 1.0
            bar.advance()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.count("\r") >= 4


def test_unknown_total_counts_without_eta():
    out, clock = io.StringIO(), Clock()
    with progress(None, "bench", stream=out, clock=clock) as bar:
        bar.advance(3)
    assert "3  " in out.getvalue() and "ETA" not in out.getvalue()


def test_format_duration():
    assert [format_duration(s) for s in (4.2, 185, 3720)] == ["4s", "3m05s", "1h02m"]


def test_third_party_warnings_folded_into_one_line():
    out = io.StringIO()
    with quiet_third_party(stream=out) as seen:
        for _ in range(34):
            logging.warning("Please consider to run pre-processing before quantization.")
        warnings.warn("unsupported broadcast between Min(24, sequence) sequence", UserWarning)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and sum(seen.values()) == 35
    assert "(x34)" in lines[0] and lines[0].startswith("fusionrt: note: root: Please consider")


def test_verbose_passes_through(caplog):
    out = io.StringIO()
    with caplog.at_level(logging.WARNING), quiet_third_party(verbose=True, stream=out):
        logging.warning("shown")
    assert out.getvalue() == "" and "shown" in caplog.text


def test_our_own_warnings_still_show_at_once(recwarn):
    from fusionrt.runtime import results  # a module of ours, as the place a warning comes from

    out = io.StringIO()
    with quiet_third_party(stream=out) as seen:
        warnings.warn_explicit("resampling 44100 Hz to 16000 Hz", UserWarning, results.__file__, 1)
        logging.getLogger("fusionrt.runtime").warning("ours")
    assert not seen and "fusionrt: ours" in out.getvalue()
    assert any("resampling" in str(w.message) for w in recwarn)
