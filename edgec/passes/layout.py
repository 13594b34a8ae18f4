"""Layout rules for NHWC sources (Keras through tf2onnx).

tf2onnx's own transpose optimizer already cancels the NHWC<->NCHW pairs around each conv; what
it leaves before a Keras `Flatten` + `Dense` is a Transpose back to NHWC, kept only so the
flattened order matches the Dense weights. Permuting the weight rows instead removes it.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from edgec.passes.reasons import explained

TO_NHWC = [0, 2, 3, 1]


def _flatten_nhwc_matmul(op, x, shape, w):
    nhwc = op.Transpose(x, perm=TO_NHWC)
    flat = op.Reshape(nhwc, shape, _allow_other_attributes=True, _outputs=["flat"])
    return op.MatMul(flat, w)


@explained
def _is_flatten_into_weights(context, x, shape, w, flat, **_):
    result = MatchResult()
    if x.shape is None or len(x.shape) != 4 or not all(isinstance(d, int) for d in x.shape[1:]):
        return result.fail("the transposed value is not a static 4-D tensor")
    if w.const_value is None or len(w.const_value.shape) != 2 or flat.shape is None or len(flat.shape) != 2:
        return result.fail("not a 2-D flatten into constant 2-D weights")
    if shape.const_value is None or 0 in shape.const_value.numpy().tolist():  # 0 would copy C, not H
        return result.fail("the reshape target is computed, or copies a dimension")
    n, c, h, wd = x.shape
    # the reshape keeps the batch and flattens everything else, and only the MatMul reads it
    if flat.shape[1] != c * h * wd or w.const_value.shape[0] != c * h * wd:
        return result.fail("the reshape does not flatten all of C, H and W")
    if len(flat.uses()) != 1 or len(flat.producer().inputs[0].uses()) != 1:
        return result.fail("the flattened or transposed value has other users")
    return result


def _flatten_nchw_matmul(op, x, shape, w, **_):
    _, c, h, wd = x.shape
    rows = np.arange(c * h * wd).reshape(h, wd, c).transpose(2, 0, 1).reshape(-1)  # NCHW index -> NHWC row
    weights = ir.tensor(w.const_value.numpy()[rows], name=f"{w.name}_nchw")
    return op.MatMul(op.Reshape(x, shape), op.Constant(value=weights))


flatten_rule = pattern.RewriteRule(_flatten_nhwc_matmul, _flatten_nchw_matmul, _is_flatten_into_weights)

RULES = [flatten_rule]
