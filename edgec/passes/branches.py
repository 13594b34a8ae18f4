"""An If whose branches are cheap and cannot fail, computed both ways and selected with Where.

Streaming models choose their state with an If: a reset flag picks zeros or the state fed back
(the corpus speaker encoder's `If(reset)` between `zeros_like(h0)` and `h0`). Static-graph runtimes
without control flow (TFLite's builtins, TVM's importer) run the same choice as a Where over both
branches' results. That is exact where both branches give tensors of one dtype and one static shape,
and safe where no branch operator can fail on data the branch was not meant to see (an index out of
range, a shape that does not fit): the branch not taken is computed too. Other Ifs stay, and the
target refuses them with the `--const-input` hint.
"""
from __future__ import annotations

import logging

import onnx_ir as ir

logger = logging.getLogger(__name__)

# operators that compute a result from any input of the right dtype and static shape: no index, no
# reshape, no division
SAFE_OPS = frozenset({
    "Identity", "Constant", "ConstantOfShape", "Cast", "CastLike", "Add", "Sub", "Mul", "Neg", "Abs", "Relu",
    "Sigmoid", "Tanh", "Where", "Not", "And", "Or", "Equal", "Less", "Greater", "Max", "Min", "Clip",
    "Transpose", "Concat", "Shape", "Size",
})
MAX_BRANCH_NODES = 64
BRANCHES = ("then_branch", "else_branch")


def _static(value: ir.Value) -> tuple[int, ...] | None:
    shape = value.shape
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return tuple(shape)


def why_not_selectable(node: ir.Node) -> str:
    """'' when the If can become a Where over both branches, else the reason."""
    graphs = [node.attributes[name].as_graph() for name in BRANCHES]
    for graph in graphs:
        if len(graph) > MAX_BRANCH_NODES:
            return f"a branch has {len(graph)} nodes (limit {MAX_BRANCH_NODES})"
        unsafe = sorted({n.op_type for n in graph if n.op_type not in SAFE_OPS or n.domain not in ("", "ai.onnx")})
        if unsafe:
            return f"a branch computes {', '.join(unsafe)}, which can fail on the branch not taken"
    for then_out, else_out, out in zip(graphs[0].outputs, graphs[1].outputs, node.outputs):
        if then_out.dtype != else_out.dtype or _static(then_out) is None or _static(then_out) != _static(else_out):
            return f"its branches give '{out.name}' different or unknown dtypes or shapes"
    if _static(node.inputs[0]) not in ((), (1,)):
        return "its condition's shape is not known to be one element"
    return ""


def _inline(graph: ir.Graph, node: ir.Node, branch: ir.Graph, prefix: str) -> list[ir.Value]:
    """Move `branch`'s initializers and nodes into `graph` before `node`, renamed under `prefix`; its outputs."""
    outputs = list(branch.outputs)
    branch.outputs.clear()  # a value may be an output and an initializer: the branch lets go of it as both
    for name, value in list(branch.initializers.items()):
        branch.initializers.pop(name)
        value.name = f"{prefix}/{name}"
        graph.register_initializer(value)
    for inner in list(branch):
        branch.remove(inner)
        inner.name = f"{prefix}/{inner.name}"
        for out in inner.outputs:
            out.name = f"{prefix}/{out.name}"
        graph.insert_before(node, inner)
    return outputs


def _select(graph: ir.Graph, node: ir.Node) -> None:
    condition = node.inputs[0]
    if _static(condition) == (1,) and any(_static(out) == () for out in node.outputs):
        shape = ir.Value(name=f"{node.name}/scalar", const_value=ir.tensor([], dtype=ir.DataType.INT64))
        graph.register_initializer(shape)
        reshape = ir.node("Reshape", [condition, shape], name=f"{node.name}/condition")
        graph.insert_before(node, reshape)
        condition = reshape.outputs[0]
    taken, not_taken = (_inline(graph, node, node.attributes[name].as_graph(), f"{node.name}/{name}")
                        for name in BRANCHES)
    selected = []
    for index, (then_out, else_out) in enumerate(zip(taken, not_taken)):
        where = ir.node("Where", [condition, then_out, else_out], name=f"{node.name}/select_{index}")
        graph.insert_before(node, where)
        result = where.outputs[0]
        result.dtype, result.shape = then_out.dtype, ir.Shape(_static(then_out))
        selected.append(result)
    names = [out.name for out in node.outputs]
    ir.convenience.replace_all_uses_with(node.outputs, selected, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    for result, name in zip(selected, names):
        result.name = name


class SelectBranchesPass(ir.passes.InPlacePass):
    """Every main-graph If that `why_not_selectable` accepts, as Where over both branches."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in [n for n in model.graph if n.op_type == "If" and n.domain in ("", "ai.onnx")]:
            why = why_not_selectable(node)
            if why:
                logger.info(f"If '{node.name}' stays: {why}")
                continue
            _select(model.graph, node)
            logger.info(f"If '{node.name}' computes both branches and selects with Where")
            modified = True
        return ir.passes.PassResult(model, modified)
