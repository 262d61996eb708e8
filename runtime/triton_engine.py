"""`TritonEngine`: one model on a remote Triton Inference Server, an `Engine` (runtime/backend.py).

Opened from a `triton://` address (fusionrt/triton/address.py), it checks at open what the server
serves against the bundle: the server reachable (else an error naming host and port), the model
loaded, its input/output names and dtypes those of the manifest, and the variant the repository
recorded (`fusionrt triton-export`) the one asked for.

A run that cannot reach the server is retried with bounded exponential backoff (RETRY_FIRST_S,
doubling to RETRY_MAX_S, for RETRY_WINDOW_S); the outage is logged and counted, and only when
the window passes does `run` raise EngineError, which the pipeline counts as a failed stage run.

Timing: each request's round trip is measured here; Triton's statistics (cumulative per model)
give the server's queue and compute time per request, so `timings()` splits a round trip into
server queue, server compute and the rest (network, serialization, client).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from http.client import HTTPException

import numpy as np

from fusionrt.bundle import Component, TensorSpec
from fusionrt.errors import EngineError
from fusionrt.runtime.metrics import LatencyHistogram
from fusionrt.triton.address import TritonBackend
from fusionrt.triton.config import COMPONENT_PARAMETER, VARIANT_PARAMETER

log = logging.getLogger("fusionrt.triton")

RETRY_FIRST_S = 0.1
RETRY_MAX_S = 2.0
RETRY_WINDOW_S = 5.0
NETWORK_TIMEOUT_S = 10.0
UNREACHABLE = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED")  # gRPC statuses of a lost server
STAGES = ("queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class ServerStats:
    """One model's cumulative Triton statistics: successful requests, their total time and its parts."""

    requests: int = 0
    executions: int = 0
    success_ns: int = 0
    parts_ns: tuple[int, ...] = (0, 0, 0, 0)  # STAGES


def open_triton_engine(address: TritonBackend, component: Component | None, variant: str | None, *,
                       model: str | None = None) -> TritonEngine:
    """The engine for `component`'s model (or `model`, e.g. the ensemble) on the server at `address`."""
    return TritonEngine(address, model or component.name, component=component, variant=variant)


class TritonEngine:
    """One Triton model over HTTP or gRPC (tritonclient); one client per engine, used by one thread at a time."""

    def __init__(self, address: TritonBackend, model: str, *, component: Component | None = None,
                 variant: str | None = None) -> None:
        self.address, self.model = address, model
        self.where = f"Triton server {address.protocol}://{address.url}"
        self._lock = threading.Lock()
        self._clients: dict[int, object] = {}  # per thread: tritonclient's HTTP client is bound to its thread
        self._closed = False
        self.round_trip = LatencyHistogram()
        self.outages = self.retries = 0
        self.retry_window_s = RETRY_WINDOW_S
        self._call("check that it is live", self._client.is_server_live)
        if not self._call(f"ask for model {model}", self._client.is_model_ready, model):
            raise EngineError(f"model {model!r} is not loaded on the {self.where}; it has {self._ready_models()} — "
                              f"load it (tritonserver --load-model {model}, or the repository API) or serve a repository "
                              f"made by `fusionrt triton-export`")
        metadata = self._json(self._call("read the model metadata", self._client.get_model_metadata, model))
        config = self._json(self._call("read the model config", self._client.get_model_config, model))
        config = config.get("config", config)
        self._inputs = tuple(_spec(t) for t in metadata["inputs"])
        self._outputs = tuple(_spec(t) for t in metadata["outputs"])
        self.input_names = [s.name for s in self._inputs]
        self.output_names = [s.name for s in self._outputs]
        self.served_variant = config.get("parameters", {}).get(VARIANT_PARAMETER, {}).get("string_value")
        if component is not None:
            self._check_against(component, variant, config)
        self._start = self._server_stats()

    # -- the Engine protocol --------------------------------------------------------------------

    @property
    def providers(self) -> list[str]:
        return [f"triton-{self.address.protocol}://{self.address.url}/{self.model}"]

    def input_specs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def output_specs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._closed:
            raise EngineError(f"{self.model} on the {self.where}: the engine is closed; open it again to run it")
        inputs = self._infer_inputs(feeds)
        outputs = [self._module.InferRequestedOutput(n) for n in self.output_names]
        t0 = time.perf_counter_ns()
        result = self._call(f"run {self.model}", self._client.infer, self.model, inputs, outputs=outputs, retry=True)
        with self._lock:
            self.round_trip.record((time.perf_counter_ns() - t0) / 1e6)
        return {n: result.as_numpy(n) for n in self.output_names}

    def close(self) -> None:
        """Log the timing split and close the connections (a server waits for open ones when it stops)."""
        if self._closed:
            return
        if self.round_trip.count:
            try:
                log.info("%s", self.timing_line())
            except EngineError as e:
                log.info("%s on the %s: %d requests (server statistics unavailable: %s)", self.model, self.where,
                         self.round_trip.count, e)
        self._closed = True
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    # -- timings --------------------------------------------------------------------------------

    def timings(self) -> dict:
        """This engine's round trips and, from the server's statistics since the engine opened (all
        clients of the model), the mean server queue and compute time per request; `other_ms` is the
        rest of a round trip: network, (de)serialization and the client."""
        now = self._server_stats()
        requests = now.requests - self._start.requests
        per = (lambda ns: ns / requests / 1e6) if requests else (lambda ns: None)
        parts = [a - b for a, b in zip(now.parts_ns, self._start.parts_ns)]
        queue, compute = per(parts[0]), per(sum(parts[1:]))
        mean = self.round_trip.mean
        server = per(now.success_ns - self._start.success_ns)
        return {
            "model": self.model, "server": self.where, "requests": self.round_trip.count,
            "round_trip_ms": {"mean": mean, "p50": self.round_trip.quantile(0.5), "p99": self.round_trip.quantile(0.99)},
            "server_requests": requests, "server_batches": now.executions - self._start.executions,
            "server_queue_ms": queue, "server_compute_ms": compute, "server_total_ms": server,
            "other_ms": None if mean is None or server is None else max(0.0, mean - server),
            "outages": self.outages, "retries": self.retries,
        }  # fmt: skip

    def timing_line(self) -> str:
        t = self.timings()
        f = (lambda v: "?" if v is None else f"{v:.2f}")
        rt = t["round_trip_ms"]
        return (f"{self.model} on the {self.where}: {t['requests']} requests, round trip mean {f(rt['mean'])} ms "
                f"(p50 {f(rt['p50'])}, p99 {f(rt['p99'])}) = server queue {f(t['server_queue_ms'])} + compute "
                f"{f(t['server_compute_ms'])} + network/client {f(t['other_ms'])} ms per request; "
                f"{t['server_requests']} requests in {t['server_batches']} server batches")

    # -- internals ------------------------------------------------------------------------------

    def _infer_inputs(self, feeds: dict[str, np.ndarray]) -> list:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise EngineError(f"{self.model} on the {self.where}: missing inputs {missing}; the server's model "
                              f"takes {self.input_names}")
        inputs = []
        for spec in self._inputs:
            array = np.ascontiguousarray(feeds[spec.name])
            if array.dtype.name != spec.dtype:
                raise EngineError(f"{self.model} on the {self.where}: input {spec.name!r} is {array.dtype.name}; "
                                  f"the server's model takes {spec.dtype}")
            value = self._module.InferInput(spec.name, list(array.shape), _TRITON_OF_DTYPE[spec.dtype])
            value.set_data_from_numpy(array)
            inputs.append(value)
        return inputs

    def _check_against(self, component: Component, variant: str | None, config: dict) -> None:
        """The served model must take and give what the manifest declares, and serve `variant`."""
        for kind, declared, served in (("inputs", component.inputs, self._inputs), ("outputs", component.outputs, self._outputs)):
            mine = {s.name: s.dtype for s in declared}
            theirs = {s.name: s.dtype for s in served}
            if set(mine) != set(theirs):
                raise EngineError(f"{self.model} on the {self.where} has {kind} {sorted(theirs)} but bundle component "
                                  f"{component.name} has {sorted(mine)}; serve a repository exported from this bundle")
            wrong = [f"{n} is {theirs[n]} on the server, {mine[n]} in the bundle" for n in mine if mine[n] != theirs[n]]
            if wrong:
                raise EngineError(f"{self.model} on the {self.where}: {kind} dtypes differ: {'; '.join(wrong)}")
        served_for = config.get("parameters", {}).get(COMPONENT_PARAMETER, {}).get("string_value")
        if served_for is not None and served_for != component.name:
            raise EngineError(f"{self.model} on the {self.where} serves component {served_for!r}, not {component.name!r}")
        if variant is not None and self.served_variant is not None and self.served_variant != variant:
            raise EngineError(f"{self.model} on the {self.where} serves variant {self.served_variant!r} but this run "
                              f"asked for {variant!r}; pass --variant {self.served_variant} or export the repository "
                              f"with `fusionrt triton-export --variant {variant}`")

    def _call(self, what: str, fn, *args, retry: bool = False, **kwargs):
        """fn(*args), with a lost server retried with backoff when `retry`; EngineError naming host/port."""
        from tritonclient.utils import InferenceServerException

        delay, deadline, attempt = RETRY_FIRST_S, None, 0
        while True:
            try:
                result = fn(*args, **kwargs)
                if attempt:
                    log.warning("%s is back after %d retries; %s runs again", self.where, attempt, self.model)
                return result
            except (OSError, HTTPException, InferenceServerException) as e:  # HTTPException: a connection closed mid-answer
                lost = isinstance(e, (OSError, HTTPException)) or str(e.status()) in UNREACHABLE
                if not lost:
                    raise EngineError(f"{self.model} on the {self.where}: could not {what}: {e.message()}") from e
                if not retry or (deadline is not None and time.monotonic() + delay > deadline):
                    raise EngineError(f"the {self.where} is unreachable (could not {what}: {_reason(e)}); start it or "
                                      f"check the --backend address") from e
                if deadline is None:
                    deadline = time.monotonic() + self.retry_window_s
                    with self._lock:
                        self.outages += 1
                    log.warning("%s stage failed: the %s is unreachable (%s); retrying with backoff for up to %g s",
                                self.model, self.where, _reason(e), self.retry_window_s)
                attempt += 1
                with self._lock:
                    self.retries += 1
                time.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)

    def _server_stats(self) -> ServerStats:
        if self._closed:
            raise EngineError(f"{self.model} on the {self.where}: the engine is closed")
        raw = self._json(self._call("read the model statistics", self._client.get_inference_statistics, self.model))
        entries = [s for s in raw.get("model_stats", []) if s.get("name") == self.model]
        if not entries:
            return ServerStats()
        stats = entries[0].get("inference_stats", {})
        ns = (lambda key: int(stats.get(key, {}).get("ns", 0)))
        return ServerStats(
            requests=int(stats.get("success", {}).get("count", 0)),
            executions=int(entries[0].get("execution_count", 0)),
            success_ns=ns("success"),
            parts_ns=tuple(ns(k) for k in STAGES),
        )

    def _ready_models(self) -> list[str]:
        try:
            index = self._json(self._client.get_model_repository_index())
        except Exception:  # noqa: BLE001 - only for the message; the error being raised says what is wrong
            return ["(its repository index could not be read)"]
        index = index.get("models", index) if isinstance(index, dict) else index
        return sorted(m["name"] for m in index if m.get("state") == "READY")

    def _json(self, value):
        """gRPC answers are protobuf messages; HTTP's are already dicts."""
        if isinstance(value, (dict, list)):
            return value
        from google.protobuf.json_format import MessageToDict

        return MessageToDict(value, preserving_proto_field_name=True)

    @property
    def _client(self):
        """This thread's client, opened on first use."""
        key = threading.get_ident()
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = _client(self.address)
        return client

    @property
    def _module(self):
        if self.address.protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        return module


def _client(address: TritonBackend):
    try:
        if address.protocol == "grpc":
            import tritonclient.grpc as module

            return module.InferenceServerClient(address.url)
        import tritonclient.http as module

        return module.InferenceServerClient(address.url, connection_timeout=NETWORK_TIMEOUT_S,
                                            network_timeout=NETWORK_TIMEOUT_S)  # fmt: skip
    except ImportError as e:
        raise EngineError(f"the triton backend needs tritonclient ({e}); pip install 'fusionrt[triton]'") from e


def _reason(error: Exception) -> str:
    if isinstance(error, (OSError, HTTPException)):
        return getattr(error, "strerror", None) or str(error) or type(error).__name__
    return error.message() if hasattr(error, "message") else str(error)


_DTYPE_OF_TRITON = {
    "FP32": "float32", "FP16": "float16", "FP64": "float64", "BF16": "bfloat16", "UINT8": "uint8", "INT8": "int8",
    "INT32": "int32", "INT64": "int64", "BOOL": "bool",
}  # fmt: skip
_TRITON_OF_DTYPE = {v: k for k, v in _DTYPE_OF_TRITON.items()}


def _spec(tensor: dict) -> TensorSpec:
    """A server tensor as a TensorSpec: Triton's "FP32" is "float32", a -1 dimension is dynamic ("?")."""
    dims = tuple(int(d) for d in tensor.get("shape", ()))
    dtype = _DTYPE_OF_TRITON.get(tensor["datatype"], tensor["datatype"])
    return TensorSpec(tensor["name"], dtype, tuple("?" if d < 0 else d for d in dims))
