"""The lowering table: which function lowers each ONNX operator, and which check runs first.

`TABLE[op_type](lowering, node)` emits TFLite operators through the lowering context
(lowering.py). `check(node)` returns why a node of a listed type still cannot be lowered
(an attribute, a dtype or a shape TFLite has no exact equivalent for), or ''. The claimed
operator list of tflite-arm is this table's keys.
"""
from __future__ import annotations

import onnx_ir as ir

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.quant import is_constant

TABLE: dict = {}
CHECKS: dict = {}


def lowers(*op_types, check=None):
    """Register a lowering (and its pre-check) for these ONNX operators."""
    def register(fn):
        for op_type in op_types:
            TABLE[op_type] = fn
            if check is not None:
                CHECKS[op_type] = check
        return fn
    return register


def check(node: ir.Node) -> str:
    """Why this node cannot be lowered exactly, or ''. Shape-dependent checks wait for static shapes."""
    reason = dtypes.unrepresentable([*node.inputs, *node.outputs]) or _empty(node)
    if reason:
        return reason
    fn = CHECKS.get(node.op_type)
    return fn(node) if fn else ""


def _empty(node: ir.Node) -> str:
    """TFLite kernels do not take zero-size tensors (Concat drops empty pieces itself; an empty constant such
    as a Reduce's axes is read at build time)."""
    inputs = [] if node.op_type == "Concat" else [v for v in node.inputs if not is_constant(v)]
    for value in [*inputs, *node.outputs]:
        if value is not None and value.shape is not None and any(d == 0 for d in value.shape):
            return f"'{value.name}' has a zero-size dimension, which TFLite tensors cannot have"
    return ""
