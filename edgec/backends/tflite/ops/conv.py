"""Convolutions: Conv (2-D, and 1-D as 2-D over a unit height), depthwise and grouped, and ConvTranspose."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite.lowering import Lowering
from edgec.backends.tflite.ops.common import (attr_ints, check_output_shape, optional_input, per_output_channel,
                                              static_shape)
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.ops.window import Window, nhwc_shape, pad_spatial, spatial_input, spatial_output, window
from edgec.backends.tflite.quant import QConst, QParams, is_constant, zero_bias
from edgec.errors import UnsupportedError


def _check_conv(node: ir.Node) -> str:
    x, weights, bias = node.inputs[0], node.inputs[1], optional_input(node, 2)
    if len(static_shape(x) or []) not in (3, 4):
        return "only 1-D and 2-D convolutions are supported"
    if not is_constant(weights) or (bias is not None and not is_constant(bias)):
        return "weights and bias must be constants"
    return ""


def _kernel_and_bias(lowering: Lowering, node: ir.Node, ref, kernel: np.ndarray, channels: int,
                     params: QParams | None) -> tuple[int, int]:
    """The tensors of a convolution's kernel (in TFLite's order) and bias: int8 with `params` and an int32
    bias (zero when the model has none), else float32."""
    weights_value, bias_value = node.inputs[1], optional_input(node, 2)
    if params is not None:
        w_index = lowering.qweight(weights_value.name, QConst(kernel, params))
        bias = lowering.qconst(bias_value) or zero_bias(channels, ref.quant.scale[0], params)
        return w_index, lowering.qweight(f"{node.name}/bias", bias, "int32")
    bias = lowering.const(bias_value) if bias_value is not None else np.zeros(channels, np.float32)
    return lowering.weight(weights_value.name, kernel), lowering.weight(f"{node.name}/bias", bias)


@lowers("Conv", check=_check_conv)
def conv(lowering: Lowering, node: ir.Node) -> None:
    fb = lowering.writer.fb
    x, weights_value = node.inputs[0], node.inputs[1]
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
        in_hw = lowering.writer.shape(ref.index)[1:3]

    data = int8_weights.data if out_params is not None else lowering.const(weights_value)
    data = data.reshape(out_channels, -1, *win.kernel)  # a 1-D kernel [O, I, k] gets its unit height
    if depthwise:
        weights, axis = np.transpose(data, (1, 2, 3, 0)), 3  # [O, 1, kh, kw] -> [1, kh, kw, O]
    else:
        weights, axis = np.transpose(data, (0, 2, 3, 1)), 0  # [O, I/g, kh, kw] -> [O, kh, kw, I/g]
    params = None
    if out_params is not None:
        stored = int8_weights.params
        params = QParams(stored.scale, stored.zero_point, 0 if stored.per_tensor else axis)
    w_index, b_index = _kernel_and_bias(lowering, node, ref, weights, out_channels, params)

    out_hw = win.output(in_hw, "SAME" if plan == "SAME" else "VALID")
    check_output_shape(node, [x_shape[0], *out_hw, out_channels], nhwc_shape(lowering, out))
    result, finish = spatial_output(lowering, out, out_params)
    common = dict(padding=fb.Padding.SAME if plan == "SAME" else fb.Padding.VALID, strideH=win.strides[0],
                  strideW=win.strides[1], fusedActivationFunction=activation,
                  dilationHFactor=win.dilations[0], dilationWFactor=win.dilations[1])
    if depthwise:
        options = lowering.writer.options("DepthwiseConv2DOptions", depthMultiplier=out_channels // group, **common)
        lowering.emit("DEPTHWISE_CONV_2D", [ref.index, w_index, b_index], [result], options)
    else:
        lowering.emit("CONV_2D", [ref.index, w_index, b_index], [result],
                      lowering.writer.options("Conv2DOptions", **common))
    finish()


def transposed_kernel(weights: np.ndarray, group: int, dilations) -> np.ndarray:
    """ONNX ConvTranspose weights [I, O/g, kh, kw] as TRANSPOSE_CONV's [O, kh', kw', I]: groups become a
    block-diagonal kernel and dilation a kernel with zeros between the taps (both exact)."""
    in_channels, per_group = weights.shape[:2]
    kernel = weights.shape[2:]
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    full = np.zeros((in_channels, per_group * group, *dilated), weights.dtype)
    step = in_channels // group
    for g in range(group):
        full[g * step:(g + 1) * step, g * per_group:(g + 1) * per_group, ::dilations[0], ::dilations[1]] = \
            weights[g * step:(g + 1) * step]
    return np.ascontiguousarray(np.transpose(full, (1, 2, 3, 0)))


def transposed_begin(node: ir.Node, in_sizes, out_sizes, kernel, strides, dilations) -> list[int]:
    """Where ONNX's output starts inside the full transposed convolution, per spatial axis."""
    auto = node.attributes.get_string("auto_pad", "NOTSET")
    if auto == "VALID":
        return [0] * len(kernel)
    if auto == "NOTSET" and node.attributes.get("output_shape") is None:
        return attr_ints(node, "pads", [0] * (2 * len(kernel)))[:len(kernel)]
    extra = attr_ints(node, "output_padding", [0] * len(kernel))
    begins = []
    for i, o, k, s, d, e in zip(in_sizes, out_sizes, kernel, strides, dilations, extra):
        total = s * (i - 1) + e + (k - 1) * d + 1 - o
        begins.append(total // 2 if auto == "SAME_UPPER" else total - total // 2)
    return begins


@lowers("ConvTranspose", check=_check_conv)
def conv_transpose(lowering: Lowering, node: ir.Node) -> None:
    """TRANSPOSE_CONV (VALID) computes the full output, zeros (and bias) past its end; a SLICE keeps ONNX's part."""
    fb = lowering.writer.fb
    x, weights_value = node.inputs[0], node.inputs[1]
    out = node.outputs[0]
    x_shape, w_shape = lowering.shape(x), lowering.shape(weights_value)
    kernel, strides, dilations = window(node, w_shape)
    begin = transposed_begin(node, x_shape[2:], lowering.shape(out)[2:], kernel, strides, dilations)
    if len(x_shape) == 3:  # 1-D: a unit height
        kernel, strides, dilations, begin = ([unit, *values] for unit, values in
                                             ((1, kernel), (1, strides), (1, dilations), (0, begin)))
    group = node.attributes.get_int("group", 1)
    int8_weights = per_output_channel(lowering.qconst(weights_value), 1)  # ONNX [I, O/g, kh, kw]
    if int8_weights is not None and (group != 1 or any(int8_weights.params.zero_point)):
        int8_weights = None  # the inserted zero taps must be zero: symmetric weights, one group
    out_params = lowering.int8_mode([x], out) if int8_weights is not None else None
    data = int8_weights.data if out_params is not None else lowering.const(weights_value)
    weights = transposed_kernel(data.reshape(*w_shape[:2], *kernel), group, dilations)
    out_channels = weights.shape[0]
    ref, in_hw = spatial_input(lowering, x, float_=out_params is None)
    out_hw = nhwc_shape(lowering, out)[1:3]
    if any(b < 0 for b in begin):
        raise UnsupportedError(f"ConvTranspose (node '{node.name}'): negative pads are not supported")
    params = QParams(int8_weights.params.scale, int8_weights.params.zero_point, 0) if out_params is not None else None
    w_index, b_index = _kernel_and_bias(lowering, node, ref, weights, out_channels, params)
    full = [s * (i - 1) + w for i, s, w in zip(in_hw, strides, weights.shape[1:3])]
    computed = [max(f, b + o) for f, b, o in zip(full, begin, out_hw)]
    options = lowering.writer.options("TransposeConvOptions", padding=fb.Padding.VALID, strideH=strides[0],
                                 strideW=strides[1])
    shape = [x_shape[0], *computed, out_channels]
    target = lowering.scratch(out.name + "/full", shape, out_params)
    lowering.emit("TRANSPOSE_CONV", [lowering.param(out.name + "/output_shape", shape), w_index, ref.index, b_index],
                  [target], options)
    result, finish = spatial_output(lowering, out, out_params)
    lowering.emit("SLICE", [target, lowering.param(out.name + "/begin", [0, *begin, 0]),
                            lowering.param(out.name + "/size", [x_shape[0], *out_hw, out_channels])], [result])
    finish()
