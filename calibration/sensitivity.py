"""Sensitivity repair: find the nodes INT8 hurts most, keep them in float, quantize again.

Layer by layer: every float activation of the pre-processed FP32 graph is made a graph output, in
the FP32 graph and in the QDQ graph, where each tensor is read as its consumers see it (after its
Q/DQ pair, if any). Both run on the calibration batches and each node gets the cosine and relative
error of its output against FP32. A node's *added* error (its output's error minus the worst error
among its activation inputs) is what quantizing its weights and its output introduced (fused
activations such as Relu included); the worst nodes are excluded first. A node that runs in float
(excluded, or an op ORT does not quantize) and still adds error has its output quantized for the
nodes that read it: those readers are excluded next, so the tensor stays float.

Dynamic INT8 quantizes each MatMul's activation input per tensor at run time, so one large outlier
stretches the grid for every other value; layer-wise errors there build up slowly and point nowhere
in particular. Its repair keeps float the MatMuls whose inputs have the strongest outliers (max |x|
over the 99.9th percentile of |x| on the calibration set: in BERT encoders, the feed-forward output
projections that read GELU activations).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fusionrt.calibration.graphs import QDQ_OPS, instrumented_session, quantized_nodes
from fusionrt.calibration.quantize import (
    DYNAMIC_OP_TYPES,
    Prepared,
    QuantConfig,
    QuantMode,
    QuantResult,
    quantize_onnx,
)
from fusionrt.calibration.reader import FeedsReader
from fusionrt.errors import CalibrationError

QUANT_INPUT_SUFFIX = "_QuantizeLinear_Input"  # what ORT renames a quantized graph output to, before its Q


@dataclass(frozen=True)
class NodeError:
    node: str
    op_type: str
    output: str
    cosine: float
    relative_error: float
    added_error: float

    def as_dict(self) -> dict:
        return {
            "node": self.node,
            "op_type": self.op_type,
            "output": self.output,
            "cosine": round(self.cosine, 6),
            "relative_error": round(self.relative_error, 6),
            "added_error": round(self.added_error, 6),
        }


@dataclass(frozen=True)
class Verdict:
    """A judge's answer on one variant file: inside the budget?, a loss to minimise, figures to report."""

    ok: bool
    loss: float
    figures: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RepairResult:
    result: QuantResult
    verdict: Verdict
    rounds: tuple[dict, ...]
    kept_float: tuple[dict, ...]  # {node, round, reason, + what chose it: added error (static), outlier ratio (dynamic)}
    stopped: str

    def as_dict(self) -> dict:
        return {
            "met_budget": self.verdict.ok,
            "stopped": self.stopped,
            "kept_float": list(self.kept_float),
            "rounds": list(self.rounds),
        }


# ------------------------------------------------------------------------------------- measurement
class _Stats:
    """Streaming dot products per tensor, so no activation is kept in memory."""

    def __init__(self) -> None:
        self.dot = self.ref = self.cand = self.diff = 0.0
        self.values = self.mismatched = 0

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        r = reference.astype(np.float64).ravel()
        c = candidate.astype(np.float64).ravel()
        finite = np.isfinite(r) & np.isfinite(c)
        same_special = ~np.isfinite(r) & (r == c)  # e.g. -inf in both (masked attention scores)
        self.values += r.size
        self.mismatched += int(np.count_nonzero(~finite & ~same_special))
        r, c = r[finite], c[finite]
        self.dot += float(r @ c)
        self.ref += float(r @ r)
        self.cand += float(c @ c)
        self.diff += float((r - c) @ (r - c))

    @property
    def cosine(self) -> float:
        if self.ref == 0 and self.cand == 0:
            return 1.0 if not self.mismatched else 0.0
        return self.dot / max(np.sqrt(self.ref * self.cand), 1e-300)

    @property
    def relative_error(self) -> float:
        """RMS error over the RMS of FP32, plus the share of values where only one side is inf/NaN."""
        return float(np.sqrt(self.diff / max(self.ref, 1e-300))) + self.mismatched / max(self.values, 1)


def _float_activations(model) -> dict[str, int]:
    """Float node outputs of a shape-inferred graph -> their ONNX element type."""
    import onnx
    from onnx import TensorProto

    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    floats = (TensorProto.FLOAT, TensorProto.FLOAT16)
    return {out: types[out] for n in model.graph.node for out in n.output if types.get(out) in floats}


def _consumed_names(quant, tensors) -> dict[str, str]:
    """Original tensor name -> the name of the value its consumers read in the QDQ graph."""
    q_by_input = {n.input[0]: n for n in quant.graph.node if n.op_type == "QuantizeLinear"}
    dq_by_input = {n.input[0]: n for n in quant.graph.node if n.op_type == "DequantizeLinear"}
    present = {out for n in quant.graph.node for out in n.output}
    names = {}
    for t in tensors:
        q = q_by_input.get(t) or q_by_input.get(t + QUANT_INPUT_SUFFIX)
        if q is not None and q.output[0] in dq_by_input:
            names[t] = dq_by_input[q.output[0]].output[0]
        elif t in present:
            names[t] = t
    return names


def node_errors(fp32_path, quant_path, feeds: Sequence[dict[str, np.ndarray]], *, max_batches: int = 8) -> list[NodeError]:
    """Per-node error of the QDQ graph against FP32, worst added error first.

    Each tensor is compared as its consumers read it (after its Q/DQ pair, if any); a node of the
    QDQ graph is charged with its output's error minus the worst error among its activation inputs,
    that is its weights' and its output's quantization (fused activations such as Relu included).
    """
    import onnx

    fp32 = onnx.load(str(fp32_path))
    quant = onnx.load(str(quant_path))
    activations = _float_activations(fp32)
    consumed = _consumed_names(quant, activations)
    original = {name: t for t, name in consumed.items()}
    original.update({t + QUANT_INPUT_SUFFIX: t for t in consumed})
    original.update({t: t for t in consumed})
    ref_session = instrumented_session(fp32, {t: activations[t] for t in consumed})
    cand_session = instrumented_session(quant, {name: activations[t] for t, name in consumed.items()})
    names = list(consumed)
    stats = {t: _Stats() for t in names}
    for feed in list(feeds)[:max_batches]:
        ref = ref_session.run(names, {i.name: feed[i.name] for i in ref_session.get_inputs()})
        cand = cand_session.run([consumed[t] for t in names], {i.name: feed[i.name] for i in cand_session.get_inputs()})
        for t, r, c in zip(names, ref, cand):
            stats[t].add(r, c)
    errors = []
    for node in quant.graph.node:
        outputs = [original[o] for o in node.output if o in original]
        if node.op_type in QDQ_OPS or not outputs:
            continue
        inputs_err = [stats[original[i]].relative_error for i in node.input if i in original]
        out = stats[outputs[0]]
        added = out.relative_error - max(inputs_err, default=0.0)
        errors.append(NodeError(node.name, node.op_type, outputs[0], float(out.cosine), out.relative_error, added))
    return sorted(errors, key=lambda e: e.added_error, reverse=True)


def outlier_ratios(fp32_path, quant_path, feeds: Sequence[dict[str, np.ndarray]], *,
                   max_batches: int = 8) -> list[tuple[str, float]]:
    """(node, max |x| / 99.9th percentile of |x| of its activation input) for every node the
    dynamic INT8 graph at `quant_path` replaced with an integer kernel, strongest outliers first."""
    import onnx

    fp32 = onnx.load(str(fp32_path))
    present = {n.name for n in onnx.load(str(quant_path)).graph.node}
    weights = {i.name for i in fp32.graph.initializer}
    activations = _float_activations(fp32)
    inputs = {
        n.name: n.input[0] for n in fp32.graph.node
        if n.op_type in DYNAMIC_OP_TYPES and n.name not in present and n.input[0] not in weights
    }
    graph_inputs = {i.name for i in fp32.graph.input}
    computed = sorted({t for t in inputs.values() if t not in graph_inputs})
    session = instrumented_session(fp32, {t: activations[t] for t in computed})
    values: dict[str, list[np.ndarray]] = {t: [] for t in inputs.values()}
    for feed in list(feeds)[:max_batches]:
        feed = {i.name: feed[i.name] for i in session.get_inputs()}
        for t, v in (*zip(computed, session.run(computed, feed)), *((t, feed[t]) for t in values if t in feed)):
            values[t].append(np.abs(v.astype(np.float64)).ravel())
    ratios = []
    for node, t in inputs.items():
        v = np.concatenate(values[t])
        typical = float(np.percentile(v, 99.9))
        ratios.append((node, float(v.max()) / typical if typical > 0 else float("inf")))
    return sorted(ratios, key=lambda r: r[1], reverse=True)


# ------------------------------------------------------------------------------------- repair
def _choose(errors: list[NodeError], quant_model, excluded: set[str], count: int,
            min_added_error: float) -> list[tuple[str, NodeError, str]]:
    """(node to keep float, the error that points at it, why) for the `count` worst offenders.

    A quantized node is excluded itself. A float node that adds error either has its output
    quantized for its readers (exclude those readers) or amplifies the rounding of a quantized
    input (a Log of a small power, say: exclude whatever puts that input through Q/DQ).
    """
    quantized = set(quantized_nodes(quant_model))
    consumed = _consumed_names(quant_model, [e.output for e in errors])
    nodes = {n.name: n for n in quant_model.graph.node}
    producers = {out: n.name for n in quant_model.graph.node if n.op_type not in QDQ_OPS for out in n.output}
    readers: dict[str, list[str]] = {}
    for n in quant_model.graph.node:
        if n.op_type not in QDQ_OPS:
            for i in n.input:
                readers.setdefault(i, []).append(n.name)
    q_inputs = {n.output[0]: n.input[0] for n in quant_model.graph.node if n.op_type == "QuantizeLinear"}
    dq_sources = {n.output[0]: q_inputs[n.input[0]] for n in quant_model.graph.node
                  if n.op_type == "DequantizeLinear" and n.input[0] in q_inputs}  # DQ output -> tensor before Q

    picks: list[tuple[str, NodeError, str]] = []
    offenders = 0
    for error in errors:
        if offenders == count or error.added_error <= min_added_error:
            break
        taken = {p[0] for p in picks} | excluded
        if error.node in quantized and error.node not in excluded:
            picks.append((error.node, error, "its int8 weights/output add the largest error"))
            offenders += 1
            continue
        if consumed.get(error.output, error.output) != error.output:
            new = readers.get(consumed[error.output], [])
            why = f"keeps {error.node}'s output {error.output} float"
        else:
            new = []
            for tensor in nodes[error.node].input:
                if tensor in dq_sources:
                    source = dq_sources[tensor]
                    new += [producers.get(source)] + [r for r in readers.get(tensor, []) if r in quantized]
            why = f"keeps the input of {error.node} ({error.op_type}) float: it amplifies int8 rounding"
        new = [name for name in dict.fromkeys(new) if name and name not in taken]
        picks += [(name, error, why) for name in new]
        offenders += bool(new)
    return [(name, {**error.as_dict(), "measured_at": error.node}, why) for name, error, why in picks]


def _choose_outliers(ratios: list[tuple[str, float]], count: int,
                     min_ratio: float = 2.0) -> list[tuple[str, dict, str]]:
    """The `count` still-quantized nodes whose inputs have the strongest outliers (none below `min_ratio`:
    a grid that fits the bulk of the values is not what hurts there)."""
    return [
        (node, {"outlier_ratio": round(ratio, 2)}, "its input's outliers stretch the dynamic int8 grid")
        for node, ratio in ratios[:count] if ratio >= min_ratio
    ]


def _next_picks(prepared: Prepared, current: QuantResult, feeds, count: int, min_added_error: float) -> list:
    """The next nodes to keep in float: by input outliers (dynamic INT8), by added layer-wise error (static)."""
    import onnx

    if current.config.mode is QuantMode.INT8_DYNAMIC:
        return _choose_outliers(outlier_ratios(prepared.path, current.path, feeds), count)
    errors = node_errors(prepared.path, current.path, feeds)
    return _choose(errors, onnx.load(str(current.path)), set(current.excluded_nodes), count, min_added_error)


MAX_REPAIR_ROUNDS = 10


def repair(
    prepared: Prepared,
    onnx_out,
    config: QuantConfig,
    feeds: Sequence[dict[str, np.ndarray]],
    judge: Callable[[Path], Verdict],
    *,
    nodes_per_round: int = 1,
    max_rounds: int = MAX_REPAIR_ROUNDS,
    patience: int = 2,
    min_added_error: float = 1e-3,
    progress: Callable[[str], None] = lambda message: None,
) -> RepairResult:
    """Quantize `prepared` (static or dynamic INT8), and while `judge` says no, keep the worst nodes
    in float: by added layer-wise error (static), by input outliers (dynamic).

    Stops when the budget holds, when no node is left to exclude, after `patience` rounds without a
    lower loss, or after `max_rounds`. The variant with the lowest loss is the one left at `onnx_out`.
    """
    onnx_out = Path(onnx_out)
    with tempfile.TemporaryDirectory(prefix="fusionrt-repair-") as tmp:
        cache = Path(tmp) / "ranges.json"  # calibrate once; exclusions do not change FP32 ranges
        reader = FeedsReader(feeds)

        def attempt(cfg: QuantConfig, path: Path) -> tuple[QuantResult, Verdict]:
            result = quantize_onnx(prepared.path, path, cfg, reader, prepared=prepared, calibration_cache=cache)
            return result, judge(path)

        best_path = Path(tmp) / "best.onnx"
        best, verdict = attempt(config, best_path)
        current = best
        rounds: list[dict] = [{"round": 0, "excluded": list(config.exclude_nodes), **verdict.figures}]
        kept: list[dict] = []
        stopped, stale = f"stopped after {max_rounds} rounds", 0
        for round_index in range(1, max_rounds + 1):
            if verdict.ok:
                break
            picks = _next_picks(prepared, current, feeds, nodes_per_round, min_added_error)
            if not picks:
                stopped = "nothing left to gain: no quantized node adds measurable error"
                break
            for name, error, why in picks:
                kept.append({**error, "node": name, "round": round_index, "reason": why})
            cfg = current.config.excluding([p[0] for p in picks])
            path = Path(tmp) / f"round{round_index}.onnx"
            current, current_verdict = attempt(cfg, path)
            rounds.append({"round": round_index, "excluded": list(cfg.exclude_nodes), **current_verdict.figures})
            progress(f"  repair round {round_index}: float {[p[0] for p in picks]} -> {current_verdict.figures}")
            if current_verdict.ok or current_verdict.loss < verdict.loss:
                best, verdict, stale = current, current_verdict, 0
                best_path.write_bytes(current.path.read_bytes())
            else:
                stale += 1
                if stale >= patience:
                    stopped = f"nothing left to gain: {patience} rounds without a lower loss"
                    break
        stopped = "budget met" if verdict.ok else stopped
        onnx_out.parent.mkdir(parents=True, exist_ok=True)
        onnx_out.write_bytes(best_path.read_bytes())
    final = replace(best, path=onnx_out)
    kept_in_best = [k for k in kept if k["node"] in best.config.exclude_nodes]
    return RepairResult(final, verdict, tuple(rounds), tuple(kept_in_best), stopped)


def cosine_judge(fp32_path, feeds: Sequence[dict[str, np.ndarray]], min_cosine: float = 0.99, *,
                 every_row: bool = False) -> Callable[[Path], Verdict]:
    """A judge on the model's own outputs: mean cosine to FP32 of at least `min_cosine`, or with
    `every_row` the cosine of every sample (row)."""
    from fusionrt.calibration.measure import compare_outputs

    if not feeds:
        raise CalibrationError("cosine_judge needs at least one batch of inputs")

    def judge(path: Path) -> Verdict:
        a = compare_outputs(fp32_path, path, feeds)
        score = a.cosine_min if every_row else a.cosine_mean
        figures = {"cosine": round(a.cosine_mean, 6), "cosine_min": round(a.cosine_min, 6)}
        return Verdict(score >= min_cosine, 1.0 - score, figures)

    return judge
