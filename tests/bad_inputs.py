"""The bad-input corpus: generated cases across bundles (manifest mutations), sources and URIs, CLI
values and the Python API, each with what the user must get (test_bad_inputs.py runs them):

- ERROR: a one-line FusionRTError / argparse error whose text holds `needle`, never a traceback;
- DROP: the input is accepted and the anomaly is counted (a source counter, or the DataError the
  pipeline counts as "bad_input");
- ACCEPT: legal input, accepted.

Bundle cases mutate the manifest of a hand-written image + audio + text bundle (the loader never
parses ONNX); the few that need real model files use tests/runtime/runtime_models.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

ERROR, DROP, ACCEPT = "error", "drop", "accept"


@dataclass(frozen=True)
class Case:
    id: str
    expect: str  # ERROR, DROP or ACCEPT
    make: object  # what the runner applies: a manifest change, a URI, argv, a callable...
    needle: str = ""  # for ERROR: a substring of the one-line message


def _set(path: str, value) -> Callable[[dict], None]:
    """A manifest change: set the dotted `path` (list indexes as numbers) to `value`."""
    keys = _keys(path)

    def change(manifest: dict) -> None:
        node = manifest
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value

    return change


def _keys(path: str) -> list:
    """Dotted path -> keys; "files.<name>" keeps the file name (which has dots) whole."""
    if path.startswith("files."):
        return ["files", path[len("files."):]]
    return [int(k) if k.isdigit() else k for k in path.split(".")]


def _copy(source: str, target: str) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        node = manifest
        for key in _keys(source)[:-1]:
            node = node[key]
        node[_keys(target)[-1]] = dict(node[_keys(source)[-1]])

    return change


def _both(*changes) -> Callable[[dict], None]:
    def change(manifest: dict) -> None:
        for one in changes:
            one(manifest)

    return change


def _drop(path: str) -> Callable[[dict], None]:
    keys = _keys(path)

    def change(manifest: dict) -> None:
        node = manifest
        for key in keys[:-1]:
            node = node[key]
        del node[keys[-1]]

    return change


IMG, AUD, TXT, FUS = ("components.image_encoder", "components.audio_encoder", "components.text_encoder",
                      "components.fusion")
HUGE = 10**400

# (path, value, needle): set path to value -> load() refuses with needle in the message.
MANIFEST_VALUES = [
    ("format", "onnx", "format is 'onnx'"),
    ("format", None, "format is None"),
    ("version", "2", "field 'version' must be int"),
    ("version", True, "field 'version' must be int"),
    ("version", 3, "format version 3"),
    ("version", 0, "version is 0"),
    ("version", HUGE, "upgrade fusionrt"),
    ("version", 2.0, "field 'version' must be int"),
    ("task", [], "field 'task' must be dict"),
    ("task.kind", "detection", "task.kind is 'detection'"),
    ("task.kind", 7, "field 'task.kind' must be str"),
    ("task.labels", "zero,one", "field 'task.labels' must be list"),
    ("task.labels", [0, 1], "task.labels[0] is 0"),
    ("task.labels", ["zero", None], "task.labels[1] is None"),
    ("task.labels", ["zero", ["one"]], "task.labels[1]"),
    ("task.labels", ["zero", "zero"], "task.labels repeat a label"),
    ("task.labels", ["zero"], "task.labels has 1 labels"),
    ("task.labels", [], "task.labels has 0 labels"),
    ("task.labels", ["zero", ""], "task.labels[1] is ''"),
    ("task.labels", ["zero", "o\x00ne"], "task.labels[1]"),
    ("task.labels", ["zero", "x" * 1000], "task.labels[1]"),
    ("task.labels", [f"l{i}" for i in range(100_001)], "task.labels has 100001 labels"),
    ("task.threshold", 0.5, "task has unknown field 'threshold'"),
    ("modalities", "image", "field 'modalities' must be list"),
    ("modalities", [], "modalities are []"),
    ("modalities", ["image", "image", "audio", "text"], "expected distinct names"),
    ("modalities", ["image", ["audio"], "text"], "modalities are"),
    ("modalities", ["smell"], "modalities are ['smell']"),
    ("modalities", ["image", "audio"], "components.text_encoder encodes 'text' but modalities are"),
    ("files", [], "field 'files' must be dict"),
    ("files.image_encoder.fp32.onnx", "abc", "expected a sha256"),
    ("files.image_encoder.fp32.onnx", 5, "expected a sha256"),
    ("files.image_encoder.fp32.onnx", "0" * 64, "the file was modified after export"),
    ("files.ghost.onnx", "0" * 64, "'ghost.onnx' listed in the manifest is missing"),
    ("files.../escape.onnx", "0" * 64, "leaves the bundle"),
    ("files./etc/passwd", "0" * 64, "leaves the bundle"),
    ("files.a\x00b", "0" * 64, "must be a non-empty relative path"),
    ("tokenizer", 5, "tokenizer must be a non-empty relative path"),
    ("tokenizer", "../tok", "leaves the bundle"),
    ("tokenizer", "reports", "has no tokenizer.json listed"),
    ("tokenizer", None, "the text encoder needs the bundle's tokenizer"),
    ("components", [], "field 'components' must be dict"),
    ("components.extra", "x", "components.extra must be an object"),
    ("components.extra", {"role": "decoder"}, "components.extra.role is 'decoder'"),
    (f"{IMG}.role", 1, "field 'components.image_encoder.role' must be str"),
    (f"{IMG}.modality", "smell", "modality is 'smell'"),
    (f"{IMG}.modality", ["image"], "modality is ['image']"),
    (f"{IMG}.modality", "audio", "an audio encoder takes one input named 'audio'"),
    (f"{FUS}.role", "encoder", "components.fusion.modality is None; an encoder has one of"),
    (f"{IMG}.rate_hz", "thirty", "rate_hz is 'thirty'"),
    (f"{IMG}.rate_hz", -30, "rate_hz is -30"),
    (f"{IMG}.rate_hz", 0, "rate_hz is 0"),
    (f"{IMG}.rate_hz", HUGE, "rate_hz is 1000"),
    (f"{IMG}.rate_hz", float("nan"), "rate_hz is nan"),
    (f"{IMG}.rate_hz", float("inf"), "rate_hz is inf"),
    (f"{IMG}.rate_hz", True, "rate_hz is True"),
    (f"{IMG}.rate_hz", [30], "rate_hz is [30]"),
    (f"{IMG}.variants", {}, "variants is empty"),
    (f"{IMG}.variants", [], "field 'components.image_encoder.variants' must be dict"),
    (f"{IMG}.variants.fp32", "image_encoder.fp32.onnx", "variants.fp32 must be an object"),
    (f"{IMG}.variants.fp32.file", "nope.onnx", "'nope.onnx' is not listed in files"),
    (f"{IMG}.variants.fp32.file", None, "field 'components.image_encoder.variants.fp32.file' must be str"),
    (f"{IMG}.variants.fp32.precision", "fp8", "precision is 'fp8'"),
    (f"{IMG}.variants.fp32.precision", 32, "precision' must be str"),
    (f"{IMG}.variants.fp32.target", ["x86"], "target is ['x86']"),
    (f"{IMG}.variants.fp32.scheme", 1, "scheme is 1"),
    (f"{IMG}.default_variant", "int4", "default_variant 'int4' is not one of the variants"),
    (f"{IMG}.default_variant", None, "default_variant' must be str"),
    (f"{IMG}.engines", [], "engines must be an object keyed by precision"),
    (f"{IMG}.engines", {"fp8": {}}, "engines.fp8 must be an object keyed by one of"),
    (f"{IMG}.engines", {"fp16": "plan"}, "engines.fp16 must be an object"),
    (f"{IMG}.inputs", {}, "field 'components.image_encoder.inputs' must be list"),
    (f"{IMG}.inputs", ["image"], "inputs[0] must be an object"),
    (f"{IMG}.inputs.0.shape", "batch,16,16,3", "inputs[0].shape' must be list"),
    (f"{IMG}.inputs.0.shape", ["batch", 16, 16, 3.0], "inputs[0].shape is"),
    (f"{IMG}.inputs.0.shape", ["batch", 16, -1, 3], "inputs[0].shape is"),
    (f"{IMG}.inputs.0.shape", ["batch", 2**31, 16, 3], "inputs[0].shape is"),
    (f"{IMG}.inputs.0.shape", ["batch", 100_000, 16, 3], "the model input takes 100000"),
    (f"{IMG}.inputs.0.shape", ["batch", 16, 16], "uint8 with 4 dimensions"),
    (f"{IMG}.inputs.0.shape", ["batch", 16, 16, 4], "expected [batch, H, W, 3]"),
    (f"{IMG}.inputs.0.shape", ["batch", ""] + [16, 3], "inputs[0].shape is"),
    (f"{IMG}.inputs.0.shape", ["b"] * 9, "at most 8 sizes"),
    (f"{IMG}.inputs.0.dtype", "uint8 ", "dtype is 'uint8 '"),
    (f"{IMG}.inputs.0.dtype", "float32", "runtime feeds/reads uint8"),
    (f"{IMG}.inputs.0.dtype", "complex128", "dtype is 'complex128'"),
    (f"{IMG}.inputs.0.name", "", "inputs[0].name is ''"),
    (f"{IMG}.inputs.0.name", "frame", "an image encoder takes one input named 'image'"),
    (f"{IMG}.outputs.0.shape", ["batch", 10**7], "has width 10000000"),
    (f"{IMG}.outputs.0.name", "pooled", "an encoder has one output named 'embedding'"),
    (f"{IMG}.preprocessing", ["height", 16], "preprocessing must be an object"),
    (f"{IMG}.preprocessing", "16x16", "preprocessing must be an object"),
    (f"{IMG}.preprocessing.height", "abc", "height is 'abc'"),
    (f"{IMG}.preprocessing.height", 16.5, "height is 16.5"),
    (f"{IMG}.preprocessing.height", 0, "height is 0"),
    (f"{IMG}.preprocessing.height", 10**6, "height is 1000000"),
    (f"{IMG}.preprocessing.channel_order", "RGBA", "channel_order is 'RGBA'"),
    (f"{IMG}.preprocessing.channel_order", ["rgb"], "channel_order is ['rgb']"),
    (f"{AUD}.preprocessing.sample_rate", "16k", "sample_rate is '16k'"),
    (f"{AUD}.preprocessing.sample_rate", 1e15, "sample_rate is 1000000000000000.0"),
    (f"{AUD}.preprocessing.sample_rate", 16000.0, "sample_rate is 16000.0"),
    (f"{AUD}.preprocessing.sample_rate", 10, "sample_rate is 10"),
    (f"{AUD}.preprocessing.hop_s", 1e12, "hop_s is 1000000000000.0"),
    (f"{AUD}.preprocessing.hop_s", 0, "hop_s is 0"),
    (f"{AUD}.preprocessing.hop_s", float("nan"), "hop_s is nan"),
    (f"{AUD}.preprocessing.hop_s", "0.1", "hop_s is '0.1'"),
    (f"{AUD}.preprocessing.window_samples", 999, "window_samples is 999 but the model input takes 1600"),
    (f"{AUD}.inputs.0.shape", ["batch", 16_000 * 61], "window_samples dimension"),
    (f"{TXT}.preprocessing.max_length", 10**9, "max_length is 1000000000"),
    (f"{TXT}.preprocessing.max_length", -1, "max_length is -1"),
    (f"{TXT}.preprocessing.padding", "left", "padding is 'left'"),
    (f"{TXT}.preprocessing.padding", ["max_length"], "padding is ['max_length']"),
    (f"{TXT}.inputs.1.name", "input_ids", "repeats a name"),
    (f"{TXT}.inputs.0.dtype", "int32", "runtime feeds/reads int64"),
    (f"{FUS}.inputs.0.shape", ["batch", 9], "takes [batch, 9] but components.image_encoder gives [batch, 8]"),
    (f"{FUS}.inputs.0.shape", ["batch", 10**6], "width 1000000"),
    (f"{FUS}.inputs.3.shape", ["batch", 2], "presence has width 2"),
    (f"{FUS}.outputs.0.shape", ["batch", 5], "returns 5 logits but task.labels has 2 labels"),
    (f"{FUS}.outputs.0.shape", ["batch", 10**6], "has 1000000 logits"),
    (f"{FUS}.outputs", [], "outputs are []"),
    (f"{FUS}.preprocessing", [1, 2], "preprocessing must be an object"),
    ("reference", "model.safetensors", "reference must be an object"),
    ("reference", {"config": "c.yaml", "weights": "w.safetensors"}, "reference.config 'c.yaml' is not listed"),
]

# Legal variations: load() accepts them.
MANIFEST_ACCEPTED = [
    ("created", 12345),  # informational
    ("tools", ["anything"]),
    (f"{IMG}.rate_hz", None),
    (f"{IMG}.rate_hz", 1e-3),
    (f"{IMG}.preprocessing.note", {"free": "text"}),  # keys the runtime does not read are informational
    (f"{IMG}.variants.fp32.exporter", ["a", "list"]),
    (f"{FUS}.preprocessing", None),
    ("task.labels", ["zéro", "一"]),
    (f"{AUD}.preprocessing.sample_rate", 384_000),
    (f"{TXT}.preprocessing.max_length", 8192),
]


def manifest_cases() -> list[Case]:
    cases = [Case(f"manifest-{i:03d}-{path}={value!r:.24}", ERROR, _set(path, value), needle)
             for i, (path, value, needle) in enumerate(MANIFEST_VALUES)]
    cases += [
        Case("manifest-missing-format", ERROR, _drop("format"), "format is None"),
        Case("manifest-missing-version", ERROR, _drop("version"), "field 'version' is missing"),
        Case("manifest-missing-task", ERROR, _drop("task"), "field 'task' is missing"),
        Case("manifest-missing-labels", ERROR, _drop("task.labels"), "field 'task.labels' is missing"),
        Case("manifest-missing-files", ERROR, _drop("files"), "field 'files' is missing"),
        Case("manifest-missing-fusion", ERROR, _drop("components.fusion"), "found 0"),
        Case("manifest-missing-sample-rate", ERROR, _drop(f"{AUD}.preprocessing.sample_rate"),
             "sample_rate is missing"),
        Case("manifest-missing-channel-order", ERROR, _drop(f"{IMG}.preprocessing.channel_order"),
             "channel_order is missing"),
        Case("manifest-missing-max-length", ERROR, _drop(f"{TXT}.preprocessing.max_length"), "max_length is missing"),
        Case("manifest-missing-inputs", ERROR, _drop(f"{IMG}.inputs"), "inputs' is missing"),
        Case("manifest-missing-default", ERROR, _drop(f"{IMG}.default_variant"), "default_variant' is missing"),
        Case("manifest-missing-text-encoder", ERROR, _drop(TXT), "modality 'text' is listed but no encoder"),
        Case("manifest-two-image-encoders", ERROR, _copy(IMG, "components.image_encoder2"), "are all image encoders"),
        Case("manifest-two-fusions", ERROR, _copy(FUS, "components.fusion2"),
             "exactly one component with role 'fusion'"),
        Case("manifest-huge-dim-no-size", ERROR, _both(_drop(f"{IMG}.preprocessing.height"),
                                                      _set(f"{IMG}.inputs.0.shape", ["batch", 100_000, 16, 3])),
             "inputs' height dimension is 100000; expected an integer in [1, 8192]"),
        Case("manifest-huge-window-no-size", ERROR, _set(f"{AUD}.inputs.0.shape", ["batch", 10**7]),
             "inputs' window_samples dimension is 10000000"),
    ]
    cases += [Case(f"manifest-ok-{path}={value!r:.24}", ACCEPT, _set(path, value)) for path, value in MANIFEST_ACCEPTED]
    return cases


# Raw manifest.json bytes -> needle.
RAW_MANIFESTS = [
    ("raw-empty", b"", "is not valid JSON"),
    ("raw-binary", bytes(range(256)), "is not valid JSON"),
    ("raw-utf16", '{"format": 1}'.encode("utf-16"), "is not valid JSON"),
    ("raw-array", b"[1, 2]", "expected a JSON object, found list"),
    ("raw-number", b"42", "expected a JSON object, found int"),
    ("raw-null", b"null", "expected a JSON object, found NoneType"),
    ("raw-deep-list", b'{"format": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "nests"),
    ("raw-deep-dict", b'{"a":' * 40 + b"1" + b"}" * 40, "nests deeper than 32"),
    ("raw-truncated", b'{"format": "fusionrt-bundle", "vers', "is not valid JSON"),
    ("raw-huge-int", b'{"format": "fusionrt-bundle", "version": ' + b"9" * 5000 + b"}", "not valid JSON"),
]


# (uri, modality, expect, needle)
URIS = [
    ("", "image", ERROR, "it is empty"),
    ("   ", "text", ERROR, "it is empty"),
    (None, "audio", ERROR, "it is empty"),
    (b"0", "image", ERROR, "it is empty"),
    ("rtsp:/", "image", ERROR, "expected rtsp://HOST"),
    ("http://", "image", ERROR, "expected http://HOST"),
    ("https://:80/x", "image", ERROR, "expected https://HOST"),
    ("v4l2://x", "image", ERROR, "expected v4l2:///dev/videoN"),
    ("csi://a", "image", ERROR, "expected csi://N"),
    ("csi://", "image", ERROR, "expected csi://N"),
    ("gst:", "image", ERROR, "expected gst:PIPELINE"),
    ("test://nope", "image", ERROR, "unknown test source"),
    ("test://nope", "audio", ERROR, "unknown test source"),
    ("test://nope", "text", ERROR, "unknown test source"),
    ("foo://bar", "image", ERROR, "unknown scheme 'foo'"),
    ("foo://bar", "audio", ERROR, "unknown scheme 'foo'"),
    ("file://", "image", ERROR, "expected file://PATH"),
    ("file://", "audio", ERROR, "expected file://PATH"),
    ("{missing}/x.wav", "audio", ERROR, "does not exist"),
    ("{missing}/x.txt", "text", ERROR, "does not exist"),
    ("file://{missing}/x.txt", "text", ERROR, "does not exist"),
    ("{missing}/*.png", "image", ERROR, "holds no images"),
    ("{dir}/garbage.wav", "audio", ERROR, "cannot be decoded"),
    ("{dir}/garbage.png", "image", ERROR, "cannot be decoded"),
    ("{dir}/garbage.mp4", "image", ERROR, "cannot be opened"),
    ("{dir}/binary.txt", "text", DROP, "decode_errors"),
    ("{dir}/blank.txt", "text", DROP, "empty_lines"),
    ("{dir}/huge_time.txt", "text", ERROR, "is beyond"),
    ("{dir}/inf_time.txt", "text", ERROR, "is beyond"),
    ("{dir}/backwards.txt", "text", ERROR, "times must not decrease"),
    ("{dir}/timed.txt", "text", ACCEPT, ""),
    ("x", "smell", ERROR, "modality 'smell'"),
    ("-", "text", ERROR, "cannot run with replay=deterministic"),
    ("99", "image", ERROR, "is a live source"),
    ("a\x00b", "image", ERROR, "is not valid"),
    ("1" * 5000, "image", ERROR, "device index",),
    ("test://digits", "image", ACCEPT, ""),
    ("test://dtmf", "audio", ACCEPT, ""),
    ("test://digits", "text", ACCEPT, ""),
    ("hello there", "text", ACCEPT, ""),
    ("\udcff\udcfe", "text", ACCEPT, ""),  # argv bytes ff fe: repaired by the pipeline before tokenizing
    ("{dir}/timed.txt", "image", ERROR, "cannot be opened"),
]


def uri_cases() -> list[Case]:
    return [Case(f"uri-{i:02d}-{modality}-{uri!r:.30}", expect, (uri, modality), needle)
            for i, (uri, modality, expect, needle) in enumerate(URIS)]


# realtime-infer argv (after --bundle B --camera test://digits) -> expect, needle.
REALTIME_ARGS = [
    (["--duration", "inf"], "--duration"), (["--duration", "1e300"], "--duration"), (["--duration", "0"], "--duration"),
    (["--duration", "-5"], "--duration"), (["--duration", "nan"], "--duration"), (["--duration", "ten"], "--duration"),
    (["--budget-ms", "0"], "--budget-ms"), (["--budget-ms", "nan"], "--budget-ms"),
    (["--budget-ms", "-1"], "--budget-ms"),
    (["--budget-ms", "inf"], "--budget-ms"),
    (["--trigger", "inf"], "--trigger"), (["--trigger", "1e-300"], "--trigger"), (["--trigger", "0"], "--trigger"),
    (["--trigger", "-30"], "--trigger"), (["--trigger", "nan"], "--trigger"), (["--trigger", "1e9"], "--trigger"),
    (["--trigger", "sideways"], "--trigger"),
    (["--metrics-port", "-1"], "--metrics-port"), (["--metrics-port", "70000"], "--metrics-port"),
    (["--metrics-port", "80.5"], "--metrics-port"), (["--metrics-port", "http"], "--metrics-port"),
    (["--threads", "0"], "--threads"), (["--threads", "-1"], "--threads"), (["--threads", "1.5"], "--threads"),
    (["--threads", "100000"], "--threads"),
    (["--audio-hop-ms", "0"], "--audio-hop-ms"), (["--audio-hop-ms", "-10"], "--audio-hop-ms"),
    (["--audio-hop-ms", "inf"], "--audio-hop-ms"), (["--audio-hop-ms", "1e12"], "--audio-hop-ms"),
    (["--width", "0"], "--width"), (["--width", "1e9"], "--width"), (["--height", "-480"], "--height"),
    (["--fps", "0"], "--fps"), (["--fps", "inf"], "--fps"), (["--seed", "-1"], "--seed"), (["--seed", "x"], "--seed"),
    (["--summary-json", "{tmp}"], "--summary-json"), (["--summary-json", "{missing}/s.json"], "--summary-json"),
    (["--json", "{tmp}"], "--json"), (["--json", "{missing}/o.jsonl"], "--json"),
    (["--trace", "{missing}/t.json"], "--trace"), (["--save-video", "{tmp}"], "--save-video"),
    (["--summary-json", ""], "--summary-json"),
    (["--backend", "cuda"], "--backend"), (["--replay", "fast"], "--replay"), (["--precision", "int4"], "--precision"),
]
REALTIME_ACCEPTED = [
    ["--duration", "0.5"], ["--trigger", "15"], ["--trigger", "audio"], ["--metrics-port", "0"],
    ["--metrics-port", "65535"], ["--threads", "2"], ["--audio-hop-ms", "50"], ["--budget-ms", "1e3"],
    ["--json", "{tmp}/out.jsonl"], ["--seed", "4294967295"],
]

# fusionrt argv -> flag named in the error.
FUSIONRT_ARGS = [
    (["eval", "B", "--count", "0"], "--count"), (["eval", "B", "--count", "-3"], "--count"),
    (["eval", "B", "--count", "1e3"], "--count"),
    (["quantize", "B", "--calib", "builtin", "--mode", "fp16", "--count", "0"], "--count"),
    (["quantize", "B", "--calib", "builtin", "--mode", "auto", "--accuracy-budget", "nan"], "--accuracy-budget"),
    (["quantize", "B", "--calib", "builtin", "--mode", "auto", "--accuracy-budget", "-1"], "--accuracy-budget"),
    (["quantize", "B", "--calib", "builtin", "--mode", "auto", "--accuracy-budget", "inf"], "--accuracy-budget"),
    (["quantize", "B", "--calib", "builtin", "--mode", "int3"], "--mode"),
    (["bench", "B", "--window-ms", "0"], "--window-ms"), (["bench", "B", "--window-ms", "inf"], "--window-ms"),
    (["bench", "B", "--max-windows", "0"], "--max-windows"), (["bench", "B", "--warmup-ms", "-1"], "--warmup-ms"),
    (["bench", "B", "--gemm-size", "0"], "--gemm-size"), (["bench", "B", "--gemm-size", "1000000"], "--gemm-size"),
    (["bench", "B", "--json", "{tmp}"], "--json"), (["bench", "B", "--csv", "{missing}/b.csv"], "--csv"),
    (["bench", "B", "--png", "{tmp}"], "--png"), (["bench", "B", "--markdown", "{missing}/m.md"], "--markdown"),
    (["demo", "--stream", "nan"], "--stream"), (["demo", "--stream", "-1"], "--stream"),
    (["engine", "B", "--precision", "fp64"], "--precision"), (["inspect"], "bundle"),
]


def cli_cases() -> list[Case]:
    cases = [Case(f"realtime-{i:02d}-{' '.join(a)[:30]}", ERROR, ("realtime", a), f"argument {flag}")
             for i, (a, flag) in enumerate(REALTIME_ARGS)]
    cases += [Case(f"realtime-ok-{' '.join(a)[:30]}", ACCEPT, ("realtime", a)) for a in REALTIME_ACCEPTED]
    cases += [Case(f"fusionrt-{i:02d}-{' '.join(a)[:30]}", ERROR, ("fusionrt", a), flag)
              for i, (a, flag) in enumerate(FUSIONRT_ARGS)]
    return cases


def api_cases() -> list[tuple[str, str, str]]:
    """(id, expect, needle): the runner in test_bad_inputs.py holds the calls, keyed by id."""
    return [
        ("load-none", ERROR, "a bundle path must be a str or Path"),
        ("load-int", ERROR, "a bundle path must be a str or Path"),
        ("load-missing", ERROR, "does not exist"),
        ("load-file", ERROR, "does not exist"),
        ("load-no-manifest", ERROR, "has no manifest.json"),
        ("frame-t-none", ERROR, "Frame.t_ns is None"),
        ("frame-t-float", ERROR, "Frame.t_ns is 1.5"),
        ("frame-seq-str", ERROR, "Frame.seq is '1'"),
        ("frame-modality", ERROR, "Frame.modality is 'smell'"),
        ("options-width-0", ERROR, "SourceOptions.width"),
        ("options-fps-inf", ERROR, "SourceOptions.fps"),
        ("options-seed-neg", ERROR, "SourceOptions.seed"),
        ("budget-nan", ERROR, "deadline_ms = nan"),
        ("budget-inf", ERROR, "deadline_ms = inf"),
        ("trigger-inf", ERROR, "rate_hz"),
        ("trigger-tiny", ERROR, "rate_hz"),
        ("text-surrogate", DROP, ""),
        ("text-empty", DROP, "text input must be a non-empty string"),
        ("text-bytes", DROP, "text input must be a non-empty string"),
        ("image-wrong-dtype", DROP, "camera frame must be uint8"),
        ("image-empty", DROP, "camera frame is empty"),
        ("audio-nan", DROP, ""),
        ("values-duration-inf", ERROR, "duration_s is inf"),
        ("values-port-bool", ERROR, "port is True"),
        ("values-count-huge", ERROR, "count is"),
        ("values-output-dir", ERROR, "is a directory"),
        ("run-realtime-no-source", ERROR, "no source"),
        ("from-bundle-unknown-modality", ERROR, "smell"),
        ("run-duration-inf", ERROR, "duration_s"),
        ("run-realtime-summary-dir", ERROR, "is a directory"),
        ("config-binary", ERROR, "is not UTF-8 text"),
        ("config-list", ERROR, "must be a mapping"),
        ("check-missing-bundle", ERROR, "does not exist"),
    ]


def text_file_contents() -> dict[str, bytes]:
    """The .txt sources the URI cases read from {dir}."""
    return {
        "binary.txt": b"red cat\n\xff\xfe\x00 dog\n",
        "blank.txt": b"red\n\n   \nblue\n",
        "huge_time.txt": b"99999999999999\tred\n",
        "inf_time.txt": b"1" + b"0" * 400 + b"\tred\n",
        "backwards.txt": b"500\tred\n100\tblue\n",
        "timed.txt": b"\xef\xbb\xbf0\tred cat\n250.5\tgreen dog\n",
    }

