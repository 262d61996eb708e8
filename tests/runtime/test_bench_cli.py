"""`fusionrt bench` end to end on a tiny real bundle (tiny windows): rows per target, variant and
batch, MACs as hand-computed, report formats, skipped backends with reasons, a variant that fails
at run time reported as rows with its error while the rest has numbers, and bad input."""

import csv
import json
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from runtime_models import E, LABELS, WINDOW, _save, write_bundle

from fusionrt import cli
from fusionrt.bundle import edit, load
from fusionrt.runtime.bench import BenchSettings, bench_bundle
from fusionrt.runtime.bench.report import CSV_COLUMNS, to_csv, to_json, to_markdown, write_png

TINY = ["--threads", "1", "--batches", "1,2", "--window-ms", "2", "--max-windows", "3", "--warmup-ms", "1",
        "--gemm-size", "32"]  # fmt: skip
# MACs per item of runtime_models' components: image mean[3] @ [3, E], audio [WINDOW] @ [WINDOW, E],
# fusion [3E + 3] @ [3E + 3, 3 labels]; the text encoder is a lookup and a masked mean (no counted op).
MACS = {"text_encoder": 0, "image_encoder": 3 * E, "audio_encoder": WINDOW * E, "fusion": (3 * E + 3) * len(LABELS)}


def add_broken_audio_variant(root):
    """An "int8" audio encoder that loads but fails at run time: it reshapes [batch, WINDOW] to rows of WINDOW + 1."""
    nodes = [helper.make_node("Reshape", ["audio", "rows"], ["bad"]),
             helper.make_node("MatMul", ["bad", "w"], ["embedding"])]
    init = [numpy_helper.from_array(np.array([-1, WINDOW + 1], np.int64), "rows"),
            numpy_helper.from_array(np.zeros((WINDOW + 1, E), np.float32), "w")]
    graph = helper.make_graph(nodes, "audio_encoder",
                              [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["batch", WINDOW])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", E])], init)
    with edit(root) as change:
        _save(graph, change.stage("audio_encoder.int8.onnx"))
        variants = change.manifest["components"]["audio_encoder"]["variants"]
        variants["int8"] = {"file": "audio_encoder.int8.onnx", "precision": "int8"}


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    """One `fusionrt bench` of a bundle with an int8 image variant and a broken int8 audio variant."""
    root = tmp_path_factory.mktemp("bench")
    bundle_dir = write_bundle(root / "bundle", fast_int8_image=True)
    add_broken_audio_variant(bundle_dir)
    out = {k: root / f"bench.{k}" for k in ("csv", "md", "png")}
    capture = pytest.MonkeyPatch()
    stdout = root / "stdout.txt"
    with open(stdout, "w") as f:
        capture.setattr(sys, "stdout", f)
        code = cli.main(["bench", str(bundle_dir), *TINY, "--csv", str(out["csv"]), "--markdown", str(out["md"]),
                         "--png", str(out["png"])])  # fmt: skip
        capture.undo()
    report = json.loads((bundle_dir / "reports" / "bench.json").read_text())
    return code, bundle_dir, report, out, stdout.read_text()


def rows_of(report, **match):
    return [r for r in report["rows"] if all(r[k] == v for k, v in match.items())]


def test_every_target_variant_and_batch_has_a_row(bench_run):
    code, _, report, _, _ = bench_run
    assert code == 0
    expected = {("text_encoder", "fp32"), ("image_encoder", "fp32"), ("image_encoder", "int8"),
                ("audio_encoder", "fp32"), ("audio_encoder", "int8"), ("fusion", "fp32"),
                ("model", "fp32"), ("model", "int8")}  # fmt: skip
    found = {(r["target"], r["variant"]) for r in rows_of(report, backend="ort-cpu")}
    assert found == expected
    for target, variant in expected:
        assert sorted(r["batch"] for r in rows_of(report, target=target, variant=variant)) == [1, 2]


def test_rows_carry_statistics_and_the_macs_of_the_graph(bench_run):
    _, _, report, _, _ = bench_run
    for row in rows_of(report, status="ok"):
        lat = row["latency_ms"]
        assert 0 < lat["p50"] <= lat["p90"] <= lat["p95"] <= lat["p99"] <= lat["max"]
        assert lat["count"] >= 3 * 5  # three windows of at least five runs
        assert row["throughput_per_s"] > 0
        assert row["copy_ms"].startswith("n/a")  # ORT CPU runs on the host's arrays
        assert len(row["cdf_ms"]) == 101
        assert row["device"] == "CPUExecutionProvider"
    for component, per_item in MACS.items():
        for row in rows_of(report, target=component, status="ok"):
            assert row["macs"] == per_item * row["batch"]
            if per_item:
                assert row["gflops"] == pytest.approx(2 * row["macs"] / (row["latency_ms"]["p50"] / 1e3) / 1e9)
                assert row["peak_fraction"] == pytest.approx(row["gflops"] / report["peak"]["ort_gflops"]["1"])
            else:
                assert row["gflops"] is None and row["peak_fraction"] is None
    for row in rows_of(report, target="model", variant="fp32"):
        assert row["macs"] == sum(MACS.values()) * row["batch"]
        assert row["components"] == {"text_encoder": "fp32", "image_encoder": "fp32", "audio_encoder": "fp32",
                                     "fusion": "fp32"}  # fmt: skip


def test_a_variant_that_fails_at_run_time_is_reported_and_the_rest_goes_on(bench_run):
    _, _, report, _, stdout = bench_run
    for target in ("audio_encoder", "model"):
        failed = rows_of(report, target=target, variant="int8")
        assert [r["status"] for r in failed] == ["error", "error"]
        assert all("audio_encoder.int8.onnx: onnxruntime failed to run" in r["error"] for r in failed)
        assert all(r["status"] == "ok" for r in rows_of(report, target=target, variant="fp32"))
    assert "ERROR: audio_encoder.int8.onnx: onnxruntime failed to run" in stdout


def test_backends_that_cannot_run_are_listed_as_skipped_with_the_reason(bench_run):
    _, bundle_dir, report, _, stdout = bench_run
    backends = report["backends"]
    assert backends["ort-cpu"] == {"status": "ok"}
    assert backends["torch"]["status"] == "skipped"
    assert "reference" in backends["torch"]["reason"] or "not installed" in backends["torch"]["reason"]
    for backend, provider in (("ort-cuda", "CUDAExecutionProvider"), ("ort-tensorrt", "TensorrtExecutionProvider")):
        if provider in ort.get_available_providers():
            assert backends[backend] == {"status": "ok"}
        else:
            assert backends[backend]["status"] == "skipped"
            assert f"has no {provider}" in backends[backend]["reason"]
            assert f"backend {backend} skipped: onnxruntime" in stdout
    assert "no TensorRT engines" in backends["tensorrt"]["reason"]
    assert {r["backend"] for r in report["rows"]} == {b for b, s in backends.items() if s["status"] == "ok"}


def test_scatter_is_skipped_with_a_reason_without_eval_data(bench_run):
    _, _, report, _, stdout = bench_run
    assert report["accuracy_latency"]["points"] == []
    assert "eval.json is absent" in report["accuracy_latency"]["skipped"]
    assert "accuracy-vs-latency scatter skipped" in stdout


def test_report_lands_in_the_bundle_with_refreshed_hashes(bench_run):
    _, bundle_dir, report, _, stdout = bench_run
    bundle = load(bundle_dir)  # every hash checks out, reports/bench.json included
    assert "reports/bench.json" in bundle.manifest["files"]
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu"]
    assert report["load_average"]["start"] >= 0 and report["load_average"]["end"] >= 0
    assert f"wrote {bundle_dir / 'reports' / 'bench.json'}" in stdout


def test_csv_has_the_header_and_a_line_per_row(bench_run):
    _, _, report, out, _ = bench_run
    with open(out["csv"], newline="") as f:
        lines = list(csv.DictReader(f))
    assert tuple(lines[0]) == CSV_COLUMNS
    assert len(lines) == len(report["rows"])
    for line, row in zip(lines, report["rows"]):
        assert (line["target"], line["variant"], int(line["batch"]), line["status"]) == (
            row["target"], row["variant"], row["batch"], row["status"])
        if row["status"] == "ok":
            assert float(line["p50_ms"]) == pytest.approx(row["latency_ms"]["p50"])
        else:
            assert line["error"] == row["error"] and line["p50_ms"] == ""


def test_markdown_has_a_table_line_per_row(bench_run):
    _, _, report, out, _ = bench_run
    text = out["md"].read_text()
    table = text.split("## All points")[1].split("## Notes")[0]
    lines = [line for line in table.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + len(report["rows"])  # header, separator, rows
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert "Command: `fusionrt bench" in text and "--window-ms 2.0" in text
    assert "backend tensorrt skipped" in text


def test_png_is_written(bench_run):
    _, _, _, out, _ = bench_run
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_round_trips(bench_run):
    _, _, report, _, _ = bench_run
    assert json.loads(to_json(report)) == report


def test_accuracy_from_eval_json_goes_into_the_scatter(tmp_path):
    bundle_dir = write_bundle(tmp_path / "bundle", fast_int8_image=True)
    evaluation = {"variants": {
        "fp32": {"components": {c: "fp32" for c in ("text_encoder", "image_encoder", "audio_encoder", "fusion")},
                 "accuracy": 0.9},
        "int8": {"components": {"text_encoder": "fp32", "image_encoder": "int8", "audio_encoder": "fp32",
                                "fusion": "fp32"}, "accuracy": 0.85},
    }}  # fmt: skip
    with edit(bundle_dir) as change:
        change.write_json("reports/eval.json", evaluation)
    report = bench_bundle(bundle_dir, components=["model"], backends=["ort-cpu"], threads=[1], batches=[1],
                          settings=BenchSettings(window_ms=2, max_windows=3, warmup_ms=1, gemm_size=32),
                          progress=lambda line: None)  # fmt: skip
    points = {p["variant"]: p for p in report["accuracy_latency"]["points"]}
    assert report["accuracy_latency"]["skipped"] is None
    assert {v: p["accuracy"] for v, p in points.items()} == {"fp32": 0.9, "int8": 0.85}
    for variant, point in points.items():
        assert point["p50_ms"] == rows_of(report, target="model", variant=variant)[0]["latency_ms"]["p50"]
    png = tmp_path / "scatter.png"
    write_png(report, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| model | 1 | ort-cpu int8 | ort-cpu fp32 |" in to_markdown(report)
    assert [(s["target"], s["threads"], s["candidate"], s["baseline"]) for s in report["ratios"]] == [
        ("model", 1, "ort-cpu int8", "ort-cpu fp32")]
    assert to_csv(report).count("\n") == 1 + len(report["rows"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--backends", "cuda"], "bench --backends 'cuda'; expected some of"),
        (["--backends", "ort"], "bench pins one ONNX Runtime provider per backend"),
        (["--threads", "1,x"], "--threads '1,x': expected comma-separated whole numbers"),
        (["--batches", "0"], "bench --batches [0]; expected positive whole numbers"),
        (["--component", "lidar_encoder"], "bench --component 'lidar_encoder'"),
        (["--variants", "int4"], "bench --variants 'int4': no component"),
        (["--max-windows", "2"], "the stability rule needs at least 3"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(tmp_path, capsys, args, message):
    bundle_dir = write_bundle(tmp_path / "bundle")
    assert cli.main(["bench", str(bundle_dir), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("fusionrt bench: error: ") and message in err
    assert "Traceback" not in err


def test_a_missing_bundle_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["bench", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_bench_package_imports_no_torch_onnx_or_matplotlib():
    code = ("import sys, fusionrt.runtime.bench;"
            "bad = [m for m in ('torch', 'onnx', 'matplotlib') if m in sys.modules]; assert not bad, bad")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_machine_fingerprint_reads_versions_without_importing_torch():
    code = ("import sys; from fusionrt.runtime.bench.machine import fingerprint; m = fingerprint();"
            "assert 'torch' not in sys.modules, 'torch imported'; assert m['versions']['numpy']")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_backends_are_the_runtime_enumeration():
    from fusionrt.runtime.backend import Backend
    from fusionrt.runtime.bench.backends import BENCHED, parse_backends

    assert BENCHED[0] is Backend.TORCH and set(BENCHED) == set(Backend) - {Backend.ORT}
    assert parse_backends(["tensorrt", Backend.ORT_CPU]) == [Backend.ORT_CPU, Backend.TENSORRT]
