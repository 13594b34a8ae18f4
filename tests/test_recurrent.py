"""LSTM, GRU and RNN unrolled into basic operators compute what onnxruntime's kernels compute.

The lowering is structural, so each case compares it with the runtime's own recurrent kernel
on the same weights and inputs: every direction, both layouts, with and without initial states,
peepholes, clipping and GRU's linear_before_reset. onnxruntime has no batch-first (layout=1)
kernels; those cases are compared with onnx's reference evaluator, which ignores `clip`.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from edgec.passes.recurrent import LowerRecurrentPass, why_not_lowerable

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def recurrent_model(op, direction, layout, initial, linear_before_reset=0, peepholes=False, clip=None,
                    steps=5, batch=2, features=3, hidden=4, seed=0):
    rng = np.random.default_rng(seed)
    gates, directions = GATES[op], 2 if direction == "bidirectional" else 1
    weights = {"W": (directions, gates * hidden, features), "R": (directions, gates * hidden, hidden),
               "B": (directions, 2 * gates * hidden)}
    initializers = [numpy_helper.from_array((0.5 * rng.standard_normal(s)).astype(np.float32), n) for n, s in weights.items()]
    x_shape = [steps, batch, features] if layout == 0 else [batch, steps, features]
    state_shape = [directions, batch, hidden] if layout == 0 else [batch, directions, hidden]
    inputs, names = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)], ["x", "W", "R", "B", ""]
    feeds = {"x": rng.standard_normal(x_shape).astype(np.float32)}
    for state in (["h0", "c0"] if op == "LSTM" else ["h0"]) if initial else []:
        inputs.append(helper.make_tensor_value_info(state, TensorProto.FLOAT, state_shape))
        names.append(state)
        feeds[state] = rng.standard_normal(state_shape).astype(np.float32)
    if peepholes:
        names += [""] * (7 - len(names)) + ["P"]
        initializers.append(numpy_helper.from_array(rng.standard_normal((directions, 3 * hidden)).astype(np.float32), "P"))
    attributes = {"hidden_size": hidden, "direction": direction, "layout": layout}
    if op == "GRU":
        attributes["linear_before_reset"] = linear_before_reset
    if clip:
        attributes["clip"] = clip
    outputs = ["y", "y_h"] + (["y_c"] if op == "LSTM" else [])
    y_shape = [steps, directions, batch, hidden] if layout == 0 else [batch, steps, directions, hidden]
    graph = helper.make_graph([helper.make_node(op, names, outputs, **attributes)], "g", inputs,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, y_shape if n == "y" else state_shape)
                               for n in outputs], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), feeds


def _session(proto):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])


CASES = [(op, direction, layout, initial, extra)
         for op, direction, layout, initial in itertools.product(GATES, ["forward", "reverse", "bidirectional"], [0, 1],
                                                                 [False, True])
         for extra in [{}, {"clip": 0.7}, {"linear_before_reset": 1} if op == "GRU" else {"peepholes": op == "LSTM"}]
         if not (layout == 1 and "clip" in extra)]


@pytest.mark.parametrize("op, direction, layout, initial, extra", CASES)
def test_unrolled_recurrence_matches_the_runtime_kernel(op, direction, layout, initial, extra):
    proto, feeds = recurrent_model(op, direction, layout, initial, **extra)
    expected = _session(proto).run(None, feeds) if layout == 0 else ReferenceEvaluator(proto).run(None, feeds)
    model = ir.from_proto(proto)
    assert LowerRecurrentPass()(model).modified
    assert not {op} & {n.op_type for n in model.graph}
    got = _session(ir.to_proto(model)).run(None, feeds)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=2e-6)


def test_dynamic_sequences_are_left_with_a_reason():
    proto, _ = recurrent_model("LSTM", "forward", 0, False)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "time"
    model = ir.from_proto(proto)
    assert "static" in why_not_lowerable(next(iter(model.graph)))
    assert not LowerRecurrentPass()(model).modified
