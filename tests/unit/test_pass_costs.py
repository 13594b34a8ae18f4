"""The pipeline spends nothing on work it cannot use, and gets the same result: shape inference is
skipped when every shape is known, the folder infers shapes only for outputs not yet known, and the
guard runs no onnxruntime check on a model that its steps only annotated (benchmarks/scaling.py
measures what this saves on 16,000-node chains)."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnx import TensorProto, helper, numpy_helper
from test_pass_results import model

from edgec import ir as eir
from edgec import passes
from edgec.ir import all_nodes, runtime
from edgec.passes import Checker
from edgec.passes.constants import FoldConstantSubgraphsPass
from edgec.passes.shapes import InferShapesPass


def _types(m: ir.Model) -> dict:
    return {v.name: (v.dtype, v.shape) for node in all_nodes(m) for v in node.outputs}


def _counted(monkeypatch, owner, name: str) -> list:
    """Calls of owner.name (still made) are appended to the returned list."""
    calls, original = [], getattr(owner, name)

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counting)
    return calls


def test_shape_inference_gives_what_onnx_ir_gives_and_leaves_the_weights_as_they_were():
    ours, theirs = model(), model()  # values in an If's branches; one weight above the 1000 bytes left out
    weights = [(v.name, v.const_value) for v in ours.graph.initializers.values()]
    inputs = list(ours.graph.inputs)
    assert InferShapesPass()(ours).modified
    common.ShapeInferencePass()(theirs)
    assert _types(ours) == _types(theirs)
    assert [(v.name, v.const_value) for v in ours.graph.initializers.values()] == weights
    assert list(ours.graph.inputs) == inputs
    then_add = next(n for n in all_nodes(ours) if n.name == "then_add")
    assert then_add.outputs[0].shape == ir.Shape([1, 8, 8, 8])


def test_shape_inference_is_skipped_once_every_shape_is_known(monkeypatch):
    m = model()
    InferShapesPass()(m)
    calls = _counted(monkeypatch, onnx.shape_inference, "infer_shapes")
    assert not InferShapesPass()(m).modified
    assert calls == []


def _shape_arithmetic() -> ir.Model:
    """Reshape to [batch, -1] through Shape -> Gather -> Concat, as dynamic exporters write it."""
    graph = helper.make_graph(
        [helper.make_node("Shape", ["x"], ["s"], name="shape"),
         helper.make_node("Gather", ["s", "zero"], ["n"], axis=0, name="batch"),
         helper.make_node("Concat", ["n", "minus_one"], ["target"], axis=0, name="target"),
         helper.make_node("Reshape", ["x", "target"], ["flat"], name="flatten"),
         helper.make_node("Relu", ["flat"], ["y"], name="relu")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([0], np.int64), "zero"),
         numpy_helper.from_array(np.array([-1], np.int64), "minus_one")])
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_the_folder_infers_only_outputs_not_yet_known(monkeypatch):
    calls = _counted(monkeypatch, onnx.shape_inference, "infer_node_outputs")
    alone = _shape_arithmetic()  # no shapes known beyond the input: the folder infers them node by node
    assert FoldConstantSubgraphsPass()(alone).modified
    assert len(calls) >= 4
    calls.clear()
    inferred = _shape_arithmetic()
    InferShapesPass()(inferred)
    assert FoldConstantSubgraphsPass()(inferred).modified
    assert calls == []  # shape inference knew every output already
    for folded in (alone, inferred):
        assert not {n.op_type for n in folded.graph} & {"Shape", "Gather", "Concat"}
        assert next(n for n in folded.graph if n.op_type == "Reshape").inputs[1].const_value is not None
        assert folded.graph.outputs[0].shape == ir.Shape([2, 48])


def _conv_relu(identity: bool) -> ir.Model:
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu")]
    nodes.append(helper.make_node("Identity", ["r"], ["y"], name="named") if identity else
                 helper.make_node("Sigmoid", ["r"], ["y"], name="sigmoid"))
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array((rng.standard_normal((4, 3, 3, 3)) / 4).astype(np.float32), "w")])
    return ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _optimized(m: ir.Model, give_up: bool = False):
    """`m` optimized, checked on two runs; given up as a build gives its source model up (one snapshot
    for the reference run and the pipeline's reruns)."""
    x = np.random.default_rng(1).standard_normal((2, 1, 3, 8, 8)).astype(np.float32)
    snapshot = eir.Snapshot(m) if give_up else None
    session = runtime.session(snapshot or m)
    expected = np.concatenate([session.run(["y"], {"x": run})[0] for run in x])
    return passes.optimize(m, Checker.of(m, {"x": x.reshape(2, 3, 8, 8)}, {"y": expected}), snapshot=snapshot)


def test_the_guard_checks_only_a_model_whose_computation_changed(monkeypatch):
    checks = _counted(monkeypatch, Checker, "error")
    _, annotated = _optimized(_conv_relu(identity=False))  # shapes and a fusion mark: the same computation
    assert checks == [] and annotated.guard.max_error == 0.0
    assert {s.name for s in annotated.guard.steps if s.modified} == {"shape-inference/1", "mark-activation-fusion"}
    _, rewritten = _optimized(_conv_relu(identity=True))  # the Identity goes: checked
    assert len(checks) == 1 and rewritten.guard.max_error < 1e-6
    assert "Identity" not in rewritten.ops_after


class _EditsThenRaises(ir.passes.InPlacePass):
    """Leaves a half-edited graph behind: every weight doubled, then an exception."""

    def call(self, model):
        for value in model.graph.initializers.values():
            value.const_value = ir.tensor(value.const_value.numpy() * 2, name=value.name)
        raise RuntimeError("broken on purpose")


def test_a_given_up_model_is_edited_without_a_copy_and_a_failed_step_reruns_from_its_snapshot(monkeypatch):
    clones = _counted(monkeypatch, ir.Model, "clone")
    m = _conv_relu(identity=True)
    m.graph.inputs[0].meta["edgec.note"] = "kept"
    optimized, report = _optimized(m, give_up=True)
    assert optimized is m and clones == [] and report.guard.max_error < 1e-6 and "Identity" not in report.ops_after

    broken = passes.Step("edits-then-raises", _EditsThenRaises)
    monkeypatch.setattr(passes, "PIPELINE", passes.PIPELINE[:3] + [broken] + passes.PIPELINE[3:])
    m = _conv_relu(identity=True)
    m.graph.inputs[0].meta["edgec.note"] = "kept"
    optimized, report = _optimized(m, give_up=True)
    assert report.guard.skipped == ["edits-then-raises"] and report.guard.dropped == []
    assert report.guard.max_error < 1e-6  # the rerun started from the snapshot, not from the doubled weights
    assert optimized is not m and optimized.graph.inputs[0].meta["edgec.note"] == "kept" and clones == []
