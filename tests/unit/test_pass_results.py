"""Passes say what they did: `modified` is true exactly when the serialized model changed, and
edgec's own passes reach into If/Loop bodies and functions."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.passes import PIPELINE
from edgec.passes.canonicalize import PositiveAxesPass
from edgec.passes.constants import FoldConstantSubgraphsPass
from edgec.passes.fusion import MARK, MarkActivationFusionPass


def _conv_relu(prefix: str, x: str, w: str, out: str) -> list:
    return [helper.make_node("Conv", [x, w], [f"{prefix}_c"], pads=[1, 1, 1, 1], name=f"{prefix}_conv"),
            helper.make_node("Relu", [f"{prefix}_c"], [out], name=f"{prefix}_relu")]


def model() -> ir.Model:
    """Work for every kind of pass in a branch of an If and in a function, none of it in the main graph alone."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
               numpy_helper.from_array(np.arange(16, dtype=np.float32), "k")]
    then_branch = helper.make_graph(
        [*_conv_relu("then", "x", "w", "r"),
         helper.make_node("Concat", ["r", "r"], ["cat"], axis=-3, name="then_concat"),  # a negative axis
         helper.make_node("Split", ["k"], ["k1", "k2"], axis=0, num_outputs=2, name="then_split"),  # of a constant
         helper.make_node("Reshape", ["k1", "shape"], ["k4"], name="then_reshape"),
         helper.make_node("Add", ["cat", "k4"], ["t"], name="then_add")],
        "then", [], [helper.make_tensor_value_info("t", TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(np.array([1, 8, 1, 1], np.int64), "shape")])
    else_branch = helper.make_graph(
        [helper.make_node("Concat", ["x", "x", "x", "x"], ["e0"], axis=1, name="else_concat"),
         helper.make_node("Slice", ["e0", "starts", "ends", "axes"], ["e"], name="else_slice")],
        "else", [], [helper.make_tensor_value_info("e", TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("starts", [0]), ("ends", [8]), ("axes", [1]))])
    function = helper.make_function("local", "block", ["a", "fw"], ["b"], _conv_relu("fn", "a", "fw", "b"),
                                    [helper.make_opsetid("", 18)])
    graph = helper.make_graph(
        [helper.make_node("If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch, name="branch"),
         helper.make_node("block", ["y", "w8"], ["out"], domain="local", name="call")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8]),
              helper.make_tensor_value_info("cond", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 8, 8])],
        [*weights, numpy_helper.from_array(rng.standard_normal((4, 8, 3, 3)).astype(np.float32), "w8")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("local", 1)],
                              functions=[function])
    return ir.serde.deserialize_model(proto)


def serialized(m: ir.Model) -> bytes:
    return ir.serde.serialize_model(m).SerializeToString(deterministic=True)


def test_every_pipeline_step_reports_exactly_what_it_changed():
    m = model()
    changes = []
    for step in PIPELINE:
        before = serialized(m)
        result = step.make()(m)
        m = result.model
        assert result.modified == (serialized(m) != before), step.name
        again = step.make()(m)  # a step that has done its work finds none left, and says so
        assert not again.modified and serialized(again.model) == serialized(m), step.name
        m = again.model
        changes.append(result.modified)
    assert sum(changes) >= 5  # the model gives most steps something to do


def _node(m: ir.Model, name: str) -> ir.Node:
    from edgec.ir import all_nodes

    return next(n for n in all_nodes(m) if n.name == name)


def test_edgec_passes_reach_branches_and_functions():
    m = common.ShapeInferencePass()(model()).model  # a negative axis is made positive where the rank is known
    assert PositiveAxesPass()(m).modified and _node(m, "then_concat").attributes["axis"].as_int() == 1
    assert MarkActivationFusionPass()(m).modified
    assert _node(m, "then_conv").metadata_props[MARK] == "Relu"  # in a branch
    assert _node(m, "fn_conv").metadata_props[MARK] == "Relu"  # in a function
    assert FoldConstantSubgraphsPass()(m).modified
    assert not any(n.op_type == "Split" for n in ir.traversal.RecursiveGraphIterator(m.graph))  # folded in the branch


@pytest.mark.parametrize("make", [PositiveAxesPass, MarkActivationFusionPass, FoldConstantSubgraphsPass])
def test_a_pass_with_nothing_to_do_says_so(make):
    m = model()
    make()(m)
    before = serialized(m)
    assert not make()(m).modified and serialized(m) == before


def test_a_rule_that_does_not_fire_says_why(caplog):
    """What `--verbose` shows: the rule, the node it looked at and the reason."""
    from edgec.passes import _edgec_rules

    graph = helper.make_graph(
        [helper.make_node("Dropout", ["x", "ratio", "training"], ["y"], name="drop")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(np.array(0.5, np.float32), "ratio"),
         numpy_helper.from_array(np.array(True), "training")])
    m = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))
    with caplog.at_level("DEBUG", logger="edgec.passes.rules"):
        assert not _edgec_rules()(m).modified
    assert "rule dropout_is_inference not applied at Dropout 'drop': training mode is on" in caplog.text


@pytest.mark.parametrize("opset, materialized", [(13, False), (14, True)])
def test_rewrites_stay_inside_the_models_opset(opset, materialized):
    """onnxscript's MaterializeReshapeShape writes Reshape's allowzero, an opset-14 attribute: below 14 it is left out,
    so the model stays valid and the other rewrites go on."""
    from edgec.passes import _onnxscript_rules

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 6]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])])
    m = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    _onnxscript_rules()(m)
    reshape = next(n for n in m.graph if n.op_type == "Reshape")
    assert ("allowzero" in reshape.attributes) == materialized
    assert (reshape.inputs[1].name != "shape") == materialized
    onnx.checker.check_model(ir.to_proto(m), full_check=True)
