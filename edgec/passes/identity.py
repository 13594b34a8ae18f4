"""Identity elimination that is safe on control flow.

onnx_ir 1.1.0's IdentityEliminationPass raises "Value ... is already an output of a different
graph" when an If/Loop branch outputs `Identity(v)` of a value that is already a graph output
(a streaming model that passes its state through one branch does this): it would make `v` the
output of two graphs. Such an Identity is the branch's way of naming an outer value as its own
output, so it stays; every other Identity goes as before.
"""
from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common


def _must_stay(node: ir.Node) -> bool:
    source, output = node.inputs[0], node.outputs[0]
    if source is None or not output.is_graph_output():
        return False
    producer = source.producer()
    return source.is_graph_output() or (producer is not None and producer.graph is not node.graph)


class IdentityEliminationPass(common.IdentityEliminationPass):
    def _try_eliminate_identity_node(self, node: ir.Node) -> bool:
        if node.op_type == "Identity" and len(node.inputs) == 1 and len(node.outputs) == 1 and _must_stay(node):
            return False
        return super()._try_eliminate_identity_node(node)
