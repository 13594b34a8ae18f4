"""Comparisons, boolean logic, Where and Cast: bool tensors and every integer dtype."""
from __future__ import annotations

import onnx_ir as ir

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.lowering import Lowering
from edgec.backends.tflite.ops.arithmetic import check_dtypes, elementwise
from edgec.backends.tflite.ops.common import common_perm, operand
from edgec.backends.tflite.ops.registry import lowers

COMPARISONS = {"Equal": "EQUAL", "Greater": "GREATER", "Less": "LESS", "GreaterOrEqual": "GREATER_EQUAL",
               "LessOrEqual": "LESS_EQUAL"}
LOGIC = {"And": "LOGICAL_AND", "Or": "LOGICAL_OR", "Xor": "NOT_EQUAL", "Not": "LOGICAL_NOT"}
KERNEL = {**COMPARISONS, **LOGIC}


def _check(node: ir.Node) -> str:
    return check_dtypes(KERNEL[node.op_type])(node)


@lowers(*KERNEL, check=_check)
def logic(lowering: Lowering, node: ir.Node) -> None:
    elementwise(lowering, node, KERNEL[node.op_type], list(node.inputs), node.outputs[0])


def _check_where(node: ir.Node) -> str:
    return check_dtypes("SELECT_V2")(node)


@lowers("Where", check=_check_where)
def where(lowering: Lowering, node: ir.Node) -> None:
    condition, out = node.inputs[0], node.outputs[0]
    rank = len(lowering.shape(out))
    perm = common_perm(lowering, node, rank)
    dtype = dtypes.of(out)
    indices = [operand(lowering, condition, perm, rank)] + [operand(lowering, v, perm, rank, dtype=dtype)
                                                            for v in node.inputs[1:]]
    lowering.emit("SELECT_V2", indices, [lowering.new(out, perm).index])


def _check_cast(node: ir.Node) -> str:
    return dtypes.unrepresentable([*node.inputs, *node.outputs])


@lowers("Cast", "CastLike", check=_check_cast)
def cast(lowering: Lowering, node: ir.Node) -> None:
    """CAST truncates float to integer toward zero and maps nonzero to true, as ONNX does."""
    x, out = node.inputs[0], node.outputs[0]
    lowering.refs[out] = lowering.cast(lowering.get(x, float_=True), dtypes.of(out), out.name)
