"""Graph passes on the common IR: one pipeline of named steps, run guarded (see guard.py).

The order matters. Constants are lifted first, so every later step sees weights as weights.
Then shape inference and constant folding turn the shape arithmetic of dynamic exporters into
constants (and inline If branches and unroll Loops whose conditions became constant), before
onnxscript's rewrites fold BatchNorm and edgec's rules canonicalize what exporters emit. The
fold and rewrite steps appear twice, since each can expose work for the other.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript import rewriter
from onnxscript.rewriter import RewritePass, pattern

from edgec import ir as eir
from edgec.ir import opset
from edgec.passes import canonicalize, fold, layout
from edgec.passes.canonicalize import PositiveAxesPass
from edgec.passes.constants import FoldConstantSubgraphsPass, LiftConstantsPass
from edgec.passes.fusion import MarkActivationFusionPass
from edgec.passes.guard import Checker, GuardReport, Step, run_guarded
from edgec.passes.identity import IdentityEliminationPass
from edgec.passes.branches import SelectBranchesPass
from edgec.passes.loops import UnrollLoopsPass
from edgec.passes.recurrent import RECURRENT_OPS, LowerRecurrentPass
from edgec.passes.shapes import InferShapesPass
from edgec.passes.stable import STABLE_OPS, StableActivationsPass


class RulesPass(ir.passes.InPlacePass):
    """onnxscript's rewrite rules, each tried only on models that hold its pattern's root operator.

    onnxscript's rule set tries every rule at every node, and a failed try costs tens of
    microseconds even when the operator differs: 40 rules made the rewrites the largest step of
    a long chain's build. Rules whose root operator the model lacks are left out of the sweep; a
    rewrite that brings in a new operator brings its rules into one more sweep.

    `modified` is exact: the sweep removes nodes and initializers that nothing uses even when no
    rule fires, and onnxscript's RewritePass reported that change as none. A rule whose
    replacement needs a newer opset than the model's (`minimum_opsets`) is left out.
    """

    def __init__(self, rules: list[pattern.RewriteRule],
                 minimum_opsets: dict[pattern.RewriteRule, int] | None = None):
        super().__init__()
        self.rules = rules
        self.minimum_opsets = minimum_opsets or {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = common.RemoveUnusedNodesPass()(model).modified
        opset = model.opset_imports.get("", 0)
        usable = [rule for rule in self.rules if self.minimum_opsets.get(rule, 0) <= opset]
        swept: set[tuple[str, str]] = set()
        while True:
            present = _operators(model)
            if present <= swept:
                return ir.passes.PassResult(model, modified)
            swept |= present
            rules = [rule for rule in usable if _root(rule) in present or _root(rule) is None]
            if rules:
                modified = RewritePass(rules)(model).modified or modified


def _root(rule: pattern.RewriteRule) -> tuple[str, str] | None:
    """(domain, op_type) of the node a rule's pattern ends in; None if that is not one fixed operator."""
    target = rule._target_pattern
    if not target.has_single_output_node:
        return None
    identifier = target.output_node.op_identifier()
    return identifier[:2] if identifier is not None else None


def _operators(model: ir.Model) -> set[tuple[str, str]]:
    graphs = [model.graph, *(function.graph for function in model.functions.values())]
    return {(node.domain, node.op_type) for graph in graphs for node in ir.traversal.RecursiveGraphIterator(graph)}


def _edgec_rules() -> RulesPass:
    return RulesPass([*canonicalize.RULES, *layout.RULES, *fold.RULES])


def _onnxscript_rules() -> RulesPass:
    """onnxscript's default rewrites: BatchNorm into Conv/Gemm, algebraic clean-ups.

    Two kinds are left out:
    - the no-op rules (x+0, x-0, x*1, x/1): onnxscript 0.7.2 compares constants with an absolute
      tolerance of 1e-8, so `Log(x + 1e-10)` became `Log(x)` and basic-pitch's outputs moved by 0.4
      of their range on real audio;
    - rules whose pattern has several output nodes (SlicesSplit): its matcher indexes the whole
      graph for every candidate node, which made builds quadratic in node count.
    MaterializeReshapeShape writes `Reshape(allowzero=1)`, an attribute of opset 14: below it, the
    rule made an invalid model (onnxruntime refused ppocr_cls's at opset 13, and the guard dropped
    every onnxscript rewrite with it).
    """
    from onnxscript.rewriter.rules.common import _no_op
    from onnxscript.rewriter.rules.common._materialize_reshape_shape import materialize_reshape_shape_rule

    unsafe = set(_no_op.rules)
    return RulesPass([rule for rule in rewriter._DEFAULT_REWRITE_RULES
                      if rule not in unsafe and rule._target_pattern.has_single_output_node],
                     minimum_opsets={materialize_reshape_shape_rule: 14})


FOLD_AND_REWRITE = [
    ("shape-inference", InferShapesPass),
    ("fold-constants", FoldConstantSubgraphsPass),
    ("unroll-loops", UnrollLoopsPass),
    ("onnxscript-rewrites", _onnxscript_rules),
    ("edgec-rules", _edgec_rules),
    ("identity-elimination", IdentityEliminationPass),
    ("remove-unused", common.RemoveUnusedNodesPass),
]


def _rounds() -> list[Step]:
    """Two rounds of folding and rewriting; the second only if the first's folds or rewrites changed something."""
    first = [Step(f"{name}/1", make, annotates=make is InferShapesPass) for name, make in FOLD_AND_REWRITE]
    triggers = ("fold-constants/1", "unroll-loops/1", "onnxscript-rewrites/1", "edgec-rules/1")
    second = [Step(f"{name}/2", make, after=triggers, annotates=make is InferShapesPass)
              for name, make in FOLD_AND_REWRITE]
    return first + second


class UpgradeOpsetPass(ir.passes.FunctionalPass):
    """The model converted by onnx's version converter to at least `minimum` (a target's importer or a
    quantization scheme that only knows the newer operator forms)."""

    def __init__(self, minimum: int):
        super().__init__()
        self.minimum = minimum

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        upgraded = opset.upgrade(model, self.minimum)
        if upgraded is None:
            raise RuntimeError(f"onnx's version converter cannot bring this model to opset {self.minimum}")
        return ir.passes.PassResult(upgraded, True)


# The pipeline, in order. Tests may add a step here to prove that a broken pass is caught.
PIPELINE: list[Step] = [
    Step("inline-functions", common.InlinePass),
    Step("lift-constants", LiftConstantsPass),
    Step("identity-elimination", IdentityEliminationPass),
    *_rounds(),
    Step("positive-axes", PositiveAxesPass),
    Step("remove-unused-functions", common.RemoveUnusedFunctionsPass),
    Step("remove-unused-opsets", common.RemoveUnusedOpsetsPass),
    Step("deduplicate-initializers", common.DeduplicateInitializersPass),
    Step("common-subexpressions", common.CommonSubexpressionEliminationPass),
    Step("topological-sort", common.TopologicalSortPass),
    Step("lift-folded-constants", LiftConstantsPass),  # folding and rewrites leave Constant nodes
    Step("mark-activation-fusion", MarkActivationFusionPass, annotates=True),
]


@dataclass
class OptimizeReport:
    nodes_before: int
    nodes_after: int
    ops_before: dict
    ops_after: dict
    guard: GuardReport = field(default_factory=GuardReport)
    left_computed: list[str] = field(default_factory=list)  # constant values above the folding limit

    @property
    def warnings(self) -> list[str]:
        notes = [f"note: {v} stays computed: folding it would add that many elements to the model"
                 for v in self.left_computed]
        return self.guard.warnings + notes


def op_histogram(model: ir.Model) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _origins(model: ir.Model) -> dict[str, str]:
    """output name -> the source node a user knows it by (a BatchNorm's output: its Conv's name)."""
    origins = {}
    for node in model.graph:
        source = node
        if node.op_type == "BatchNormalization" and node.inputs[0].producer() is not None:
            source = node.inputs[0].producer()
        for value in node.outputs:
            origins[value.name] = source.name
    return origins


def _restore_names(model: ir.Model, origins: dict[str, str]) -> None:
    """Give nodes that rewrites created (named node_*) the name of the source node they replace,
    so per-layer reports speak the names of the user's model."""
    taken = {node.name for node in model.graph}
    for node in model.graph:
        if not node.name.startswith("node_") or not node.outputs:
            continue
        name = origins.get(node.outputs[0].name)
        if name and name not in taken:
            taken.add(name)
            node.name = name


def _left_computed(model: ir.Model) -> list[str]:
    return FoldConstantSubgraphsPass.oversized(model)


def optimize(model: ir.Model, checker: Checker | None = None, min_opset: int = 1,
             snapshot: eir.Snapshot | None = None) -> tuple[ir.Model, OptimizeReport]:
    """Run the pipeline on a copy of `model`; return the optimized model and what changed.

    With a `checker` (the original's outputs on sample inputs), a step that changes the numbers
    is found and dropped. `min_opset` first converts an older model to that opset. A caller that
    no longer needs `model` passes a `snapshot` of it: the pipeline then edits the model instead of
    a copy, and rebuilds it from the snapshot only when a step fails.
    """
    before = op_histogram(model)
    origins = _origins(model)
    # Scheduled only when it has work: a functional pass may not hand back its input model (PassError).
    older = opset.default_opset(model) < min_opset
    upgrade = [Step(f"upgrade-to-opset-{min_opset}", lambda: UpgradeOpsetPass(min_opset))] if older else []
    optimized, guard = run_guarded(upgrade + PIPELINE, model, checker, snapshot)
    _restore_names(optimized, origins)
    after = op_histogram(optimized)
    report = OptimizeReport(sum(before.values()), sum(after.values()), before, after, guard,
                            _left_computed(optimized))
    return optimized, report


# Operators the shared passes can rewrite into basic ones, for targets that cannot take them.
LOWERINGS = ({op: LowerRecurrentPass for op in RECURRENT_OPS} | {op: StableActivationsPass for op in STABLE_OPS}
             | {"If": lambda _ops: SelectBranchesPass()})


def lower_for_target(model: ir.Model, op_types: set[str], checker: Checker | None = None) -> tuple[ir.Model, list[str]]:
    """Rewrite the given operators into basic ones (guarded and checked like the pipeline)."""
    steps = [Step(f"lower-{op}", lambda op=op: LOWERINGS[op]((op,))) for op in sorted(op_types) if op in LOWERINGS]
    steps.append(Step("lift-constants", LiftConstantsPass))
    steps.append(Step("topological-sort", common.TopologicalSortPass))
    lowered, guard = run_guarded(steps, model, checker)
    return lowered, guard.warnings


__all__ = ["Checker", "LOWERINGS", "OptimizeReport", "PIPELINE", "Step", "lower_for_target", "op_histogram",
           "optimize"]
