"""Softmax and LogSoftmax over any axis: the axis moves last (a TRANSPOSE, or none when it already is);
below opset 13 ONNX normalizes over all axes from `axis` on, which is a RESHAPE to 2-D and back."""
from __future__ import annotations

import math

import onnx_ir as ir

from edgec.backends.tflite import layout
from edgec.backends.tflite.lowering import FIXED_OUTPUT, Lowering, Ref
from edgec.backends.tflite.ops.arithmetic import check_dtypes
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import QParams

KERNELS = {"Softmax": ("SOFTMAX", "SoftmaxOptions"), "LogSoftmax": ("LOG_SOFTMAX", None)}


def _check_softmax(node: ir.Node) -> str:
    return check_dtypes("SOFTMAX")(node)


@lowers(*KERNELS, check=_check_softmax)
def softmax(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    shape = lowering.shape(x)
    rank = len(shape)
    modern = lowering.opset >= 13
    axis = node.attributes.get_int("axis", -1 if modern else 1) % rank
    op, options = KERNELS[node.op_type]
    out_params = lowering.int8_mode([x], out) if op == "SOFTMAX" else None
    flattened = not modern and axis != rank - 1
    if flattened:  # opset < 13: over the flattened axes [axis:], as a [rows, columns] matrix
        flat = [math.prod(shape[:axis]), math.prod(shape[axis:])]
        ref = lowering.reshaped(lowering.get(x, layout.identity(rank), float_=out_params is None, memory=True),
                                flat, x.name + "/2d")
    else:
        perm = tuple(p for p in lowering.ref(x).perm if p != axis) + (axis,)
        ref = lowering.get(x, perm, float_=out_params is None)
    fixed = FIXED_OUTPUT["SOFTMAX"] if out_params is not None else None
    params = QParams((fixed[0],), (fixed[1],)) if fixed else None
    result = Ref(lowering.scratch(out.name + "/" + op.lower(), lowering.w.shape(ref.index), params), ref.perm, params)
    lowering.emit(op, [ref.index], [result.index], lowering.w.options(options, beta=1.0) if options else None)
    if fixed:
        result = lowering.requantize(result, out_params, out.name + "/requantized")
    lowering.refs[out] = lowering.reshaped(result, shape, out.name) if flattened else result
