"""Softmax and LogSoftmax over any axis: the axis moves last (a TRANSPOSE, or none when it already is);
below opset 13 ONNX normalizes over all axes from `axis` on, which is a RESHAPE to 2-D and back."""
from __future__ import annotations

import math

import onnx_ir as ir

from edgec.backends.tflite import layout
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.arithmetic import check_dtypes
from edgec.backends.tflite.ops.registry import lowers

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
    flattened = not modern and axis != rank - 1  # in float even in int8 graphs (FLOAT_IN_XNNPACK)
    if flattened:  # opset < 13: over the flattened axes [axis:], as a [rows, columns] matrix
        flat = [math.prod(shape[:axis]), math.prod(shape[axis:])]
        ref = lowering.reshaped(lowering.get(x, layout.identity(rank), float_=True, memory=True), flat, x.name + "/2d")
    else:
        perm = tuple(p for p in lowering.ref(x).perm if p != axis) + (axis,)
        ref = lowering.get(x, perm, float_=True)
    result = Ref(lowering.compute(op, [ref.index], out.name + "/" + op.lower(),
                                  options=lowering.writer.options(options, beta=1.0) if options else None), ref.perm)
    lowering.refs[out] = lowering.reshaped(result, shape, out.name) if flattened else result
