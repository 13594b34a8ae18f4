"""Float islands: operators an int8 graph computes in float between int8 tensors.

Each one costs a dequantize, a float kernel and a requantize of its whole tensor: on an
EfficientNet-style classifier 17 float Pads made onnxruntime's int8 1.9x slower than its own
quantizer's. Operators that only move, pick or pad values compute the same on the integers, so
`move_in_int8` runs them on their input's int8 tensor with its scale (a Pad pads with the zero
point); the build reports every island left, with its size, so none goes unnoticed.
"""
from __future__ import annotations

import math

import onnx_ir as ir

from edgec.package.harness.manifest import FloatIsland

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# operators whose every output value is one of their first input's values (or a Pad's pad value)
DATA_MOVEMENT = frozenset({"Pad", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Split",
                           "MaxPool", "Resize", "Gather", "GatherElements", "Identity", "DepthToSpace",
                           "SpaceToDepth", "Expand", "Tile"})


def move_in_int8(model: ir.Model) -> int:
    """Run each data-movement node (or chain of them) between a per-tensor DequantizeLinear and
    QuantizeLinears on the int8 tensor itself, read with its input's scale and zero point; return how
    many nodes were moved."""
    scales: dict[ir.Value, tuple[ir.Value, ir.Value]] = {}  # moved outputs: their scale and zero point
    moved = 0
    for node in list(model.graph):  # topological: a chain moves one node after another
        if node.op_type not in DATA_MOVEMENT or not node.inputs or not _moves_values(node):
            continue
        dequantize = _dequantize_feeding(node)
        if node.inputs[0] in scales:
            scale, zero_point = scales[node.inputs[0]]
        elif dequantize is not None and _ends_in_int8(node):
            quantized, scale, zero_point = dequantize.inputs[:3]
            node.replace_input_with(0, quantized)
            if not dequantize.outputs[0].uses() and not dequantize.outputs[0].is_graph_output():
                model.graph.remove(dequantize, safe=True)
        else:
            continue
        if node.op_type == "Pad":
            while len(node.inputs) < 3:
                node.resize_inputs(len(node.inputs) + 1)
            node.replace_input_with(2, zero_point)  # the integer that means 0.0
        for out in node.outputs:
            out.dtype = zero_point.dtype  # the quantized tensor's own type is not always recorded
            scales[out] = (scale, zero_point)
            for quantize in [use.node for use in out.uses() if use.node.op_type == "QuantizeLinear"]:
                for read in list(quantize.outputs[0].uses()):  # DequantizeLinear nodes (_ends_in_int8)
                    read.node.replace_input_with(0, out)
                    read.node.replace_input_with(1, scale)
                    read.node.replace_input_with(2, zero_point)
                model.graph.remove(quantize, safe=True)
        moved += 1
    return moved


def _dequantize_feeding(node: ir.Node) -> ir.Node | None:
    """The per-tensor DequantizeLinear of an activation feeding the data of the data-movement `node`."""
    dequantize = node.inputs[0].producer() if node.inputs[0] is not None else None
    if dequantize is None or dequantize.op_type != "DequantizeLinear" or not _of_activation(dequantize):
        return None
    if len(dequantize.inputs) < 3 or any(v is None or v.const_value is None or v.const_value.size != 1
                                         for v in dequantize.inputs[1:3]):
        return None  # per-channel (a Transpose or Reshape would move its channels), or no zero point
    return dequantize


def _ends_in_int8(node: ir.Node) -> bool:
    """Every output of `node` goes only to QuantizeLinears read only by DequantizeLinears, or to
    data-movement nodes of which the same holds."""
    for out in node.outputs:
        if out.is_graph_output() or not out.uses():
            return False
        for use in out.uses():
            after = use.node
            if after.op_type == "QuantizeLinear":
                if use.idx != 0 or after.outputs[0].is_graph_output() or any(
                        read.node.op_type != "DequantizeLinear" for read in after.outputs[0].uses()):
                    return False
            elif not (after.op_type in DATA_MOVEMENT and use.idx == 0 and _moves_values(after)
                      and _ends_in_int8(after)):
                return False
    return True


def _moves_values(node: ir.Node) -> bool:
    if node.op_type == "Resize":
        return node.attributes.get_string("mode", "nearest") == "nearest"
    return node.op_type != "Pad" or _pads_zero(node)


def _pads_zero(pad: ir.Node) -> bool:
    """A constant-mode Pad with no pad value or 0 (edge and reflect copy values, which also qualifies)."""
    if pad.attributes.get_string("mode", "constant") != "constant":
        return True
    value = pad.inputs[2] if len(pad.inputs) > 2 else None
    return value is None or (value.const_value is not None and not value.const_value.numpy().any())


def float_islands(qdq: ir.Model, shapes: ir.Model, int8_ops: frozenset[str], kept_float: set[str]
                  ) -> list[FloatIsland]:
    """The nodes of `qdq` between int8 tensors (fed through float nodes by a dequantized activation, feeding
    a QuantizeLinear likewise) that the target does not run in int8: an operator outside its `int8_ops`, or a
    node kept float. Sized from the value shapes of the float model `shapes` (a symbolic axis counts 1)."""
    between = _reach(qdq, forward=True) & _reach(qdq, forward=False)
    sizes = {v.name: _elements(v) for n in shapes.graph for v in n.outputs}
    return [FloatIsland(node.name, node.op_type, sum(sizes.get(v.name) or 0 for v in node.outputs))
            for node in qdq.graph
            if id(node) in between and (node.op_type not in int8_ops or node.name in kept_float)]


def _reach(model: ir.Model, forward: bool) -> set[int]:
    """Float nodes reached from dequantized activations (forward) or from QuantizeLinear inputs (backward)."""
    def neighbours(node: ir.Node) -> list[ir.Node]:
        if forward:
            return [use.node for out in node.outputs for use in out.uses()]
        return [v.producer() for v in node.inputs if v is not None and v.producer() is not None]

    start = "DequantizeLinear" if forward else "QuantizeLinear"
    stack = [n for node in model.graph if node.op_type == start and (not forward or _of_activation(node))
             for n in neighbours(node)]
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen or node.op_type in QDQ_OPS:
            continue
        seen.add(id(node))
        stack.extend(neighbours(node))
    return seen


def _of_activation(dequantize: ir.Node) -> bool:
    """A DequantizeLinear of a computed tensor, not of a stored weight."""
    source = dequantize.inputs[0]
    return source is not None and not source.is_initializer() and source.const_value is None


def _elements(value: ir.Value) -> int | None:
    if value.shape is None:
        return None
    return math.prod(d if isinstance(d, int) else 1 for d in value.shape)
