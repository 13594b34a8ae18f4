"""Pooling: MaxPool/AveragePool (1-D and 2-D, any padding, ceil_mode, count_include_pad), the global
pools, and LRN.

TFLite pools over a VALID or SAME window and averages over the elements inside the input. ONNX's
padding and ceil_mode become an explicit pad (with -inf for max, 0 for average); when ONNX's divisor
differs from the window size somewhere (count_include_pad=0 with explicit pads, or the ceil_mode
overhang), a constant [1, H, W, 1] map rescales the average to it.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes, layout
from edgec.backends.tflite.lowering import Lowering
from edgec.backends.tflite.ops.common import attr_ints, static_shape
from edgec.backends.tflite.ops.reductions import reduce
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.ops.window import Window, nhwc_shape, pad_spatial, spatial_input, spatial_output


def _check_pool(node: ir.Node) -> str:
    shape = static_shape(node.inputs[0])
    if shape is None or len(shape) not in (3, 4):
        return "only 1-D and 2-D pooling are supported"
    dtype = dtypes.of(node.inputs[0])
    maximum = node.op_type in ("MaxPool", "GlobalMaxPool")
    if dtype != "float32" and (not maximum or dtypes.refusal("MAX_POOL_2D", dtype)):
        return f"TFLite pools float32 and quantized int8 (max pooling also plain 8- and 16-bit integers), not {dtype}"
    if node.op_type.startswith("Global"):
        return ""
    if any(d != 1 for d in attr_ints(node, "dilations", [])):
        return "dilated pooling has no TFLite equivalent"
    indices = node.outputs[1] if len(node.outputs) > 1 else None
    if indices is not None and (indices.uses() or indices.is_graph_output()):
        return "MaxPool's Indices output has no TFLite equivalent"
    return ""


def _divisor_map(win: Window, in_hw, out_hw, include_pad: bool) -> np.ndarray:
    """ONNX's element count per output position (window inside the padded input, or inside the input)."""
    counts = []
    for axis in (0, 1):
        begin, end = win.pads[axis], win.pads[axis + 2]
        low, high = (-begin, in_hw[axis] + end) if include_pad else (0, in_hw[axis])
        starts = np.arange(out_hw[axis]) * win.strides[axis] - begin
        counts.append(np.minimum(starts + win.kernel[axis], high) - np.maximum(starts, low))
    return np.outer(counts[0], counts[1]).astype(np.float64)


@lowers("MaxPool", "AveragePool", check=_check_pool)
def pool(lowering: Lowering, node: ir.Node) -> None:
    fb = lowering.writer.fb
    x, out = node.inputs[0], node.outputs[0]
    is_max = node.op_type == "MaxPool"
    win = Window.of(node, lowering.shape(x)[2:])
    in_hw, out_hw = nhwc_shape(lowering, x)[1:3], nhwc_shape(lowering, out)[1:3]
    # the window's reach: ceil_mode may need more end padding than ONNX's pads give
    reach = [(o - 1) * s + k for o, s, k in zip(out_hw, win.strides, win.kernel)]
    overhang = [max(r - (i + win.pads[a] + win.pads[a + 2]), 0) for a, (r, i) in enumerate(zip(reach, in_hw))]
    pads = [win.pads[0], win.pads[1], win.pads[2] + overhang[0], win.pads[3] + overhang[1]]
    plan = win.plan(in_hw) if not any(overhang) else "EXPLICIT"
    scale = None
    if not is_max:
        include_pad = bool(node.attributes.get_int("count_include_pad", 0))
        if plan == "SAME" and include_pad:
            plan = "EXPLICIT"
        if plan == "EXPLICIT":
            divisor = _divisor_map(win, in_hw, out_hw, include_pad)
            window_size = win.kernel[0] * win.kernel[1]
            scale = None if np.all(divisor == window_size) else window_size / divisor
    out_params = lowering.int8_mode([x], out) if not is_max and scale is None else None
    ref, _ = spatial_input(lowering, x, float_=not is_max and out_params is None)  # max commutes with int8
    if plan == "EXPLICIT":
        ref = pad_spatial(lowering, x, ref, pads, value=-np.inf if is_max else None)
    options = lowering.writer.options("Pool2DOptions", padding=fb.Padding.SAME if plan == "SAME" else fb.Padding.VALID,
                                 strideH=win.strides[0], strideW=win.strides[1], filterHeight=win.kernel[0],
                                 filterWidth=win.kernel[1])
    quant = ref.quant if is_max else out_params
    op = "MAX_POOL_2D" if is_max else "AVERAGE_POOL_2D"
    if scale is None:
        result, finish = spatial_output(lowering, out, quant)
        lowering.emit(op, [ref.index], [result], options)
        finish()
        return
    channels = lowering.writer.shape(ref.index)[3]
    pooled = lowering.compute(op, [ref.index], out.name + "/pooled", shape=[lowering.shape(x)[0], *out_hw, channels],
                              options=options)
    result, finish = spatial_output(lowering, out)
    factors = lowering.weight(out.name + "/divisor", scale.reshape(1, *out_hw, 1).astype(np.float32))
    lowering.emit("MUL", [pooled, factors], [result])
    finish()


# ---- global pools and LRN -----------------------------------------------------------------

@lowers("GlobalAveragePool", "GlobalMaxPool", check=_check_pool)
def global_pool(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    op = "MEAN" if node.op_type == "GlobalAveragePool" else "REDUCE_MAX"
    out_params = lowering.int8_mode([x], out) if op == "MEAN" else None
    ref = lowering.get(x, float_=op == "MEAN" and out_params is None)
    quant = out_params if op == "MEAN" else ref.quant  # the maximum of int8 data keeps its parameters
    reduce(lowering, op, ref, lowering.shape(x), list(range(2, len(lowering.shape(x)))), True, out, quant)


def _check_lrn(node: ir.Node) -> str:
    if len(static_shape(node.inputs[0]) or []) != 4:
        return "only 4-D (NCHW) LRN is supported"
    if node.attributes.get_int("size", 1) % 2 == 0:
        return "an even LRN size has an asymmetric window, which TFLite's radius cannot express"
    return ""


@lowers("LRN", check=_check_lrn)
def lrn(lowering: Lowering, node: ir.Node) -> None:
    """ONNX divides alpha by the window size; TFLite's alpha multiplies the plain sum of squares."""
    x, out = node.inputs[0], node.outputs[0]
    size = node.attributes.get_int("size", 1)
    ref = lowering.get(x, layout.NHWC, float_=True)
    options = lowering.writer.options("LocalResponseNormalizationOptions", radius=(size - 1) // 2,
                                 bias=node.attributes.get_float("bias", 1.0),
                                 alpha=node.attributes.get_float("alpha", 1e-4) / size,
                                 beta=node.attributes.get_float("beta", 0.75))
    lowering.emit("LOCAL_RESPONSE_NORMALIZATION", [ref.index], [lowering.new(out, layout.NHWC).index], options)

