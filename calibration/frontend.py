"""The spectral front-end of an audio encoder, found from its graph, which INT8 keeps float.

A log-mel or MFCC front-end ends in a Log of a power spectrum: what feeds it spans many decades
(silence to a loud tone), so one 8-bit grid per tensor either clips the peaks or rounds the quiet
bins to zero, and the Log turns that rounding into large errors. Every node between a graph input
and such a Log (framing/DFT convolutions, power, mel projection) therefore stays float; the trunk
after the Log, log-compressed, is quantized.
"""

from __future__ import annotations

COMPRESSION_OPS = ("Log",)


def spectral_frontend(model) -> tuple[str, ...]:
    """Names of the nodes that lead from a graph input to a Log, the Log included, in graph order;
    empty when no Log reads something computed from an input."""
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    inputs = {i.name for i in graph.input} - constants
    producer = {out: node for node in graph.node for out in node.output}
    from_input: set[str] = set()  # names of nodes that depend on a graph input
    for node in graph.node:  # ONNX graphs are topologically sorted
        if any(i in inputs or (i in producer and producer[i].name in from_input) for i in node.input):
            from_input.add(node.name)
    frontend: set[str] = set()
    for log in (n for n in graph.node if n.op_type in COMPRESSION_OPS and n.name in from_input):
        stack = [log]
        while stack:
            node = stack.pop()
            if node.name in frontend or node.name not in from_input:
                continue
            frontend.add(node.name)
            stack += [producer[i] for i in node.input if i in producer]
    return tuple(n.name for n in graph.node if n.name in frontend)
