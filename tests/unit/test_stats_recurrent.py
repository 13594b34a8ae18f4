"""Multiply-accumulates as the ONNX operators compute them: recurrent layers (on a real one) and Einsum."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
import pytest
from onnx import TensorProto, helper

from edgec.ir import stats
from edgec.quantize.fallback import MacShare
from speaker_lstm import speaker_lstm

# per step and direction: 4 gates x 256 hidden x (40 inputs + 256 recurrent), for each of the 4 real clips
PER_STEP = 4 * 256 * (40 + 256) * 4


@pytest.mark.parametrize("direction, layout, steps, expected", [
    ("forward", 0, 160, 160 * PER_STEP),  # the speaker encoder's layer as it runs: 48,496,640 a clip
    ("bidirectional", 1, 20, 2 * 20 * PER_STEP),
])
def test_lstm_macs_are_steps_by_directions_by_gates(direction, layout, steps, expected):
    model = ir.from_proto(speaker_lstm(direction, layout, steps)[0])
    common.ShapeInferencePass()(model)
    assert stats.macs_by_op(model) == ({"LSTM": expected}, True)


def test_a_shape_static_inference_misses_is_taken_from_a_run():
    """The sequence reaches the layer through a Reshape to a shape computed at run time (as a CRNN's
    feature map of data-dependent width does): MacShare counts the layer at the shape the run saw."""
    proto, feed = speaker_lstm(steps=30)
    graph = proto.graph
    graph.input[0].name = "flat"
    graph.input[0].type.tensor_type.shape.ClearField("dim")
    graph.input.append(helper.make_tensor_value_info("shape", TensorProto.INT64, [3]))
    graph.node.insert(0, helper.make_node("Reshape", ["flat", "shape"], ["x"]))
    model = ir.from_proto(proto)
    x = feed["x"]
    share = MacShare(model, {"flat": x.reshape(-1), "shape": np.array(x.shape, np.int64)})
    assert share.total == 30 * PER_STEP
    assert share.int8_share([n.name for n in model.graph if n.op_type == "LSTM"]) == 0.0


def test_int8_that_leaves_the_recurrent_macs_float_is_refused(tmp_path):
    """openvino-cpu's QDQ scheme has no LSTM: its int8 of the speaker encoder's layer would be int8 in name
    only (0 % of the MACs), so the build refuses it (exit 2) with the operator that stays float, before NNCF
    (the `quantizer` option's auto) is asked: its int8 LSTMSequence runs an f32 kernel (int8 weights, float MACs)."""
    from edgec.backends import get_backend
    from edgec.errors import UnsupportedError
    from edgec.options import resolve
    from edgec.package.samples import model_interface
    from edgec.quantize import quantize_for_target
    from edgec.quantize.data import load_calibration
    from edgec.targets import load_target

    proto, feed = speaker_lstm(steps=20)
    model = ir.from_proto(proto)
    np.savez(tmp_path / "calibration.npz", **feed)
    specs, _ = model_interface(model)
    data = load_calibration(str(tmp_path / "calibration.npz"), model, specs)
    target = load_target("openvino-cpu")
    with pytest.raises(UnsupportedError, match=r"leave 100% of this model's multiply-accumulates float \(LSTM stay"):
        quantize_for_target(model, target, "int8", data, get_backend(target.backend),
                            resolve(target, {}))


def test_einsum_macs_span_every_letter_of_its_equation():
    """Attention's scores as an Einsum: one multiply-accumulate per (batch, head, query, key, depth)."""
    graph = helper.make_graph(
        [helper.make_node("Einsum", ["q", "k"], ["scores"], equation="bhqd,bhkd->bhqk")], "attention",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, 12, 32, 64]) for name in ("q", "k")],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 12, 32, 32])])
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert stats.macs_by_op(model) == ({"Einsum": 12 * 32 * 32 * 64}, True)


def test_a_scheme_without_an_op_list_leaves_what_onnxruntime_leaves_float():
    """tvm's scheme names no operators: static QDQ quantizes no LSTM, dynamic quantization does."""
    import dataclasses

    from edgec.quantize.qdq import Scheme
    from edgec.targets import load_target

    scheme = Scheme.from_target(load_target("tvm-x86").quantization)
    layers = {"encoder": "LSTM", "conv": "Conv", "head": "Gemm"}
    assert scheme.leaves_float(layers) == ["encoder"]
    dynamic = dataclasses.replace(scheme, activation_ranges="runtime")
    assert dynamic.leaves_float(layers) == ["head"]  # quantize_dynamic takes Conv, MatMul and LSTM, not Gemm
