"""Shape inference that costs one serialization, and nothing when every shape is already known.

onnx_ir's ShapeInferencePass serializes the model, runs onnx's shape inference (C++) and then
deserializes the whole inferred model only to read its value types: at 16,000 nodes the
deserialization cost three times the inference itself. This pass reads the inferred types
straight from the returned proto, pairing each graph with its proto (subgraphs through their
node's attribute), and only for values whose type or shape is not yet fully known.
"""
from __future__ import annotations

import logging

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import _c_api_utils

logger = logging.getLogger(__name__)


def known(value: ir.Value) -> bool:
    """Its type and every dimension are known: inference has nothing to add."""
    return value.type is not None and value.shape is not None and value.shape.is_static()


def _computed(graph: ir.Graph):
    """The graph's inputs and every value its nodes (and their subgraphs' nodes) compute."""
    yield from graph.inputs
    for node in ir.traversal.RecursiveGraphIterator(graph):
        yield from node.outputs


class InferShapesPass(ir.passes.InPlacePass):
    """onnx's shape inference (strict, with data propagation), merged into the values it completes."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if all(known(value) for value in _computed(model.graph)):
            return ir.passes.PassResult(model, False)

        def infer(proto: onnx.ModelProto) -> onnx.ModelProto:
            return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)

        try:  # weights are left out of the proto it infers on (onnx_ir's helper, as its own pass does)
            inferred = _c_api_utils.call_onnx_api(infer, model)
        except Exception as exc:  # inference refuses some valid models; they keep the shapes they have
            logger.info("shape inference failed, shapes left as they are: %s", exc)
            return ir.passes.PassResult(model, False)
        return ir.passes.PassResult(model, _merge(model.graph, inferred.graph))


def _merge(graph: ir.Graph, proto: onnx.GraphProto) -> bool:
    """Copy the inferred types of `proto` into `graph`'s incomplete values, then into its subgraphs'."""
    types = {info.name: info.type for info in (*proto.input, *proto.value_info, *proto.output)}
    modified = False
    values = [*graph.inputs, *(value for node in graph for value in node.outputs)]
    for value in values:
        inferred = types.get(value.name)
        if inferred is None or known(value):
            continue
        shape = ir.serde.deserialize_type_proto_for_shape(inferred)
        if shape is not None and shape != value.shape:
            value.shape = shape
            modified = True
        value_type = ir.serde.deserialize_type_proto_for_type(inferred)
        if value_type is not None and value_type != value.type:
            value.type = value_type
            modified = True
    for node, node_proto in zip(graph, proto.node):  # the proto was serialized from this graph, in its order
        for attribute in node_proto.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                modified = _merge(node.attributes[attribute.name].as_graph(), attribute.g) or modified
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph, subproto in zip(node.attributes[attribute.name].as_graphs(), attribute.graphs):
                    modified = _merge(subgraph, subproto) or modified
    return modified
