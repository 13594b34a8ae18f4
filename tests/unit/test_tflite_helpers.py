"""The tflite backend's pure arithmetic: axis permutations, int8 parameters, padding and resize plans."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest

from edgec.backends.tflite import layout, quant
from edgec.backends.tflite.ops.resize import resize_plan
from edgec.backends.tflite.ops.window import onnx_pads, padding_plan, same_pads


# ---- layout ---------------------------------------------------------------------------------

def test_a_stored_tensor_is_the_value_transposed_by_its_permutation():
    value = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    stored = np.transpose(value, layout.NHWC)
    assert list(stored.shape) == layout.apply(value.shape, layout.NHWC) == [2, 4, 5, 3]
    assert layout.axis(1, layout.NHWC) == 3  # channels live last
    assert np.array_equal(np.transpose(stored, layout.inverse(layout.NHWC)), value)


def test_the_transpose_between_two_storage_orders():
    value = np.arange(120).reshape(2, 3, 4, 5)
    have, want = layout.NHWC, (0, 3, 1, 2)
    move = layout.between(have, want)
    assert np.array_equal(np.transpose(np.transpose(value, have), move), np.transpose(value, want))


def test_a_transpose_node_changes_only_the_permutation():
    value = np.arange(24).reshape(2, 3, 4)
    onnx_perm = (2, 0, 1)
    stored = np.transpose(value, (1, 2, 0))
    after = layout.after_transpose((1, 2, 0), onnx_perm)
    assert np.array_equal(stored, np.transpose(np.transpose(value, onnx_perm), after))


def test_moving_size_one_axes_moves_no_bytes():
    assert layout.same_memory([1, 8, 1, 1], (0, 1, 2, 3), layout.NHWC)
    assert not layout.same_memory([1, 8, 2, 2], (0, 1, 2, 3), layout.NHWC)


# ---- int8 parameters ------------------------------------------------------------------------

def q_node(op: str, scale, zero_point, axis=None) -> ir.Node:
    x = ir.Value(name="x")
    inputs = [x, ir.Value(name="s", const_value=ir.tensor(np.asarray(scale, np.float32))),
              ir.Value(name="z", const_value=ir.tensor(np.asarray(zero_point)))]
    return ir.node(op, inputs, {"axis": axis} if axis is not None else {})


def test_uint8_parameters_shift_to_int8_with_the_same_real_values():
    params = quant.node_params(q_node("QuantizeLinear", 0.5, np.uint8(130)))
    assert params.scale == (0.5,) and params.zero_point == (2,) and params.per_tensor
    data = np.array([0, 130, 255], np.uint8)
    weights = ir.node("DequantizeLinear", [ir.Value(name="w", const_value=ir.tensor(data)),
                                           *q_node("DequantizeLinear", 0.5, np.uint8(130)).inputs[1:]])
    shifted = quant.dequantized_constant(weights)
    assert shifted.data.dtype == np.int8 and shifted.data.tolist() == [-128, 2, 127]
    assert shifted.real().tolist() == ((data.astype(float) - 130) * 0.5).tolist()


def test_per_channel_weights_keep_their_axis():
    node = q_node("DequantizeLinear", [0.1, 0.2], np.array([0, 0], np.int8), axis=0)
    node.replace_input_with(0, ir.Value(name="w", const_value=ir.tensor(np.array([[10, -10], [5, 5]], np.int8))))
    q = quant.dequantized_constant(node)
    assert q.params.axis == 0 and np.allclose(q.real(), [[1.0, -1.0], [1.0, 1.0]])


def test_int8_zero_points_stay_and_absent_ones_mean_uint8():
    assert quant.node_params(q_node("QuantizeLinear", 0.25, np.int8(-5))).zero_point == (-5,)
    assert quant.integer_dtype(ir.node("QuantizeLinear", [ir.Value(name="x"), ir.Value(name="s")])) == "int8"


# ---- padding and resize plans ---------------------------------------------------------------

@pytest.mark.parametrize("pads, size, kernel, stride, plan", [
    ([0, 0, 0, 0], [8, 8], [3, 3], [1, 1], "VALID"),
    ([1, 1, 1, 1], [8, 8], [3, 3], [1, 1], "SAME"),
    ([1, 1, 1, 1], [8, 8], [3, 3], [2, 2], "EXPLICIT"),  # PyTorch pads (1,1); TF SAME pads (0,1) here
    ([0, 0, 1, 1], [8, 8], [3, 3], [2, 2], "SAME"),
])
def test_padding_plans(pads, size, kernel, stride, plan):
    assert padding_plan(pads, size, kernel, stride, [1, 1]) == plan


def test_tf_same_puts_the_odd_pixel_at_the_end():
    assert same_pads([8, 7], [3, 3], [2, 2], [1, 1]) == [0, 1, 1, 1]
    assert same_pads([8, 8], [3, 3], [1, 1], [2, 2]) == [2, 2, 2, 2]  # dilation widens the window


def test_auto_pad_resolves_like_onnx():
    upper = ir.node("Conv", [ir.Value(name="x")], {"auto_pad": "SAME_UPPER"})
    lower = ir.node("Conv", [ir.Value(name="x")], {"auto_pad": "SAME_LOWER"})
    assert onnx_pads(upper, [8, 8], [3, 3], [2, 2], [1, 1]) == [0, 0, 1, 1]
    assert onnx_pads(lower, [8, 8], [3, 3], [2, 2], [1, 1]) == [1, 1, 0, 0]


def resize(mode: str, transform: str, size_in=4, size_out=8, nearest_mode="round_prefer_floor") -> ir.Node:
    x = ir.Value(name="x", shape=ir.Shape([1, 2, size_in, size_in]))
    node = ir.node("Resize", [x, None, None, ir.Value(name="sizes", const_value=ir.tensor(
        np.array([1, 2, size_out, size_out], np.int64)))],
        {"mode": mode, "coordinate_transformation_mode": transform, "nearest_mode": nearest_mode})
    node.outputs[0].shape = ir.Shape([1, 2, size_out, size_out])
    return node


@pytest.mark.parametrize("mode, transform, nearest, plan", [
    ("linear", "half_pixel", "round_prefer_floor", ("RESIZE_BILINEAR", False, True)),
    ("linear", "align_corners", "round_prefer_floor", ("RESIZE_BILINEAR", True, False)),
    ("linear", "asymmetric", "round_prefer_floor", ("RESIZE_BILINEAR", False, False)),
    ("nearest", "asymmetric", "floor", ("RESIZE_NEAREST_NEIGHBOR", False, False)),
])
def test_resize_plans_that_match_exactly(mode, transform, nearest, plan):
    assert resize_plan(resize(mode, transform, size_out=6, nearest_mode=nearest)).kernel == plan


def test_resize_without_a_tflite_equivalent_says_why():
    assert "has no TFLite kernel" in resize_plan(resize("cubic", "half_pixel"))


# ---- run-time activation ranges as hybrid kernels ---------------------------------------------

def test_dynamically_quantized_matmuls_become_matmuls_of_dequantized_int8_weights(tmp_path):
    """onnxruntime's dynamic quantization (DynamicQuantizeLinear -> MatMulInteger -> Cast -> Mul) read back as
    a MatMul of the per-channel DequantizeLinear of its int8 weights: what TFLite's hybrid kernel computes
    with float activations; its 8-bit embedding table (Gather, then DequantizeLinear) as a Gather of the
    dequantized table, the same rows."""
    import onnx
    from onnx import helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from edgec.backends.tflite.hybrid import as_weights_only
    from edgec.ir import runtime

    table = np.linspace(-2, 2, 40, dtype=np.float32).reshape(5, 8)
    positions = np.linspace(0, 0.5, 32, dtype=np.float32).reshape(4, 8)
    weights = (np.arange(48, dtype=np.float32).reshape(8, 6) - 20.0) / 16.0
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["tokens"], "embed"),
         helper.make_node("Add", ["tokens", "positions"], ["x"], "position"),
         helper.make_node("MatMul", ["x", "w"], ["y"], "dense")], "dense",
        [helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 6])],
        [numpy_helper.from_array(table, "table"), numpy_helper.from_array(positions, "positions"),
         numpy_helper.from_array(weights, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "float.onnx")
    quantize_dynamic(str(tmp_path / "float.onnx"), str(tmp_path / "dynamic.onnx"), per_channel=True,
                     weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gather"])
    model = ir.load(tmp_path / "dynamic.onnx")
    ids = {"ids": np.array([[4, 0, 2, 2]], np.int64)}
    assert {node.op_type for node in model.graph} >= {"DynamicQuantizeLinear", "MatMulInteger"}
    as_weights_only(model)
    assert sorted(node.op_type for node in model.graph) == ["Add", "DequantizeLinear", "DequantizeLinear", "Gather",
                                                            "MatMul"]
    stored = {node.outputs[0].uses()[0].node.op_type: node for node in model.graph if node.op_type == "DequantizeLinear"}
    assert set(stored) == {"Gather", "MatMul"}
    rows = stored["Gather"].inputs[0].const_value.numpy().astype(np.float32) - stored["Gather"].inputs[2].const_value.numpy()
    rows = (rows * stored["Gather"].inputs[1].const_value.numpy())[ids["ids"]]
    int8 = stored["MatMul"].inputs[0].const_value.numpy().astype(np.float32) * stored["MatMul"].inputs[1].const_value.numpy()
    assert stored["MatMul"].attributes.get_int("axis") == 1 and stored["MatMul"].inputs[1].const_value.size == 6
    result = runtime.session(model).run(None, ids)[0]
    assert np.allclose(result, (rows + positions) @ int8, atol=1e-6)
    assert np.abs(int8 - weights).max() <= np.abs(weights).max(0).max() / 254 + 1e-7
    assert np.abs(rows - table[ids["ids"]]).max() <= np.ptp(table) / 255 + 1e-7
    reference = (table[ids["ids"]] + positions) @ weights
    assert np.abs(result - reference).max() <= 0.01 * np.ptp(reference)  # 8-bit weights and table, float rows


def test_run_time_quantization_tflite_has_no_kernel_for_is_refused_naming_the_node():
    """Both MatMul operands quantized at run time (no constant weights): no hybrid kernel takes it."""
    import onnx
    from onnx import helper

    from edgec.backends.tflite.hybrid import as_weights_only
    from edgec.errors import UnsupportedError

    graph = helper.make_graph([
        helper.make_node("DynamicQuantizeLinear", ["a"], ["aq", "as", "az"], "qa"),
        helper.make_node("DynamicQuantizeLinear", ["b"], ["bq", "bs", "bz"], "qb"),
        helper.make_node("MatMulInteger", ["aq", "bq", "az", "bz"], ["ab"], "scores"),
        helper.make_node("Cast", ["ab"], ["abf"], "cast", to=onnx.TensorProto.FLOAT),
        helper.make_node("Mul", ["as", "bs"], ["s"], "scale"),
        helper.make_node("Mul", ["abf", "s"], ["y"], "rescale")], "attention",
        [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [4, 4]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 4])])
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    with pytest.raises(UnsupportedError, match=r"MatMulInteger \(node 'scores'\) has no TFLite hybrid kernel"):
        as_weights_only(model)
