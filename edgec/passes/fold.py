"""Fold a per-channel affine (Mul then Add by constants) after a Conv into the Conv itself.

This is BatchNormalization as tf2onnx sometimes leaves it (Conv -> Mul[C,1,1] -> Add[C,1,1]);
onnxscript's own affine rule only takes scalar constants.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from edgec.passes.reasons import explained


def _conv_mul_add(op, x, w, scale, offset):
    conv = op.Conv(x, w, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["conv"])
    return op.Add(op.Mul(conv, scale, _outputs=["scaled"]), offset)


def _per_channel(value: ir.Value, channels: int) -> np.ndarray | None:
    """The constant as a [channels] vector, if it broadcasts per output channel (or is a scalar)."""
    if value.const_value is None:
        return None
    array = value.const_value.numpy()
    if array.size == 1:
        return np.full(channels, array.reshape(()).item(), dtype=array.dtype)
    squeezed = array.reshape(array.shape[-3:] if array.ndim >= 3 else array.shape)
    if array.ndim < 3 or squeezed.shape != (channels, 1, 1) or any(d != 1 for d in array.shape[:-3]):
        return None
    return squeezed.reshape(channels)


@explained
def _foldable(context, x, w, scale, offset, conv, scaled, **_):
    result = MatchResult()
    if w.const_value is None:
        return result.fail("the convolution's weights are not constant")
    if len(conv.uses()) != 1 or len(scaled.uses()) != 1:
        return result.fail("an intermediate value has other users")
    node = conv.producer()
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and bias.const_value is None:
        return result.fail("the convolution's bias is not constant")
    channels = w.const_value.shape[0]
    if _per_channel(scale, channels) is None or _per_channel(offset, channels) is None:
        return result.fail("the Mul/Add constants are not per output channel")
    return result


def _folded_conv(op, x, w, scale, offset, conv, **_):
    node = conv.producer()
    weights = w.const_value.numpy()
    channels = weights.shape[0]
    s, t = _per_channel(scale, channels), _per_channel(offset, channels)
    bias = node.inputs[2].const_value.numpy() if len(node.inputs) > 2 and node.inputs[2] is not None else 0.0
    new_w = op.initializer(ir.tensor((weights * s.reshape(-1, *[1] * (weights.ndim - 1))).astype(weights.dtype),
                                     name=f"{w.name}_folded"))
    new_b = op.initializer(ir.tensor((bias * s + t).astype(weights.dtype), name=f"{w.name}_folded_bias"))
    return op.Conv(x, new_w, new_b, **{k: a for k, a in node.attributes.items()})


conv_affine_rule = pattern.RewriteRule(_conv_mul_add, _folded_conv, _foldable)

RULES = [conv_affine_rule]
