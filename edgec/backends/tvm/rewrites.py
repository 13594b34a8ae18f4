"""Rewrites of the ONNX graph that TVM gets, around kernels that TVM 0.27's code computes wrong.

Tile: TVM writes it as one loop nest that reads `x[i % d]`, and LLVM's loop vectorizer, given
AVX-512 scatters, drops the modulo (the ONNX node test `test_tile`, repeats [7, 6, 4, 2]: half the
output read past the input row on an AVX-512 host; correct at -mcpu=haswell or at opt-level 1).
The same values as Reshape -> Expand -> Reshape index without a modulo, and TVM computes them right.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, pattern

from edgec.passes.reasons import explained


def _tile(op, x, repeats):
    return op.Tile(x, repeats)


@explained
def _static_tile(context, x, repeats, **_):
    result = MatchResult()
    if repeats.const_value is None:
        return result.fail("the repeats are computed at run time")
    if x.shape is None or not x.shape.is_static():
        return result.fail("the input's shape is not static")
    return result


def _expand_between_axes(op, x, repeats):
    """Each repeated axis d gets a new axis of size 1 before it, broadcast to r: [r, d] reads as r*d rows."""
    dims = [int(d) for d in x.shape]
    counts = [int(r) for r in repeats.const_value.numpy().reshape(-1)]
    spread, grown = [], []
    for size, count in zip(dims, counts):
        spread += [size] if count == 1 else [1, size]
        grown += [size] if count == 1 else [count, size]
    tiled = [size * count for size, count in zip(dims, counts)]

    def shape(values):
        return op.Constant(value=ir.tensor(np.array(values, np.int64)))

    return op.Reshape(op.Expand(op.Reshape(x, shape(spread)), shape(grown)), shape(tiled))


RULES = [pattern.RewriteRule(_tile, _expand_between_axes, _static_tile)]
