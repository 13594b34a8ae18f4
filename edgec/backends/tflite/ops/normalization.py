"""Normalization: BatchNormalization on its own, Instance/Layer/Group normalization, LpNormalization and
MeanVarianceNormalization, as MEAN/SUB/MUL/RSQRT chains that XNNPACK runs. The statistics are the
two-pass ones ONNX's reference computes (mean, then the mean of squared deviations), in float32."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import layout
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.arithmetic import check_dtypes
from edgec.backends.tflite.ops.common import attr_ints, operand, optional_input, static_shape
from edgec.backends.tflite.ops.reductions import reduce
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import is_constant


def standardize(lowering: Lowering, ref: Ref, shape, axes, epsilon: float | None, name: str):
    """((x - mean) / sqrt(var + epsilon), mean, 1 / sqrt(var + epsilon)) over `axes`, statistics kept as
    size-1 axes; epsilon None divides by the plain standard deviation."""
    mean = reduce(lowering, "MEAN", ref, shape, axes, True, name=name + "/mean")
    centered = lowering.compute("SUB", [ref.index, mean.index], name + "/centered")
    squared = Ref(lowering.compute("MUL", [centered, centered], name + "/squared"), ref.perm)
    variance = reduce(lowering, "MEAN", squared, shape, axes, True, name=name + "/variance")
    shifted = variance.index if epsilon is None else \
        lowering.compute("ADD", [variance.index, lowering.scalar(name + "/epsilon", epsilon)], name + "/shifted")
    inverse = lowering.compute("RSQRT", [shifted], name + "/inv_std")
    normalized = lowering.compute("MUL", [centered, inverse], name + "/normalized")
    return normalized, mean, Ref(inverse, mean.perm)


def channel_vector(lowering: Lowering, value: ir.Value, rank: int, perm, data: np.ndarray | None = None) -> int:
    """A per-channel [C] parameter (or `data`) broadcast along axis 1 of a rank-`rank` value stored in `perm`."""
    channels = int(np.asarray(data).size) if data is not None else lowering.shape(value)[0]
    shape = [1, channels] + [1] * (rank - 2)
    if data is not None or lowering.is_const(value):
        array = np.asarray(data if data is not None else lowering.const(value)).reshape(shape)
        return lowering.constant(f"{value.name}/channels", np.transpose(array, perm))
    ref = lowering.get(value, layout.identity(1), float_=True)
    return lowering.restored(ref, layout.apply(shape, perm), perm, f"{value.name}/channels").index


def _affine(lowering: Lowering, index: int, scale: int | None, bias: int | None, out: ir.Value, perm) -> None:
    """out = index * scale + bias (either may be absent)."""
    steps = [(op, operand_index) for op, operand_index in (("MUL", scale), ("ADD", bias)) if operand_index is not None]
    for i, (op, operand_index) in enumerate(steps):
        if i == len(steps) - 1:
            lowering.emit(op, [index, operand_index], [lowering.new(out, perm).index])
            return
        index = lowering.compute(op, [index, operand_index], f"{out.name}/{op.lower()}")
    lowering.refs[out] = Ref(index, perm)


# ---- BatchNormalization ---------------------------------------------------------------------

def _check_batch_norm(node: ir.Node) -> str:
    if node.attributes.get_int("training_mode", 0) or any(v is not None and (v.uses() or v.is_graph_output())
                                                          for v in node.outputs[1:]):
        return "training-mode BatchNormalization (running statistics as outputs) is not an inference op"
    return check_dtypes("MUL")(node)


@lowers("BatchNormalization", check=_check_batch_norm)
def batch_norm(lowering: Lowering, node: ir.Node) -> None:
    """x * a + b with a = scale / sqrt(var + eps), b = bias - mean * a: folded when the statistics are constant."""
    x, out = node.inputs[0], node.outputs[0]
    scale, bias, mean, variance = node.inputs[1:5]
    epsilon = node.attributes.get_float("epsilon", 1e-5)
    ref = lowering.get(x, float_=True)
    rank = len(lowering.shape(x))
    if all(is_constant(v) for v in (scale, bias, mean, variance)):
        a = lowering.const(scale).astype(np.float64) / np.sqrt(lowering.const(variance).astype(np.float64) + epsilon)
        b = lowering.const(bias) - lowering.const(mean) * a
        _affine(lowering, ref.index, channel_vector(lowering, scale, rank, ref.perm, a.astype(np.float32)),
                channel_vector(lowering, bias, rank, ref.perm, b.astype(np.float32)), out, ref.perm)
        return
    vectors = {v: channel_vector(lowering, v, rank, ref.perm) for v in (scale, bias, mean, variance)}
    inverse = lowering.compute("RSQRT", [lowering.compute("ADD", [vectors[variance], lowering.scalar(
        out.name + "/epsilon", epsilon)], out.name + "/shifted")], out.name + "/inv_std")
    centered = lowering.compute("SUB", [ref.index, vectors[mean]], out.name + "/centered")
    normalized = lowering.compute("MUL", [centered, inverse], out.name + "/normalized")
    _affine(lowering, normalized, vectors[scale], vectors[bias], out, ref.perm)


# ---- Instance, Layer, Group -------------------------------------------------------------------

@lowers("InstanceNormalization", check=check_dtypes("MUL"))
def instance_norm(lowering: Lowering, node: ir.Node) -> None:
    x, scale, bias = node.inputs
    out = node.outputs[0]
    shape = lowering.shape(x)
    ref = lowering.get(x, float_=True)
    normalized, _, _ = standardize(lowering, ref, shape, list(range(2, len(shape))),
                                   node.attributes.get_float("epsilon", 1e-5), out.name)
    _affine(lowering, normalized, channel_vector(lowering, scale, len(shape), ref.perm),
            channel_vector(lowering, bias, len(shape), ref.perm), out, ref.perm)


@lowers("LayerNormalization", check=check_dtypes("MUL"))
def layer_norm(lowering: Lowering, node: ir.Node) -> None:
    """Over axes [axis, rank); scale and bias broadcast from the right; Mean and InvStdDev outputs too."""
    x, scale, bias = node.inputs[0], node.inputs[1], optional_input(node, 2)
    out = node.outputs[0]
    shape = lowering.shape(x)
    rank = len(shape)
    axis = node.attributes.get_int("axis", -1) % rank
    ref = lowering.get(x, float_=True)
    normalized, mean, inverse = standardize(lowering, ref, shape, list(range(axis, rank)),
                                            node.attributes.get_float("epsilon", 1e-5), out.name)
    _affine(lowering, normalized, operand(lowering, scale, ref.perm, rank, dtype="float32"),
            operand(lowering, bias, ref.perm, rank, dtype="float32") if bias is not None else None, out, ref.perm)
    for value, stat in zip(node.outputs[1:], (mean, inverse)):
        if value is not None:
            lowering.refs[value] = stat


def _check_group_norm(node: ir.Node) -> str:
    groups = node.attributes.get_int("num_groups", 1)
    scale = static_shape(node.inputs[1])
    channels = (static_shape(node.inputs[0]) or [0, 0])[1]
    if scale is not None and scale[0] == groups != channels and not is_constant(node.inputs[1]):
        return "per-group scale and bias (opset 18) must be constants"
    return check_dtypes("MUL")(node)


@lowers("GroupNormalization", check=_check_group_norm)
def group_norm(lowering: Lowering, node: ir.Node) -> None:
    """[N, C, ...] as [N, G, C/G * ...], standardized over the last axis; scale and bias per channel (opset 21)
    or per group (opset 18, repeated over the group's channels)."""
    x, scale, bias = node.inputs
    out = node.outputs[0]
    shape = lowering.shape(x)
    out.shape = out.shape or x.shape  # onnx's shape inference leaves a GroupNormalization-21 output unknown
    groups = node.attributes.get_int("num_groups", 1)
    channels = shape[1]
    grouped_shape = [shape[0], groups, int(np.prod(shape[1:])) // groups]
    ref = lowering.get(x, layout.identity(len(shape)), float_=True, memory=True)
    grouped = lowering.reshaped(ref, grouped_shape, x.name + "/groups")
    normalized, _, _ = standardize(lowering, grouped, grouped_shape, [2],
                                   node.attributes.get_float("epsilon", 1e-5), out.name)
    restored = lowering.reshaped(Ref(normalized, layout.identity(3)), shape, out.name + "/ungrouped")
    per_group = lowering.shape(scale)[0] == groups != channels
    vectors = [channel_vector(lowering, v, len(shape), restored.perm,
                              np.repeat(lowering.const(v), channels // groups) if per_group else None)
               for v in (scale, bias)]
    _affine(lowering, restored.index, vectors[0], vectors[1], out, restored.perm)


# ---- Lp and mean-variance --------------------------------------------------------------------

def _check_lp(node: ir.Node) -> str:
    if node.attributes.get_int("p", 2) not in (1, 2):
        return "only p = 1 or 2 is defined"
    return check_dtypes("MUL")(node)


@lowers("LpNormalization", check=_check_lp)
def lp_norm(lowering: Lowering, node: ir.Node) -> None:
    """x / ||x||_p along `axis`; a zero norm gives 0, as ONNX's reference does."""
    x, out = node.inputs[0], node.outputs[0]
    shape = lowering.shape(x)
    axis = node.attributes.get_int("axis", -1) % len(shape)
    ref = lowering.get(x, float_=True)
    p = node.attributes.get_int("p", 2)
    magnitude = lowering.compute("ABS" if p == 1 else "SQUARE", [ref.index], out.name + "/magnitude")
    total = reduce(lowering, "SUM", Ref(magnitude, ref.perm), shape, [axis], True, name=out.name + "/sum")
    norm = total.index if p == 1 else lowering.compute("SQRT", [total.index], out.name + "/norm")
    zero = lowering.compute("EQUAL", [norm, lowering.scalar(out.name + "/zero", 0.0)], out.name + "/is_zero",
                            dtype="bool")
    safe = lowering.compute("SELECT_V2", [zero, lowering.scalar(out.name + "/one", 1.0), norm], out.name + "/safe",
                            dtype="float32")
    lowering.emit("DIV", [ref.index, safe], [lowering.new(out, ref.perm).index])


@lowers("MeanVarianceNormalization", check=check_dtypes("MUL"))
def mean_variance_norm(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    shape = lowering.shape(x)
    axes = [a % len(shape) for a in attr_ints(node, "axes", [0, 2, 3])]
    ref = lowering.get(x, float_=True)
    normalized, _, _ = standardize(lowering, ref, shape, axes, 1e-9, out.name)
    lowering.refs[out] = Ref(normalized, ref.perm)
