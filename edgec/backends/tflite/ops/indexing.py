"""Indexing: Gather (any axis), GatherElements, GatherND, ScatterND, ScatterElements and OneHot, with constant
or computed indices. ONNX counts negative indices from the end: constant ones are normalized at build
time, computed ones by a FLOOR_MOD by the indexed size (exact for every valid index)."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes, layout
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import constant


def _check(node: ir.Node) -> str:
    return dtypes.unrepresentable([*node.inputs, *node.outputs])


def indices_tensor(lowering: Lowering, value: ir.Value, sizes, name: str) -> int:
    """Indices as an int32/int64 tensor with negative ones wrapped by `sizes` (broadcast along the last axis)."""
    data = constant(value)
    if data is not None:
        data = data.astype(np.int64)
        return lowering.param(name, np.where(data < 0, data + np.asarray(sizes), data).astype(np.int32))
    ref = lowering.get(value, layout.identity(len(lowering.shape(value))))
    bound = lowering.param(name + "/sizes", np.asarray(sizes), lowering.dtype(ref))
    return lowering.compute("FLOOR_MOD", [ref.index, bound], name, shape=lowering.writer.shape(ref.index))


def coordinates(lowering: Lowering, columns: list, shape, name: str) -> int:
    """[*shape, len(columns)] int32 coordinates: each column a constant array of `shape` or an index tensor."""
    if all(isinstance(c, np.ndarray) for c in columns):
        return lowering.param(name, np.stack(columns, axis=-1).astype(np.int32))
    pieces = []
    for i, column in enumerate(columns):
        if isinstance(column, np.ndarray):
            pieces.append(lowering.param(f"{name}/column{i}", column[..., None].astype(np.int32)))
            continue
        column = Ref(column, layout.identity(len(shape)))
        as_int32 = lowering.cast(column, "int32", f"{name}/column{i}")
        pieces.append(lowering.restored(as_int32, [*shape, 1], layout.identity(len(shape) + 1),
                                        f"{name}/column{i}/1").index)
    return lowering.compute("CONCATENATION", pieces, name, shape=[*shape, len(columns)], dtype="int32",
                            options=lowering.writer.options("ConcatenationOptions", axis=len(shape)))


@lowers("Gather", check=_check)
def gather(lowering: Lowering, node: ir.Node) -> None:
    data, indices = node.inputs
    out = node.outputs[0]
    shape = lowering.shape(data)
    axis = node.attributes.get_int("axis", 0) % len(shape)
    progression = _progression(constant(indices), shape[axis])
    if progression is not None:
        _strided_gather(lowering, data, out, axis, *progression)
        return
    ref = lowering.get(data, layout.identity(len(shape)))
    index = indices_tensor(lowering, indices, shape[axis], out.name + "/indices")
    result = lowering.new(out, layout.identity(len(lowering.shape(out))), ref.quant, dtype=lowering.dtype(ref))
    lowering.emit("GATHER", [ref.index, index], [result.index], lowering.writer.options("GatherOptions", axis=axis))


def _progression(indices: np.ndarray | None, size: int) -> tuple[int, int, int, bool] | None:
    """(start, stop, step, scalar) when constant indices are an increasing arithmetic progression (or one index)."""
    if indices is None or indices.ndim > 1:
        return None
    wrapped = np.where(indices < 0, indices + size, indices).astype(np.int64).reshape(-1)
    if wrapped.size == 0 or wrapped.min() < 0 or wrapped.max() >= size:
        return None
    step = int(wrapped[1] - wrapped[0]) if wrapped.size > 1 else 1
    if step <= 0 or not np.array_equal(wrapped, wrapped[0] + step * np.arange(wrapped.size)):
        return None
    return int(wrapped[0]), int(wrapped[-1]) + 1, step, indices.ndim == 0


def _strided_gather(lowering: Lowering, data: ir.Value, out: ir.Value, axis: int, start: int, stop: int, step: int,
                    scalar: bool) -> None:
    """Gather of constant indices in arithmetic progression: a SLICE (step 1, which XNNPACK runs) or STRIDED_SLICE
    of the stored axis, the data keeping its storage order; a scalar index then drops the axis (a RESHAPE)."""
    ref = lowering.get(data)
    stored_axis = layout.axis(axis, ref.perm)
    stored = lowering.writer.shape(ref.index)
    begin = [start if i == stored_axis else 0 for i in range(len(stored))]
    taken = list(stored)
    taken[stored_axis] = len(range(start, stop, step))
    if step == 1:
        piece = lowering.compute("SLICE", [ref.index, lowering.param(out.name + "/begin", begin),
                                           lowering.param(out.name + "/size", taken)], out.name + "/slice",
                                 shape=taken, quant=ref.quant)
    else:
        end = [stop if i == stored_axis else d for i, d in enumerate(stored)]
        strides = [step if i == stored_axis else 1 for i in range(len(stored))]
        piece = lowering.compute("STRIDED_SLICE", [ref.index, lowering.param(out.name + "/begin", begin),
                                                   lowering.param(out.name + "/end", end),
                                                   lowering.param(out.name + "/strides", strides)],
                                 out.name + "/slice", shape=taken, quant=ref.quant,
                                 options=lowering.writer.options("StridedSliceOptions"))
    if not scalar:
        lowering.refs[out] = Ref(piece, ref.perm, ref.quant)
        return
    perm = tuple(p - (p > axis) for p in ref.perm if p != axis)
    kept = [d for i, d in enumerate(taken) if i != stored_axis]
    lowering.refs[out] = lowering.restored(Ref(piece, ref.perm, ref.quant), kept, perm, out.name)


def _element_columns(lowering: Lowering, node: ir.Node, name: str) -> tuple[list, list[int]]:
    """GatherElements/ScatterElements coordinates: the position itself on every axis but `axis`."""
    data, indices = node.inputs[0], node.inputs[1]
    shape, index_shape = lowering.shape(data), lowering.shape(indices)
    axis = node.attributes.get_int("axis", 0) % len(shape)
    columns = list(np.indices(index_shape)) if index_shape else []
    values = constant(indices)
    columns[axis] = indices_tensor(lowering, indices, shape[axis], name + "/indices") if values is None else \
        np.where(values < 0, values + shape[axis], values)
    return columns, index_shape


@lowers("GatherElements", check=_check)
def gather_elements(lowering: Lowering, node: ir.Node) -> None:
    out = node.outputs[0]
    columns, index_shape = _element_columns(lowering, node, out.name)
    ref = lowering.get(node.inputs[0], layout.identity(len(lowering.shape(node.inputs[0]))))
    coords = coordinates(lowering, columns, index_shape, out.name + "/coordinates")
    result = lowering.new(out, layout.identity(len(index_shape)), ref.quant, dtype=lowering.dtype(ref))
    lowering.emit("GATHER_ND", [ref.index, coords], [result.index])


def _nd_coordinates(lowering: Lowering, data: ir.Value, indices: ir.Value, batch_dims: int, name: str) -> int:
    """GatherND/ScatterND coordinates: the batch positions first, then the (wrapped) indices."""
    shape, index_shape = lowering.shape(data), lowering.shape(indices)
    depth = index_shape[-1]
    wrapped = indices_tensor(lowering, indices, shape[batch_dims:batch_dims + depth], name + "/indices")
    if not batch_dims:
        return wrapped
    batch = list(np.indices(index_shape[:-1])[:batch_dims])
    values = constant(indices)
    if values is not None:
        values = np.where(values < 0, values + np.asarray(shape[batch_dims:batch_dims + depth]), values)
        return coordinates(lowering, batch + [values[..., i] for i in range(depth)], index_shape[:-1], name)
    columns = []
    for i in range(depth):
        size = [*index_shape[:-1], 1]
        column = lowering.compute("SLICE", [wrapped, lowering.param(f"{name}/begin{i}", [0] * (len(size) - 1) + [i]),
                                            lowering.param(f"{name}/size{i}", size)], f"{name}/column{i}", shape=size)
        columns.append(lowering.restored(Ref(column, layout.identity(len(size))), index_shape[:-1],
                                         layout.identity(len(size) - 1), f"{name}/column{i}/flat").index)
    return coordinates(lowering, batch + columns, index_shape[:-1], name)


@lowers("GatherND", check=_check)
def gather_nd(lowering: Lowering, node: ir.Node) -> None:
    data, indices = node.inputs
    out = node.outputs[0]
    ref = lowering.get(data, layout.identity(len(lowering.shape(data))))
    coords = _nd_coordinates(lowering, data, indices, node.attributes.get_int("batch_dims", 0), out.name + "/coords")
    result = lowering.new(out, layout.identity(len(lowering.shape(out))), ref.quant, dtype=lowering.dtype(ref))
    lowering.emit("GATHER_ND", [ref.index, coords], [result.index])


def _check_scatter(node: ir.Node) -> str:
    if node.attributes.get_string("reduction", "none") not in ("none", "add"):
        return f"reduction '{node.attributes.get_string('reduction', '')}' has no TFLite scatter"
    return dtypes.refusal("SCATTER_ND", dtypes.of(node.inputs[0]))


def _scatter(lowering: Lowering, node: ir.Node, coords: int, updates: ir.Value) -> None:
    """SCATTER_ND writes updates into zeros (summing duplicates): 'add' adds that to the data; 'none' selects
    it where a position was written (ONNX leaves duplicate positions undefined)."""
    data, out = node.inputs[0], node.outputs[0]
    shape = lowering.shape(data)
    ref = lowering.get(data, layout.identity(len(shape)), float_=True)
    dtype = lowering.dtype(ref)
    update_ref = lowering.get(updates, layout.identity(len(lowering.shape(updates))), float_=True)
    update_index = lowering.cast(update_ref, dtype, updates.name).index
    target = lowering.param(out.name + "/shape", shape)
    written = lowering.compute("SCATTER_ND", [coords, update_index, target], out.name + "/written", shape=shape)
    if node.attributes.get_string("reduction", "none") == "add":
        lowering.emit("ADD", [ref.index, written], [lowering.new(out, ref.perm).index])
        return
    ones = lowering.param(out.name + "/ones", np.ones(lowering.shape(updates), np.int32))
    hits = lowering.compute("SCATTER_ND", [coords, ones, target], out.name + "/hits", shape=shape, dtype="int32")
    mask = lowering.compute("GREATER", [hits, lowering.scalar(out.name + "/zero", 0, "int32")], out.name + "/mask",
                            dtype="bool")
    lowering.emit("SELECT_V2", [mask, written, ref.index], [lowering.new(out, ref.perm).index])


@lowers("ScatterND", check=_check_scatter)
def scatter_nd(lowering: Lowering, node: ir.Node) -> None:
    data, indices, updates = node.inputs
    _scatter(lowering, node, _nd_coordinates(lowering, data, indices, 0, node.outputs[0].name + "/coords"), updates)


@lowers("ScatterElements", check=_check_scatter)
def scatter_elements(lowering: Lowering, node: ir.Node) -> None:
    columns, index_shape = _element_columns(lowering, node, node.outputs[0].name)
    coords = coordinates(lowering, columns, index_shape, node.outputs[0].name + "/coordinates")
    _scatter(lowering, node, coords, node.inputs[2])


def _check_one_hot(node: ir.Node) -> str:
    if constant(node.inputs[1]) is None or constant(node.inputs[2]) is None:
        return "depth and values must be constants"
    return dtypes.refusal("ONE_HOT", dtypes.of(node.outputs[0]))


@lowers("OneHot", check=_check_one_hot)
def one_hot(lowering: Lowering, node: ir.Node) -> None:
    """ONE_HOT; a negative index counts from the end (index + depth), one outside [-depth, depth) is all off."""
    indices, out = node.inputs[0], node.outputs[0]
    depth = int(constant(node.inputs[1]).reshape(-1)[0])
    off, on = constant(node.inputs[2]).reshape(-1)[:2]
    rank = len(lowering.shape(indices))
    ref = lowering.cast(lowering.get(indices, layout.identity(rank), float_=True), "int32", indices.name)
    negative = lowering.compute("LESS", [ref.index, lowering.scalar(out.name + "/zero", 0, "int32")],
                                out.name + "/negative", dtype="bool")
    shifted = lowering.compute("ADD", [ref.index, lowering.scalar(out.name + "/depth", depth, "int32")],
                               out.name + "/shifted")
    index = lowering.compute("SELECT_V2", [negative, shifted, ref.index], out.name + "/index")
    dtype = dtypes.of(out)
    result = lowering.new(out, layout.identity(rank + 1))
    lowering.emit("ONE_HOT", [index, lowering.scalar(out.name + "/depth_value", depth, "int32"),
                              lowering.scalar(out.name + "/on", on, dtype),
                              lowering.scalar(out.name + "/off", off, dtype)],
                  [result.index], lowering.writer.options("OneHotOptions",
                                                     axis=node.attributes.get_int("axis", -1) % (rank + 1)))
