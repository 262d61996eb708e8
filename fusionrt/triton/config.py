"""Triton model configurations (`config.pbtxt`) built from a bundle's components, and their text.

A config is a plain dict mirroring Triton's `ModelConfig` message; `pbtxt` writes it in protobuf
text format. Enum values (TYPE_FP32, KIND_AUTO) are `Enum` so they are written bare, strings quoted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Sequence

from fusionrt.bundle import TensorSpec
from fusionrt.errors import BundleError

# Bundle dtype -> Triton's data_type (model_config.proto DataType).
TRITON_DTYPES = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "float64": "TYPE_FP64", "bfloat16": "TYPE_BF16",
    "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int32": "TYPE_INT32", "int64": "TYPE_INT64", "bool": "TYPE_BOOL",
}  # fmt: skip
VARIANT_PARAMETER = "fusionrt_variant"  # which bundle variant a model serves; the remote engine checks it
COMPONENT_PARAMETER = "fusionrt_component"


@dataclass(frozen=True)
class Enum:
    """A protobuf enum value: written without quotes."""

    name: str


@dataclass(frozen=True)
class Serving:
    """How each component model is served: batch limit, queue delay and instances."""

    max_batch: int = 8
    instances: int = 1
    delay_us: int = 100
    threads: int = 1  # intra-op threads per instance (the onnxruntime backend's intra_op_thread_count)


def batched_dims(spec: TensorSpec, where: str) -> list[int]:
    """Triton dims of a tensor whose first dimension is the batch (left out); -1 for a dynamic dim."""
    if not spec.shape or isinstance(spec.shape[0], int):
        raise BundleError(f"{where}: {spec.name} has shape {list(spec.shape)}; Triton's dynamic batching needs a "
                          f"dynamic first (batch) dimension — re-export the component with a dynamic batch axis")
    return [d if isinstance(d, int) else -1 for d in spec.shape[1:]]


def tensor_entries(specs: Sequence[TensorSpec], where: str, names: Mapping[str, str] | None = None) -> list[dict]:
    entries = []
    for spec in specs:
        if spec.dtype not in TRITON_DTYPES:
            raise BundleError(f"{where}: {spec.name} is {spec.dtype}, which Triton has no type for; "
                              f"expected one of {sorted(TRITON_DTYPES)}")
        name = (names or {}).get(spec.name, spec.name)
        entries.append({"name": name, "data_type": Enum(TRITON_DTYPES[spec.dtype]), "dims": batched_dims(spec, where)})
    return entries


def model_config(name: str, *, backend: str, inputs, outputs, serving: Serving, parameters: dict[str, str]) -> dict:
    """The config of one component model: dynamic batching, `serving.instances` instances (KIND_AUTO:
    the GPU where the server has one, else the CPU)."""
    where = f"Triton model {name}"
    return {
        "name": name,
        "backend": backend,
        "max_batch_size": serving.max_batch,
        "input": tensor_entries(inputs, where),
        "output": tensor_entries(outputs, where),
        "dynamic_batching": {"max_queue_delay_microseconds": serving.delay_us},
        "instance_group": [{"count": serving.instances, "kind": Enum("KIND_AUTO")}],
        "parameters": [{"key": k, "value": {"string_value": v}} for k, v in parameters.items()],
    }


def pbtxt(config: Mapping) -> str:
    """`config` in protobuf text format, one field per line."""
    return "\n".join(_fields(config, 0)) + "\n"


def _fields(message: Mapping, depth: int) -> list[str]:
    pad = "  " * depth
    lines = []
    for key, value in message.items():
        if isinstance(value, list) and not value:
            continue
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", *_fields(value, depth + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            for item in value:  # a repeated message: one block per element
                lines += [f"{pad}{key} {{", *_fields(item, depth + 1), f"{pad}}}"]
        elif isinstance(value, list):
            lines.append(f"{pad}{key}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def _scalar(value) -> str:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))  # a quoted string with escapes protobuf's text format reads
