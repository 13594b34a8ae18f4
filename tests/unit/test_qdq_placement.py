"""Q/DQ placement for runtimes that fuse a quantization into the layer before it (quantize/placement.py)."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from edgec.quantize import placement

HEADER = '<ir_version: 8, opset_import: ["" : 13]>\n'


def _run(model: ir.Model, feed: dict) -> np.ndarray:
    session = ort.InferenceSession(ir.to_proto(model).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)[0]


def test_a_pair_after_data_movement_moves_to_its_float_input_and_computes_the_same(caplog):
    model = ir.from_proto(onnx.parser.parse_model(HEADER + """
        g (float[1, 4, 8, 8] x) => (float[1, 64] y)
        <float s = {0.05}, uint8 z = {3}, int64[2] shape = {1, 64}> {
            r = Relu (x)
            p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (r)
            t = Transpose <perm = [0, 2, 3, 1]> (p)
            f = Reshape (t, shape)
            q = QuantizeLinear (f, s, z)
            d = DequantizeLinear (q, s, z)
            y = Sigmoid (d)
        }"""))
    x = np.random.default_rng(0).normal(0, 4, (1, 4, 8, 8)).astype(np.float32)
    before = _run(model, {"x": x})
    relu = model.graph.node(0).outputs[0]
    relu.shape, relu.type = ir.Shape([1, 4, 8, 8]), ir.TensorType(ir.DataType.FLOAT)  # as shape inference leaves it
    assert placement.hoist_over_data_movement(model) == 3  # over Reshape, Transpose and MaxPool
    order = [n.op_type for n in model.graph]
    assert order == ["Relu", "QuantizeLinear", "DequantizeLinear", "MaxPool", "Transpose", "Reshape", "Sigmoid"]
    quantized, dequantized = model.graph.node(1).outputs[0], model.graph.node(2).outputs[0]
    assert quantized.type == ir.TensorType(ir.DataType.UINT8) and list(quantized.shape) == [1, 4, 8, 8]
    assert dequantized.type == ir.TensorType(ir.DataType.FLOAT) and list(dequantized.shape) == [1, 4, 8, 8]
    with caplog.at_level("WARNING", logger="onnx_ir.serde"):
        np.testing.assert_array_equal(_run(model, {"x": x}), before)
    assert not caplog.records  # a moved value's shape has its type: saving writes both, with no warning


def test_a_pair_after_an_int8_tensor_or_a_shared_output_stays():
    model = ir.from_proto(onnx.parser.parse_model(HEADER + """
        g (float[1, 4, 8, 8] x) => (float[1, 4, 4, 4] y, float[1, 4, 4, 4] p)
        <float s = {0.05}, uint8 z = {3}> {
            q0 = QuantizeLinear (x, s, z)
            d0 = DequantizeLinear (q0, s, z)
            m = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (d0)
            q1 = QuantizeLinear (m, s, z)
            d1 = DequantizeLinear (q1, s, z)
            y = Relu (d1)
            p = MaxPool <kernel_shape = [2, 2], strides = [2, 2]> (x)
            q2 = QuantizeLinear (p, s, z)
        }"""))
    assert placement.hoist_over_data_movement(model) == 0


def test_activation_functions_written_as_products_are_found():
    model = ir.from_proto(onnx.parser.parse_model(HEADER + """
        g (float[1, 8] x, float[1, 8] g) => (float[1, 8] swish, float[1, 8] hswish, float[1, 8] gated, float[1, 8] sq)
        <float three = {3.0}, float zero = {0.0}, float six = {6.0}> {
            sig = Sigmoid (x)
            swish = Mul (x, sig)
            shifted = Add (x, three)
            clipped = Clip (shifted, zero, six)
            scaled = Div (clipped, six)
            hswish = Mul (scaled, x)
            other = Sigmoid (g)
            gated = Mul (x, other)
            sq = Mul (x, x)
        }"""))
    found = placement.activation_products(model)
    assert [n.outputs[0].name for n in model.graph if n.name in found] == ["swish", "hswish"]
