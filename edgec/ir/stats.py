"""Model statistics for `edgec inspect`: parameters, MACs per operator type, sizes."""
from __future__ import annotations

import math

import onnx_ir as ir


def _numel(shape) -> int | None:
    if shape is None or any(not isinstance(d, int) for d in shape):
        return None
    return math.prod(shape)


def node_macs(node: ir.Node) -> int | None:
    """Multiply-accumulates of one node, where its shapes are known (None otherwise)."""
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
    if node.op_type in ("Gemm", "MatMul"):
        a = node.inputs[0].shape
        if a is None or out_elems is None or not isinstance(a[-1], int):
            return None
        k = a[0] if node.op_type == "Gemm" and node.attributes.get_int("transA", 0) else a[-1]
        return out_elems * k
    return 0


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
