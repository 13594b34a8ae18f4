"""Operators rewritten in a form that keeps float32 precision where a runtime's own kernel loses it.

Mish: TVM 0.27 computes it as x * tanh(log(1 + exp(x))). For x below about -16, 1 + exp(x) rounds
to 1 and the result is 0 where ONNX's is x * exp(x) (about -6e-7 at x = -17, the node suite's
test_mish). With n = e * (e + 2) and e = exp(min(x, 20)), tanh(softplus(x)) = n / (n + 2) exactly,
and neither term cancels: the product stays x * e^x for very negative x and 1 once e^x swamps 2.

Softmax and LogSoftmax over a long axis: TVM 0.27 adds the exponentials one by one in float32. Over
an OCR recogniser's 18,385 classes that rounding puts a peaked softmax 1.2e-4 off float64, where
onnxruntime's blocked sums stay at 1.4e-5. Summing the float32 exponentials in float64 brings it to
7e-8, at the cost of one cast per element.

The build applies these only for a target that reports the operator as computed imprecisely.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx_ir as ir

LONG_SUM = 1024  # terms a float32 running sum takes before its rounding reaches 1e-5 of a peaked softmax


def _constant(node: ir.Node, name: str, value, dtype: ir.DataType) -> ir.Value:
    """A constant of `dtype` (a Constant node, which the build lifts into an initializer)."""
    tensor = ir.tensor(np.array(value, dtype.numpy()), name=f"{node.name or node.op_type}_{name}")
    constant = ir.node("Constant", [], {"value": tensor}, name=tensor.name, num_outputs=1)
    node.graph.insert_before(node, constant)
    return constant.outputs[0]


def _replace(node: ir.Node, nodes: list[ir.Node]) -> None:
    for index, new in enumerate(nodes):
        new.name = f"{node.name or node.op_type}_stable_{index}"
    ir.convenience.replace_nodes_and_values(node.graph, node, [node], nodes, [node.outputs[0]], [nodes[-1].outputs[0]])


def lower_mish(node: ir.Node) -> None:
    x = node.inputs[0]
    dtype = x.dtype or ir.DataType.FLOAT
    limit, two = (_constant(node, n, v, dtype) for n, v in (("limit", 20.0), ("two", 2.0)))
    nodes = [ir.node("Min", [x, limit])]
    nodes.append(ir.node("Exp", [nodes[-1].outputs[0]]))
    e = nodes[-1].outputs[0]
    nodes.append(ir.node("Add", [e, two]))
    nodes.append(ir.node("Mul", [e, nodes[-1].outputs[0]]))
    n = nodes[-1].outputs[0]
    nodes.append(ir.node("Add", [n, two]))
    nodes.append(ir.node("Div", [n, nodes[-1].outputs[0]]))
    nodes.append(ir.node("Mul", [x, nodes[-1].outputs[0]]))
    _replace(node, nodes)


def _opset(node: ir.Node) -> int | None:
    return node.version or (node.graph.opset_imports.get("") if node.graph is not None else None)


def softmax_axis(node: ir.Node) -> int | None:
    """The one axis an opset-13+ Softmax/LogSoftmax normalizes over, or None (unknown rank, or an
    older opset's flattened tail, which the build upgrades first where it matters)."""
    opset, shape = _opset(node), node.inputs[0].shape
    if opset is None or opset < 13 or shape is None:
        return None
    return node.attributes.get_int("axis", -1) % len(shape)


def sums_long_axis(node: ir.Node) -> bool:
    """Whether a Softmax/LogSoftmax adds more than LONG_SUM terms per output."""
    axis = softmax_axis(node)
    return axis is not None and isinstance(length := node.inputs[0].shape[axis], int) and length > LONG_SUM


def lower_softmax(node: ir.Node) -> None:
    """exp(x - max) in the input's type, its sum in float64, then the division (or the log)."""
    x = node.inputs[0]
    dtype = x.dtype or ir.DataType.FLOAT
    axis = softmax_axis(node)
    axes = _constant(node, "axes", [axis], ir.DataType.INT64)
    if _opset(node) >= 18:
        nodes = [ir.node("ReduceMax", [x, axes], {"keepdims": 1})]
    else:
        nodes = [ir.node("ReduceMax", [x], {"axes": [axis], "keepdims": 1})]
    nodes.append(ir.node("Sub", [x, nodes[-1].outputs[0]]))
    shifted = nodes[-1].outputs[0]
    nodes.append(ir.node("Exp", [shifted]))
    exps = nodes[-1].outputs[0]
    nodes.append(ir.node("Cast", [exps], {"to": ir.DataType.DOUBLE}))
    nodes.append(ir.node("ReduceSum", [nodes[-1].outputs[0], axes], {"keepdims": 1}))
    nodes.append(ir.node("Cast", [nodes[-1].outputs[0]], {"to": dtype}))
    total = nodes[-1].outputs[0]
    if node.op_type == "Softmax":
        nodes.append(ir.node("Div", [exps, total]))
    else:
        nodes.append(ir.node("Log", [total]))
        nodes.append(ir.node("Sub", [shifted, nodes[-1].outputs[0]]))
    _replace(node, nodes)


LOWER: dict[str, Callable[[ir.Node], None]] = {"Mish": lower_mish, "Softmax": lower_softmax, "LogSoftmax": lower_softmax}
STABLE_OPS = tuple(LOWER)


def needs_stable_form(node: ir.Node) -> bool:
    return node.op_type == "Mish" or (node.op_type in ("Softmax", "LogSoftmax") and sums_long_axis(node))


class StableActivationsPass(ir.passes.InPlacePass):
    """Rewrite every node of the given types (in every graph and subgraph) that loses precision."""

    def __init__(self, op_types: tuple[str, ...] = STABLE_OPS):
        super().__init__()
        self.op_types = op_types

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        found = [n for n in ir.traversal.RecursiveGraphIterator(model.graph)
                 if n.op_type in self.op_types and needs_stable_form(n)]
        for node in found:
            LOWER[node.op_type](node)
        return ir.passes.PassResult(model, bool(found))
