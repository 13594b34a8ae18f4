"""Convolutions: Conv (2-D, and 1-D as 2-D over a unit height), depthwise and grouped, and ConvTranspose."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import layout
from edgec.backends.tflite.lowering import Lowering
from edgec.backends.tflite.ops.common import (attr_ints, check_output_shape, optional_input, per_output_channel,
                                              static_shape)
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.ops.window import Window, nhwc_shape, pad_spatial, spatial_input, spatial_output
from edgec.backends.tflite.quant import QConst, QParams, is_constant, zero_bias


def _check_conv(node: ir.Node) -> str:
    x, weights, bias = node.inputs[0], node.inputs[1], optional_input(node, 2)
    rank = len(static_shape(x) or [])
    if rank not in (3, 4) or (node.op_type == "ConvTranspose" and rank != 4):
        return "only 1-D and 2-D convolutions (2-D for ConvTranspose) are supported"
    if not is_constant(weights) or (bias is not None and not is_constant(bias)):
        return "weights and bias must be constants"
    if node.op_type == "ConvTranspose":
        if node.attributes.get_int("group", 1) != 1 or any(d != 1 for d in attr_ints(node, "dilations", [1, 1])):
            return "grouped or dilated ConvTranspose has no TFLite equivalent"
        if node.attributes.get("output_shape") is not None:
            return "ConvTranspose with output_shape: give pads instead"
        pads = attr_ints(node, "pads", [0, 0, 0, 0])
        if any(p > e for p, e in zip(attr_ints(node, "output_padding", [0, 0]), pads[2:])):
            return "output_padding larger than the end padding"
        if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            return "ConvTranspose auto_pad SAME: export with explicit pads"
    return ""


@lowers("Conv", check=_check_conv)
def conv(lowering: Lowering, node: ir.Node) -> None:
    fb = lowering.w.fb
    x, weights_value, bias_value = node.inputs[0], node.inputs[1], optional_input(node, 2)
    activation, out = lowering.fused_activation(node)
    x_shape, w_shape = lowering.shape(x), lowering.shape(weights_value)
    win = Window.of(node, x_shape[2:], w_shape)
    group = node.attributes.get_int("group", 1)
    in_channels, out_channels = x_shape[1], w_shape[0]
    depthwise = group > 1 and group == in_channels and out_channels % group == 0

    int8_weights = per_output_channel(lowering.qconst(weights_value), 0)
    out_params = lowering.int8_mode([x], out) if int8_weights is not None else None
    ref, in_hw = spatial_input(lowering, x, float_=out_params is None)
    plan = win.plan(in_hw)
    if plan == "EXPLICIT":
        ref = pad_spatial(lowering, x, ref, win.pads)
        in_hw = lowering.w.shape(ref.index)[1:3]

    data = int8_weights.data if out_params is not None else lowering.const(weights_value)
    data = data.reshape(out_channels, -1, *win.kernel)  # a 1-D kernel [O, I, k] gets its unit height
    if depthwise:
        weights, axis = np.transpose(data, (1, 2, 3, 0)), 3  # [O, 1, kh, kw] -> [1, kh, kw, O]
    else:
        weights, axis = np.transpose(data, (0, 2, 3, 1)), 0  # [O, I/g, kh, kw] -> [O, kh, kw, I/g]
    if out_params is not None:
        params = int8_weights.params
        w_index = lowering.qweight(weights_value.name, QConst(weights, QParams(
            params.scale, params.zero_point, 0 if params.per_tensor else axis)))
        bias = lowering.qconst(bias_value) or zero_bias(out_channels, ref.quant.scale[0], params)
        b_index = lowering.qweight(f"{node.name}/bias", bias, "int32")
    else:
        w_index = lowering.weight(weights_value.name, weights)
        bias = lowering.const(bias_value) if bias_value is not None else np.zeros(out_channels, np.float32)
        b_index = lowering.weight(f"{node.name}/bias", bias)

    out_hw = win.output(in_hw, "SAME" if plan == "SAME" else "VALID")
    check_output_shape(node, [x_shape[0], *out_hw, out_channels], nhwc_shape(lowering, out))
    result, finish = spatial_output(lowering, out, out_params)
    common = dict(padding=fb.Padding.SAME if plan == "SAME" else fb.Padding.VALID, strideH=win.strides[0],
                  strideW=win.strides[1], fusedActivationFunction=activation,
                  dilationHFactor=win.dilations[0], dilationWFactor=win.dilations[1])
    if depthwise:
        options = lowering.w.options("DepthwiseConv2DOptions", depthMultiplier=out_channels // group, **common)
        lowering.emit("DEPTHWISE_CONV_2D", [ref.index, w_index, b_index], [result], options)
    else:
        lowering.emit("CONV_2D", [ref.index, w_index, b_index], [result], lowering.w.options("Conv2DOptions", **common))
    finish()


@lowers("ConvTranspose", check=_check_conv)
def conv_transpose(lowering: Lowering, node: ir.Node) -> None:
    fb = lowering.w.fb
    x, weights_value, bias_value = node.inputs[0], node.inputs[1], optional_input(node, 2)
    out = node.outputs[0]
    x_shape, w_shape = lowering.shape(x), lowering.shape(weights_value)
    win = Window.of(node, x_shape[2:], w_shape)
    pads = win.pads if node.attributes.get_string("auto_pad", "NOTSET") != "VALID" else [0, 0, 0, 0]
    out_channels = w_shape[1]
    ref = lowering.get(x, layout.NHWC, float_=True)
    full = [x_shape[0]] + [s * (i - 1) + k for i, s, k in zip(x_shape[2:], win.strides, win.kernel)] + [out_channels]
    weights = np.transpose(lowering.const(weights_value), (1, 2, 3, 0))  # [I, O, kh, kw] -> [O, kh, kw, I]
    bias = lowering.const(bias_value) if bias_value is not None else np.zeros(out_channels, np.float32)
    out_shape = layout.apply(lowering.shape(out), layout.NHWC)
    crop = full != out_shape
    target = lowering.scratch(out.name + "/full", full) if crop else lowering.new(out, layout.NHWC).index
    options = lowering.w.options("TransposeConvOptions", padding=fb.Padding.VALID, strideH=win.strides[0],
                                 strideW=win.strides[1])
    lowering.emit("TRANSPOSE_CONV", [lowering.param(out.name + "/output_shape", full),
                                     lowering.weight(weights_value.name, weights), ref.index,
                                     lowering.weight(f"{node.name}/bias", bias)], [target], options)
    if crop:
        result = lowering.new(out, layout.NHWC)
        lowering.emit("SLICE", [target, lowering.param(out.name + "/begin", [0, pads[0], pads[1], 0]),
                                lowering.param(out.name + "/size", out_shape)], [result.index])
