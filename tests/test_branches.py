"""An If chosen by an input (a stream's reset flag) on a target without control flow: both branches
computed and selected with Where, exact against onnxruntime on the source for either flag; an If whose
branch could fail on the data it was not meant for stays, and the target refuses it by name."""
import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper

from edgec.passes.branches import why_not_selectable


def _reset_then(digits_model, then_nodes, then_out, extra_initializers=()) -> onnx.ModelProto:
    """The digits CNN behind If(reset): the `then` branch (a blank image by default), else the image."""
    blank = helper.make_tensor("blank", TensorProto.FLOAT, [1, 1, 8, 8], np.zeros(64, np.float32))
    then_branch = helper.make_graph(then_nodes, "then", [], [then_out], [blank, *extra_initializers])
    else_branch = helper.make_graph([helper.make_node("Identity", ["image"], ["kept"])], "else", [],
                                    [helper.make_tensor_value_info("kept", TensorProto.FLOAT, [1, 1, 8, 8])])
    cnn = onnx.load(digits_model)
    chosen = helper.make_node("If", ["reset"], ["input"], then_branch=then_branch, else_branch=else_branch,
                              name="reset_image")
    graph = helper.make_graph(
        [chosen, *cnn.graph.node], "reset_digits",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8]),
         helper.make_tensor_value_info("reset", TensorProto.BOOL, [])],
        list(cnn.graph.output), list(cnn.graph.initializer))
    return helper.make_model(graph, opset_imports=cnn.opset_import)


def test_an_input_chosen_if_runs_as_where_on_tflite_exactly(tmp_path, digits_model, digits_data):
    from edgec import api
    from edgec.package.harness import interface
    from edgec.package.harness.commands import load_manifest, session_class

    blank = helper.make_tensor_value_info("blank", TensorProto.FLOAT, [1, 1, 8, 8])
    proto = _reset_then(digits_model, [], blank)
    onnx.save(proto, tmp_path / "reset_digits.onnx")
    source = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    logits = {}
    for reset in (False, True):
        feed = {"image": digits_data["x_test"][:1], "reset": np.array(reset)}
        interface.save(tmp_path / "samples.npz", {k: v[None] for k, v in feed.items()})  # one stacked run
        out = tmp_path / f"reset-{reset}"
        built = api.build(str(tmp_path / "reset_digits.onnx"), "tflite-arm", out, precision="fp32",
                          samples=tmp_path / "samples.npz")
        assert built.verified, built.manifest.verification.result
        manifest = load_manifest(out)
        assert "SELECT_V2" in manifest.backend.operators
        (logits[reset],) = session_class(manifest)(str(out), manifest, 1)._run(feed).values()
        (expected,) = source.run(None, feed)
        np.testing.assert_allclose(logits[reset], expected, rtol=0, atol=1e-5 * np.ptp(expected))
    assert np.abs(logits[True] - logits[False]).max() > 0.1  # the flag chooses what the classifier sees


def test_an_if_whose_branch_indexes_stays(digits_model):
    """A Gather in the branch not taken could read out of range: the If is not computed both ways."""
    index = helper.make_tensor("row", TensorProto.INT64, [1], [0])
    picked = helper.make_tensor_value_info("picked", TensorProto.FLOAT, [1, 1, 8, 8])
    proto = _reset_then(digits_model, [helper.make_node("Gather", ["blank", "row"], ["picked"])], picked, [index])
    (node,) = [n for n in ir.from_proto(proto).graph if n.op_type == "If"]
    assert why_not_selectable(node) == "a branch computes Gather, which can fail on the branch not taken"
