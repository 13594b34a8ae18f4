"""Sample inputs that follow each input's real shape, dtype and role, and the source model's outputs.

A model input is usually data (an image, a token sequence), but it may be a parameter of an
operator: Gather's indices, Reshape's shape, TopK's k, an RNN's sequence lengths. Random data
there is invalid, so each input's uses in the graph decide how it is made:

* data: seeded noise (floats), small positive integers (never 0: some are divisors), booleans;
* indices: within the size of the dimension they index;
* shapes, sizes, repeats, splits, k, scales, pads, axes and ranges: read from the static shapes of
  the node's input and output;
* sequence lengths: the full length of the sequence;
* variances, and the inputs of Log and Sqrt: positive.

Where no valid value follows from the graph (slice starts, a reduction's axes that the shapes leave
ambiguous, ...), the build asks for the user's samples (--samples FILE.npz) in one line that names
the input.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Callable

import numpy as np
import onnx_ir as ir

from edgec import ir as eir
from edgec.errors import InputError
from edgec.system import first_line
from edgec.ir import runtime
from edgec.package.harness import interface
from edgec.package.harness.errors import HarnessError
from edgec.package.harness.manifest import TensorSpec

SAMPLE_RUNS = 8
# Integer parameters whose valid values do not follow from shapes alone.
PARAMETER_NAMES = frozenset({"axes", "axis", "starts", "ends", "steps", "pads", "repeats", "depth", "k", "K", "split",
                             "shape", "sizes", "scales", "indices", "start", "limit", "delta", "roi", "perm", "blocksize"})
SAMPLES_HINT = "pass --samples FILE.npz with real values for it (see the README: sample files)"


def model_interface(model: ir.Model) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The model's inputs (initializers aside) and outputs, each with its batch axis where every one has one."""
    inputs = eir.io_specs(_data_inputs(model))
    outputs = eir.io_specs(model.graph.outputs)
    declared = [dataclasses.replace(spec, shape=_declared_dims(v)) for spec, v in zip(inputs, _data_inputs(model))]
    axes = interface.find_batch_axes(declared, outputs) or {}
    for spec in inputs + outputs:
        spec.batch_axis = axes.get(spec.name)
    return inputs, outputs


def _data_inputs(model: ir.Model) -> list[ir.Value]:
    initializers = set(model.graph.initializers)
    return [v for v in model.graph.inputs if v.name not in initializers]


def _declared_dims(value: ir.Value) -> list | None:
    """The input's dimensions as the model declared them: a batch that --input-shape fixed is still
    found where the outputs carry it (a CRNN's [time, batch, classes])."""
    shape = value.meta.get(eir.DECLARED_SHAPE, value.shape)
    return None if shape is None else [d if isinstance(d, int) else str(d) for d in shape]


def with_shapes_of(model: ir.Model, specs: list[TensorSpec]) -> list[TensorSpec]:
    """`specs` with the model's current shapes (static after --input-shape), keeping their batch axes."""
    current = {s.name: s for s in eir.io_specs([*model.graph.inputs, *model.graph.outputs])}
    return [TensorSpec(s.name, current[s.name].shape, s.dtype, batch_axis=s.batch_axis) for s in specs]


def split(specs: list[TensorSpec], arrays: dict, source: str, dynamic_batch: int | None = None) -> interface.Runs:
    """The runs of the user's arrays (interface.split), each checked against the model's inputs; a
    refusal names the file the arrays came from."""
    try:
        runs = interface.split(specs, arrays, dynamic_batch)
        for feed in runs:
            interface.check_feed(specs, feed)
    except HarnessError as exc:
        shapes = ", ".join(f"{k} {list(np.shape(v))}" for k, v in arrays.items())
        raise InputError(f"{source} ({shapes}): {exc}") from None
    return runs


# --------------------------------------------------------------------------- roles


def _dims(value: ir.Value | None) -> list | None:
    if value is None or value.shape is None or not all(isinstance(d, int) for d in value.shape):
        return None
    return list(value.shape)


def _dim(value: ir.Value | None, axis: int) -> int | None:
    """One static dimension of a value (None when unknown or symbolic)."""
    if value is None or value.shape is None or not -len(value.shape) <= axis < len(value.shape):
        return None
    size = value.shape[axis]
    return size if isinstance(size, int) else None


def _attr(node: ir.Node, name: str, default: int) -> int:
    return node.attributes.get_int(name, default)


def _indices(node, shape, rng):
    size = _dim(node.inputs[0], _attr(node, "axis", 0))
    return rng.integers(0, size, shape) if size else None


def _nd_indices(node, shape, rng):
    data = _dims(node.inputs[0])
    if data is None or not shape or shape[-1] > len(data) - _attr(node, "batch_dims", 0):
        return None
    columns = [rng.integers(0, size, shape[:-1]) for size in data[_attr(node, "batch_dims", 0):][: shape[-1]]]
    return np.stack(columns, -1)


def _resized_axes(node: ir.Node, rank: int) -> list[int]:
    """The axes a Resize's scales or sizes name: its `axes` attribute, else every axis."""
    return [a % rank for a in node.attributes.get_ints("axes", list(range(rank)))]


def _output_shape(node, shape, rng):
    out = _dims(node.outputs[0])
    if out is not None and node.op_type == "Resize":
        out = [out[a] for a in _resized_axes(node, len(out))]
    return np.array(out) if out is not None else None


def _k(node, shape, rng):
    k = _dim(node.outputs[0], _attr(node, "axis", -1))
    return None if k is None else np.array([k])


def _repeats(node, shape, rng):
    into, out = _dims(node.inputs[0]), _dims(node.outputs[0])
    if into is None or out is None or any(i == 0 or o % i for i, o in zip(into, out)):
        return None
    return np.array([o // i for i, o in zip(into, out)])


def _split_sizes(node, shape, rng):
    sizes = [_dim(o, _attr(node, "axis", 0)) for o in node.outputs]
    return None if None in sizes else np.array(sizes)


def _scales(node, shape, rng):
    into, out = _dims(node.inputs[0]), _dims(node.outputs[0])
    if into is None or out is None or 0 in into:
        return None
    return np.array([out[a] / into[a] for a in _resized_axes(node, len(into))])


def _sequence_lengths(node, shape, rng):
    length = _dim(node.inputs[0], 1 if _attr(node, "layout", 0) else 0)
    return None if length is None else np.full(shape, length)


def _positive(node, shape, rng):
    return np.abs(rng.standard_normal(shape)) + 0.1


def _shape_after(node: ir.Node, into: list[int], axes: tuple[int, ...]) -> list[int] | None:
    """The output shape of Unsqueeze, Squeeze or a Reduce* on `into` with these axes."""
    if node.op_type == "Unsqueeze":
        dims = iter(into)
        return [1 if i in axes else next(dims) for i in range(len(into) + len(axes))]
    if node.op_type == "Squeeze" and any(into[a] != 1 for a in axes):
        return None
    if node.op_type != "Squeeze" and _attr(node, "keepdims", 1):
        return [1 if i in axes else d for i, d in enumerate(into)]
    return [d for i, d in enumerate(into) if i not in axes]


def _axes(node, shape, rng):
    """The axes that turn the input's static shape into the output's: for a Reduce*, only when one set
    does; for Squeeze and Unsqueeze any set does, since the data stays the same."""
    into, out = _dims(node.inputs[0]), _dims(node.outputs[0])
    if into is None or out is None or len(shape) != 1:
        return None
    if shape[0] == 0:
        return np.zeros(0)
    rank = len(out) if node.op_type == "Unsqueeze" else len(into)
    found = [axes for axes in itertools.combinations(range(rank), shape[0]) if _shape_after(node, into, axes) == out]
    if not found or (node.op_type.startswith("Reduce") and len(found) > 1):
        return None
    return np.array(found[0])


def _pads(node, shape, rng):
    """Pad at the end of each axis by what the output adds (any split of it is valid)."""
    into, out = _dims(node.inputs[0]), _dims(node.outputs[0])
    if into is None or out is None or shape != [2 * len(into)]:
        return None
    return np.array([0] * len(into) + [o - i for i, o in zip(into, out)])


def _range_limit(node, shape, rng):
    size = _dim(node.outputs[0], 0)
    return None if size is None else np.full(shape, size)


# (operator, formal input name) -> how to make a valid value; None from it means: no value is known.
ROLES: dict[tuple[str, str], Callable] = {
    **{(op, "indices"): _indices for op in ("Gather", "GatherElements", "ScatterElements")},
    **{(op, "indices"): _nd_indices for op in ("GatherND", "ScatterND")},
    **{(op, formal): _output_shape for op, formal in (("Reshape", "shape"), ("Expand", "shape"),
                                                     ("ConstantOfShape", "input"), ("Resize", "sizes"))},
    ("TopK", "K"): _k, ("Tile", "repeats"): _repeats, ("Split", "split"): _split_sizes, ("Resize", "scales"): _scales,
    **{(op, "sequence_lens"): _sequence_lengths for op in ("LSTM", "GRU", "RNN")},
    **{(op, formal): _positive for op, formal in (("BatchNormalization", "input_var"), ("Log", "input"),
                                                  ("Sqrt", "X"))},
    **{(op, "axes"): _axes for op in ("Squeeze", "Unsqueeze", "ReduceMax", "ReduceMin", "ReduceMean", "ReduceSum",
                                      "ReduceProd", "ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp",
                                      "ReduceSumSquare")},
    ("CumSum", "axis"): lambda node, shape, rng: np.zeros(shape),  # every axis is valid
    ("Trilu", "k"): lambda node, shape, rng: np.zeros(shape),  # every diagonal is valid
    ("Pad", "pads"): _pads,
    ("Range", "start"): lambda node, shape, rng: np.zeros(shape),
    ("Range", "delta"): lambda node, shape, rng: np.ones(shape),
    ("Range", "limit"): _range_limit,
}


def _formal_name(node: ir.Node, index: int, opset: int) -> str:
    import onnx.defs

    try:
        formals = onnx.defs.get_schema(node.op_type, opset, node.domain).inputs
    except onnx.defs.SchemaError:
        return ""
    return formals[min(index, len(formals) - 1)].name if formals else ""


def _data(dtype: np.dtype, shape: list[int], rng: np.random.Generator) -> np.ndarray:
    if dtype.kind == "f":
        return rng.standard_normal(shape)
    if dtype.kind in "iu":
        return rng.integers(1, 8, shape)  # small, and never 0: an integer input may be a divisor
    if dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    return None


def generate(model: ir.Model, value: ir.Value, runs: int, rng: np.random.Generator) -> np.ndarray:
    """`runs` valid values for the model input `value`, stacked along a new first axis."""
    dtype = np.dtype(eir.numpy_dtype(value)) if value.dtype is not None else None
    if value.shape is None or dtype is None:
        raise InputError(f"input '{value.name}' has no known shape or type: fix it with --input-shape "
                         f"{value.name}:D1,D2,... or {SAMPLES_HINT}")
    shape = [d if isinstance(d, int) else 1 for d in value.shape]
    opset = model.opset_imports.get("", 17)
    makers = []
    for use in value.uses():
        formal = _formal_name(use.node, use.idx, opset)
        maker = ROLES.get((use.node.op_type, formal))
        if maker is None and formal in PARAMETER_NAMES:
            raise InputError(f"input '{value.name}' is {use.node.op_type}'s {formal}, whose valid values edgec "
                             f"cannot tell from the graph: {SAMPLES_HINT}")
        if maker is not None:
            makers.append((maker, use.node, formal))
    values = []
    for _ in range(runs):
        made = makers[0][0](makers[0][1], shape, rng) if makers else _data(dtype, shape, rng)
        if made is None or np.shape(made) != tuple(shape):
            what = f"{makers[0][1].op_type}'s {makers[0][2]}" if makers else f"of type {dtype}"
            raise InputError(f"input '{value.name}' is {what}, and its valid values do not follow from the "
                             f"graph's shapes: {SAMPLES_HINT}")
        values.append(np.asarray(made).astype(dtype))
    return np.stack(values)


# --------------------------------------------------------------------------- samples and references


def sample_inputs(model: ir.Model, specs: list[TensorSpec], given: interface.Runs | None,
                  runs: int = SAMPLE_RUNS) -> dict[str, np.ndarray]:
    """Stacked runs for every input: the first `runs` of the user's data where given, generated otherwise."""
    rng = np.random.default_rng(0)
    values = {v.name: v for v in model.graph.inputs}
    if given is not None:
        feeds = given.feeds[:runs]
        return {s.name: np.stack([feed[s.name] for feed in feeds]) for s in specs}
    return {s.name: generate(model, values[s.name], runs, rng) for s in specs}


def reference_outputs(model: ir.Model | eir.Snapshot, inputs: list[TensorSpec], outputs: list[TensorSpec],
                      arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs for stacked runs, from onnxruntime without graph optimizations (the reference
    is the model as written; a session also creates faster without them)."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, RuntimeException

    session = runtime.session(model)
    try:
        return runtime.run_all(session, interface.split(inputs, arrays), outputs)
    except (Fail, InvalidArgument, RuntimeException) as exc:
        raise InputError(f"the source model does not run on its sample inputs in onnxruntime ({first_line(exc)}): "
                         f"check the model, or {SAMPLES_HINT}") from None
