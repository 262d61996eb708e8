"""Typed reads of manifest fields: every value checked for its type and bounds before use, and every
error naming the field path (e.g. `components.fusion.inputs[1].shape`), what was expected and found.

Bounds keep a hostile or mistyped manifest from asking for absurd allocations: tensor dimensions,
label counts and name lengths are capped here; per-modality sizes are capped in `specs`.
"""

from __future__ import annotations

import re

from fusionrt.bundle.specs import TensorSpec
from fusionrt.errors import BundleError
from fusionrt.frame import MODALITIES

DTYPES = ("float32", "float16", "float64", "bfloat16", "uint8", "int8", "int32", "int64", "bool")
MAX_DIM = 1 << 24  # a static tensor dimension; bigger would allocate tens of GB per input
MAX_NAME = 256  # characters of a tensor, axis or label name
MAX_LABELS = 100_000
TASK_KEYS = ("kind", "labels")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def field(container: dict, key: str, kind: type, where: str, prefix: str = ""):
    """container[key], which must exist and be of `kind` (bool is not an int)."""
    if key not in container:
        raise BundleError(f"{where}: field '{prefix}{key}' is missing; re-export the bundle")
    value = container[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(f"{where}: field '{prefix}{key}' must be {kind.__name__}, found {type(value).__name__}")
    return value


def name(value: object, where: str, path: str) -> str:
    """A non-empty name of at most MAX_NAME characters without control characters."""
    if not isinstance(value, str) or not value or len(value) > MAX_NAME or not value.isprintable():
        raise BundleError(f"{where}: {path} is {value!r:.60}; expected a non-empty printable name of at most "
                          f"{MAX_NAME} characters")
    return value


def tensor_specs(items: list, where: str, path: str) -> tuple[TensorSpec, ...]:
    """[{name, dtype, shape}] as TensorSpecs: known dtypes, dims in [0, MAX_DIM] or axis names, names unique."""
    specs = []
    for i, item in enumerate(items):
        prefix = f"{path}[{i}]."
        if not isinstance(item, dict):
            raise BundleError(f"{where}: {path}[{i}] must be an object with name, dtype and shape")
        shape = field(item, "shape", list, where, prefix)
        if len(shape) > 8 or not all(_dim(d) for d in shape):
            raise BundleError(f"{where}: {prefix}shape is {shape!r:.80}; expected at most 8 sizes (0 <= n <= "
                              f"{MAX_DIM}) or axis names")
        spec_name = name(field(item, "name", str, where, prefix), where, f"{prefix}name")
        dtype = field(item, "dtype", str, where, prefix)
        if dtype not in DTYPES:
            raise BundleError(f"{where}: {prefix}dtype is {dtype!r:.40}; expected one of {list(DTYPES)}")
        specs.append(TensorSpec(spec_name, dtype, tuple(shape)))
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise BundleError(f"{where}: {path} repeats a name ({names}); each tensor needs its own name")
    return tuple(specs)


def task_labels(task: dict, kind: str, where: str) -> tuple[str, ...]:
    """task.labels: distinct names; a classification has 2 to MAX_LABELS of them. Unknown task keys are refused."""
    unknown = sorted(set(task) - set(TASK_KEYS))
    if unknown:
        raise BundleError(f"{where}: task has unknown field {unknown[0]!r:.40}; expected only {list(TASK_KEYS)} "
                          f"(a typo, or a bundle from a newer fusionrt)")
    labels = field(task, "labels", list, where, "task.")
    for i, label in enumerate(labels):
        name(label, where, f"task.labels[{i}]")
    if len(set(labels)) != len(labels):
        raise BundleError(f"{where}: task.labels repeat a label; each class needs its own name")
    if kind == "binary" and len(labels) != 2:
        raise BundleError(f"{where}: task.labels has {len(labels)} labels; a binary task needs 2: negative, positive")
    if len(labels) > MAX_LABELS or (kind == "classification" and len(labels) < 2):
        raise BundleError(f"{where}: task.labels has {len(labels)} labels; a {kind} needs "
                          f"{'2' if kind == 'classification' else '0'} to {MAX_LABELS}, one per logit")
    return tuple(labels)


def modality_list(manifest: dict, where: str) -> tuple[str, ...]:
    modalities = field(manifest, "modalities", list, where)
    if not modalities or not all(isinstance(m, str) and m in MODALITIES for m in modalities) or \
            len(set(modalities)) != len(modalities):
        raise BundleError(f"{where}: modalities are {modalities!r:.80}; expected distinct names from "
                          f"{list(MODALITIES)}, at least one")
    return tuple(modalities)


def sha256(digest: object, where: str, relative: str) -> str:
    if not isinstance(digest, str) or not _SHA256.match(digest):
        raise BundleError(f"{where}: files[{relative!r}] is {digest!r:.80}; expected a sha256 as 64 lowercase hex "
                          f"digits — re-export the bundle")
    return digest


def optional_text(info: dict, key: str, where: str, prefix: str) -> str | None:
    value = info.get(key)
    if value is not None and not isinstance(value, str):
        raise BundleError(f"{where}: {prefix}{key} is {value!r:.40}; expected a string or null")
    return value


def _dim(d: object) -> bool:
    if isinstance(d, str):
        return 0 < len(d) <= MAX_NAME
    return isinstance(d, int) and not isinstance(d, bool) and 0 <= d <= MAX_DIM
