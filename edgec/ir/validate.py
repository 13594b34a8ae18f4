"""Checks a model file passes before any work is spent on it: each failure is one line, exit 2.

onnx.checker's default mode (its full mode also runs shape inference, which rejects models that
onnxruntime loads), then edgec's own linear-time checks of what the later stages rely on: names
defined once, every input defined, no cycle, initializers of their declared size, versions edgec
can lower, and model inputs of positive size. The memory a build's sample runs would take is
checked against the machine's before anything is allocated.
"""
from __future__ import annotations

import math
from pathlib import Path

import onnx

from edgec.errors import InputError, UnsupportedError
from edgec.package.harness.interface import memory_limit

MIN_OPSET = 1  # onnx's version converter upgrades from any opset (edgec/ir/opset.py)
MIN_IR_VERSION = 3


# What onnx.checker refuses but onnxruntime loads, and edgec's passes handle: nodes out of order (the
# build sorts them), a typed input or output without a shape field (exporters write them), and an IR-3
# initializer that is not also a graph input.
CHECKER_TOLERATED = ("topologically sorted", "is not output of any previous nodes",
                     "Field 'shape' of 'type' is required but missing", "in initializer but not in graph input")


def check_proto(proto: onnx.ModelProto, path: Path) -> None:
    """Refuse a malformed model proto (external data not loaded) with one line naming the problem."""
    _check_versions(proto, path)
    try:
        # by path, so that external data resolves (and must stay) inside the model's own folder
        onnx.checker.check_model(str(path))
    except (onnx.checker.ValidationError, ValueError) as exc:
        problem = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not any(tolerated in problem for tolerated in CHECKER_TOLERATED):
            raise InputError(f"{path} is not a valid ONNX model: {problem}") from None
        # an input nothing defines, or a cycle: our own check below says which
    _check_graph(proto.graph, path, outer=frozenset())
    _check_inputs(proto.graph, path)


def _check_versions(proto: onnx.ModelProto, path: Path) -> None:
    newest_ir = onnx.IR_VERSION
    if not MIN_IR_VERSION <= proto.ir_version <= newest_ir:
        raise UnsupportedError(f"{path} has ONNX IR version {proto.ir_version}; edgec reads IR versions "
                               f"{MIN_IR_VERSION} to {newest_ir}: re-export the model")
    newest = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and not MIN_OPSET <= opset.version <= newest:
            raise UnsupportedError(f"{path} uses opset {opset.version}; edgec takes opsets {MIN_OPSET} to {newest}: "
                                   "re-export the model with one of those")


def _check_graph(graph: onnx.GraphProto, path: Path, outer: frozenset[str]) -> None:
    """Unique names, every input defined, no cycle (Kahn's order over the nodes), initializer sizes."""
    defined: dict[str, str] = {}

    def define(name: str, what: str) -> None:
        _check_name(name, path)
        if name in defined:
            raise InputError(f"{path} is not a valid ONNX model: the name '{name}' is defined twice "
                             f"({defined[name]} and {what})")
        defined[name] = what

    for tensor in graph.initializer:
        define(tensor.name, "an initializer")
        _check_initializer(tensor, path)
    initializers = set(defined)
    for value in graph.input:
        if value.name not in initializers:
            define(value.name, "a graph input")
    producers: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        _check_name(node.name, path)
        for name in node.output:
            if name:
                define(name, f"output of node '{node.name or node.op_type}'")
                producers[name] = index
    available = outer | set(defined)
    for value in graph.output:
        if value.name not in available:
            raise InputError(f"{path} is not a valid ONNX model: graph output '{value.name}' is never computed")
    _check_acyclic(graph, path, producers, available)
    for node in graph.node:
        for attribute in node.attribute:
            for subgraph in [attribute.g, *attribute.graphs] if attribute.type in (5, 10) else []:
                _check_graph(subgraph, path, frozenset(available))


def _check_name(name: str | bytes, path: Path) -> None:
    """protobuf hands back a string field that is not UTF-8 as bytes (or with surrogates)."""
    try:
        text = name if isinstance(name, str) else None
        if text is None or text.encode("utf-8") is None:
            raise UnicodeError
    except UnicodeError:
        raise InputError(f"{path} is not a valid ONNX model: the name {name!r} is not UTF-8 text") from None


def _check_acyclic(graph: onnx.GraphProto, path: Path, producers: dict[str, int], available: set[str]) -> None:
    waiting = [0] * len(graph.node)
    users: dict[int, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in (*node.input, *_captured(node)):
            if not name:
                continue
            if name not in available:
                raise InputError(f"{path} is not a valid ONNX model: node '{node.name or node.op_type}' reads "
                                 f"'{name}', which nothing defines")
            if name in producers:
                waiting[index] += 1
                users.setdefault(producers[name], []).append(index)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    done = 0
    while ready:
        index = ready.pop()
        done += 1
        for user in users.get(index, ()):
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    if done < len(graph.node):
        stuck = next(graph.node[i] for i, count in enumerate(waiting) if count)
        raise InputError(f"{path} is not a valid ONNX model: its graph has a cycle through node "
                         f"'{stuck.name or stuck.op_type}'")


def _captured(node: onnx.NodeProto) -> set[str]:
    """Names a node's subgraphs read from the enclosing graph (If/Loop/Scan bodies): a dependency too."""
    names: set[str] = set()
    for attribute in node.attribute:
        for subgraph in [attribute.g, *attribute.graphs] if attribute.type in (5, 10) else []:
            local = {t.name for t in subgraph.initializer} | {v.name for v in subgraph.input}
            local |= {name for n in subgraph.node for name in n.output}
            for inner in subgraph.node:
                names |= {name for name in inner.input if name and name not in local}
                names |= _captured(inner) - local
    return names


def _check_initializer(tensor: onnx.TensorProto, path: Path) -> None:
    if any(d < 0 for d in tensor.dims):
        raise InputError(f"{path}: initializer '{tensor.name}' has a negative dimension {list(tensor.dims)}")
    if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.data_type == onnx.TensorProto.STRING:
        return  # external data is checked where it is read; strings have no fixed size
    count = math.prod(tensor.dims)
    itemsize = _itemsize(tensor.data_type)
    if tensor.HasField("raw_data") and itemsize:
        expected = count * itemsize
        if len(tensor.raw_data) != expected:
            raise InputError(f"{path}: initializer '{tensor.name}' holds {len(tensor.raw_data)} bytes, but its "
                             f"shape {list(tensor.dims)} needs {expected}: the file is corrupt")


def _itemsize(data_type: int) -> int | None:
    """Bytes per element of an ONNX type stored whole-byte in raw_data (None for sub-byte and string types)."""
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(data_type)
    except (KeyError, ValueError, TypeError):
        return None
    bits = {onnx.TensorProto.INT4, onnx.TensorProto.UINT4}
    if data_type in bits or getattr(onnx.TensorProto, "FLOAT4E2M1", -1) == data_type:
        return None
    return dtype.itemsize


def _check_inputs(graph: onnx.GraphProto, path: Path) -> None:
    initializers = {t.name for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in initializers]
    if not inputs:
        raise UnsupportedError(f"{path} has no inputs: it computes a constant, there is nothing to deploy")
    for value in inputs:
        if value.name in {o.name for o in graph.output}:
            raise InputError(f"{path}: '{value.name}' is both an input and an output of the graph")
        shape = value.type.tensor_type.shape if value.type.HasField("tensor_type") else None
        for axis, dim in enumerate(shape.dim if shape is not None else ()):
            if dim.HasField("dim_value") and dim.dim_value < 0:  # 0 is valid: an empty axes list
                raise InputError(f"{path}: input '{value.name}' has dimension {dim.dim_value} at axis {axis}; "
                                 "a model input needs a size of 0 or more (fix it with --input-shape)")


def check_memory(specs, runs: int, what: str = "the sample runs") -> None:
    """Refuse inputs whose `runs` samples would take more than half the memory available now."""
    import numpy as np

    per_run = 0
    for spec in specs:
        if spec.shape is not None and all(isinstance(d, int) for d in spec.shape):
            per_run += math.prod(spec.shape) * np.dtype(spec.dtype).itemsize
    need, limit = per_run * runs, memory_limit()
    if need > limit:
        raise InputError(f"{what} would take {need / 2**30:.1f} GiB ({runs} x {per_run / 2**30:.2f} GiB of inputs), "
                         f"more than the {limit / 2**30:.1f} GiB edgec allows itself here: check the input shapes "
                         "(--input-shape)")
