"""Resize in any nearest or linear coordinate mode, on any axes.

The plan computes ONNX's source coordinate of every output position, per axis. Where a TFLite resize
kernel's (align_corners, half_pixel_centers) flags sample exactly those positions on H and W, that
kernel runs (XNNPACK delegates it); otherwise each resized axis is a GATHER of the nearest source
(nearest) or of the two neighbours blended by constant weights (linear), which is ONNX's own 2-tap
formula. Cubic, antialias and tf_crop_and_resize have no exact TFLite form and are refused.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes, layout
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.common import all_static, attr_ints, optional_input, static_shape
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import constant


def legacy(node: ir.Node) -> bool:
    """Upsample, and Resize below opset 11: scales as input 1 (or an attribute), x / scale, nearest rounds down."""
    opset = node.graph.opset_imports.get("", 11) if node.graph is not None else 11
    return node.op_type == "Upsample" or opset < 11


def onnx_coordinates(node: ir.Node, size_in: int, size_out: int, scale: float) -> np.ndarray | None:
    """ONNX's source coordinate of each output position along one axis, or None for an unknown mode."""
    mode = "asymmetric" if legacy(node) else node.attributes.get_string("coordinate_transformation_mode",
                                                                         "half_pixel")
    x = np.arange(size_out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "half_pixel_symmetric":
        adjustment = size_out / (scale * size_in)
        center = size_in / 2 * (1 - adjustment)
        return center + (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if size_out > 1 else np.zeros_like(x)
    if mode == "align_corners":  # ONNX's resized length is size_in * scale, before rounding
        resized = size_in * scale
        return x * (size_in - 1) / (resized - 1) if resized > 1 else np.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    return None


def onnx_nearest(node: ir.Node, coords: np.ndarray, size_in: int) -> np.ndarray:
    mode = "floor" if legacy(node) else node.attributes.get_string("nearest_mode", "round_prefer_floor")
    rounding = {"round_prefer_floor": lambda c: np.ceil(c - 0.5), "round_prefer_ceil": lambda c: np.floor(c + 0.5),
                "floor": np.floor, "ceil": np.ceil}[mode]
    return np.clip(rounding(coords), 0, size_in - 1).astype(int)


def tflite_coordinates(size_in: int, size_out: int, align: bool, half: bool, nearest: bool) -> np.ndarray:
    """What TFLite's resize kernels sample along one axis for these flags."""
    x = np.arange(size_out, dtype=np.float64)
    scale = (size_in - 1) / (size_out - 1) if align and size_out > 1 else size_in / size_out
    if nearest:
        index = np.floor(x * scale + 0.5) if align else np.floor((x + (0.5 if half else 0.0)) * scale)
        return np.clip(index, 0, size_in - 1).astype(int)
    coords = (x + 0.5) * scale - 0.5 if half else x * scale
    return np.clip(coords, 0, size_in - 1)


def _scales(node: ir.Node, x, out) -> list[float] | str:
    """The scale ONNX's coordinate transform uses on each axis, or why it cannot be known."""
    rank = len(x)
    axes = [a % rank for a in attr_ints(node, "axes", range(rank))]
    if legacy(node):
        scales_value, sizes_value = optional_input(node, 1), None
        if scales_value is None:  # Upsample-7: an attribute
            return [float(s) for s in node.attributes.get_floats("scales", [1.0] * rank)]
    else:
        scales_value, sizes_value = optional_input(node, 2), optional_input(node, 3)
    scales = constant(scales_value) if scales_value is not None else None
    if scales_value is not None and scales is None and sizes_value is None:
        return "the scales input must be a constant"
    if scales is not None and scales.size:
        by_axis = dict(zip(axes, (float(s) for s in scales.reshape(-1))))
        return [by_axis.get(d, 1.0) for d in range(rank)]
    policy = node.attributes.get_string("keep_aspect_ratio_policy", "stretch")
    sizes = constant(sizes_value) if sizes_value is not None else None
    if policy != "stretch" and sizes is not None:
        ratios = [float(s) / x[a] for a, s in zip(axes, sizes.reshape(-1))]
        scale = min(ratios) if policy == "not_larger" else max(ratios)
        return [scale if d in axes else 1.0 for d in range(rank)]
    return [out[d] / x[d] for d in range(rank)]


@dataclass(frozen=True)
class AxisPlan:
    """Where each output position of one axis reads: `lower` (nearest), or `lower`/`upper` mixed by `weight`."""

    axis: int
    lower: np.ndarray
    upper: np.ndarray | None = None
    weight: np.ndarray | None = None


@dataclass(frozen=True)
class ResizePlan:
    axes: list[AxisPlan]  # the axes that change
    kernel: tuple[str, bool, bool] | None  # (TFLite op, align_corners, half_pixel_centers) computing the same


def resize_plan(node: ir.Node) -> ResizePlan | str:
    """How to compute ONNX's Resize exactly: a TFLite resize kernel where one samples the same positions, else
    a GATHER per resized axis (nearest) or two and a blend (linear); or why neither can."""
    x, out = static_shape(node.inputs[0]), static_shape(node.outputs[0])
    if x is None or out is None or len(x) != len(out):
        return "input and output shapes must be known"
    mode = node.attributes.get_string("mode", "nearest")
    if mode not in ("nearest", "linear"):
        return f"mode '{mode}' has no TFLite kernel (TFLite resizes nearest and bilinear)"
    if node.attributes.get_int("antialias", 0):
        return "antialiased resizing has no TFLite kernel"
    if node.attributes.get_int("exclude_outside", 0):
        return "exclude_outside has no TFLite equivalent"
    scales = _scales(node, x, out)
    if isinstance(scales, str):
        return scales
    plans, wanted = [], {}
    for d, scale in enumerate(scales):
        coords = onnx_coordinates(node, x[d], out[d], scale)
        if coords is None:
            mode_name = node.attributes.get_string("coordinate_transformation_mode", "")
            return f"coordinate_transformation_mode '{mode_name}' has no TFLite equivalent"
        if mode == "nearest":
            wanted[d] = onnx_nearest(node, coords, x[d])
            plan = AxisPlan(d, wanted[d])
        else:
            wanted[d] = np.clip(coords, 0, x[d] - 1)
            lower = np.floor(wanted[d]).astype(int)
            plan = AxisPlan(d, lower, np.minimum(lower + 1, x[d] - 1), (wanted[d] - lower).astype(np.float32))
        if x[d] != out[d] or not np.array_equal(wanted[d], np.arange(x[d])):
            plans.append(plan)
    return ResizePlan(plans, _kernel(mode, x, out, wanted, [p.axis for p in plans]))


def _kernel(mode: str, x, out, wanted, axes) -> tuple[str, bool, bool] | None:
    """The TFLite resize flags that sample exactly `wanted` on H and W of an NCHW tensor, if any."""
    if len(x) != 4 or not set(axes) <= {2, 3}:
        return None
    for align, half in ((False, True), (False, False), (True, False)):
        got = [tflite_coordinates(x[d], out[d], align, half, mode == "nearest") for d in (2, 3)]
        if all(np.allclose(g, wanted[d], atol=1e-6) for g, d in zip(got, (2, 3))):
            return ("RESIZE_NEAREST_NEIGHBOR" if mode == "nearest" else "RESIZE_BILINEAR", align, half)
    return None


def _check_resize(node: ir.Node) -> str:
    linear = node.attributes.get_string("mode", "nearest") == "linear"
    if linear and dtypes.of(node.inputs[0]) != "float32":
        return f"linear resizing is lowered for float32 and quantized int8, not {dtypes.of(node.inputs[0])}"
    if not all_static(*(static_shape(node.inputs[0]) or [None]), *(static_shape(node.outputs[0]) or [None])):
        return ""  # judged once the build makes shapes static
    plan = resize_plan(node)
    return plan if isinstance(plan, str) else ""


@lowers("Resize", "Upsample", check=_check_resize)
def resize(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    plan = resize_plan(node)
    factor = _repeat_factor(plan, lowering.shape(x), lowering.shape(out))
    if factor:
        _repeat(lowering, x, out, factor)
        return
    if plan.kernel is not None:
        op, align, half = plan.kernel
        ref = lowering.get(x, layout.NHWC)
        result = lowering.new(out, layout.NHWC, ref.quant)
        options = "ResizeNearestNeighborOptions" if op == "RESIZE_NEAREST_NEIGHBOR" else "ResizeBilinearOptions"
        lowering.emit(op, [ref.index, lowering.param(out.name + "/size", lowering.shape(out)[2:])], [result.index],
                      lowering.writer.options(options, alignCorners=align, halfPixelCenters=half))
        return
    linear = node.attributes.get_string("mode", "nearest") == "linear"
    ref = lowering.get(x, float_=linear)
    for axis in plan.axes:
        ref = _resize_axis(lowering, ref, axis, f"{out.name}/axis{axis.axis}")
    lowering.refs[out] = ref


def _repeat_factor(plan: ResizePlan, x, out) -> int:
    """s when the nearest plan repeats every pixel s times on H and W alike (integer upsampling), else 0."""
    if plan.kernel is None or plan.kernel[0] != "RESIZE_NEAREST_NEIGHBOR" or [a.axis for a in plan.axes] != [2, 3]:
        return 0
    factor = out[2] // x[2]
    if factor < 2 or any(out[d] != factor * x[d] or not np.array_equal(plan.axes[i].lower, np.arange(out[d]) // factor)
                         for i, d in enumerate((2, 3))):
        return 0
    return factor


def _repeat(lowering: Lowering, x: ir.Value, out: ir.Value, factor: int) -> None:
    """Nearest upsampling by an integer factor as s*s channel copies and DEPTH_TO_SPACE: XNNPACK runs both
    (it does not run RESIZE_NEAREST_NEIGHBOR)."""
    ref = lowering.get(x, layout.NHWC)
    shape = lowering.writer.shape(ref.index)
    copies = lowering.compute("CONCATENATION", [ref.index] * factor * factor, out.name + "/copies",
                              shape=[*shape[:3], shape[3] * factor * factor], quant=ref.quant,
                              options=lowering.writer.options("ConcatenationOptions", axis=3))
    result = lowering.new(out, layout.NHWC, ref.quant, dtype=lowering.dtype(ref))
    lowering.emit("DEPTH_TO_SPACE", [copies], [result.index], lowering.writer.options("DepthToSpaceOptions",
                                                                                   blockSize=factor))


def _resize_axis(lowering: Lowering, ref: Ref, axis: AxisPlan, name: str) -> Ref:
    """One axis: GATHER the lower taps; for linear also the upper ones, then lower + (upper - lower) * weight."""
    stored_axis = layout.axis(axis.axis, ref.perm)
    shape = lowering.writer.shape(ref.index)
    shape[stored_axis] = len(axis.lower)
    options = lowering.writer.options("GatherOptions", axis=stored_axis)

    def gather(indices: np.ndarray, suffix: str) -> int:
        return lowering.compute("GATHER", [ref.index, lowering.param(f"{name}/{suffix}_index", indices)],
                                f"{name}/{suffix}", shape=shape, options=options, quant=ref.quant)

    lower = gather(axis.lower, "lower")
    if axis.upper is None:
        return Ref(lower, ref.perm, ref.quant)
    difference = lowering.compute("SUB", [gather(axis.upper, "upper"), lower], name + "/difference")
    weight_shape = [1] * len(shape)
    weight_shape[stored_axis] = len(axis.weight)
    step = lowering.compute("MUL", [difference, lowering.weight(name + "/weight", axis.weight.reshape(weight_shape))],
                            name + "/step")
    return Ref(lowering.compute("ADD", [lower, step], name + "/blend"), ref.perm)
