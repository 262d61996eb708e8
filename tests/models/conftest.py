"""Shared checks for the model tests: export a module to ONNX and compare ONNX Runtime with torch."""

from __future__ import annotations

import inspect

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch.export import Dim


def dynamic_shapes(module: torch.nn.Module, axes: dict[str, dict[int, Dim]]) -> tuple:
    """torch.export's dynamic_shapes for `axes` (input name -> {axis: Dim}), in forward's arg structure.

    A `forward(self, *inputs)` (the fusion heads) takes its specs nested in one tuple: the
    exporter's `dynamic_axes` cannot be converted for varargs.
    """
    specs = tuple(axes.values())
    params = list(inspect.signature(module.forward).parameters.values())
    return (specs,) if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL else specs


def rename_output(model: onnx.ModelProto, name: str) -> None:
    """Name the single graph output `name`, first renaming any other value that already has it.

    The dynamo exporter's own output_names does not check collisions: a BERT graph has an inner
    value called "embedding" (the aten.embedding lookup), and output_names=["embedding"] then
    writes an invalid model ("Duplicate definition of name (embedding)").
    """
    (output,) = model.graph.output
    mapping = {name: f"{name}_inner", output.name: name} if output.name != name else {}
    for node in model.graph.node:
        node.input[:] = [mapping.get(v, v) for v in node.input]
        node.output[:] = [mapping.get(v, v) for v in node.output]
    for value in [*model.graph.value_info, output]:
        value.name = mapping.get(value.name, value.name)


def export_and_compare(
    module: torch.nn.Module,
    path,
    *,
    output_name: str,
    seq_max: int | None = None,
    check: dict[str, torch.Tensor] | None = None,
) -> float:
    """Export module (dynamo) with a dynamic batch (and seq when seq_max is given), run the ONNX file
    on `check` (default: example inputs of batch 3, another size than exported) and return the max
    abs difference to torch."""
    module.eval()
    example = module.example_inputs(batch=2)
    batch = Dim("batch", min=1, max=1024)
    seq = Dim("seq", min=2, max=seq_max) if seq_max else None
    axes = {name: ({0: batch, 1: seq} if seq is not None else {0: batch}) for name in example}
    program = torch.onnx.export(
        module,
        tuple(example.values()),
        input_names=list(example),
        dynamic_shapes=dynamic_shapes(module, axes),
        dynamo=True,
    )
    model = program.model_proto
    rename_output(model, output_name)
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(example)
    assert [o.name for o in session.get_outputs()] == [output_name]
    check = module.example_inputs(batch=3) if check is None else check
    (got,) = session.run(None, {name: t.numpy() for name, t in check.items()})
    with torch.no_grad():
        expected = module(*check.values()).numpy()
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max())


@pytest.fixture
def onnx_parity(tmp_path):
    """export_and_compare writing into this test's tmp_path."""

    def run(module: torch.nn.Module, **kwargs) -> float:
        return export_and_compare(module, tmp_path / "module.onnx", **kwargs)

    return run


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
