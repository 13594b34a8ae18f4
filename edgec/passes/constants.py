"""Weights as initializers, and every constant subgraph evaluated once shapes are static.

Exporters leave two things that later stages misread. paddle2onnx stores every weight as a
`Constant` node, so BatchNorm folding, coverage checks and quantization see activations where
there are weights. Exporters with dynamic shapes leave Shape -> Gather -> Concat chains that
compute pads, reshape targets, expand sizes and resize scales at run time; once `--input-shape`
(or the static-shape rule) has fixed every dimension those chains are constants, and backends
that need constant parameters (TFLite, TensorRT) refuse them until they are folded.

Folding uses onnxscript's constant folder (onnx's reference kernels plus symbolic shape
values), measured against onnxruntime, onnxslim and onnx's reference evaluator in
benchmarks/results/folding.md. Nodes it skips because they have several outputs (Split of a
constant, TopK of a constant) are evaluated with onnx's reference evaluator.
"""
from __future__ import annotations

import logging

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.optimizer import _constant_folding as onnxscript_folding

from edgec.passes.shapes import known

logger = logging.getLogger(__name__)

# A folded value above this many elements would bloat the model file: it stays computed.
FOLD_LIMIT = 1_000_000
# Quantization parameters are data for the backends, never folded into float weights.
KEEP_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})
# Random generators must run on the device, every time.
NONDETERMINISTIC_OPS = frozenset({"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
                                  "Multinomial", "Bernoulli"})


class LiftConstantsPass(common.LiftConstantsToInitializersPass):
    """Every `Constant` node, whatever its attribute, becomes an initializer of its graph."""

    def __init__(self):
        super().__init__(lift_all_constants=True, size_limit=0)


def output_size(node: ir.Node) -> int | None:
    """Elements in the node's largest output, if shape inference knows them all."""
    sizes = []
    for value in node.outputs:
        if value.shape is None or not all(isinstance(d, int) for d in value.shape):
            return None
        sizes.append(int(np.prod(value.shape, dtype=np.int64)))
    return max(sizes, default=0)


def _should_fold(node: ir.Node) -> bool | None:
    """onnxscript's folder asks this per node: True folds, False keeps, None uses its own rules."""
    if node.op_type in KEEP_OPS or node.op_type in NONDETERMINISTIC_OPS:
        return False
    size = output_size(node)
    if size is not None and size > FOLD_LIMIT:
        return False
    if all(v is None or v.const_value is not None for v in node.inputs):
        return True  # a constant subgraph, whatever its op (onnxscript keeps ConstantOfShape by default)
    return None


def _all_constant(node: ir.Node) -> bool:
    return bool(node.inputs) and all(v is None or v.const_value is not None for v in node.inputs)


class FoldConstantSubgraphsPass(ir.passes.InPlacePass):
    """Evaluate every node whose inputs are all constants, and Shape/Size of static values.

    Shape inference runs first, so Shape of a fully static value is a constant. Values above
    FOLD_LIMIT elements stay computed; `oversized` lists them for the build to report.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        """Both folders in turn until neither finds work: a folded Split can make its users foldable."""
        modified = False
        while True:
            result = _IncrementalFolder(
                shape_inference=True, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT,
                should_fold=_should_fold)(model)
            opsets = model.opset_imports  # a branch's graph imports none of its own
            # every graph, branches too; functions hold no initializers to fold into
            split = [self._fold_multi_output(graph, opsets) for graph in list(model.graphs())]
            modified = modified or result.modified or any(split)
            if not any(split):
                return ir.passes.PassResult(model, modified)

    @staticmethod
    def oversized(model: ir.Model) -> list[str]:
        """Constant subgraphs left computed because their value is above FOLD_LIMIT elements."""
        return [f"{n.op_type} '{n.name}' ({output_size(n)} elements)" for n in model.graph
                if _all_constant(n) and n.op_type not in KEEP_OPS and (output_size(n) or 0) > FOLD_LIMIT]

    def _fold_multi_output(self, graph: ir.Graph, opsets: dict[str, int]) -> bool:
        """Split, TopK and the like on constants: onnxscript folds single-output nodes only."""
        modified = False
        for node in list(graph):
            if len(node.outputs) < 2 or not _all_constant(node) or _should_fold(node) is False:
                continue
            try:
                results = evaluate(node, node.version or opsets.get(node.domain, 17))
            except Exception as exc:  # an op onnx's reference evaluator lacks: leave it computed
                logger.debug("not folded: %s '%s': %s", node.op_type, node.name, exc)
                continue
            for old, array in zip(node.outputs, results):
                folded = ir.Value(name=old.name, const_value=ir.tensor(np.asarray(array), name=old.name))
                folded.dtype, folded.shape = folded.const_value.dtype, ir.Shape(folded.const_value.shape)
                graph.register_initializer(folded)
                ir.convenience.replace_all_uses_with(old, folded, replace_graph_outputs=True)
            graph.remove(node, safe=True)
            modified = True
        return modified


class _IncrementalFolder(onnxscript_folding.FoldConstantsPass):
    """onnxscript's folder, inferring shapes only for nodes whose outputs are not fully known.

    The folder runs onnx's inference on every node it visits (a serialization each: 5 CPU s at
    16,000 nodes) so that values it folds make later shapes static, and Shape/Size of them
    foldable. An output whose type and every dimension are already known (the pipeline's shape
    inference ran just before) cannot gain from it: the folder keeps known dimensions anyway.
    """

    def _do_inference(self, node: ir.Node) -> None:
        if not all(known(value) for value in node.outputs):
            super()._do_inference(node)


def evaluate(node: ir.Node, opset: int) -> list[np.ndarray]:
    """Run one node whose inputs are all constants with onnx's reference evaluator."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    proto = ir.serde.serialize_node(node)
    feeds = {v.name: v.const_value.numpy() for v in node.inputs if v is not None}
    inputs = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
              for name, array in feeds.items()]
    outputs = [helper.make_value_info(v.name, helper.TypeProto()) for v in node.outputs]
    model = helper.make_model(helper.make_graph([proto], "node", inputs, outputs),
                              opset_imports=[helper.make_opsetid(node.domain, opset)])
    return ReferenceEvaluator(model).run(None, feeds)
