"""The common IR (loading, input specs) and every graph pass, checked numerically in onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgec import ir as eir
from edgec import passes
from edgec.errors import InputError, UnsupportedError
from edgec.passes.fusion import MARK


def run(model: ir.Model, feeds: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


@pytest.mark.parametrize("text, expected", [("input:1,3,224,224", ("input", (1, 3, 224, 224))),
                                            ("x:1x8", ("x", (1, 8))), (" a : 2 ", ("a", (2,)))])
def test_input_spec_parses(text, expected):
    spec = eir.InputSpec.parse(text)
    assert (spec.name, spec.shape) == expected


@pytest.mark.parametrize("text", ["input", "input:", "input:1,a", ":1,2", "x:0,3", "x:1,,2"])
def test_input_spec_rejects_malformed(text):
    with pytest.raises(InputError, match="--input-shape"):
        eir.InputSpec.parse(text)


def test_load_errors(tmp_path, digits_model):
    with pytest.raises(InputError, match="not found"):
        eir.load(tmp_path / "missing.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a model")
    with pytest.raises(InputError, match="not"):
        eir.load(text)
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(digits_model.read_bytes()[:5000])
    with pytest.raises(InputError, match="readable ONNX|not a valid ONNX"):
        eir.load(truncated)


def test_external_data_round_trip(tmp_path, digits_model):
    ir.save(eir.load(digits_model), tmp_path / "ext.onnx", external_data="ext.onnx.data", size_threshold_bytes=0)
    assert (tmp_path / "ext.onnx.data").stat().st_size > 90_000
    copy = eir.save(eir.load(tmp_path / "ext.onnx"), tmp_path / "copy.onnx")
    x = np.random.default_rng(0).standard_normal((2, 1, 8, 8)).astype(np.float32)
    session = ort.InferenceSession(str(copy), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"input": x})[0], run(eir.load(digits_model), {"input": x})[0])


def test_input_shapes_fix_and_static_resolution(digits_model):
    model = eir.load(digits_model)
    with pytest.raises(InputError, match="inputs are: input"):
        eir.apply_input_specs(model, [eir.InputSpec("image", (1, 1, 8, 8))])
    with pytest.raises(InputError, match="4"):
        eir.apply_input_specs(model, [eir.InputSpec("input", (1, 64))])
    notes = eir.resolve_static_shapes(model)
    assert list(model.graph.inputs[0].shape) == [1, 1, 8, 8] and "batch" in notes[0]
    eir.apply_input_specs(model, [eir.InputSpec("input", (4, 1, 8, 8))])
    assert list(model.graph.inputs[0].shape) == [4, 1, 8, 8]


def test_symbolic_non_batch_dimension_names_input_and_flag():
    model = ir.from_proto(helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "length"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "length"])])))
    with pytest.raises(UnsupportedError, match=r"input 'x'.*--input-shape x:1,N"):
        eir.resolve_static_shapes(model)


@pytest.mark.parametrize("name", ["digits", "mobilenet"])
def test_optimize_folds_batchnorm_and_keeps_outputs(name, digits_model, digits_data, mobilenet_model, photos):
    path, x = (digits_model, digits_data["x_test"][:16]) if name == "digits" else (mobilenet_model, photos["x"][:2])
    model = eir.load(path)
    before = run(model, {"input": x})[0]
    model, report = passes.optimize(model)
    after = run(model, {"input": x})[0]
    assert report.ops_before.get("BatchNormalization", 0) > 0
    assert "BatchNormalization" not in report.ops_after
    assert report.nodes_after < report.nodes_before
    np.testing.assert_allclose(after, before, atol=1e-4 if name == "mobilenet" else 1e-5)


def test_mobilenet_relu6_pairs_are_marked_for_fusion(mobilenet_model):
    model, _ = passes.optimize(eir.load(mobilenet_model))
    marks = [n.metadata_props[MARK] for n in model.graph if MARK in n.metadata_props]
    assert marks.count("Relu6") == 35  # every Conv+Clip(0,6) of MobileNetV2


def _flavoured_model() -> ir.Model:
    """What other exporters emit: Dropout, ReduceMean over H,W, Identity, negative axes."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], np.random.default_rng(1).standard_normal(108))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Dropout", ["c"], ["d"]),
        helper.make_node("Identity", ["d"], ["i"]),
        helper.make_node("Relu", ["i"], ["r"]),
        helper.make_node("ReduceMean", ["r", "axes"], ["m"], keepdims=1),
        helper.make_node("Flatten", ["m"], ["f"], axis=-3),
        helper.make_node("Softmax", ["f"], ["y"], axis=-1),
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [-1, -2])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight, axes])
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


def test_canonicalize_removes_flavours_numerically():
    model = _flavoured_model()
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    before = run(model, {"x": x})[0]
    model, report = passes.optimize(model)
    ops = report.ops_after
    assert "Dropout" not in ops and "Identity" not in ops and "ReduceMean" not in ops
    assert ops.get("GlobalAveragePool") == 1
    assert all(a.as_int() >= 0 for n in model.graph for k, a in n.attributes.items() if k == "axis")
    np.testing.assert_allclose(run(model, {"x": x})[0], before, atol=1e-6)
    conv = next(n for n in model.graph if n.op_type == "Conv")
    assert conv.metadata_props[MARK] == "Relu"


def test_a_model_already_at_the_minimum_opset_runs_every_step():
    """The opset upgrade is a step only where it has work (it used to fail, with a warning, on every
    int8 build of an opset-13+ model)."""
    model, report = passes.optimize(_flavoured_model(), min_opset=13)
    assert not report.guard.failures and not report.guard.skipped
    assert model.opset_imports[""] == 18


def test_per_channel_affine_after_conv_folds_into_conv():
    """BatchNorm as tf2onnx sometimes leaves it: Conv -> Mul[C,1,1] -> Add[C,1,1]."""
    rng = np.random.default_rng(2)
    inits = [helper.make_tensor("w", TensorProto.FLOAT, [4, 3, 3, 3], rng.standard_normal(108)),
             helper.make_tensor("b", TensorProto.FLOAT, [4], rng.standard_normal(4)),
             helper.make_tensor("s", TensorProto.FLOAT, [4, 1, 1], rng.uniform(0.5, 2, 4)),
             helper.make_tensor("t", TensorProto.FLOAT, [4, 1, 1], rng.standard_normal(4))]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Add", ["m", "t"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = rng.standard_normal((1, 3, 6, 6)).astype(np.float32)
    before = run(model, {"x": x})[0]
    model, report = passes.optimize(model)
    assert report.ops_after == {"Conv": 1}
    np.testing.assert_allclose(run(model, {"x": x})[0], before, atol=1e-5)


def test_input_names_may_hold_colons():
    """TF exports name inputs like `serving_default_input_2:0`: the shape follows the last colon."""
    spec = eir.InputSpec.parse("serving_default_input_2:0:1,43844,1")
    assert (spec.name, spec.shape) == ("serving_default_input_2:0", (1, 43844, 1))


def test_tiny_constants_are_not_taken_for_zero():
    """onnxscript's no-op rule took `x + 1e-10` for `x + 0`; a log-magnitude layer then returned -inf."""
    nodes = [helper.make_node("Add", ["x", "eps"], ["shifted"]), helper.make_node("Log", ["shifted"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-10])])
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = np.array([[0.0, 1e-12, 1.0, 2.0]], np.float32)
    before = run(model, {"x": x})[0]
    model, report = passes.optimize(model)
    assert report.ops_after.get("Add") == 1
    np.testing.assert_array_equal(run(model, {"x": x})[0], before)


def _work_on_chain(monkeypatch, nodes: int, style: str) -> tuple[int, int]:
    """(nodes visited by graph iteration, rewrite-rule tries) while the pipeline optimizes a chain: counters,
    not timings, so the check holds on a loaded machine."""
    from onnxscript.rewriter import pattern

    from chains import chain

    counts = {"visits": 0, "tries": 0}
    graph_iter, try_rewrite = ir.Graph.__iter__, pattern.RewriteRule.try_rewrite

    def counted_iter(graph):
        for node in graph_iter(graph):
            counts["visits"] += 1
            yield node

    def counted_try(rule, *args, **kwargs):
        counts["tries"] += 1
        return try_rewrite(rule, *args, **kwargs)

    monkeypatch.setattr(ir.Graph, "__iter__", counted_iter)
    monkeypatch.setattr(pattern.RewriteRule, "try_rewrite", counted_try)
    passes.optimize(ir.from_proto(chain(nodes, style)))
    monkeypatch.undo()
    return counts["visits"], counts["tries"]


@pytest.mark.parametrize("style", ["matmul", "conv"])
def test_the_optimizer_does_work_linear_in_node_count(monkeypatch, style):
    """Doubling a chain at most doubles the nodes the pipeline visits and the rewrite rules it tries: a matcher
    that rescans the graph per candidate (onnxscript's multi-output patterns did) made builds quadratic. Rules
    are tried only where their root operator occurs: a few per node, where every rule at every node was 84."""
    small, large = _work_on_chain(monkeypatch, 200, style), _work_on_chain(monkeypatch, 400, style)
    assert large[0] <= 2.1 * small[0], (small, large)
    assert large[1] <= 2.1 * small[1], (small, large)
    assert large[1] <= 8 * 400, large
