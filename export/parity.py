"""Parity of an ONNX file against PyTorch: input sets that look like the example, and the metrics.

Input sets vary every dynamic dimension (one size per dimension symbol, shared by every input
that names it): batch 1..3, other symbols 1..max(example size, 8). Values follow the example:
uint8 uniform 0..255; integers uniform in the example's [min, max]; 0/1 integers named like
``*mask`` as prefix masks (each row keeps a random length >= 1); 0/1 floats (presence masks) as
random 0/1 with at least one 1 per row; other floats normal with the example's mean and std.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from fusionrt.errors import EngineError, ExportError
from fusionrt.export.report import OutputParity, Parity, Tolerance
from fusionrt.runtime.engine import OrtEngine

BATCH = "batch"
GENERATED_INPUTS = 8
MIN_SYMBOL_RANGE = 8


def parity_inputs(
    example: dict[str, np.ndarray], axes: dict[str, dict[int, str]], *, count: int = GENERATED_INPUTS, seed: int = 0
) -> list[dict[str, np.ndarray]]:
    """The example followed by `count` generated input sets."""
    rng = np.random.default_rng(seed)
    example_sizes = {
        sym: example[name].shape[axis] for name, named in axes.items() if name in example for axis, sym in named.items()
    }
    cases = [example]
    for k in range(count):
        sizes = {
            sym: 1 + k % 3 if sym == BATCH else int(rng.integers(1, max(size, MIN_SYMBOL_RANGE) + 1))
            for sym, size in example_sizes.items()
        }
        case = {}
        for name, value in example.items():
            named = axes.get(name, {})
            shape = tuple(sizes[named[i]] if i in named else d for i, d in enumerate(value.shape))
            case[name] = _draw_like(name, value, shape, rng)
        cases.append(case)
    return cases


def _draw_like(name: str, example: np.ndarray, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    binary = example.size > 0 and bool(np.isin(example, (0, 1)).all())
    if example.dtype == np.bool_:
        return rng.random(shape) < 0.5
    if example.dtype == np.uint8:
        return rng.integers(0, 256, shape, dtype=np.uint8)
    if np.issubdtype(example.dtype, np.integer):
        if binary and name.lower().endswith("mask") and len(shape) >= 1:
            lengths = rng.integers(1, shape[-1] + 1, size=shape[:-1])
            return (np.arange(shape[-1]) < lengths[..., None]).astype(example.dtype)
        low, high = (int(example.min()), int(example.max())) if example.size else (0, 1)
        return rng.integers(low, high + 1, shape).astype(example.dtype)
    if binary and len(shape) >= 1:
        drawn = rng.random(shape) < 0.5
        rows = drawn.reshape(-1, shape[-1])
        rows[np.arange(rows.shape[0]), rng.integers(0, shape[-1], rows.shape[0])] = True
        return drawn.astype(example.dtype)
    mean, std = (float(example.mean()), float(example.std())) if example.size else (0.0, 1.0)
    return rng.normal(mean, std, shape).astype(example.dtype)


def flatten_outputs(result) -> list[torch.Tensor]:
    """A module's return value as a list of tensors in export order."""
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in result):
        return list(result)
    if isinstance(result, dict) and all(isinstance(t, torch.Tensor) for t in result.values()):
        return list(result.values())
    raise ExportError(
        f"expected forward() to return a tensor, or a tuple/list/dict of tensors; found {type(result).__name__}"
    )


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put the module in eval mode for the duration, then restore its previous mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


def torch_outputs(module: torch.nn.Module, cases: Sequence[dict[str, np.ndarray]], what: str) -> list[list[np.ndarray]]:
    """PyTorch's outputs for every input set, in eval mode; `what` names the component in errors."""
    references = []
    with torch.no_grad(), eval_mode(module):
        for index, case in enumerate(cases):
            try:
                result = module(*(torch.from_numpy(np.ascontiguousarray(v)) for v in case.values()))
            except Exception as e:  # whatever the user's forward() raises
                which = "the example inputs" if index == 0 else f"generated input set {index}"
                raise ExportError(
                    f"{what}: PyTorch forward() failed on {which} ({_shapes(case)}): {type(e).__name__}: {e}; parity input "
                    f"sets vary every dynamic axis (batch 1..3, others 1..max(example size, {MIN_SYMBOL_RANGE}))"
                ) from e
            references.append([t.detach().cpu().numpy() for t in flatten_outputs(result)])
    return references


def compare(reference: np.ndarray, candidate: np.ndarray) -> tuple[float, float, float]:
    """(max abs error, max relative error, cosine similarity of the flattened arrays)."""
    ref = reference.astype(np.float64).ravel()
    got = candidate.astype(np.float64).ravel()
    if ref.size == 0:
        return 0.0, 0.0, 1.0
    diff = np.abs(ref - got)
    max_rel = float((diff / np.maximum(np.abs(ref), 1e-6)).max())
    norms = np.linalg.norm(ref) * np.linalg.norm(got)
    if norms == 0:
        cosine = 1.0 if np.array_equal(ref, got) else 0.0
    else:
        cosine = float(np.dot(ref, got) / norms)
    return float(diff.max()), max_rel, cosine


def measure(
    run, cases: Sequence[dict[str, np.ndarray]], references: list[list[np.ndarray]], output_names: Sequence[str]
) -> tuple[tuple[OutputParity, ...], dict[str, int]]:
    """Run `run(feeds) -> {name: array}` on every case; worst figures per output and the case that set each cosine."""
    worst = {n: [0.0, 0.0, 1.0] for n in output_names}
    worst_case = {n: 0 for n in output_names}
    argmax = {n: [0, 0] for n in output_names}
    for index, (case, expected) in enumerate(zip(cases, references)):
        got = run(case)
        for name, ref in zip(output_names, expected):
            if got[name].shape != ref.shape:
                raise ExportError(
                    f"output {name!r}: ONNX Runtime returned shape {list(got[name].shape)}, PyTorch {list(ref.shape)} "
                    f"for inputs {_shapes(case)}; a dynamic axis was probably fixed at export"
                )
            max_abs, max_rel, cosine = compare(ref, got[name])
            figures = worst[name]
            figures[0], figures[1] = max(figures[0], max_abs), max(figures[1], max_rel)
            if not cosine >= figures[2]:  # also catches NaN
                figures[2], worst_case[name] = cosine, index
            if ref.ndim == 2 and ref.shape[1] > 1:
                argmax[name][0] += int((ref.argmax(1) == got[name].argmax(1)).sum())
                argmax[name][1] += ref.shape[0]
    outputs = tuple(
        OutputParity(n, *worst[n], argmax_agreement=argmax[n][0] / argmax[n][1] if argmax[n][1] else None)
        for n in output_names
    )
    return outputs, worst_case


def check_parity(
    path: Path,
    cases: Sequence[dict[str, np.ndarray]],
    references: list[list[np.ndarray]],
    output_names: Sequence[str],
    *,
    precision: str,
    tolerance: Tolerance,
    what: str,
    optimization: str = "all",
) -> Parity:
    """Run the file in ONNX Runtime (CPU) on every case; raise ExportError naming the first output outside tolerance."""
    try:
        run = OrtEngine(path, optimization=optimization).run
        outputs, worst_case = measure(run, cases, references, output_names)
    except (EngineError, ExportError) as e:
        raise ExportError(f"{what}: {e}") from e
    min_cosine, max_abs_limit = tolerance.for_precision(precision)
    for o in outputs:
        too_far = max_abs_limit is not None and not o.max_abs <= max_abs_limit
        if not o.cosine >= min_cosine or too_far:
            limit = f"max {max_abs_limit:g}" if max_abs_limit is not None else "not checked"
            raise ExportError(
                f"{what}: output {o.name!r} diverges from PyTorch: cosine {o.cosine:.6f} (min {min_cosine}), "
                f"max abs err {o.max_abs:.3g} ({limit}), max rel err {o.max_rel:.3g}, over {len(cases)} input sets "
                f"(lowest cosine on set {worst_case[o.name]}: {_shapes(cases[worst_case[o.name]])}); check that the "
                f"module computes the same for every input in eval mode, or loosen Tolerance if this is expected"
            )
    return Parity(inputs=len(cases), outputs=outputs, min_cosine=min_cosine, max_abs_limit=max_abs_limit)


def _shapes(case: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{n}{list(v.shape)}" for n, v in case.items())
