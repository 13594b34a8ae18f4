"""Sliding windows (convolution and pooling): ONNX padding resolved into TFLite's SAME, VALID or a PAD,
and 1-D windows run as 2-D ones over a unit height."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes, layout
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.common import attr_ints


def same_pads(in_sizes, kernel, strides, dilations, upper: bool = True) -> list[int]:
    """[begins..., ends...] of SAME padding: output size ceil(in / stride), the odd pixel at the end
    (SAME_UPPER, which is also TensorFlow's SAME) or at the beginning (SAME_LOWER)."""
    begin, end = [], []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if upper else big)
        end.append(big if upper else small)
    return begin + end


def onnx_pads(node: ir.Node, in_sizes, kernel, strides, dilations) -> list[int]:
    """ONNX's [begins..., ends...] for a window op, auto_pad resolved."""
    auto = node.attributes.get_string("auto_pad", "NOTSET")
    if auto == "VALID":
        return [0] * (2 * len(kernel))
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return same_pads(in_sizes, kernel, strides, dilations, upper=auto == "SAME_UPPER")
    return attr_ints(node, "pads", [0] * (2 * len(kernel)))


def padding_plan(pads, in_sizes, kernel, strides, dilations) -> str:
    """'VALID', 'SAME' (TF's split matches ONNX's), or 'EXPLICIT' (a PAD op and VALID)."""
    if not any(pads):
        return "VALID"
    if list(pads) == same_pads(in_sizes, kernel, strides, dilations):
        return "SAME"
    return "EXPLICIT"


def window(node: ir.Node, weight_shape=None):
    """(kernel, strides, dilations) of a window op; the kernel defaults to the weights' spatial shape."""
    kernel = attr_ints(node, "kernel_shape", weight_shape[2:] if weight_shape else [])
    strides = attr_ints(node, "strides", [1] * len(kernel))
    dilations = attr_ints(node, "dilations", [1] * len(kernel))
    return kernel, strides, dilations


def window_output(in_sizes, kernel, strides, dilations, plan: str, ceil: bool = False) -> list[int]:
    """Output sizes of a window op over (already padded, unless SAME) inputs."""
    if plan == "SAME":
        return [math.ceil(i / s) for i, s in zip(in_sizes, strides)]
    rounding = math.ceil if ceil else math.floor
    return [rounding((i - ((k - 1) * d + 1)) / s) + 1 for i, k, s, d in zip(in_sizes, kernel, strides, dilations)]


def pad_spatial(lowering: Lowering, x: ir.Value, ref: Ref, pads, value: float | None = None) -> Ref:
    """An explicit PAD (or PADV2 filled with `value`) of an NHWC tensor by ONNX [t, l, b, r]."""
    top, left, bottom, right = pads
    shape = lowering.writer.shape(ref.index)
    out_shape = [shape[0], shape[1] + top + bottom, shape[2] + left + right, shape[3]]
    paddings = lowering.param(x.name + "/paddings", [[0, 0], [top, bottom], [left, right], [0, 0]])
    out = lowering.scratch(x.name + "/padded", out_shape, ref.quant)
    if value is None:
        lowering.emit("PAD", [ref.index, paddings], [out])
    else:
        lowering.emit("PADV2", [ref.index, paddings, fill_value(lowering, x.name + "/pad_value", ref, value)], [out])
    return Ref(out, ref.perm, ref.quant)


def fill_value(lowering: Lowering, name: str, ref: Ref, value: float) -> int:
    """A scalar of `ref`'s type holding `value`, clamped to an integer type's range (-inf: its minimum)."""
    if ref.quant is not None:
        scaled = round(value / ref.quant.scale[0]) + ref.quant.zero_point[0] if np.isfinite(value) else \
            (-128 if value < 0 else 127)
        fill = np.array(np.clip(scaled, -128, 127), np.int8)
        return lowering.writer.tensor(name, [], "int8", fill, quant=ref.quant)
    dtype = np.dtype(lowering.dtype(ref))
    if dtype.kind in "iu" and not np.isfinite(value):
        value = np.iinfo(dtype).min if value < 0 else np.iinfo(dtype).max
    fill = np.array(value, dtype)
    return lowering.writer.tensor(name, [], dtype.name, fill)


@dataclass(frozen=True)
class Window:
    """A 2-D window over NHWC data; a 1-D op (NCL) becomes 2-D with a unit height."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    pads: list[int]  # ONNX order: [top, left, bottom, right]

    @classmethod
    def of(cls, node: ir.Node, in_sizes, weight_shape=None) -> "Window":
        kernel, strides, dilations = window(node, weight_shape)
        pads = onnx_pads(node, in_sizes, kernel, strides, dilations)
        if len(kernel) == 1:
            return cls([1, *kernel], [1, *strides], [1, *dilations], [0, pads[0], 0, pads[1]])
        return cls(kernel, strides, dilations, pads)

    def plan(self, in_hw) -> str:
        return padding_plan(self.pads, in_hw, self.kernel, self.strides, self.dilations)

    def output(self, in_hw, plan: str, ceil: bool = False) -> list[int]:
        return window_output(in_hw, self.kernel, self.strides, self.dilations, plan, ceil)


NCL_AS_NLC = (0, 2, 1)


def spatial_input(lowering: Lowering, x: ir.Value, float_: bool) -> tuple[Ref, list[int]]:
    """`x` as an NHWC tensor and its (H, W): an NCHW value transposed, an NCL value as [N, 1, L, C]."""
    shape = lowering.shape(x)
    if len(shape) == 4:
        return lowering.get(x, layout.NHWC, float_=float_), shape[2:]
    ref = lowering.get(x, NCL_AS_NLC, float_=float_)
    ref = lowering.reshaped(ref, [shape[0], 1, shape[2], shape[1]], x.name + "/as_2d")
    return Ref(ref.index, layout.NHWC, ref.quant), [1, shape[2]]


def nhwc_shape(lowering: Lowering, value: ir.Value) -> list[int]:
    """The NHWC shape a window op produces for `value` (NCHW, or NCL as [N, 1, L, C])."""
    shape = lowering.shape(value)
    return layout.apply(shape, layout.NHWC) if len(shape) == 4 else [shape[0], 1, shape[2], shape[1]]


def spatial_output(lowering: Lowering, value: ir.Value, quant=None) -> tuple[int, Callable[[], None]]:
    """The NHWC tensor a window op writes for `value`, and what to call once it is written."""
    shape = lowering.shape(value)
    if len(shape) == 4:
        return lowering.new(value, layout.NHWC, quant).index, lambda: None
    index = lowering.scratch(value.name + "/2d", [shape[0], 1, shape[2], shape[1]], quant,
                             dtype=None if quant else dtypes.of(value))

    def finish() -> None:
        flat = lowering.reshaped(Ref(index, layout.NHWC, quant), [shape[0], shape[2], shape[1]], value.name)
        lowering.refs[value] = Ref(flat.index, NCL_AS_NLC, quant)

    return index, finish
