"""A `fusionrt triton-export` repository served for real by `tritonserver` on 127.0.0.1 (explicit
model control), used through the runtime's remote engine over HTTP and gRPC."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tritonclient.http as triton_http

from fusionrt.bundle import PRESENCE
from fusionrt.errors import EngineError
from fusionrt.export.report import Tolerance
from fusionrt.runtime import open_engine
from fusionrt.runtime.engine import OrtEngine
from fusionrt.runtime.triton_engine import open_triton_engine
from fusionrt.triton import ENSEMBLE, parse_address
from runtime_models import WORDS

PROTOCOLS = ("http", "grpc")


def address(server, protocol: str):
    return parse_address(f"triton://{server.http}" if protocol == "http" else f"triton+grpc://{server.grpc}")


def random_feeds(component, rng, batch: int) -> dict[str, np.ndarray]:
    feeds = {}
    for spec in component.inputs:
        shape = [batch, *(d if isinstance(d, int) else 6 for d in spec.shape[1:])]
        if spec.dtype == "uint8":
            feeds[spec.name] = rng.integers(0, 256, shape, dtype=np.uint8)
        elif spec.name == "input_ids":
            feeds[spec.name] = rng.integers(0, len(WORDS), shape).astype(np.int64)
        elif spec.name == "attention_mask":
            feeds[spec.name] = np.ones(shape, np.int64)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def assert_parity(found: np.ndarray, expected: np.ndarray) -> None:
    """Export parity's tolerances (fusionrt.export.report.Tolerance) for fp32."""
    cosine, max_abs = Tolerance().for_precision("fp32")
    a, b = found.ravel().astype(np.float64), expected.ravel().astype(np.float64)
    assert found.shape == expected.shape
    assert a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) >= cosine
    assert np.abs(a - b).max() <= max_abs


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_component_and_the_ensemble_agree_with_onnx_runtime(triton_server, triton_bundle, protocol):
    rng = np.random.default_rng(0)
    where = address(triton_server, protocol)
    local, inputs = {}, {}
    for name, component in triton_bundle.components.items():
        feeds = random_feeds(component, rng, batch=3)
        reference = OrtEngine(component.variant("fp32").path).run(feeds)
        remote = open_engine(triton_bundle, component, "fp32", where.value)
        assert remote.providers == [f"triton-{protocol}://{where.url}/{name}"]
        for output, value in remote.run(feeds).items():
            assert_parity(value, reference[output])
        remote.close()
        local[name], inputs[name] = reference, feeds
    # The ensemble: every encoder input and a presence mask (audio absent) in, the fusion head's logits out.
    presence = np.array([[1, 1, 0]] * 3, np.float32)
    feeds = {k: v for c in triton_bundle.encoders for k, v in inputs[c.name].items()} | {PRESENCE: presence}
    fusion_feeds = {c.modality: local[c.name]["embedding"] for c in triton_bundle.encoders} | {PRESENCE: presence}
    expected = OrtEngine(triton_bundle.fusion.variant("fp32").path).run(fusion_feeds)["logits"]
    ensemble = open_triton_engine(where, None, None, model=ENSEMBLE)
    assert_parity(ensemble.run(feeds)["logits"], expected)
    ensemble.close()


def test_dynamic_batching_really_batches(triton_server, triton_bundle):
    fusion = triton_bundle.fusion
    where = address(triton_server, "grpc")
    observer = open_triton_engine(where, fusion, "fp32")
    clients = [open_triton_engine(where, fusion, "fp32") for _ in range(8)]
    start = threading.Barrier(len(clients))
    feeds = random_feeds(fusion, np.random.default_rng(1), batch=1)

    def burst(engine) -> None:
        for _ in range(5):
            start.wait()
            engine.run(feeds)

    threads = [threading.Thread(target=burst, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stats = observer.timings()
    assert stats["server_requests"] == 40
    # Requests met in server batches (how many depends on thread scheduling on a busy machine).
    assert stats["server_batches"] < stats["server_requests"], stats
    for engine in [observer, *clients]:
        engine.close()


def test_bounded_load_of_8_clients_by_250_requests_has_no_error(triton_server, triton_bundle):
    component = triton_bundle.components["image_encoder"]
    feeds = random_feeds(component, np.random.default_rng(2), batch=1)
    expected = OrtEngine(component.variant("fp32").path).run(feeds)["embedding"]
    errors, done = [], []

    def client(index: int) -> None:
        engine = open_triton_engine(address(triton_server, PROTOCOLS[index % 2]), component, "fp32")
        try:
            for _ in range(250):
                assert_parity(engine.run(feeds)["embedding"], expected)
                done.append(1)
        except (EngineError, AssertionError) as e:
            errors.append(e)
        finally:
            engine.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(done) == 2000


def test_unload_and_reload_a_model(triton_server, triton_bundle):
    component = triton_bundle.components["text_encoder"]
    where = address(triton_server, "http")
    client = triton_http.InferenceServerClient(triton_server.http)
    try:
        client.unload_model(component.name)
        deadline = time.monotonic() + 10
        while client.is_model_ready(component.name) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(EngineError, match=rf"model 'text_encoder' is not loaded on the Triton server "
                                              rf"http://{where.url}; it has \[.*'image_encoder'.*\] — load it"):
            open_triton_engine(where, component, "fp32")
        client.load_model(component.name)
        client.load_model(ENSEMBLE)
        feeds = random_feeds(component, np.random.default_rng(3), batch=1)
        engine = open_triton_engine(where, component, "fp32")
        assert_parity(engine.run(feeds)["embedding"], OrtEngine(component.variant("fp32").path).run(feeds)["embedding"])
        engine.close()
    finally:
        client.close()


def test_bundle_and_server_mismatches_are_named(triton_server, triton_bundle):
    import dataclasses

    where = address(triton_server, "grpc")
    image, audio = triton_bundle.components["image_encoder"], triton_bundle.components["audio_encoder"]
    with pytest.raises(EngineError, match=r"image_encoder on the Triton server grpc://.* has inputs \['image'\] but "
                                          r"bundle component audio_encoder has \['audio'\]"):
        open_triton_engine(where, audio, "fp32", model="image_encoder")
    floats = dataclasses.replace(image, inputs=(dataclasses.replace(image.inputs[0], dtype="float32"),))
    with pytest.raises(EngineError, match="inputs dtypes differ: image is uint8 on the server, float32 in the bundle"):
        open_triton_engine(where, floats, "fp32")
    with pytest.raises(EngineError, match="serves variant 'fp32' but this run asked for 'int8'; pass --variant fp32"):
        open_triton_engine(where, image, "int8")
    engine = open_triton_engine(where, image, "fp32")
    with pytest.raises(EngineError, match="input 'image' is float32; the server's model takes uint8"):
        engine.run({"image": np.zeros((1, 8, 8, 3), np.float32)})
    with pytest.raises(EngineError, match=r"missing inputs \['image'\]; the server's model takes \['image'\]"):
        engine.run({"picture": np.zeros((1, 8, 8, 3), np.uint8)})
    engine.close()
    with pytest.raises(EngineError, match="the engine is closed"):
        engine.run({"image": np.zeros((1, 8, 8, 3), np.uint8)})


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_unreachable_server_is_named_with_host_and_port(triton_bundle, protocol):
    from tools.triton_ci.server import free_ports

    port = free_ports(1)[0]  # nothing listens there
    scheme = "triton" if protocol == "http" else "triton+grpc"
    with pytest.raises(EngineError, match=rf"the Triton server {protocol}://127.0.0.1:{port} is unreachable "
                                          rf"\(could not check that it is live: .+\); start it or check the --backend"):
        open_engine(triton_bundle, triton_bundle.fusion, "fp32", f"{scheme}://127.0.0.1:{port}")


def test_an_address_with_components_runs_only_those_on_the_server(triton_server, triton_bundle):
    where = f"triton+grpc://{triton_server.grpc}?components=fusion"
    fusion = open_engine(triton_bundle, triton_bundle.fusion, "fp32", where)
    image = open_engine(triton_bundle, triton_bundle.components["image_encoder"], "fp32", where)
    assert fusion.providers == [f"triton-grpc://{triton_server.grpc}/fusion"]
    assert isinstance(image, OrtEngine) and image.providers == ["CPUExecutionProvider"]
    fusion.close()
