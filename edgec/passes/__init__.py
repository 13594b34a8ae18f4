"""Graph passes on the common IR, composed with onnx_ir's PassManager.

`optimize` folds constants and BatchNormalization (onnxscript's optimizer), canonicalizes
exporter flavours, removes dead code and identities, and marks fusable activation pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript import optimizer
from onnxscript.rewriter import RewritePass, pattern

from edgec.passes import canonicalize, fold, layout
from edgec.passes.canonicalize import PositiveAxesPass
from edgec.passes.fusion import MarkActivationFusionPass


class FoldConstantsAndBatchNormPass(ir.passes.InPlacePass):
    """onnxscript's optimizer: constant folding, BN into Conv/Gemm, algebraic clean-ups."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = len(model.graph)
        optimizer.optimize_ir(model)
        return ir.passes.PassResult(model, len(model.graph) != before)


def canonicalization() -> ir.passes.PassManager:
    return ir.passes.PassManager(
        [
            common.ShapeInferencePass(),
            RewritePass(pattern.RewriteRuleSet([*canonicalize.RULES, *layout.RULES, *fold.RULES])),
            common.IdentityEliminationPass(),
            PositiveAxesPass(),
            common.RemoveUnusedNodesPass(),
        ]
    )


def pipeline() -> ir.passes.Sequential:
    return ir.passes.Sequential(
        canonicalization(),
        FoldConstantsAndBatchNormPass(),
        canonicalization(),
        common.TopologicalSortPass(),
        MarkActivationFusionPass(),
    )


@dataclass
class OptimizeReport:
    nodes_before: int
    nodes_after: int
    ops_before: dict
    ops_after: dict


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


def optimize(model: ir.Model) -> OptimizeReport:
    """Run the whole pipeline in place and say what changed."""
    before = op_histogram(model)
    origins = _origins(model)
    pipeline()(model)
    _restore_names(model, origins)
    after = op_histogram(model)
    return OptimizeReport(sum(before.values()), sum(after.values()), before, after)
