"""Unroll a Loop whose trip count is a constant into straight-line nodes.

Exporters emit Loop for Python for-loops over a fixed range (and after `--const-input` binds a
length, many loops become fixed). Static-graph runtimes (TFLite, TensorRT, TVM's ONNX importer)
have no Loop, but they run the unrolled body. A loop is unrolled when its trip count is a
constant of at most MAX_ITERATIONS, its condition stays true (constant, or passed through
unchanged), and the copies stay under MAX_NODES.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir

logger = logging.getLogger(__name__)

MAX_ITERATIONS = 64
MAX_NODES = 20_000


def _constant(value: ir.Value | None):
    return None if value is None or value.const_value is None else value.const_value.numpy()


def _condition_stays_true(body: ir.Graph) -> bool:
    out, cond_in = body.outputs[0], body.inputs[1]
    if out is cond_in:
        return True
    producer = out.producer()
    if producer is not None and producer.op_type == "Identity" and producer.inputs[0] is cond_in:
        return True
    value = _constant(out)
    return value is not None and bool(np.all(value))


def why_not_unrollable(node: ir.Node) -> str:
    """'' when the Loop can be unrolled, else the reason."""
    trips = _constant(node.inputs[0] if node.inputs else None)
    cond = node.inputs[1] if len(node.inputs) > 1 else None
    body = node.attributes["body"].as_graph()
    if trips is None:
        return "its trip count is computed at run time"
    if int(trips) > MAX_ITERATIONS or int(trips) < 1:
        return f"its trip count {int(trips)} is outside 1..{MAX_ITERATIONS}"
    if cond is not None and (_constant(cond) is None or not bool(np.all(_constant(cond)))):
        return "its start condition is computed at run time"
    if not _condition_stays_true(body):
        return "its body computes its own stop condition"
    if int(trips) * len(body) > MAX_NODES:
        return f"unrolling would add {int(trips) * len(body)} nodes (limit {MAX_NODES})"
    return ""


class UnrollLoopsPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        opset = model.opset_imports.get("", 17)
        modified = False
        loops = [n for n in ir.traversal.RecursiveGraphIterator(model.graph) if n.op_type == "Loop" and n.domain == ""]
        for node in loops:
            reason = why_not_unrollable(node)
            if reason:
                logger.debug("Loop '%s' not unrolled: %s", node.name, reason)
                continue
            _unroll(node, opset)
            modified = True
        return ir.passes.PassResult(model, modified)


def _scalar(graph: ir.Graph, name: str, value) -> ir.Value:
    tensor = ir.tensor(np.asarray(value), name=name)
    result = ir.Value(name=name, shape=ir.Shape(tensor.shape), type=ir.TensorType(tensor.dtype), const_value=tensor)
    graph.register_initializer(result)
    return result


def _iteration(loop: ir.Node, body: ir.Graph, index: int, carried: list[ir.Value]) -> list[ir.Value]:
    """Insert one copy of the body before the Loop; return the copy's outputs (condition first)."""
    graph = loop.graph
    prefix = f"{loop.name or 'loop'}/iter{index}/"
    copy = body.clone(allow_outer_scope_values=True)
    actual = [_scalar(graph, prefix + "i", np.int64(index)), _scalar(graph, prefix + "cond", np.bool_(True)), *carried]
    outputs = list(copy.outputs)
    copy.outputs.clear()
    formal_to_actual = dict(zip(copy.inputs, actual))
    for formal, value in formal_to_actual.items():
        formal.replace_all_uses_with(value)
    for name, initializer in list(copy.initializers.items()):
        copy.initializers.pop(name)
        initializer.name = prefix + name
        graph.register_initializer(initializer)
    nodes = list(copy)
    copy.remove(nodes)
    for node in nodes:
        node.name = prefix + (node.name or node.op_type)
        for value in node.outputs:
            value.name = prefix + (value.name or "out")
    graph.insert_before(loop, nodes)
    return [formal_to_actual.get(value, value) for value in outputs]


def _stack(loop: ir.Node, parts: list[ir.Value], opset: int, name: str) -> ir.Value:
    """The scan output: each iteration's value with a new leading axis, concatenated."""
    graph = loop.graph
    nodes = []
    for i, part in enumerate(parts):
        if opset >= 13:
            node = ir.node("Unsqueeze", [part, _scalar(graph, f"{name}/axes{i}", np.array([0], np.int64))])
        else:
            node = ir.node("Unsqueeze", [part], {"axes": [0]})
        nodes.append(node)
    concat = ir.node("Concat", [n.outputs[0] for n in nodes], {"axis": 0}, name=name)
    graph.insert_before(loop, [*nodes, concat])
    return concat.outputs[0]


def _unroll(loop: ir.Node, opset: int) -> None:
    body = loop.attributes["body"].as_graph()
    trips = int(_constant(loop.inputs[0]))
    carried = list(loop.inputs[2:])
    scans: list[list[ir.Value]] = [[] for _ in range(len(body.outputs) - 1 - len(carried))]
    for index in range(trips):
        outputs = _iteration(loop, body, index, carried)
        carried = outputs[1 : 1 + len(carried)]
        for parts, value in zip(scans, outputs[1 + len(carried) :]):
            parts.append(value)
    results = carried + [_stack(loop, parts, opset, f"{loop.name}/scan{k}") for k, parts in enumerate(scans)]
    for old, new in zip(loop.outputs, results):
        if not old.is_graph_output():
            ir.convenience.replace_all_uses_with(old, new)
            continue
        if new.is_graph_input() or new.is_initializer() or new.is_graph_output():
            identity = ir.node("Identity", [new])
            loop.graph.insert_before(loop, identity)
            new = identity.outputs[0]
        name = old.name
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
        new.name = name  # the model keeps its output names
    loop.graph.remove(loop, safe=True)
