"""Clip's bounds, read one way for every reader (fusion marks, backends).

Clip takes its bounds as `min`/`max` attributes below opset 11 and as optional inputs from
opset 11 on; an absent bound is None (unbounded on that side).
"""
from __future__ import annotations

import onnx_ir as ir

Bounds = tuple[float | None, float | None]


def clip_bounds(node: ir.Node) -> Bounds | None:
    """(low, high) of a Clip node, or None when a bound is computed at run time."""
    if "min" in node.attributes or "max" in node.attributes:  # opset < 11
        return node.attributes.get_float("min", None), node.attributes.get_float("max", None)
    bounds = []
    for value in list(node.inputs[1:3]) + [None] * (3 - len(node.inputs)):
        if value is None:
            bounds.append(None)
        elif value.const_value is None:
            return None
        else:
            bounds.append(float(value.const_value.numpy().reshape(-1)[0]))
    return bounds[0], bounds[1]
