"""`fusionrt triton-export`: the repository's layout and each config.pbtxt checked against Triton's
model-config schema (the ModelConfig protobuf tritonclient ships) and its rules for batching,
dims and ensembles. The real server loading these repositories is test_triton_server.py."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from fusionrt.bundle import PRESENCE
from fusionrt.cli import main as fusionrt_main
from fusionrt.errors import BundleError, ConfigError
from fusionrt.runtime import Backend
from fusionrt.triton import ENSEMBLE, Serving, TritonBackend, parse_address, write_repository
from fusionrt.triton.config import TRITON_DTYPES


def parse_config(path) -> model_config_pb2.ModelConfig:
    """Triton's own schema: an unknown field, a wrong enum or a malformed value fails here."""
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_model_rules(config, component) -> None:
    """Triton's rules for a batched model: max_batch_size > 0 when dynamic batching is on, dims without
    the batch dimension, -1 for a variable one, at least one instance."""
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    assert config.instance_group and all(g.count >= 1 for g in config.instance_group)
    for tensors, specs in ((config.input, component.inputs), (config.output, component.outputs)):
        assert [t.name for t in tensors] == [s.name for s in specs]
        for tensor, spec in zip(tensors, specs):
            assert model_config_pb2.DataType.Name(tensor.data_type) == TRITON_DTYPES[spec.dtype]
            assert list(tensor.dims) == [d if isinstance(d, int) else -1 for d in spec.shape[1:]]
            assert all(d == -1 or d > 0 for d in tensor.dims)


def test_every_component_is_a_model_with_its_file_and_a_valid_config(triton_bundle, triton_repository):
    root = triton_repository.root
    assert sorted(p.name for p in root.iterdir()) == sorted([*triton_bundle.components, ENSEMBLE])
    for name, component in triton_bundle.components.items():
        config = parse_config(root / name / "config.pbtxt")
        assert config.name == name and config.backend == "onnxruntime"
        assert sha256(root / name / "1" / "model.onnx") == component.variant("fp32").sha256
        assert config.parameters["fusionrt_variant"].string_value == "fp32"
        assert config.dynamic_batching.max_queue_delay_microseconds == 5000
        check_model_rules(config, component)


def test_the_ensemble_feeds_the_encoders_outputs_and_the_presence_mask_to_the_fusion_head(triton_bundle, triton_repository):
    root = triton_repository.root
    ensemble = parse_config(root / ENSEMBLE / "config.pbtxt")
    assert ensemble.platform == "ensemble" and (root / ENSEMBLE / "1").is_dir()
    models = {name: parse_config(root / name / "config.pbtxt") for name in triton_bundle.components}
    inputs = {t.name: t for t in ensemble.input}
    expected = [s.name for c in triton_bundle.encoders for s in c.inputs] + [PRESENCE]
    assert list(inputs) == expected
    available, consumed = set(inputs), set()
    for step in ensemble.ensemble_scheduling.step:  # Triton's rules: steps read what exists, in order
        model = models[step.model_name]
        assert ensemble.max_batch_size <= model.max_batch_size
        assert set(step.input_map) == {t.name for t in model.input}
        for key, value in step.input_map.items():
            assert value in available, f"{step.model_name} reads {value}, which no input or earlier step gives"
            typed = inputs.get(value)
            if typed is not None:  # an ensemble input: same type and dims as the model input it feeds
                own = next(t for t in model.input if t.name == key)
                assert (typed.data_type, list(typed.dims)) == (own.data_type, list(own.dims))
            consumed.add(value)
        assert set(step.output_map) <= {t.name for t in model.output}
        available |= set(step.output_map.values())
    assert consumed >= set(inputs), "every ensemble input must be used"
    assert [s.model_name for s in ensemble.ensemble_scheduling.step][-1] == triton_bundle.fusion.name
    assert [t.name for t in ensemble.output] == ["logits"] and "logits" in available


def test_variants_follow_the_bundle_rule_and_serving_options_reach_the_config(triton_bundle, tmp_path):
    repo = write_repository(triton_bundle, tmp_path / "int8", variant="int8",
                            serving=Serving(max_batch=4, instances=2, delay_us=0, threads=2))
    assert repo.variants == {"image_encoder": "int8", "audio_encoder": "fp32", "text_encoder": "fp32", "fusion": "fp32"}
    config = parse_config(repo.root / "image_encoder" / "config.pbtxt")
    assert sha256(repo.root / "image_encoder" / "1" / "model.onnx") == triton_bundle.components["image_encoder"].variant("int8").sha256
    assert (config.max_batch_size, config.instance_group[0].count) == (4, 2)
    assert config.parameters["intra_op_thread_count"].string_value == "2"
    assert write_repository(triton_bundle, tmp_path / "auto").variants["image_encoder"] == "fp32"  # its default


def test_bad_requests_are_refused_with_the_reason_and_leave_nothing(triton_bundle, tmp_path):
    with pytest.raises(BundleError, match="has no fp16 TensorRT engine; build it on the device"):
        write_repository(triton_bundle, tmp_path / "plans", variant="tensorrt-fp16")
    assert not (tmp_path / "plans").exists()
    with pytest.raises(BundleError, match="no component .* has a variant 'int4'"):
        write_repository(triton_bundle, tmp_path / "int4", variant="int4")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not an empty folder"):
        write_repository(triton_bundle, tmp_path / "full")
    with pytest.raises(ConfigError, match=r"Serving.max_batch = 0; expected a whole number in \[1, 65536\]"):
        write_repository(triton_bundle, tmp_path / "zero", serving=Serving(max_batch=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"]  # no staging folder left behind


def test_a_batch_dimension_is_required(triton_bundle, tmp_path):
    fusion = triton_bundle.fusion
    fixed = dataclasses.replace(fusion, inputs=tuple(dataclasses.replace(s, shape=(1, *s.shape[1:])) for s in fusion.inputs))
    bundle = dataclasses.replace(triton_bundle, components={**triton_bundle.components, "fusion": fixed})
    with pytest.raises(BundleError, match=r"Triton model fusion: text has shape \[1, 4\]; Triton's dynamic batching "
                                          r"needs a dynamic first \(batch\) dimension"):
        write_repository(bundle, tmp_path / "repo")


def test_the_cli_writes_the_repository(triton_bundle, tmp_path, capsys):
    out = tmp_path / "repo"
    code = fusionrt_main(["triton-export", str(triton_bundle.root), "--out", str(out), "--max-batch", "16",
                          "--instances", "2", "--dynamic-batching-delay-us", "250"])
    assert code == 0 and f"wrote {out}" in capsys.readouterr().out
    config = parse_config(out / "fusion" / "config.pbtxt")
    assert (config.max_batch_size, config.instance_group[0].count) == (16, 2)
    assert config.dynamic_batching.max_queue_delay_microseconds == 250
    assert fusionrt_main(["triton-export", str(triton_bundle.root), "--out", str(out)]) == 1
    assert "exists and is not an empty folder" in capsys.readouterr().err


@pytest.mark.parametrize("text, expected", [
    ("triton://127.0.0.1:8000", TritonBackend("http", "127.0.0.1", 8000)),
    ("triton+http://host", TritonBackend("http", "host", 8000)),
    ("triton+grpc://host", TritonBackend("grpc", "host", 8001)),
    ("triton+grpc://[::1]:9001?components=image_encoder,fusion", TritonBackend("grpc", "::1", 9001, ("image_encoder", "fusion"))),
])  # fmt: skip
def test_addresses_parse_and_round_trip(text, expected):
    parsed = Backend.parse(text)
    assert parsed == expected and parse_address(parsed.value) == expected
    assert not parsed.is_ort and parsed.runs_variants


@pytest.mark.parametrize("text, message", [
    ("triton://host:port", "Port could not be cast"),
    ("triton:///path", "expected triton://HOST:PORT"),
    ("triton://host:1/models", "expected triton://HOST:PORT"),
    ("triton://host:1?batch=4", "unknown option 'batch'"),
    ("triton://host:1?components=", "names no component"),
    ("tritonx://host:1", "expected one of"),
])  # fmt: skip
def test_bad_addresses_are_refused_with_the_grammar(text, message):
    with pytest.raises(ConfigError, match=message):
        Backend.parse(text)


def test_tensorrt_plans_are_served_by_the_tensorrt_backend(tmp_path):
    from runtime_models import write_bundle

    from fusionrt.bundle import write_manifest
    from fusionrt.bundle.format import read_manifest

    root = write_bundle(tmp_path / "bundle", modalities=("image",))
    manifest = read_manifest(root)
    for name, entry in manifest["components"].items():
        (root / f"{name}.fp16.plan").write_bytes(f"stand-in bytes for the {name} plan".encode())
        entry["engines"] = {"fp16": {"file": f"{name}.fp16.plan", "source_variant": "fp32", "fingerprint": {}}}
    bundle = write_manifest(root, manifest)
    repo = write_repository(bundle, tmp_path / "repo", variant="tensorrt-fp16")
    assert repo.variants == {"image_encoder": "tensorrt-fp16", "fusion": "tensorrt-fp16"}
    for name, component in bundle.components.items():
        config = parse_config(repo.root / name / "config.pbtxt")
        assert config.backend == "tensorrt" and "intra_op_thread_count" not in config.parameters
        assert sha256(repo.root / name / "1" / "model.plan") == component.engine("fp16").sha256
        check_model_rules(config, component)
