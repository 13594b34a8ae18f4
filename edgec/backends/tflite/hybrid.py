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

An LSTM the engine quantized (onnxruntime's DynamicQuantizeLSTM: weights transposed, a scale per row,
or per direction without per-channel weights) becomes an ONNX LSTM whose W and R are DequantizeLinear
of the same int8 constants, which the lowering writes as LiteRT's hybrid kernels (ops/sequence.py). Its
UNIDIRECTIONAL_SEQUENCE_LSTM takes one scale per weight tensor (lstm_eval.cc's EvalHybrid reads each
tensor's single scale), so weights with a scale per row run as hybrid FULLY_CONNECTED steps: one scale
per gate instead (the weights rounded again onto it) took the speaker encoder's first layer from cosine
0.9999 to 0.995 against float (its last state over 160 frames).
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import MatchResult, RewritePass, pattern

from edgec.errors import UnsupportedError

RUNTIME_RANGE_OPS = ("DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeLSTM")
INT8_LIMIT = 127  # symmetric int8 weights: -127..127


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


def _dequantized(graph: ir.Graph, name: str, q: np.ndarray, scale: np.ndarray) -> ir.Node:
    """DequantizeLinear of the symmetric int8 weights DynamicQuantizeLSTM holds ([dirs, in, gates*hidden], a
    scale per direction or per row), in LSTM's layout [dirs, gates*hidden, in]: the same integers and scales
    where one DequantizeLinear can state them, else (a scale per row of two directions: it scales along one
    axis) rounded again to one scale per direction."""
    directions = q.shape[0]
    data, scale = q.transpose(0, 2, 1), scale.astype(np.float32)
    if scale.size == directions or directions == 1:
        axis = 0 if scale.size == directions else 1
    else:
        real = data * scale.reshape(directions, -1, 1)
        largest = np.abs(real.reshape(directions, -1)).max(axis=1)
        scale, axis = (np.where(largest > 0, largest, INT8_LIMIT) / INT8_LIMIT).astype(np.float32), 0
        data = np.clip(np.round(real / scale.reshape(-1, 1, 1)), -INT8_LIMIT, INT8_LIMIT).astype(np.int8)
    scale = scale.reshape(-1)
    operands = []
    for suffix, array in (("int8", np.ascontiguousarray(data)), ("scale", scale), ("zero", np.zeros(scale.shape, np.int8))):
        value = ir.Value(name=f"{name}_{suffix}", const_value=ir.tensor(array, name=f"{name}_{suffix}"))
        graph.register_initializer(value)
        operands.append(value)
    return ir.node("DequantizeLinear", operands, attributes={"axis": axis}, name=f"{name}_dequantize")


def _lstm_of_dequantized_weights(model: ir.Model) -> None:
    """Every DynamicQuantizeLSTM as an LSTM of dequantized int8 weights, in place."""
    graph = model.graph
    for node in [n for n in graph if n.op_type == "DynamicQuantizeLSTM"]:
        constants = [v.const_value.numpy() if v is not None and v.const_value is not None else None
                     for v in node.inputs[8:12]]
        if len(node.inputs) < 12 or any(c is None for c in constants) or np.any(constants[1]) or \
                np.any(constants[3]) or node.inputs[1].const_value is None or node.inputs[2].const_value is None:
            continue  # left to the refusal below: TFLite's hybrid kernels take symmetric constant weights
        w_scale, _, r_scale, _ = constants
        weights = _dequantized(graph, node.inputs[1].name, node.inputs[1].const_value.numpy(), w_scale)
        recurrent = _dequantized(graph, node.inputs[2].name, node.inputs[2].const_value.numpy(), r_scale)
        lstm = ir.node("LSTM", [node.inputs[0], weights.outputs[0], recurrent.outputs[0], *node.inputs[3:8]],
                       attributes={k: v for k, v in node.attributes.items()}, num_outputs=len(node.outputs),
                       name=node.name.removesuffix("_quant"))  # the float model's name, as the report has it
        ir.convenience.replace_nodes_and_values(graph, node, [node], [weights, recurrent, lstm],
                                                list(node.outputs), list(lstm.outputs))


def as_weights_only(model: ir.Model) -> None:
    """Rewrite every dynamically quantized MatMul as a MatMul of dequantized int8 weights, in place;
    refuse (exit 2) a model where any run-time quantization is left that TFLite could not run."""
    import onnx_ir.passes.common as common

    if not any(node.op_type in RUNTIME_RANGE_OPS for node in model.graph):
        return
    RewritePass(RULES)(model)
    _lstm_of_dequantized_weights(model)
    common.RemoveUnusedNodesPass()(model)
    left = sorted((node for node in model.graph if node.op_type in RUNTIME_RANGE_OPS),
                  key=lambda node: node.op_type != "MatMulInteger")  # the product names the layer
    if left:
        raise UnsupportedError(
            f"{left[0].op_type} (node '{left[0].name}') has no TFLite hybrid kernel: tflite-arm quantizes "
            "activations at run time only for a MatMul with constant 2-D int8 weights and an LSTM with constant "
            "weights; choose another --int8-scheme")
