"""Property-based fuzzing (hypothesis) of what users hand fusionrt: manifest loading, source URIs,
text-file lines and CLI numbers. Each property: a valid result or the one documented error type,
never another exception. Example counts are bounded so the file runs in seconds."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import sys
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fusionrt.bundle import Bundle, parse  # noqa: E402
from fusionrt.errors import BundleError, SourceError  # noqa: E402
from test_bundle_typed import audio_text_bundle  # noqa: E402

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
                         st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)


@pytest.fixture(scope="module")
def bundle_root(tmp_path_factory) -> tuple[Path, dict]:
    root = audio_text_bundle(tmp_path_factory.mktemp("fuzz") / "b")
    return root, json.loads((root / "manifest.json").read_text())


def _paths(value, prefix=()):
    """Every (path) to a value inside a JSON document, the root included."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


def _mutate(manifest: dict, path: tuple, action: str, value):
    if not path:
        return value if action == "replace" else manifest
    node = manifest
    for key in path[:-1]:
        node = node[key]
    if action == "delete":
        del node[path[-1]]
    elif action == "replace":
        node[path[-1]] = value
    elif isinstance(node, dict):
        node[f"{path[-1]}_extra"] = value  # "add": an unknown key beside it
    return manifest


@FAST
@given(data=st.data())
def test_manifest_mutations_load_or_raise_bundle_error(bundle_root, data):
    root, pristine = bundle_root
    manifest = copy.deepcopy(pristine)
    for _ in range(data.draw(st.integers(1, 3))):
        paths = list(_paths(manifest)) if isinstance(manifest, (dict, list)) else [()]
        path = data.draw(st.sampled_from(paths))
        action = data.draw(st.sampled_from(["replace", "delete", "add"]))
        manifest = _mutate(manifest, path, action, data.draw(json_values))
        if not isinstance(manifest, (dict, list)):
            break
    try:
        bundle = parse(root, manifest, verify_hashes=True)
    except BundleError as e:
        assert "\n" not in str(e) and str(e)
    else:
        assert isinstance(bundle, Bundle)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(uri=st.one_of(st.text(max_size=60), st.from_regex(r"[a-z0-9+.-]{1,8}:(//)?[ -~]{0,30}", fullmatch=True)),
       modality=st.sampled_from(["image", "audio", "text"]))
def test_uris_open_or_raise_source_error(uri, modality):
    from fusionrt.runtime import SourceOptions, open_source

    if uri.strip().isdigit() or uri.strip() in ("default", "-"):
        return  # device indexes and names are live: deterministic replay refuses them (covered by the corpus)
    try:
        source = open_source(uri, modality, options=SourceOptions(replay="deterministic", duration_s=0.5))
    except SourceError as e:
        assert str(e)
    else:
        source.close()


@FAST
@given(lines=st.lists(st.one_of(
    st.binary(max_size=30),
    st.tuples(st.one_of(st.integers(0, 10**20).map(str), st.floats(0, 1e30).map(lambda f: f"{f:.3f}"),
                        st.text("0123456789.", min_size=1, max_size=30)),
              st.text(max_size=20)).map(lambda t: f"{t[0]}\t{t[1]}".encode("utf-8", "surrogatepass")),
), max_size=8))
def test_text_file_lines_parse_or_raise_source_error(tmp_path_factory, lines):
    from fusionrt.runtime.sources.text import MAX_LINE_TIME_MS, parse_text_file

    path = tmp_path_factory.mktemp("txt") / "t.txt"
    path.write_bytes(b"\n".join(lines))
    try:
        schedule, counts = parse_text_file(str(path))
    except SourceError as e:
        assert "\n" not in str(e)
        return
    offsets = [line.offset_ns for line in schedule]
    assert offsets == sorted(offsets) and all(0 <= o <= MAX_LINE_TIME_MS * 1e6 + len(lines) * 1e9 for o in offsets)
    assert all(line.text.strip() for line in schedule) and counts["decode_errors"] >= 0


NUMERIC_FLAGS = {  # realtime-infer flag -> the dest and (low, high) the parsed value must respect
    "--duration": ("duration", 0, 366 * 24 * 3600), "--budget-ms": ("budget_ms", 0, 3.6e6),
    "--metrics-port": ("metrics_port", 0, 65535), "--threads": ("threads", 1, 256),
    "--audio-hop-ms": ("audio_hop_ms", 0, 60_000), "--fps": ("fps", 0, 1000), "--width": ("width", 1, 16384),
    "--seed": ("seed", 0, 2**32 - 1),
}
numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers().map(str),
                    st.text(max_size=12), st.sampled_from(["inf", "-inf", "nan", "1e300", "1e-300", "0x10", " 5 "]))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(flag=st.sampled_from(sorted(NUMERIC_FLAGS)), text=numbers)
def test_cli_numbers_parse_in_range_or_exit_2(flag, text):
    from fusionrt.realtime_cli import build_parser

    dest, low, high = NUMERIC_FLAGS[flag]
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(["--camera", "0", f"{flag}={text}"])
    except SystemExit as e:
        assert e.code == 2
        err = stderr.getvalue()
        assert "Traceback" not in err and f"argument {flag}" in err.strip().splitlines()[-1]
        return
    value = getattr(args, dest)
    assert math.isfinite(value) and low <= value <= high


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=numbers)
def test_trigger_parses_to_a_bounded_rate_or_exits_2(text):
    from fusionrt.realtime_cli import build_parser
    from fusionrt.values import MAX_TRIGGER_HZ, MIN_TRIGGER_HZ

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            args = build_parser().parse_args(["--camera", "0", f"--trigger={text}"])
    except SystemExit as e:
        assert e.code == 2 and "Traceback" not in stderr.getvalue()
        return
    assert args.trigger in ("image", "audio", "text") or MIN_TRIGGER_HZ <= float(args.trigger) <= MAX_TRIGGER_HZ


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
