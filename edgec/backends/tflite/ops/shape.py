"""Data movement on every dtype: Reshape and friends, Transpose (free: a storage permutation), Concat, Slice,
Split, Pad (constant, reflect, edge, wrap), Expand, Tile, DepthToSpace/SpaceToDepth, Trilu and Range."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes, layout
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.common import attr_ints, common_perm, constant_inputs, operand, optional_input
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.ops.window import fill_value
from edgec.backends.tflite.quant import constant


def _check_movable(node: ir.Node) -> str:
    return dtypes.unrepresentable([*node.inputs, *node.outputs])


@lowers("Reshape", "Flatten", "Squeeze", "Unsqueeze", check=_check_movable)
def reshape(lowering: Lowering, node: ir.Node) -> None:
    """The output's static shape is the new shape: a shape input computed at run time changes nothing."""
    x, out = node.inputs[0], node.outputs[0]
    ref = lowering.get(x, layout.identity(len(lowering.shape(x))), memory=True)
    lowering.refs[out] = lowering.reshaped(ref, lowering.shape(out), out.name)


@lowers("Transpose", check=_check_movable)
def transpose(lowering: Lowering, node: ir.Node) -> None:
    """No data moves: the output is the input read in another order (an identity perm is a no-op)."""
    x, out = node.inputs[0], node.outputs[0]
    rank = len(lowering.shape(x))
    perm = attr_ints(node, "perm", list(reversed(range(rank))))
    ref = lowering.ref(x)
    lowering.refs[out] = Ref(ref.index, layout.after_transpose(ref.perm, perm), ref.quant)


@lowers("Concat", check=_check_movable)
def concat(lowering: Lowering, node: ir.Node) -> None:
    out = node.outputs[0]
    rank = len(lowering.shape(out))
    axis = node.attributes.get_int("axis", 0) % rank
    perm = common_perm(lowering, node, rank)
    inputs = [v for v in node.inputs if lowering.shape(v)[axis] > 0]  # ONNX allows empty pieces; TFLite does not
    computed = [v for v in inputs if not lowering.is_const(v)]
    int8 = lowering.precision == "int8" and computed and all(lowering.ref(v).quant is not None for v in computed) \
        and all(lowering.qconst(v) is not None for v in inputs if lowering.is_const(v))
    out_params = (lowering.output_params(out) or lowering.ref(computed[0]).quant) if int8 else None
    indices = []
    for value in inputs:
        if out_params is not None and not lowering.is_const(value):
            ref = lowering.get(value, perm)
            indices.append(lowering.requantize(ref, out_params, f"{value.name}/requantized").index)
        else:
            indices.append(operand(lowering, value, perm, rank, out_params is not None))
    if len(indices) == 1:
        lowering.refs[out] = Ref(indices[0], perm, out_params)
        return
    result = lowering.new(out, perm, out_params)
    lowering.emit("CONCATENATION", indices, [result.index],
                  lowering.writer.options("ConcatenationOptions", axis=layout.axis(axis, perm)))


# ---- Slice and Split ------------------------------------------------------------------------

@lowers("Slice", check=constant_inputs("starts, ends, axes and steps", _check_movable))
def slice_(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    shape = lowering.shape(x)
    rank = len(shape)
    if len(node.inputs) > 1:
        starts, ends, axes, steps = [constant(optional_input(node, i)) for i in range(1, 5)]
    else:  # opset < 10: attributes, no steps
        starts, ends = attr_ints(node, "starts", []), attr_ints(node, "ends", [])
        axes, steps = attr_ints(node, "axes", range(len(starts))), None
    axes = [int(a) % rank for a in (axes if axes is not None else range(len(starts)))]
    steps = steps if steps is not None else np.ones(len(axes), np.int64)
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    for a, s, e, st in zip(axes, starts, ends, steps):
        begin[a], end[a], stride[a] = slice(int(s), int(e), int(st)).indices(shape[a])
    ref = lowering.get(x)
    order = list(ref.perm)
    end_mask = sum(1 << i for i, a in enumerate(order) if stride[a] < 0 and end[a] < 0)
    result = lowering.new(out, ref.perm, ref.quant)
    if all(stride[a] == 1 for a in order):  # SLICE: what XNNPACK runs
        lowering.emit("SLICE", [ref.index, lowering.param(out.name + "/begin", [begin[a] for a in order]),
                                lowering.param(out.name + "/size", [max(end[a] - begin[a], 0) for a in order])],
                      [result.index])
        return
    lowering.emit("STRIDED_SLICE", [ref.index, lowering.param(out.name + "/begin", [begin[a] for a in order]),
                                    lowering.param(out.name + "/end", [max(end[a], 0) if stride[a] > 0 else end[a]
                                                                       for a in order]),
                                    lowering.param(out.name + "/strides", [stride[a] for a in order])],
                  [result.index], lowering.writer.options("StridedSliceOptions", endMask=end_mask))


@lowers("Split", check=_check_movable)
def split(lowering: Lowering, node: ir.Node) -> None:
    """Piece sizes are the outputs' static shapes (from the split input, num_outputs or an even split)."""
    x = node.inputs[0]
    rank = len(lowering.shape(x))
    axis = node.attributes.get_int("axis", 0) % rank
    sizes = [lowering.shape(o)[axis] for o in node.outputs]
    ref = lowering.get(x)
    results = [lowering.new(o, ref.perm, ref.quant).index for o in node.outputs]
    stored_axis = lowering.param(x.name + "/axis", layout.axis(axis, ref.perm))
    if len(set(sizes)) == 1:  # equal pieces: SPLIT, which XNNPACK runs (it does not run SPLIT_V)
        lowering.emit("SPLIT", [stored_axis, ref.index], results, lowering.writer.options("SplitOptions",
                                                                                     numSplits=len(sizes)))
        return
    lowering.emit("SPLIT_V", [ref.index, lowering.param(x.name + "/sizes", sizes), stored_axis], results,
                  lowering.writer.options("SplitVOptions", numSplits=len(sizes)))


# ---- Pad --------------------------------------------------------------------------------------

def _pads(node: ir.Node, rank: int) -> list[tuple[int, int]] | None:
    """(before, after) per axis, from the pads input (opset 11+) or attribute, with the axes input."""
    if len(node.inputs) > 1:
        values = constant(node.inputs[1])
        if values is None:
            return None
        values = [int(p) for p in values.reshape(-1)]
    else:
        values = attr_ints(node, "pads", [])
    axes_value = optional_input(node, 3)
    if axes_value is not None:
        axes = constant(axes_value)
        if axes is None:
            return None
        axes = [int(a) % rank for a in axes.reshape(-1)]
    else:
        axes = list(range(rank))
    pairs = [(0, 0)] * rank
    for i, a in enumerate(axes):
        pairs[a] = (values[i], values[i + len(axes)])
    return pairs


def _check_pad(node: ir.Node) -> str:
    if node.attributes.get_string("mode", "constant") not in ("constant", "reflect", "edge", "wrap"):
        return f"Pad mode '{node.attributes.get_string('mode', '')}' is not defined"
    if _pads(node, 1 if node.inputs[0].shape is None else len(node.inputs[0].shape)) is None:
        return "pads and axes must be constants"
    return _check_movable(node)


def _source_indices(mode: str, size: int, before: int, after: int) -> np.ndarray:
    """For each output position along one axis, the input position it copies (reflect, edge or wrap)."""
    positions = np.arange(-before, size + after)
    if mode == "edge":
        return np.clip(positions, 0, size - 1)
    if mode == "wrap":
        return positions % size
    period = 2 * (size - 1) if size > 1 else 1  # reflect: ... c b | a b c d | c b a ...
    folded = np.abs(positions) % period
    return np.where(folded < size, folded, period - folded)


@lowers("Pad", check=_check_pad)
def pad(lowering: Lowering, node: ir.Node) -> None:
    """constant: PAD/PADV2 (after a crop for negative pads); reflect, edge and wrap: one GATHER per padded
    axis with the source position of each output element."""
    x, out = node.inputs[0], node.outputs[0]
    shape = lowering.shape(x)
    pairs = _pads(node, len(shape))
    mode = node.attributes.get_string("mode", "constant")
    ref = lowering.get(x)
    if mode != "constant":
        for axis, (before, after) in enumerate(pairs):
            if before == after == 0:
                continue
            source = _source_indices(mode, shape[axis], before, after)
            stored = lowering.writer.shape(ref.index)
            stored[layout.axis(axis, ref.perm)] = len(source)
            index = lowering.compute("GATHER", [ref.index, lowering.param(f"{out.name}/source{axis}", source)],
                                     f"{out.name}/axis{axis}", shape=stored, options=lowering.writer.options(
                                         "GatherOptions", axis=layout.axis(axis, ref.perm)), quant=ref.quant)
            ref = Ref(index, ref.perm, ref.quant)
        lowering.refs[out] = ref
        return
    if any(b < 0 or a < 0 for b, a in pairs):  # negative pads crop
        begin = [max(-pairs[p][0], 0) for p in ref.perm]
        size = [shape[p] - max(-pairs[p][0], 0) - max(-pairs[p][1], 0) for p in ref.perm]
        ref = Ref(lowering.compute("SLICE", [ref.index, lowering.param(out.name + "/crop_begin", begin),
                                             lowering.param(out.name + "/crop_size", size)], out.name + "/cropped",
                                   shape=size), ref.perm, ref.quant)
        pairs = [(max(b, 0), max(a, 0)) for b, a in pairs]
    paddings = lowering.param(out.name + "/paddings", [list(pairs[p]) for p in ref.perm])
    fill = optional_input(node, 2)
    result = lowering.new(out, ref.perm, ref.quant, dtype=lowering.dtype(ref))
    fill_constant = lowering.const(fill) if fill is not None else \
        np.array(node.attributes.get_float("value", 0.0))  # opset < 11: an attribute
    if fill_constant is not None and float(fill_constant.reshape(-1)[0]) == 0.0:
        lowering.emit("PAD", [ref.index, paddings], [result.index])
        return
    if fill_constant is not None:
        value = fill_value(lowering, out.name + "/value", ref, float(fill_constant.reshape(-1)[0]))
    else:
        value = lowering.cast(lowering.get(fill, float_=True), lowering.dtype(ref), fill.name).index
    lowering.emit("PADV2", [ref.index, paddings, value], [result.index])


# ---- Expand, Tile, DepthToSpace, SpaceToDepth, Trilu, Range ---------------------------------

@lowers("Expand", check=_check_movable)
def expand(lowering: Lowering, node: ir.Node) -> None:
    """BROADCAST_TO the output's static shape (numpy alignment: size-1 axes prepended first)."""
    x, out = node.inputs[0], node.outputs[0]
    shape = lowering.shape(out)
    ref = lowering.lifted(x, len(shape), layout.identity(len(shape)))
    if lowering.writer.shape(ref.index) == shape:
        lowering.refs[out] = ref
        return
    result = lowering.new(out, layout.identity(len(shape)), ref.quant, dtype=lowering.dtype(ref))
    lowering.emit("BROADCAST_TO", [ref.index, lowering.param(out.name + "/shape", shape)], [result.index])


@lowers("Tile", check=constant_inputs("repeats", _check_movable))
def tile(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    repeats = [int(r) for r in constant(node.inputs[1]).reshape(-1)]
    ref = lowering.get(x)
    result = lowering.new(out, ref.perm, ref.quant, dtype=lowering.dtype(ref))
    lowering.emit("TILE", [ref.index, lowering.param(out.name + "/multiples", [repeats[p] for p in ref.perm])],
                  [result.index])


def _check_depth_space(node: ir.Node) -> str:
    shape = node.inputs[0].shape
    if shape is None or len(shape) != 4:
        return "only 4-D (NCHW) inputs are supported"
    return _check_movable(node)


@lowers("DepthToSpace", "SpaceToDepth", check=_check_depth_space)
def depth_space(lowering: Lowering, node: ir.Node) -> None:
    """TFLite's NHWC ops are ONNX's DCR order; CRD is a 6-D reshape, transpose and reshape."""
    x, out = node.inputs[0], node.outputs[0]
    block = node.attributes.get_int("blocksize", 1)
    if node.attributes.get_string("mode", "DCR") == "CRD":
        n, c, h, w = lowering.shape(x)
        if node.op_type == "DepthToSpace":  # [N, C/b², b, b, H, W] -> [N, C/b², H, b, W, b]
            split, perm = [n, c // (block * block), block, block, h, w], (0, 1, 4, 2, 5, 3)
        else:  # [N, C, H/b, b, W/b, b] -> [N, C, b, b, H/b, W/b]
            split, perm = [n, c, h // block, block, w // block, block], (0, 1, 3, 5, 2, 4)
        ref = lowering.reshaped(lowering.get(x, layout.identity(4), memory=True), split, x.name + "/crd")
        moved = lowering.transposed(ref, split, perm, x.name + "/crd")
        lowering.refs[out] = lowering.restored(moved, lowering.shape(out), layout.identity(4), out.name)
        return
    ref = lowering.get(x, layout.NHWC)
    op, options = ("DEPTH_TO_SPACE", "DepthToSpaceOptions") if node.op_type == "DepthToSpace" else \
        ("SPACE_TO_DEPTH", "SpaceToDepthOptions")
    result = lowering.new(out, layout.NHWC, ref.quant, dtype=lowering.dtype(ref))
    lowering.emit(op, [ref.index], [result.index], lowering.writer.options(options, blockSize=block))


@lowers("Trilu", check=constant_inputs("k", _check_movable))
def trilu(lowering: Lowering, node: ir.Node) -> None:
    """SELECT_V2 between the input and zeros with a constant triangle mask over the last two axes."""
    x, out = node.inputs[0], node.outputs[0]
    shape = lowering.shape(x)
    k = int(constant(node.inputs[1]).reshape(-1)[0]) if optional_input(node, 1) is not None else 0
    rows, columns = np.indices(shape[-2:])
    keep = columns - rows >= k if node.attributes.get_int("upper", 1) else columns - rows <= k
    ref = lowering.get(x, layout.identity(len(shape)), float_=True)
    mask = lowering.param(out.name + "/mask", keep.reshape([1] * (len(shape) - 2) + list(keep.shape)), "bool")
    zero = lowering.scalar(out.name + "/zero", 0, lowering.dtype(ref))
    result = lowering.new(out, ref.perm)
    lowering.emit("SELECT_V2", [mask, ref.index, zero], [result.index])


@lowers("Range", check=_check_movable)
def range_(lowering: Lowering, node: ir.Node) -> None:
    """Folded to a constant when its inputs are; otherwise RANGE on scalars."""
    out = node.outputs[0]
    values = [constant(v) for v in node.inputs]
    if all(v is not None for v in values):
        start, limit, delta = (v.reshape(()) for v in values)
        lowering.refs[out] = Ref(lowering.constant(out.name, np.arange(start, limit, delta, dtype=values[0].dtype)),
                                 (0,))
        return
    scalars = [lowering.get(v).index if constant(v) is None else lowering.scalar(f"{out.name}/{i}", values[i],
                                                                                   dtypes.of(v))
               for i, v in enumerate(node.inputs)]
    lowering.emit("RANGE", scalars, [lowering.new(out, (0,)).index])
