"""QuantizeLinear/DequantizeLinear: the shared quantization engine's int8 graph, read as TFLite quantization.

An activation's DequantizeLinear is free (the int8 tensor already is that real value) and its
QuantizeLinear is a QUANTIZE only where the parameters change. Constant weights and biases stay in
the IR: the ops that use them read the integer data through `lowering.qconst`.
"""
from __future__ import annotations

import onnx_ir as ir

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import QParams, integer_dtype, is_constant, node_params


def _check_qdq(node: ir.Node) -> str:
    unrepresentable = dtypes.unrepresentable([*node.inputs, *node.outputs])
    if unrepresentable:
        return unrepresentable
    params = node_params(node)
    if params is None:
        return "scale and zero point must be constants"
    if node.op_type == "QuantizeLinear":
        if is_constant(node.inputs[0]):
            return "quantizing a constant at run time: fold it first"
        if integer_dtype(node) != "int8" or not params.per_tensor:
            return "only per-tensor int8/uint8 activations are supported"
    elif not is_constant(node.inputs[0]) and not params.per_tensor:
        return "per-channel activations are not supported"
    if node.attributes.get_int("block_size", 0):
        return "blocked quantization has no TFLite equivalent"
    return ""


def _onnx_zero_point(node: ir.Node, params) -> int:
    """The zero point as ONNX states it (quant.py shifts uint8 ones by -128 to int8)."""
    return params.zero_point[0] + (128 if dtypes.of(node.inputs[0] if node.op_type == "DequantizeLinear"
                                                    else node.outputs[0]) == "uint8" else 0)


@lowers("QuantizeLinear", check=_check_qdq)
def quantize_linear(lowering: Lowering, node: ir.Node) -> None:
    x, y = node.inputs[0], node.outputs[0]
    params = node_params(node)
    source = lowering.ref(x) if lowering.ref(x).quant is not None else lowering.get(x, float_=True)
    if y in lowering.model.graph.outputs and dtypes.of(y) == "uint8":  # an ONNX uint8 result, not a shifted int8
        exact = QParams(params.scale, (_onnx_zero_point(node, params),))
        out = lowering.scratch(y.name, lowering.writer.shape(source.index), exact, dtype="uint8")
        lowering.emit("QUANTIZE", [lowering.get(x, float_=True).index], [out])
        lowering.refs[y] = Ref(out, source.perm, exact)
        return
    lowering.refs[y] = lowering.requantize(source, params, y.name)


@lowers("DequantizeLinear", check=_check_qdq)
def dequantize_linear(lowering: Lowering, node: ir.Node) -> None:
    """An int8 activation already is this real value; plain integers (a model input) are (x - zero) * scale."""
    x, y = node.inputs[0], node.outputs[0]
    if x.const_value is not None:
        return
    ref = lowering.ref(x)
    if ref.quant is not None:
        lowering.refs[y] = ref
        return
    params = node_params(node)
    as_float = lowering.cast(ref, "float32", x.name).index
    zero_point = lowering.scalar(y.name + "/zero_point", _onnx_zero_point(node, params))
    centered = lowering.compute("SUB", [as_float, zero_point], y.name + "/centered")
    lowering.emit("MUL", [centered, lowering.scalar(y.name + "/scale", params.scale[0])],
                  [lowering.new(y, ref.perm).index])
