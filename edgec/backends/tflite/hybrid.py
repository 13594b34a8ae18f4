"""Run-time activation ranges on TFLite: the shared engine's dynamic quantization as hybrid kernels.

A scheme with `activation_ranges = "runtime"` quantizes with onnxruntime's dynamic quantization:
each MatMul with constant weights becomes DynamicQuantizeLinear (the activation's range, measured on
every run) -> MatMulInteger (int8 weights) -> Cast -> Mul by the two scales. TFLite computes the same
in one operator: its "hybrid" (dynamic-range) FULLY_CONNECTED takes float activations and int8
weights and quantizes each input row at run time (`asymmetric_quantize_inputs`). This rewrite turns
the pattern back into a MatMul of the DequantizeLinear of the int8 weights (the QDQ form of weights
alone); the dense lowering writes that as the hybrid kernel (ops/dense.py). An embedding table the
engine stored in 8 bits (Gather of the integer table, then DequantizeLinear) becomes a Gather of the
dequantized table: an int8 GATHER whose rows a DEQUANTIZE turns to float.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewritePass, pattern

from edgec.errors import UnsupportedError

RUNTIME_RANGE_OPS = ("DynamicQuantizeLinear", "MatMulInteger")


def _dynamic_matmul(op, x_q, x_scale, x_zero, w_q, w_zero, w_scale):
    product = op.MatMulInteger(x_q, w_q, x_zero, w_zero)
    return op.Mul(op.Cast(product, to=ir.DataType.FLOAT), op.Mul(x_scale, w_scale))


def _hybrid_weights(context, x_q, x_scale, x_zero, w_q, w_zero, w_scale, **_) -> MatchResult:
    result = MatchResult()
    source = x_q.producer()
    if source is None or source.op_type != "DynamicQuantizeLinear" or \
            [x_q, x_scale, x_zero] != list(source.outputs):
        return result.fail("the activation is not quantized by one DynamicQuantizeLinear")
    weights, zero, scale = (v.const_value for v in (w_q, w_zero, w_scale))
    if weights is None or zero is None or scale is None:
        return result.fail("the weights, their zero point or their scale is not constant")
    if weights.dtype != ir.DataType.INT8 or len(weights.shape) != 2 or np.any(zero.numpy()):
        return result.fail("TFLite's hybrid kernels take 2-D symmetric int8 weights")
    if scale.size not in (1, weights.shape[1]):
        return result.fail("the weight scales are neither per tensor nor per output column")
    return result


def _weights_only(op, x_q, w_q, w_zero, w_scale, **_):
    axis = {"axis": 1} if w_scale.const_value.size > 1 else {}
    return op.MatMul(x_q.producer().inputs[0], op.DequantizeLinear(w_q, w_scale, w_zero, **axis))


def _gathered_then_dequantized(op, table, indices, scale, zero):
    return op.DequantizeLinear(op.Gather(table, indices, _allow_other_attributes=True, _outputs=["rows"]), scale, zero)


def _constant_table(context, table, scale, zero, rows, **_) -> MatchResult:
    result = MatchResult()
    if table.const_value is None or scale.const_value is None or zero.const_value is None or scale.const_value.size != 1:
        return result.fail("the table or its per-tensor scale and zero point is not constant")
    if len(rows.uses()) != 1:
        return result.fail("the gathered integer rows have other users")
    return result


def _dequantized_then_gathered(op, table, indices, scale, zero, rows, **_):
    """The same rows (a per-tensor dequantization commutes with a gather), from the 8-bit table as the QDQ form
    of a constant states it: the lowering gathers the int8 rows and dequantizes them (DEQUANTIZE, in XNNPACK)."""
    return op.Gather(op.DequantizeLinear(table, scale, zero), indices, **dict(rows.producer().attributes))


RULES = pattern.RewriteRuleSet([pattern.RewriteRule(_dynamic_matmul, _weights_only, _hybrid_weights),
                                pattern.RewriteRule(_gathered_then_dequantized, _dequantized_then_gathered,
                                                    _constant_table)], commute=True)


def as_weights_only(model: ir.Model) -> None:
    """Rewrite every dynamically quantized MatMul as a MatMul of dequantized int8 weights, in place;
    refuse (exit 2) a model where any run-time quantization is left that TFLite could not run."""
    import onnx_ir.passes.common as common

    if not any(node.op_type in RUNTIME_RANGE_OPS for node in model.graph):
        return
    RewritePass(RULES)(model)
    common.RemoveUnusedNodesPass()(model)
    left = sorted((node for node in model.graph if node.op_type in RUNTIME_RANGE_OPS),
                  key=lambda node: node.op_type != "MatMulInteger")  # the product names the layer
    if left:
        raise UnsupportedError(
            f"{left[0].op_type} (node '{left[0].name}') has no TFLite hybrid kernel: tflite-arm quantizes "
            "activations at run time only for a MatMul with constant 2-D int8 weights; choose another --int8-scheme")
