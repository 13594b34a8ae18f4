"""Shape inference that costs one serialization, and nothing when every shape is already known.

onnx_ir's ShapeInferencePass serializes the model, runs onnx's shape inference (C++) and then
deserializes the whole inferred model only to read its value types: at 16,000 nodes the
deserialization cost three times the inference itself, and its helper that leaves the weights
out tests each initializer's membership in the input list (quadratic in initializers). This
pass reads the inferred types straight from the returned proto, pairing each graph with its
proto (subgraphs through their node's attribute), and only for values whose type or shape is
not yet fully known.
"""
from __future__ import annotations

import logging

import onnx
import onnx_ir as ir

logger = logging.getLogger(__name__)

WEIGHT_BYTES = 1000  # larger initializers go to inference as typed inputs (the limit of onnx_ir's own helper)


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

        proto = _without_weights(model)
        try:
            inferred = _infer(proto)
        except Exception:  # a partial shape the exporter declared may contradict the graph: infer without them
            try:
                inferred = _infer(_without_partial_shapes(proto))
            except Exception as exc:  # inference refuses some valid models; they keep the shapes they have
                logger.info("shape inference failed, shapes left as they are: %s", exc)
                return ir.passes.PassResult(model, False)
        return ir.passes.PassResult(model, _merge(model.graph, inferred.graph))


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)


def _without_partial_shapes(proto: onnx.ModelProto) -> onnx.ModelProto:
    """`proto` with the declared shapes that are not fully known dropped from its outputs and value infos (the
    inputs' are the user's): ddddocr's legacy export declares its [24, 1, 8210] CTC logits as [1, seqlen], and
    strict inference refused the whole graph over that one rank."""
    for info in (*proto.graph.output, *proto.graph.value_info):
        tensor = info.type.tensor_type
        if tensor.HasField("shape") and not all(dim.HasField("dim_value") for dim in tensor.shape.dim):
            tensor.ClearField("shape")
    return proto


def _without_weights(model: ir.Model) -> onnx.ModelProto:
    """The model as a proto whose large initializers are typed graph inputs without their bytes (a model
    over 2 GB could not be serialized whole); the model itself is left as it was."""
    graph = model.graph
    inputs, initializers = list(graph.inputs), list(graph.initializers.values())
    listed = set(inputs)
    weights = [v for v in initializers if v.const_value is None or v.const_value.nbytes > WEIGHT_BYTES]
    tensors = [v.const_value for v in weights]
    for value, tensor in zip(weights, tensors):
        if tensor is not None:  # an initializer's type is its tensor's
            value.shape, value.dtype = value.shape or tensor.shape, value.dtype or tensor.dtype
        graph.initializers.pop(value.name)
        value.const_value = None
    graph.inputs.extend(value for value in weights if value not in listed)
    try:
        return ir.serde.serialize_model(model)
    finally:
        graph.inputs.clear()
        graph.inputs.extend(inputs)
        for value, tensor in zip(weights, tensors):
            value.const_value = tensor
        graph.initializers.clear()
        for value in initializers:
            graph.initializers.add(value)


def _merge(graph: ir.Graph, proto: onnx.GraphProto, read: dict[bytes, tuple] | None = None) -> bool:
    """Copy the inferred types of `proto` into `graph`'s incomplete values, then into its subgraphs'.
    `read` holds each distinct type proto read once (a long graph repeats a few types thousands of times)."""
    read = {} if read is None else read
    types = {info.name: info.type for info in (*proto.input, *proto.value_info, *proto.output)}
    modified = False
    values = [*graph.inputs, *(value for node in graph for value in node.outputs)]
    for value in values:
        inferred = types.get(value.name)
        if inferred is None or known(value):
            continue
        key = inferred.SerializeToString()
        if key not in read:
            read[key] = (ir.serde.deserialize_type_proto_for_shape(inferred),
                         ir.serde.deserialize_type_proto_for_type(inferred))
        shape, value_type = read[key]
        if shape is not None and shape != value.shape:
            value.shape = shape.copy()  # a value's own: passes may set its dimensions
            modified = True
        if value_type is not None and value_type != value.type:
            value.type = value_type
            modified = True
    for node, node_proto in zip(graph, proto.node):  # the proto was serialized from this graph, in its order
        for attribute in node_proto.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                modified = _merge(node.attributes[attribute.name].as_graph(), attribute.g, read) or modified
            elif attribute.type == onnx.AttributeProto.GRAPHS:
                for subgraph, subproto in zip(node.attributes[attribute.name].as_graphs(), attribute.graphs):
                    modified = _merge(subgraph, subproto, read) or modified
    return modified
