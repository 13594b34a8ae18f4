"""The range rules that keep parts of an int8 graph float (quantize/ranges.py): what each finds, from the graph
and calibrated ranges alone."""
from __future__ import annotations

import onnx_ir as ir
from onnx import TensorProto, helper

from edgec.quantize.ranges import Span, log_front_ends


def _spectrum_model() -> ir.Model:
    """audio frames -> filter bank (Conv) -> power (Mul) + eps -> Log -> classifier (Conv)."""
    nodes = [helper.make_node("Conv", ["frames", "bank"], ["bands"], "bank"),
             helper.make_node("Mul", ["bands", "bands"], ["power"], "power"),
             helper.make_node("Add", ["power", "eps"], ["floor"], "floor"),
             helper.make_node("Log", ["floor"], ["log_power"], "log"),
             helper.make_node("Conv", ["log_power", "head"], ["scores"], "head")]
    graph = helper.make_graph(nodes, "spectrum", [helper.make_tensor_value_info("frames", TensorProto.FLOAT, [1, 1, 64])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 4, 64])],
                              [helper.make_tensor("bank", TensorProto.FLOAT, [8, 1, 1], [1.0] * 8),
                               helper.make_tensor("eps", TensorProto.FLOAT, [], [1e-10]),
                               helper.make_tensor("head", TensorProto.FLOAT, [4, 8, 1], [1.0] * 32)])
    return ir.from_proto(helper.make_model(graph))


def test_a_log_over_orders_of_magnitude_keeps_its_front_end_float():
    model = _spectrum_model()
    quiet = {"floor": Span(1e-10, 40.0)}  # silence next to loud bands: under one int8 step of 40 / 255
    (front,) = log_front_ends(model, quiet, lambda names: 0.9)
    assert front.node == "log" and front.float_nodes and set(front.float_nodes) == {"bank", "power", "floor", "log"}
    assert front.ratio > 1e10
    assert log_front_ends(model, {"floor": Span(1.0, 40.0)}, lambda names: 0.9) == []  # within int8's steps


def test_a_front_end_that_holds_the_macs_is_only_reported():
    (front,) = log_front_ends(_spectrum_model(), {"floor": Span(0.0, 40.0)}, lambda names: 0.5)
    assert front.float_nodes == []
