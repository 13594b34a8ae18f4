"""Rewrite the flavours that different exporters emit into one form.

torch's exporters, tf2onnx and hand-written graphs say the same thing differently
(ReduceMean over H,W vs GlobalAveragePool, Dropout left in inference graphs, negative
axes). Backends then need to understand one form only.
"""
from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from edgec.ir import all_nodes
from edgec.passes.reasons import explained

# ---- Dropout in an inference graph is the identity --------------------------------------


def _dropout(op, x):
    return op.Dropout(x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["y"])


@explained
def _dropout_is_inference(context, x, y, **_):
    node = y.producer()
    training = node.inputs[2] if len(node.inputs) > 2 else None
    if training is not None and (training.const_value is None or bool(training.const_value.numpy())):
        return MatchResult().fail("training mode is on, or computed at run time")
    if len(node.outputs) > 1 and node.outputs[1].uses():
        return MatchResult().fail("its mask output is used")
    return MatchResult()


def _identity(op, x, **_):
    return op.Identity(x)


dropout_rule = pattern.RewriteRule(_dropout, _identity, _dropout_is_inference)

# ---- ReduceMean over the spatial axes of an NCHW tensor is GlobalAveragePool ---------------


def _reduce_mean_axes_input(op, x, axes):
    return op.ReduceMean(x, axes, _allow_other_attributes=True, _outputs=["y"])


def _reduce_mean_axes_attr(op, x):
    return op.ReduceMean(x, _allow_other_attributes=True, _outputs=["y"])


@explained
def _spatial_mean(context, x, y, axes=None, **_):
    node = y.producer()
    result = MatchResult()
    if x.shape is None or len(x.shape) != 4:
        return result.fail("the input is not known to be 4-D")
    if node.attributes.get_int("keepdims", 1) != 1 or node.attributes.get_int("noop_with_empty_axes", 0):
        return result.fail("keepdims=0 or noop_with_empty_axes")
    if axes is not None:
        if axes.const_value is None:
            return result.fail("the axes are computed at run time")
        values = [int(a) for a in axes.const_value.numpy().reshape(-1)]
    else:
        values = list(node.attributes.get_ints("axes", []) or [])
    if sorted(a % 4 for a in values) != [2, 3]:
        return result.fail(f"it reduces axes {values}, not the spatial axes 2 and 3")
    return result


def _global_average_pool(op, x, **_):
    return op.GlobalAveragePool(x)


reduce_mean_rules = [
    pattern.RewriteRule(_reduce_mean_axes_input, _global_average_pool, _spatial_mean),
    pattern.RewriteRule(_reduce_mean_axes_attr, _global_average_pool, _spatial_mean),
]

RULES = [dropout_rule, *reduce_mean_rules]

# ---- Negative axes become positive where the rank is known ---------------------------------

AXIS_OPS = {"Concat", "Softmax", "LogSoftmax", "Flatten", "Gather", "Split", "Hardmax", "ArgMax", "ArgMin"}


class PositiveAxesPass(ir.passes.InPlacePass):
    """Turn `axis=-1` into `axis=rank-1`, so backends compare axes without knowing ranks."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in all_nodes(model):
            attr = node.attributes.get("axis")
            if node.op_type not in AXIS_OPS or attr is None or attr.as_int() >= 0:
                continue
            source = node.outputs[0] if node.op_type == "Concat" else node.inputs[0]
            if source is None or source.shape is None:
                continue
            rank = len(source.shape)
            node.attributes["axis"] = ir.AttrInt64("axis", attr.as_int() % rank)
            modified = True
        return ir.passes.PassResult(model, modified)
