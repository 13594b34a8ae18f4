"""Model statistics for `edgec inspect`: parameters, MACs per operator type, sizes."""
from __future__ import annotations

import math

import onnx_ir as ir

# operators that multiply-accumulate: what an int8 build is for, and what its int8 MAC share counts
RECURRENT = frozenset({"LSTM", "GRU", "RNN"})
MAC_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul", "Einsum", *RECURRENT})


def _numel(shape) -> int | None:
    if shape is None or any(not isinstance(d, int) for d in shape):
        return None
    return math.prod(shape)


def node_macs(node: ir.Node) -> int | None:
    """Multiply-accumulates of one node, where its shapes are known (None otherwise)."""
    if node.op_type in RECURRENT:
        return _recurrent_macs(node)
    out = node.outputs[0] if node.outputs else None
    if out is None or out.shape is None:
        return None
    out_elems = _numel(out.shape)
    if node.op_type in ("Conv", "ConvTranspose") and len(node.inputs) > 1 and node.inputs[1].shape is not None:
        w = node.inputs[1].shape
        if out_elems is None or _numel(w) is None:
            return None
        per_output = math.prod(w[1:])  # (Cin/group) * kh * kw
        if node.op_type == "ConvTranspose":
            x = node.inputs[0].shape
            return None if _numel(x) is None else _numel(x) * math.prod(w[1:])
        return out_elems * per_output
    if node.op_type == "Einsum":
        return _einsum_macs(node)
    if node.op_type in ("Gemm", "MatMul"):
        a = node.inputs[0].shape
        if a is None or out_elems is None or not isinstance(a[-1], int):
            return None
        k = a[0] if node.op_type == "Gemm" and node.attributes.get_int("transA", 0) else a[-1]
        return out_elems * k
    return 0


def _recurrent_macs(node: ir.Node) -> int | None:
    """Per time step and direction, each gate's input and recurrent projections (gates x hidden x
    (input + hidden)), plus an LSTM's three peephole products of the cell state."""
    x, w, r = (node.inputs[i].shape if len(node.inputs) > i and node.inputs[i] is not None else None
               for i in range(3))
    if _numel(x) is None or _numel(w) is None or _numel(r) is None:
        return None
    steps, batch = (x[1], x[0]) if node.attributes.get_int("layout", 0) else (x[0], x[1])
    directions, gated, features = w
    hidden = r[-1]
    peepholes = len(node.inputs) > 7 and node.inputs[7] is not None
    return steps * batch * directions * (gated * (features + hidden) + (3 * hidden if peepholes else 0))


def _einsum_macs(node: ir.Node) -> int | None:
    """One multiply-accumulate per point of the space all of the equation's letters span."""
    inputs, _, _ = node.attributes.get_string("equation", "").replace(" ", "").partition("->")
    sizes: dict[str, int] = {}
    for term, value in zip(inputs.split(","), node.inputs):
        shape = value.shape if value is not None else None
        if shape is None or "." in term or len(term) != len(shape) or _numel(shape) is None:
            return None
        sizes.update(zip(term, shape))
    return math.prod(sizes.values()) if len(node.inputs) > 1 else 0


def parameter_count(model: ir.Model) -> int:
    return sum(
        math.prod(v.const_value.shape) for v in model.graph.initializers.values() if v.const_value is not None
    )


def macs_by_op(model: ir.Model) -> tuple[dict[str, int], bool]:
    """MACs summed per operator type, and whether every node's count was known."""
    totals: dict[str, int] = {}
    complete = True
    for node in model.graph:
        macs = node_macs(node)
        if macs is None:
            complete = False
            continue
        if macs:
            totals[node.op_type] = totals.get(node.op_type, 0) + macs
    return dict(sorted(totals.items(), key=lambda kv: -kv[1])), complete


def macs_per_sample(model: ir.Model) -> tuple[int, bool]:
    """Total MACs for one sample (a symbolic batch counts as 1) on a copy with shapes inferred, and
    whether every node's count was known."""
    import onnx_ir.passes.common as common

    from edgec import ir as eir
    from edgec.errors import UnsupportedError

    per_sample = eir.clone(model)
    try:
        eir.resolve_static_shapes(per_sample)
    except UnsupportedError:
        pass
    common.ShapeInferencePass()(per_sample)
    by_op, complete = macs_by_op(per_sample)
    return sum(by_op.values()), complete
