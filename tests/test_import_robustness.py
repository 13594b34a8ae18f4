"""Real models in the forms other exporters write: folding, constant lifting, opset upgrades,
control flow, bound inputs, and passes that can neither kill a build nor change its numbers.

Every model here keeps real trained weights (tests/variants.py); outputs are compared with
the source model in onnxruntime on real inputs (photos, held-out digits).
"""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest

import variants
from conftest import edgec, infer, manifest
from edgec import ir as eir
from edgec import passes
from edgec.package import policy
from edgec.passes.guard import Checker, Step

SHAPE_OPS = {"Shape", "Size", "ConstantOfShape", "Range"}
SHAPE_INPUTS = {"Pad": 1, "Reshape": 1, "Expand": 1, "Tile": 1, "Resize": 2}


def left_shape_arithmetic(model: ir.Model) -> list[str]:
    """Shape computations still in the graph: shape ops, or computed pads/shapes/sizes."""
    found = []
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type in SHAPE_OPS:
            found.append(f"{node.op_type} {node.name}")
        first = SHAPE_INPUTS.get(node.op_type)
        if first is not None:
            found += [f"{node.op_type} {node.name} input {i}" for i, v in enumerate(node.inputs) if i >= first
                      and v is not None and v.const_value is None]
    return found


def onnxruntime_outputs(path, feeds: dict) -> list[np.ndarray]:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)


@pytest.fixture(scope="module")
def same_pad(tmp_path_factory):
    return variants.same_pad_mobilenet(tmp_path_factory.mktemp("variants") / "same_pad_opset11.onnx")


@pytest.fixture(scope="module")
def digits_inputs(digits_data):
    return digits_data["x_test"][:8]


def test_same_pad_export_has_the_failure_classes(same_pad):
    model = onnx.load(same_pad)
    ops = {n.op_type for n in model.graph.node}
    assert model.opset_import[0].version == 11
    assert {"Shape", "Gather", "Pad", "Constant"} <= ops


def test_shape_arithmetic_folds_once_shapes_are_static(same_pad, photos):
    model = eir.load(same_pad)
    eir.apply_input_specs(model, [eir.InputSpec("input", (1, 3, 224, 224))])
    x = photos["x"][:2]
    expected = np.concatenate([onnxruntime_outputs(same_pad, {"input": x[i:i + 1]})[0] for i in range(2)])
    optimized, report = passes.optimize(model, Checker.of(model, {"input": x}, {"logits": expected}))
    assert left_shape_arithmetic(optimized) == []
    assert "Constant" not in report.ops_after and report.guard.max_error < 1e-4
    assert report.ops_after.get("Conv") == 52


@pytest.mark.parametrize("target", ["tflite-arm", "openvino-cpu"])
def test_same_pad_opset11_builds_for_static_targets(same_pad, photos, target, tmp_path):
    out = tmp_path / "art"
    edgec("build", same_pad, "-t", target, "-o", out, "--input-shape", "input:1,3,224,224", "--precision", "fp32",
          check=True)
    logits = infer(out, {"input": photos["x"]}, tmp_path)["logits"]
    expected = np.concatenate([onnxruntime_outputs(same_pad, {"input": x[None]})[0] for x in photos["x"]])
    assert np.max(np.abs(logits - expected)) <= 1e-4 * np.ptp(expected)
    assert manifest(out)["build"]["passes"]["warnings"] == []


def test_opset11_int8_upgrades_for_per_channel_weights(tmp_path, digits_files, digits_data):
    source = variants.legacy_digits(tmp_path / "digits_opset11.onnx")
    assert onnx.load(source).opset_import[0].version == 11
    out = tmp_path / "int8"
    edgec("build", source, "-t", "onnxruntime", "-o", out, "--precision", "int8",
          "--calibration", digits_files["calib"], check=True)
    quantization = manifest(out)["quantization"]
    assert manifest(out)["source"]["opset"] == 11 and quantization["opset"] == 13
    assert quantization["scheme"]["per_channel"] is True
    model = onnx.load(out / "model.onnx")
    per_channel = [i.name for i in model.graph.initializer if i.name.endswith("_scale") and list(i.dims)[:1] > [1]]
    assert len(per_channel) == 4  # one scale per output channel of three convolutions and the classifier
    logits = infer(out, {"input": digits_data["x_test"]}, tmp_path)["logits"]
    float_logits = onnxruntime_outputs(source, {"input": digits_data["x_test"]})[0]
    accuracy = np.mean(logits.argmax(1) == digits_data["y_test"])
    assert accuracy >= np.mean(float_logits.argmax(1) == digits_data["y_test"]) - 0.005


def test_constant_node_weights_are_lifted_and_batchnorm_folds(tmp_path, digits_model, digits_inputs):
    source = variants.weights_as_constants(digits_model, tmp_path / "constants.onnx")
    model = eir.load(source)
    assert len(model.graph.initializers) == 0
    expected = onnxruntime_outputs(digits_model, {"input": digits_inputs})[0]
    optimized, report = passes.optimize(model, Checker.of(model, {"input": digits_inputs}, {"logits": expected}))
    assert "BatchNormalization" not in report.ops_after and "Constant" not in report.ops_after
    assert len(optimized.graph.initializers) >= 6
    out = tmp_path / "art"
    edgec("build", source, "-t", "tflite-arm", "-o", out, check=True)
    np.testing.assert_allclose(infer(out, {"input": digits_inputs}, tmp_path)["logits"], expected, atol=1e-4)


def test_a_declared_output_shape_the_graph_contradicts_gives_way_to_the_inferred_one(tmp_path, digits_model,
                                                                                     digits_inputs):
    """Legacy exporters declare some outputs' shapes wrong: ddddocr's [24, 1, 8210] CTC logits as [1, seqlen].
    Strict shape inference refused the whole graph over that one rank, and the output was judged by the kind
    its declared rank gave: per-step logits as an unknown tensor, here a classifier's logits as sequences."""
    proto = onnx.load(digits_model)
    declared = proto.graph.output[0].type.tensor_type.shape
    del declared.dim[:]
    declared.dim.add().dim_value = 1
    declared.dim.add().dim_param = "seqlen"
    declared.dim.add().dim_value = 7
    source = tmp_path / "stale_output_shape.onnx"
    onnx.save(proto, source)
    model = eir.load(source)
    expected = onnxruntime_outputs(digits_model, {"input": digits_inputs})[0]
    optimized, _ = passes.optimize(model, Checker.of(model, {"input": digits_inputs}, {"logits": expected}))
    logits = optimized.graph.outputs[0]
    assert logits.shape.rank() == 2 and logits.shape[-1] == 10
    assert policy.classify(logits) == "logits"


@pytest.fixture(scope="module")
def mode_switch(tmp_path_factory):
    return variants.mode_switch_digits(tmp_path_factory.mktemp("variants") / "mode_switch.onnx")


def _mode_switch_reference(path, digits_inputs, probabilities: bool) -> dict:
    feeds = [{"input": x[None], "state_in": np.full((1, 1), 0.25, np.float32),
              "probabilities": np.array(probabilities)} for x in digits_inputs]
    outputs = [onnxruntime_outputs(path, feed) for feed in feeds]
    return {"scores": np.concatenate([o[0] for o in outputs]), "state": np.concatenate([o[1] for o in outputs])}


def test_bound_flag_folds_the_if_away(mode_switch, digits_inputs, tmp_path):
    out = tmp_path / "art"
    edgec("build", mode_switch, "-t", "onnxruntime", "-o", out, "--const-input", "probabilities=true", check=True)
    built = onnx.load(out / "model.onnx")
    assert "If" not in {n.op_type for n in built.graph.node}
    assert [i.name for i in built.graph.input] == ["input", "state_in"]
    got = infer(out, {"input": digits_inputs, "state_in": np.full((8, 1), 0.25, np.float32)}, tmp_path)
    expected = _mode_switch_reference(mode_switch, digits_inputs, True)
    np.testing.assert_allclose(got["scores"], expected["scores"], atol=1e-6)
    np.testing.assert_allclose(got["state"], expected["state"], atol=1e-6)


@pytest.mark.parametrize("target", ["onnxruntime", "openvino-cpu"])
def test_if_builds_unbound_where_the_target_has_if(mode_switch, target, tmp_path):
    out = tmp_path / "art"
    edgec("build", mode_switch, "-t", target, "-o", out, "--precision", "fp32", check=True)
    assert manifest(out)["verification"]["result"]["passed"]


def test_tflite_refusal_of_if_suggests_binding_the_flag(mode_switch, tmp_path):
    proc = edgec("build", mode_switch, "-t", "tflite-arm", "-o", tmp_path / "art")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("edgec: error")]
    assert len(errors) == 1 and "If" in errors[0] and "--const-input" in errors[0] and "probabilities" in errors[0]
    assert not (tmp_path / "art").exists()


def test_inspect_lists_configuration_inputs(mode_switch):
    proc = edgec("inspect", mode_switch, "--json", "-", check=True)
    import json

    config = json.loads(proc.stdout)["model"]["configuration_inputs"]
    assert [c["name"] for c in config] == ["probabilities"]
    assert config[0]["suggest"] == "--const-input probabilities=VALUE"


def test_constant_trip_count_loop_unrolls(tmp_path, digits_inputs):
    source = variants.looped_digits(tmp_path / "loop.onnx")
    model = eir.load(source)
    feeds = {"input": digits_inputs[:1]}
    expected = dict(zip(["refined", "steps"], onnxruntime_outputs(source, feeds)))
    optimized, report = passes.optimize(model, Checker.of(model, feeds, expected))
    assert "Loop" not in report.ops_after and report.guard.max_error < 1e-6
    out = tmp_path / "art"
    edgec("build", source, "-t", "tflite-arm", "-o", out, check=True)
    got = infer(out, feeds, tmp_path)
    np.testing.assert_allclose(got["refined"], expected["refined"], atol=1e-5)
    np.testing.assert_allclose(got["steps"], expected["steps"], atol=1e-5)


class _RaisingPass(ir.passes.InPlacePass):
    def call(self, model):
        node = next(iter(model.graph))
        raise RuntimeError(f"broken on purpose near {node.name}")


class _SignFlipPass(ir.passes.InPlacePass):
    """Silently wrong: negates the first Gemm's bias."""

    def call(self, model):
        for node in model.graph:
            if node.op_type == "Gemm" and len(node.inputs) > 2:
                bias = node.inputs[2]
                bias.const_value = ir.tensor(-bias.const_value.numpy() + 1.0, name=bias.name)
                return ir.passes.PassResult(model, True)
        return ir.passes.PassResult(model, False)


def test_a_raising_pass_is_skipped_and_a_wrong_pass_is_dropped(monkeypatch, digits_model, digits_inputs):
    broken = [Step("raises-on-purpose", _RaisingPass), Step("flips-signs", _SignFlipPass)]
    pipeline = passes.PIPELINE[:3] + broken + passes.PIPELINE[3:]
    monkeypatch.setattr(passes, "PIPELINE", pipeline)
    expected = onnxruntime_outputs(digits_model, {"input": digits_inputs})[0]
    model = eir.load(digits_model)
    optimized, report = passes.optimize(model, Checker.of(model, {"input": digits_inputs}, {"logits": expected}))
    raised = [w for w in report.warnings if "raises-on-purpose" in w]
    assert len(raised) == 1 and "at Conv node" in raised[0]
    assert report.guard.dropped == ["flips-signs"]
    assert report.guard.max_error < 1e-4
    assert "BatchNormalization" not in report.ops_after  # the healthy passes still ran
