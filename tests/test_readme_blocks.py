"""README.md's code blocks run as written (as Polygraphy's tests run its README commands).

Every ```bash and ```python block must be preceded by a marker saying what this test does with it:

    <!-- readme-test: run -->                        every command / the whole Python block runs
    <!-- readme-test: run 2,5; skip: REASON -->      those commands run (counted from 1), the others are skipped
    <!-- readme-test: skip: REASON -->               nothing runs
    <!-- tests/test_readme_example.py runs the next block -->   run (with value checks) by that test

REASON starts with one of SKIP_REASONS: hardware this machine lacks, "slow" (minutes: the Make
targets, installs, training), "fragment" (placeholders a later complete example fills in) or "your
files" (a user's own recordings). Commands run in a scratch directory where `bundles/demo` is a real
tiny bundle (tests/runtime/runtime_models.py) standing in for the one `make demo` writes, with this
interpreter's scripts (`fusionrt`, `realtime-infer`) first on PATH; each must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
sys.path.insert(0, str(Path(__file__).parent / "runtime"))
SKIP_REASONS = ("needs a camera", "needs a microphone", "needs a GPU", "needs a Jetson", "slow", "fragment", "your files")
EXAMPLE_MARKER = "<!-- tests/test_readme_example.py runs the next block -->"
TIMEOUT_S = 180


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence in README.md
    language: str
    code: str
    run: tuple[int, ...] | str  # command numbers to run (bash), "all", or "elsewhere"
    reason: str | None

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.language})"


def blocks(text: str) -> list[Block]:
    """Every ```bash / ```python block with its marker; AssertionError naming a block without one."""
    found = []
    for fence in re.finditer(r"^```(bash|python)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        line = text.count("\n", 0, fence.start()) + 1
        before = (text[: fence.start()].rstrip().splitlines() or [""])[-1].strip()
        language, code = fence.group(1), fence.group(2)
        if before == EXAMPLE_MARKER:
            found.append(Block(line, language, code, "elsewhere", None))
            continue
        marker = re.fullmatch(r"<!-- readme-test: (run(?: ([\d,]+))?)?(?:;? ?skip: (.+?))? -->", before)
        assert marker and (marker.group(1) or marker.group(3)), (
            f"README.md:{line}: a ```{language} block needs a marker line right before it, e.g. "
            f"'<!-- readme-test: run -->' or '<!-- readme-test: skip: needs a camera -->'; found {before!r:.80}"
        )
        numbers, reason = marker.group(2), marker.group(3)
        if reason:
            assert reason.startswith(SKIP_REASONS), f"README.md:{line}: skip reason {reason!r} must start with one of {SKIP_REASONS}"
        run = tuple(int(n) for n in numbers.split(",")) if numbers else ("all" if marker.group(1) else ())
        found.append(Block(line, language, code, run, reason))
    return found


def commands(code: str) -> list[str]:
    """A bash block's commands: continuation lines joined, blank and comment-only lines dropped."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


try:
    BLOCKS, MARKER_ERROR = blocks(README.read_text(encoding="utf-8")), None
except AssertionError as e:  # reported by test_every_block_is_marked_and_numbers_exist, not as a collection error
    BLOCKS, MARKER_ERROR = [], e


def to_run() -> list:
    params = []
    for block in BLOCKS:
        if block.run == "elsewhere":
            continue
        if block.language == "python":
            if block.run == "all":
                params.append(pytest.param(block, block.code, id=f"line{block.line}-python"))
            continue
        for number, command in enumerate(commands(block.code), 1):
            if block.run == "all" or number in block.run:
                params.append(pytest.param(block, command, id=f"line{block.line}-{number}-{shlex.split(command)[0]}"))
    return params


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A scratch directory with bundles/demo (a real tiny bundle) and the repository's configs/."""
    from runtime_models import write_bundle

    work = tmp_path_factory.mktemp("readme")
    write_bundle(work / "bundles" / "demo", fast_int8_image=True)  # fp32 + an int8 image variant, as quantize leaves it
    (work / "configs").symlink_to(ROOT / "configs")
    return work


def environment() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_every_block_is_marked_and_numbers_exist():
    if MARKER_ERROR:
        raise MARKER_ERROR
    assert BLOCKS, "README.md has no code blocks?"
    for block in BLOCKS:
        if isinstance(block.run, tuple) and block.language == "bash":
            count = len(commands(block.code))
            assert all(1 <= n <= count for n in block.run), f"{block.where}: runs {block.run}, has {count} commands"
            assert block.reason or len(block.run) == count, f"{block.where}: skips commands without a reason"
    assert sum(b.run == "elsewhere" for b in BLOCKS) == 1 and (ROOT / "tests" / "test_readme_example.py").is_file()
    assert to_run(), "the README has nothing this test can run"


def test_block_markers_are_understood():
    text = ("x\n<!-- readme-test: run 2; skip: needs a camera (1) -->\n```bash\na \\\n  --b\n# c\nd\n```\n"
            "<!-- readme-test: skip: slow (minutes) -->\n```python\nprint(1)\n```\n")  # fmt: skip
    first, second = blocks(text)
    assert (first.run, first.reason, commands(first.code)) == ((2,), "needs a camera (1)", ["a --b", "d"])
    assert (second.run, second.reason, second.line) == ((), "slow (minutes)", 10)
    with pytest.raises(AssertionError, match="needs a marker"):
        blocks("```bash\nls\n```\n")
    with pytest.raises(AssertionError, match="must start with one of"):
        blocks("<!-- readme-test: skip: boring -->\n```bash\nls\n```\n")


@pytest.mark.parametrize("block, code", to_run())
def test_readme_block_runs(block, code, workdir):
    argv = [sys.executable, "-c", code] if block.language == "python" else ["bash", "-euo", "pipefail", "-c", code]
    done = subprocess.run(argv, cwd=workdir, env=environment(), capture_output=True, text=True, timeout=TIMEOUT_S,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert done.returncode == 0, f"{block.where}: {code[:200]!r} exited {done.returncode}:\n{done.stderr[-3000:]}"
