"""Mark Conv/Gemm/MatMul + activation pairs that a backend may fuse into one kernel.

The graph keeps both nodes (every runtime can still execute it), and the producer carries
`edgec.fused_activation` naming the activation; backends with fused activations (TFLite,
OpenVINO, TensorRT) read the mark instead of rediscovering the pattern.
"""
from __future__ import annotations

import onnx_ir as ir

from edgec.ir import all_nodes
from edgec.ir.clip import clip_bounds

FUSABLE_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"}
MARK = "edgec.fused_activation"
CLIP_ACTIVATIONS = {(0.0, 6.0): "Relu6", (0.0, None): "Relu", (-1.0, 1.0): "ReluN1To1"}


def activation_name(node: ir.Node) -> str | None:
    """The fused-activation name of an activation node, or None if it has no fused form."""
    if node.op_type in ("Relu", "Sigmoid", "Tanh", "HardSwish"):
        return node.op_type
    if node.op_type == "Clip":
        bounds = clip_bounds(node)
        return CLIP_ACTIVATIONS.get(bounds) if bounds is not None else None
    return None


class MarkActivationFusionPass(ir.passes.InPlacePass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in all_nodes(model):
            if node.op_type not in FUSABLE_PRODUCERS or len(node.outputs) != 1:
                continue
            output = node.outputs[0]
            users = output.uses()
            if len(users) != 1 or output.is_graph_output():
                continue
            consumer = users[0].node
            name = activation_name(consumer)
            if name and consumer.inputs[0] is output and node.metadata_props.get(MARK) != name:
                node.metadata_props[MARK] = name
                modified = True
        return ir.passes.PassResult(model, modified)
