"""Data movement moved onto int8 tensors keeps what the graph promises: a quantized tensor that is also a
graph output stays one (the LSTM state outputs of the corpus speaker encoder, h and c, are read by a
Reshape too)."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from edgec.ir import runtime
from edgec.quantize.islands import move_in_int8


def _state_output_also_reshaped() -> ir.Model:
    scale, zero = numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(128, np.uint8), "z")
    shape = numpy_helper.from_array(np.array([1, 6], np.int64), "shape")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="q0"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["h"], name="dq0"),
             helper.make_node("Reshape", ["h", "shape"], ["flat"], name="reshape"),
             helper.make_node("QuantizeLinear", ["flat", "s", "z"], ["flatq"], name="q1"),
             helper.make_node("DequantizeLinear", ["flatq", "s", "z"], ["y"], name="dq1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [2, 3]),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])], [scale, zero, shape])
    return ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def test_a_quantized_graph_output_read_by_a_reshape_stays_an_output():
    model = _state_output_also_reshaped()
    x = {"x": np.linspace(-3, 3, 6, dtype=np.float32).reshape(2, 3)}
    before = runtime.session(model).run(None, x)
    assert move_in_int8(model) == 1
    assert [n.op_type for n in model.graph] == ["QuantizeLinear", "DequantizeLinear", "Reshape", "DequantizeLinear"]
    after = runtime.session(model).run(None, x)
    assert [v.name for v in model.graph.outputs] == ["h", "y"]
    for expected, got in zip(before, after):
        np.testing.assert_array_equal(expected, got)
