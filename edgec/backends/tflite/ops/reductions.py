"""Reductions: Reduce{Mean,Sum,Max,Min,Prod,L1,L2,SumSquare,LogSum,LogSumExp}, ArgMax/ArgMin, TopK, CumSum."""
from __future__ import annotations

import onnx_ir as ir

from edgec.backends.tflite import dtypes, layout
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.common import attr_ints, constant_inputs, optional_input
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import QParams, constant


def reduced_perm(perm, axes, keepdims: bool) -> tuple[int, ...]:
    """The storage order of a reduction's result: kept axes stay where they were stored."""
    if keepdims:
        return tuple(perm)
    remaining = [p for p in perm if p not in axes]
    order = sorted(remaining)
    return tuple(order.index(p) for p in remaining)


def reduce(lowering: Lowering, op: str, ref: Ref, x_shape, axes, keepdims: bool, out: ir.Value | None = None,
           quant: QParams | None = None, name: str = "") -> Ref:
    """`op` over ONNX `axes` of `ref` (holding a value of shape `x_shape`), into `out` or a scratch `name`.

    A mean over NHWC channels needs no TRANSPOSE: the reducer works on the stored axes.
    """
    perm = reduced_perm(ref.perm, axes, keepdims)
    stored_axes = sorted(layout.axis(a, ref.perm) for a in axes)
    onnx_shape = [1 if a in axes else d for a, d in enumerate(x_shape)] if keepdims else \
        [d for a, d in enumerate(x_shape) if a not in axes]
    inputs = [ref.index, lowering.param(f"{out.name if out is not None else name}/axes", stored_axes)]
    options = lowering.writer.options("ReducerOptions", keepDims=keepdims)
    if out is None:
        return Ref(lowering.compute(op, inputs, name, shape=layout.apply(onnx_shape, perm), options=options), perm)
    result = lowering.new(out, perm, quant, dtype=None if quant else lowering.dtype(ref))
    lowering.emit(op, inputs, [result.index], options)
    return result


def reduce_axes(node: ir.Node) -> list[int] | None:
    """The axes a Reduce node names (attribute, or constant input from opset 13/18), None if computed."""
    axes_input = optional_input(node, 1)
    if axes_input is not None:
        axes = constant(axes_input)
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    return attr_ints(node, "axes", [])


# ONNX reduction -> (TFLite reducer, elementwise op before it, elementwise op after it)
REDUCERS = {
    "ReduceMean": ("MEAN", None, None), "ReduceSum": ("SUM", None, None), "ReduceMax": ("REDUCE_MAX", None, None),
    "ReduceMin": ("REDUCE_MIN", None, None), "ReduceProd": ("REDUCE_PROD", None, None),
    "ReduceL1": ("SUM", "ABS", None), "ReduceL2": ("SUM", "SQUARE", "SQRT"), "ReduceSumSquare": ("SUM", "SQUARE", None),
    "ReduceLogSum": ("SUM", None, "LOG"), "ReduceLogSumExp": ("SUM", "EXP", "LOG"),
}


def _check_reduce(node: ir.Node) -> str:
    if reduce_axes(node) is None:
        return "axes must be constant"
    op, before, after = REDUCERS[node.op_type]
    dtype = dtypes.of(node.inputs[0])
    if (before or after) and dtype != "float32":
        return f"{node.op_type} is lowered for float32 only, not {dtype}"
    return dtypes.refusal(op, dtype)


@lowers(*REDUCERS, check=_check_reduce)
def reduction(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    x_shape = lowering.shape(x)
    axes = sorted({a % len(x_shape) for a in reduce_axes(node)})
    keepdims = bool(node.attributes.get_int("keepdims", 1))
    op, before, after = REDUCERS[node.op_type]
    noop = not axes and node.attributes.get_int("noop_with_empty_axes", 0)
    axes = axes or list(range(len(x_shape)))
    if before is None and after is None and not noop:
        out_params = lowering.int8_mode([x], out) if op == "MEAN" else None
        ref = lowering.get(x, float_=out_params is None)
        compute = dtypes.compute_dtype(op, lowering.dtype(ref)) if out_params is None else "int8"
        if compute == lowering.dtype(ref):
            reduce(lowering, op, ref, x_shape, axes, keepdims, out, out_params)
            return
        total = reduce(lowering, op, lowering.cast(ref, compute, x.name), x_shape, axes, keepdims,
                       name=f"{out.name}/{compute}")
        lowering.refs[out] = lowering.cast(total, dtypes.of(out), out.name)
        return
    ref = lowering.get(x, float_=True)
    if noop:  # reducing over no axes: each element alone, the steps around the reducer still apply
        for step in (before, after):
            ref = Ref(lowering.compute(step, [ref.index], f"{out.name}/{step.lower()}"), ref.perm) if step else ref
        lowering.refs[out] = ref
        return
    if node.op_type == "ReduceLogSumExp":  # log(sum(exp(x - m))) + m with m the maximum: no overflow
        peak = reduce(lowering, "REDUCE_MAX", ref, x_shape, axes, True, name=out.name + "/max")
        ref = Ref(lowering.compute("SUB", [ref.index, peak.index], out.name + "/shifted"), ref.perm)
    if before:
        ref = Ref(lowering.compute(before, [ref.index], f"{out.name}/{before.lower()}"), ref.perm)
    total = reduce(lowering, op, ref, x_shape, axes, keepdims, name=out.name + "/reduced")
    if after:
        total = Ref(lowering.compute(after, [total.index], f"{out.name}/{after.lower()}"), total.perm)
    if node.op_type == "ReduceLogSumExp":
        peak = reduce(lowering, "REDUCE_MAX", lowering.get(x, float_=True), x_shape, axes, keepdims,
                      name=out.name + "/max_kept")
        total = Ref(lowering.compute("ADD", [total.index, peak.index], out.name + "/logsumexp"), total.perm)
    lowering.refs[out] = total


# ---- ArgMax, ArgMin, TopK, CumSum --------------------------------------------------------

def _check_arg(node: ir.Node) -> str:
    return dtypes.refusal("ARG_MAX", dtypes.of(node.inputs[0]))


@lowers("ArgMax", "ArgMin", check=_check_arg)
def arg_extreme(lowering: Lowering, node: ir.Node) -> None:
    """ARG_MAX/ARG_MIN (first index of ties); select_last_index reverses the axis and maps the index back."""
    x, out = node.inputs[0], node.outputs[0]
    x_shape = lowering.shape(x)
    axis = node.attributes.get_int("axis", 0) % len(x_shape)
    keepdims = bool(node.attributes.get_int("keepdims", 1))
    ref = lowering.get(x)  # int8 data: the position of the extreme does not change
    stored_axis = layout.axis(axis, ref.perm)
    axis_index = lowering.param(out.name + "/axis", [stored_axis])
    last = bool(node.attributes.get_int("select_last_index", 0))
    if last:
        ref = Ref(lowering.compute("REVERSE_V2", [ref.index, axis_index], out.name + "/reversed"), ref.perm, ref.quant)
    op = "ARG_MAX" if node.op_type == "ArgMax" else "ARG_MIN"
    stored = [d for i, d in enumerate(lowering.writer.shape(ref.index)) if i != stored_axis]
    options = lowering.writer.options("ArgMaxOptions" if op == "ARG_MAX" else "ArgMinOptions",
                                 outputType=lowering.writer.fb.TensorType.INT64)
    index = lowering.compute(op, [ref.index, axis_index], out.name + "/index", shape=stored, dtype="int64",
                             options=options)
    if last:
        index = lowering.compute("SUB", [lowering.scalar(out.name + "/last", x_shape[axis] - 1, "int64"), index],
                                 out.name + "/from_end", shape=stored)
    result = Ref(index, reduced_perm(ref.perm, [axis], False))
    if keepdims:
        result = lowering.restored(result, layout.apply(lowering.shape(out), ref.perm), ref.perm, out.name)
    lowering.refs[out] = result


@lowers("TopK", check=constant_inputs("k", lambda node: dtypes.refusal("TOPK_V2", dtypes.of(node.inputs[0]))))
def top_k(lowering: Lowering, node: ir.Node) -> None:
    """TOPK_V2 along the last stored axis (ties: lower index first, as ONNX); smallest = top of the negation."""
    x, values_out, indices_out = node.inputs[0], node.outputs[0], node.outputs[1]
    rank = len(lowering.shape(x))
    axis = node.attributes.get_int("axis", -1) % rank
    largest = bool(node.attributes.get_int("largest", 1))
    k = int(constant(node.inputs[1]).reshape(-1)[0])
    perm = tuple(a for a in range(rank) if a != axis) + (axis,)
    ref = lowering.get(x, perm, float_=True)
    if not largest:
        ref = Ref(lowering.compute("NEG", [ref.index], x.name + "/negated"), perm)
    stored = layout.apply(lowering.shape(values_out), perm)
    values = lowering.scratch(values_out.name + "/top", stored, dtype=lowering.dtype(ref))
    indices = lowering.scratch(indices_out.name + "/int32", stored, dtype="int32")
    lowering.emit("TOPK_V2", [ref.index, lowering.param(values_out.name + "/k", [k])], [values, indices])
    if not largest:
        values = lowering.compute("NEG", [values], values_out.name + "/smallest")
    lowering.refs[values_out] = Ref(values, perm)
    lowering.refs[indices_out] = lowering.cast(Ref(indices, perm), dtypes.of(indices_out), indices_out.name)


@lowers("CumSum", check=constant_inputs("axis", lambda node: dtypes.refusal("CUMSUM", dtypes.of(node.inputs[0]))))
def cumsum(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    axis = int(constant(node.inputs[1]).reshape(-1)[0]) % len(lowering.shape(x))
    ref = lowering.get(x, float_=True)
    options = lowering.writer.options("CumsumOptions", exclusive=bool(node.attributes.get_int("exclusive", 0)),
                                 reverse=bool(node.attributes.get_int("reverse", 0)))
    lowering.emit("CUMSUM", [ref.index, lowering.scalar(out.name + "/axis", layout.axis(axis, ref.perm), "int32")],
                  [lowering.new(out, ref.perm).index], options)
