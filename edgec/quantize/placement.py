"""Q/DQ placement for runtimes that fuse a quantization into the layer that computed its input.

OpenVINO's CPU plugin folds a FakeQuantize into the convolution before it, together with the
elementwise operations between them (bias, activation, a batch norm's scale and shift), so the
convolution writes u8. onnxruntime's quantizer places pairs where its own kernels want them, which
breaks those chains in two ways:
  - a pair after a data-movement operator (MaxPool, Reshape, Transpose...) whose input is float runs
    as a FakeQuantize of its own, and the convolution before writes f32 (CREPE: 5 unfused FakeQuantize
    layers). `hoist_over_data_movement` moves such a pair to the operator's input: these operators
    only pick or move values and quantization is monotone, so the numbers are the same.
  - an activation function written as a product, x * sigmoid(x) or x * clip(x + 3, 0, 6) / 6, is
    fused whole (Swish, HSwish), but not once its Mul is quantized: the convolution then writes u8,
    and a separate dequantize-activation-quantize layer follows (PP-OCR's classifier: 18 extra layers).
    `activation_products` names those Muls, for the quantizer to leave float.
"""
from __future__ import annotations

import onnx_ir as ir

from edgec.quantize.islands import DATA_MOVEMENT, _moves_values

# data-movement operators with one output whose every value is one of their input's: a quantization
# commutes with them (Pad adds values, Split has several outputs)
ORDER_KEEPING = DATA_MOVEMENT - {"Pad", "Split"}
# elementwise operators an activation function is written with; the other inputs are constants
ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Clip", "Relu", "Sigmoid", "HardSigmoid", "Tanh", "Softplus",
                         "Max", "Min", "Exp", "Erf"})
# how many elementwise steps from x to its gate a product x * gate(x) may take (x * clip(x + 3) / 6: 3)
GATE_DEPTH = 4


def hoist_over_data_movement(model: ir.Model) -> int:
    """Move each QuantizeLinear/DequantizeLinear pair that follows a data-movement operator with a float
    input to that input, up chains of them; return how many moves were made."""
    moves = 0
    while any(_hoist(quantize) for quantize in model.graph if quantize.op_type == "QuantizeLinear"):
        moves += 1
    if moves:
        model.graph.sort()
    return moves


def _hoist(quantize: ir.Node) -> bool:
    """x -> M -> Q -> DQ -> consumers becomes x -> Q -> DQ -> M -> consumers, where that is the same."""
    mover = quantize.inputs[0].producer()
    if mover is None or mover.op_type not in ORDER_KEEPING or not _moves_values(mover) or len(mover.outputs) != 1:
        return False
    moved, data = mover.outputs[0], mover.inputs[0]
    scale = quantize.inputs[1].const_value
    if moved.is_graph_output() or len(moved.uses()) != 1 or scale is None or scale.size != 1:
        return False
    if data is None or data.const_value is not None or data.is_initializer() or (
            data.producer() is not None and data.producer().op_type in ("QuantizeLinear", "DequantizeLinear")):
        return False
    reads = list(quantize.outputs[0].uses())
    if quantize.outputs[0].is_graph_output() or len(reads) != 1 or reads[0].node.op_type != "DequantizeLinear":
        return False
    dequantize = reads[0].node
    dequantized = dequantize.outputs[0]
    if dequantized.is_graph_output():
        return False
    consumers = list(dequantized.uses())
    quantize.replace_input_with(0, data)
    mover.replace_input_with(0, dequantized)
    for use in consumers:
        use.node.replace_input_with(use.idx, moved)
    quantize.outputs[0].shape = dequantized.shape = data.shape
    # a shape without a type is not written (onnx_ir warns at every save: 720 times in a captcha CRNN build)
    zero_point = quantize.inputs[2].const_value if len(quantize.inputs) > 2 and quantize.inputs[2] is not None else None
    quantize.outputs[0].type = ir.TensorType(zero_point.dtype if zero_point is not None else ir.DataType.UINT8)
    dequantized.type = data.type or dequantized.type
    return True


def activation_products(model: ir.Model) -> list[str]:
    """Names of the Mul nodes that multiply a tensor by an elementwise function of itself (naming any
    unnamed one: the quantizer excludes nodes by name)."""
    found = []
    for index, node in enumerate(model.graph):
        if node.op_type != "Mul" or len(node.inputs) != 2 or any(v is None for v in node.inputs):
            continue
        first, second = node.inputs
        if _gates(second, first, GATE_DEPTH) or _gates(first, second, GATE_DEPTH):
            node.name = node.name or f"Mul_{index}"
            found.append(node.name)
    return found


def _gates(gate: ir.Value, x: ir.Value, depth: int) -> bool:
    """`gate` is computed from `x` alone by at most `depth` elementwise operators."""
    producer = gate.producer()
    if depth == 0 or producer is None or producer.op_type not in ELEMENTWISE:
        return False
    computed = [v for v in producer.inputs if v is not None and v.const_value is None and not v.is_initializer()]
    return len(computed) == 1 and (computed[0] is x or _gates(computed[0], x, depth - 1))
