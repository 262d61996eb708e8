"""`export_component`: one nn.Module + example inputs -> a checked, optimized ONNX file and its report.

The torch.export-based exporter runs first; it emits opset 18 at the lowest, which
`fusionrt.export.opset` lowers to 17. When it fails (torch.export rejects the module, an op has
no translation, or the graph cannot be lowered) the TorchScript exporter runs, and the report
records why. Either way the file is checked by onnx, loaded by ONNX Runtime, compared with
PyTorch, saved after ONNX Runtime's basic offline optimization and compared again.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import logging
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
import torch

from fusionrt.errors import ExportError
from fusionrt.export.onnx_file import OFFLINE_OPTIMIZATION, check_model, io_specs, optimize_offline
from fusionrt.export.opset import lower_18_to_17
from fusionrt.export.parity import BATCH, check_parity, eval_mode, parity_inputs, torch_outputs
from fusionrt.export.report import ComponentReport, Tolerance, VariantReport

# torch's exporter warns once per torchvision op when torchvision is absent; fusionrt needs none.
logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)

DEFAULT_OPSET = 17  # TensorRT 8.5+ reads it; DESIGN.md keeps bundles at <= 17
DYNAMO_LOWEST_OPSET = 18

Axes = dict[str, dict[int, str]]


def export_component(
    module: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: str | Path,
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    opset: int | None = None,
    output_names: Sequence[str] | None = None,
    tolerance: Tolerance = Tolerance(),
) -> ComponentReport:
    """Export `module` to `path` (the FP32 variant); the component is named by the file name up to its first dot.

    Positional forward() arguments are `example_inputs`' values in order, named by its keys. Axis 0
    of every input and output is the dynamic "batch"; `dynamic_axes` adds or renames axes, e.g.
    {"input_ids": {0: "batch", 1: "sequence"}}. Raises ExportError when neither exporter succeeds
    or the file diverges from PyTorch beyond `tolerance`.
    """
    path = Path(path)
    name = path.name.split(".")[0]
    opset = DEFAULT_OPSET if opset is None else opset
    _check_example(name, example_inputs)
    input_names = list(example_inputs)
    args = tuple(example_inputs.values())
    with eval_mode(module):
        example = {n: t.detach().cpu().numpy() for n, t in example_inputs.items()}
        first = torch_outputs(module, [example], name)[0]
        output_names = _output_names(name, output_names, len(first))
        if set(output_names) & set(input_names):
            raise ExportError(f"{name}: {sorted(set(output_names) & set(input_names))} name both an input and an output")
        axes = resolve_axes(name, example_inputs, first, output_names, dynamic_axes)
        cases = parity_inputs(example, axes)
        references = torch_outputs(module, cases, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{name}.", dir=path.parent) as work:
            raw, optimized = Path(work) / "export.onnx", Path(work) / path.name
            t0 = time.perf_counter()
            model, exporter, fallback_reason, notes = _export_graph(
                module, _tracing_args(args, input_names, axes), input_names, output_names, axes, opset, name, path,
                Path(work),
            )  # fmt: skip
            onnx.save(model, raw)
            _check_dynamic_inputs(name, model, axes)
            t1 = time.perf_counter()
            common = dict(output_names=output_names, precision="fp32", tolerance=tolerance)
            what = f"{name}: the {exporter} exporter's graph"
            export_parity = check_parity(raw, cases, references, what=what, optimization="disable", **common)
            t2 = time.perf_counter()
            optimize_offline(raw, optimized)
            final = onnx.load(optimized)
            check_model(final, f"{path.name} after onnxruntime's {OFFLINE_OPTIMIZATION} optimization")
            t3 = time.perf_counter()
            parity = check_parity(
                optimized, cases, references, what=f"{path.name} ({OFFLINE_OPTIMIZATION}-optimized)", **common
            )
            t4 = time.perf_counter()
            optimized.replace(path)
    inputs, outputs = io_specs(final)
    seconds = {"export": t1 - t0, "export_parity": t2 - t1, "optimize": t3 - t2, "parity": t4 - t3}
    fp32 = VariantReport("fp32", path, OFFLINE_OPTIMIZATION, parity, seconds)
    return ComponentReport(
        name, exporter, fallback_reason, opset, inputs, outputs, export_parity, {"fp32": fp32}, notes
    )


def resolve_axes(
    name: str,
    example_inputs: Mapping[str, torch.Tensor],
    outputs: Sequence[np.ndarray],
    output_names: Sequence[str],
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
) -> Axes:
    """Axis 0 "batch" on every input and output, updated by `dynamic_axes`; validated against the tensors."""
    ranks = {n: t.dim() for n, t in example_inputs.items()} | {n: t.ndim for n, t in zip(output_names, outputs)}
    axes: Axes = {n: ({0: BATCH} if rank > 0 else {}) for n, rank in ranks.items()}
    for tensor_name, extra in (dynamic_axes or {}).items():
        if tensor_name not in ranks:
            raise ExportError(
                f"{name}: dynamic_axes names {tensor_name!r}, which is neither an input {list(example_inputs)} "
                f"nor an output {list(output_names)}"
            )
        for axis, symbol in extra.items():
            if not 0 <= axis < ranks[tensor_name] or not str(symbol).isidentifier():
                raise ExportError(
                    f"{name}: dynamic_axes[{tensor_name!r}] = {{{axis}: {symbol!r}}}; expected an axis in "
                    f"0..{ranks[tensor_name] - 1} and an identifier as its name"
                )
            axes[tensor_name][axis] = str(symbol)
    return axes


def _tracing_args(args: tuple, input_names: Sequence[str], axes: Axes) -> tuple:
    """The example with every dynamic dimension of size 1 doubled: both exporters specialize size-1
    dimensions (torch.export fails with "Constraints violated", the tracer can bake the 1 in)."""
    sizes: dict[str, int] = {}
    for name, tensor in zip(input_names, args):
        for axis, symbol in axes[name].items():
            sizes.setdefault(symbol, tensor.shape[axis])
    traced = []
    for name, tensor in zip(input_names, args):
        for axis, symbol in axes[name].items():
            if sizes[symbol] == 1:
                tensor = torch.cat([tensor, tensor], dim=axis)
        traced.append(tensor)
    return tuple(traced)


def _check_example(name: str, example_inputs: Mapping[str, torch.Tensor]) -> None:
    if not example_inputs:
        raise ExportError(f"{name}: example_inputs is empty; expected {{input name: tensor}} in forward() order")
    for key, value in example_inputs.items():
        if not isinstance(key, str) or not key or not isinstance(value, torch.Tensor):
            raise ExportError(
                f"{name}: example_inputs[{key!r}] is a {type(value).__name__}; expected str names and torch tensors"
            )


def _output_names(name: str, given: Sequence[str] | None, count: int) -> list[str]:
    if given is None:
        return ["output"] if count == 1 else [f"output_{i}" for i in range(count)]
    if len(given) != count:
        raise ExportError(f"{name}: output_names has {len(given)} names but forward() returns {count} tensors")
    if len(set(given)) != count:
        raise ExportError(f"{name}: output_names {list(given)} repeats a name")
    return list(given)


def _export_graph(module, args, input_names, output_names, axes: Axes, opset: int, name: str, path: Path, work: Path):
    """(model, exporter, fallback reason, notes): dynamo first, TorchScript when dynamo fails.

    What torch prints during a failed dynamo attempt (FX graph dumps) is dropped: the report and the
    progress line carry the reason. After a successful attempt it is passed on.
    """
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            model = _dynamo(module, args, input_names, output_names, axes, opset)
        sys.stderr.write(printed.getvalue())
        return model, "dynamo", None, ()
    except Exception as e:  # torch.export and the ONNX translation raise many unrelated types
        dynamo_error = e
    try:
        model, notes = _torchscript(module, args, input_names, output_names, axes, opset, work / "torchscript.onnx")
    except Exception as e:
        raise ExportError(_neither_exporter(name, path, dynamo_error, e)) from e
    return model, "torchscript", one_line(dynamo_error), notes


def _dynamo(module, args, input_names, output_names, axes: Axes, opset: int) -> onnx.ModelProto:
    if opset < DEFAULT_OPSET:
        raise ExportError(
            f"the dynamo exporter emits opset {DYNAMO_LOWEST_OPSET}+ and fusionrt lowers it to 17 at most; requested {opset}"
        )
    with warnings.catch_warnings():
        # Noise about torch's own internals and about inputs sharing a dimension on purpose.
        warnings.filterwarnings("ignore", message=r"# The axis name: \w+ will not be used")
        warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
        program = torch.onnx.export(
            module,
            args,
            input_names=input_names,
            opset_version=max(opset, DYNAMO_LOWEST_OPSET),
            dynamo=True,
            dynamic_shapes=_dynamic_shapes(module, input_names, axes),
            verbose=False,
        )
    model = _name_outputs(program.model_proto, output_names)
    if opset < DYNAMO_LOWEST_OPSET:
        model = lower_18_to_17(model)
    check_model(model, "dynamo exporter")
    return model


def _name_outputs(model: onnx.ModelProto, names: Sequence[str]) -> onnx.ModelProto:
    """Name the graph outputs, first renaming an inner value that holds one of the names: given
    output_names, the dynamo exporter can name an output like an inner value (BERT's "embedding")."""
    from onnxscript import ir

    ir_model = ir.from_proto(model)
    graph = ir_model.graph
    inner = [*graph.inputs, *graph.initializers.values(), *(v for node in graph.all_nodes() for v in node.outputs)]
    values = {v.name: v for v in inner}
    for value, name in zip(graph.outputs, names):
        holder = values.get(name)
        if holder is not None and holder is not value:
            holder.name = next(f"{name}_{i}" for i in range(len(values) + 1) if f"{name}_{i}" not in values)
            values[holder.name] = holder
        value.name = name
        values[name] = value
    return ir.to_proto(ir_model)


def _dynamic_shapes(module, input_names, axes: Axes) -> dict:
    """torch.export's dynamic_shapes, one Dim per symbol, shaped like forward()'s parameters (incl. *args)."""
    dims: dict[str, torch.export.Dim] = {}
    specs = [{axis: dims.setdefault(sym, torch.export.Dim(sym)) for axis, sym in axes[n].items()} for n in input_names]
    return dict(inspect.signature(module.forward).bind(*specs).arguments)


def _torchscript(module, args, input_names, output_names, axes: Axes, opset: int, file: Path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.onnx.export(
            module,
            args,
            str(file),
            input_names=input_names,
            output_names=output_names,
            opset_version=opset,
            dynamo=False,
            dynamic_axes={n: a for n, a in axes.items() if a},
        )
    model = onnx.load(file)
    check_model(model, "torchscript exporter")
    tracer = dict.fromkeys(
        f"TracerWarning: {_first_line(str(w.message))}" for w in caught if w.category.__name__ == "TracerWarning"
    )
    return model, tuple(tracer)


def _check_dynamic_inputs(name: str, model: onnx.ModelProto, axes: Axes) -> None:
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for axis, symbol in axes.get(value.name, {}).items():
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                raise ExportError(
                    f"{name}: input {value.name!r} axis {axis} should be dynamic ({symbol!r}) but the exported graph "
                    f"fixes it at {dims[axis].dim_value}; the module's code specializes that size"
                )


# Where exporters name the op or node they failed on.
_OP_PATTERNS = (
    re.compile(r"OpOverload\(op='([\w.]+)'"),
    re.compile(r"Exporting the operator '([\w:.]+)'"),
    re.compile(r"Unsupported FX nodes: \{[^\[]*\['([\w.]+)'"),
    re.compile(r"target=torch\.ops\.([\w.]+)"),
)
_NODE_PATTERN = re.compile(r"Error when translating node (%\w+)")
_CALL_SITE = re.compile(r'The following call raised this error:\s*File "([^"]+)", line (\d+)')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _chain_text(error: BaseException) -> str:
    parts, seen = [], set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        parts.append(str(error))
        error = error.__cause__ or error.__context__
    return _ANSI.sub("", "\n".join(parts))


def one_line(error: BaseException) -> str:
    """The root cause of an exporter error on one line, with the user's call site when torch.export names it."""
    root, seen = error, set()
    while (root.__cause__ or root.__context__) is not None and id(root) not in seen:
        seen.add(id(root))
        root = root.__cause__ or root.__context__
    text = f"{type(root).__name__}: {_first_line(_ANSI.sub('', str(root)))}"
    site = _CALL_SITE.search(_chain_text(error))
    if site:
        text += f" (at {Path(site.group(1)).name}:{site.group(2)})"
    return text


def _neither_exporter(name: str, path: Path, dynamo_error: BaseException, ts_error: BaseException) -> str:
    text = _chain_text(dynamo_error) + "\n" + _chain_text(ts_error)
    op = next((m.group(1) for p in _OP_PATTERNS if (m := p.search(text))), None)
    node = _NODE_PATTERN.search(text)
    where = f"op {op}" + (f" (node {node.group(1)})" if node else "") if op else "no op named by either exporter"
    return (
        f"cannot export {name} to {path.name}: {where}; dynamo exporter: {one_line(dynamo_error)}; "
        f"torchscript exporter: {one_line(ts_error)}; replace that op in the module or give the dynamo exporter "
        f"a custom translation, then export again"
    )


def _first_line(text: str) -> str:
    text = text.strip()
    return text.splitlines()[0] if text else "(no message)"
