"""Activations rewritten in a form that keeps float32 precision where a runtime's own kernel loses it.

TVM 0.27 computes Mish as x * tanh(log(1 + exp(x))): for x below about -16, 1 + exp(x) rounds to 1
and the result is 0 where ONNX's is x * exp(x) (about -6e-7 at x = -17, the node suite's test_mish).
With n = e * (e + 2) and e = exp(min(x, 20)), tanh(softplus(x)) = n / (n + 2) exactly, and neither
term cancels: the product stays x * e^x for very negative x and 1 once e^x swamps 2 in float32.
The build applies this only for a target that reports Mish as computed imprecisely.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

STABLE_OPS = ("Mish",)
SATURATION = 20.0  # tanh(softplus(x)) is 1 in float32 from here on, and exp(2x) stays finite


def _constant(node: ir.Node, name: str, value: float, dtype: ir.DataType) -> ir.Value:
    """A scalar constant of `dtype` (a Constant node, which the build lifts into an initializer)."""
    tensor = ir.tensor(np.array(value, dtype.numpy()), name=f"{node.name or 'mish'}_{name}")
    constant = ir.node("Constant", [], {"value": tensor}, name=tensor.name, num_outputs=1)
    node.graph.insert_before(node, constant)
    return constant.outputs[0]


def lower_mish(node: ir.Node) -> None:
    graph = node.graph
    x, y = node.inputs[0], node.outputs[0]
    dtype = x.dtype or ir.DataType.FLOAT
    limit, two = (_constant(node, n, v, dtype) for n, v in (("limit", SATURATION), ("two", 2.0)))
    nodes = [ir.node("Min", [x, limit])]
    nodes.append(ir.node("Exp", [nodes[-1].outputs[0]]))
    e = nodes[-1].outputs[0]
    nodes.append(ir.node("Add", [e, two]))
    nodes.append(ir.node("Mul", [e, nodes[-1].outputs[0]]))
    n = nodes[-1].outputs[0]
    nodes.append(ir.node("Add", [n, two]))
    nodes.append(ir.node("Div", [n, nodes[-1].outputs[0]]))
    nodes.append(ir.node("Mul", [x, nodes[-1].outputs[0]]))
    for index, new in enumerate(nodes):
        new.name = f"{node.name or 'mish'}_stable_{index}"
    ir.convenience.replace_nodes_and_values(graph, node, [node], nodes, [y], [nodes[-1].outputs[0]])


class StableActivationsPass(ir.passes.InPlacePass):
    """Rewrite every Mish (in every graph and subgraph) into its cancellation-free form."""

    def __init__(self, op_types: tuple[str, ...] = STABLE_OPS):
        super().__init__()
        self.op_types = op_types

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        found = [n for n in ir.traversal.RecursiveGraphIterator(model.graph) if n.op_type in self.op_types]
        for node in found:
            lower_mish(node)
        return ir.passes.PassResult(model, bool(found))
