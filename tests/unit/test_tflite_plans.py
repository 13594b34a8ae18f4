"""Fast checks of the tflite backend's pure logic: padding and pooling plans, resize plans, kernels
rewritten for TRANSPOSE_CONV, Einsum parsing, kernel dtypes, Clip bounds and error lines."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.ops.conv import transposed_kernel
from edgec.backends.tflite.ops.dense import einsum_terms
from edgec.backends.tflite.ops.pooling import _divisor_map
from edgec.backends.tflite.ops.resize import resize_plan
from edgec.backends.tflite.ops.window import Window, padding_plan, same_pads
from edgec.ir.clip import clip_bounds
from edgec.system import error_line


def _node(text: str, opset: int = 17) -> ir.Node:
    proto = onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : {opset}]>\n' + text)
    proto = onnx.shape_inference.infer_shapes(proto)
    return next(iter(ir.from_proto(proto).graph))


def test_same_padding_puts_the_odd_pixel_at_the_end_upper_and_the_start_lower():
    assert same_pads([8, 8], [3, 3], [2, 2], [1, 1]) == [0, 0, 1, 1]
    assert same_pads([8, 8], [3, 3], [2, 2], [1, 1], upper=False) == [1, 1, 0, 0]
    assert same_pads([7], [5], [1], [2]) == [4, 4]  # dilation 2: a 9-wide window
    assert padding_plan([0, 0, 1, 1], [8, 8], [3, 3], [2, 2], [1, 1]) == "SAME"
    assert padding_plan([1, 1, 1, 1], [8, 8], [3, 3], [2, 2], [1, 1]) == "EXPLICIT"  # PyTorch's split
    assert padding_plan([0, 0, 0, 0], [8, 8], [3, 3], [2, 2], [1, 1]) == "VALID"


def test_average_pool_divisor_counts_what_onnx_counts():
    win = Window([3, 3], [2, 2], [1, 1], [1, 1, 1, 1])
    # 6x6 input, ceil_mode output 4x4: the last window hangs one past the end padding
    excluded = _divisor_map(win, [6, 6], [4, 4], include_pad=False)
    included = _divisor_map(win, [6, 6], [4, 4], include_pad=True)
    assert excluded[0].tolist() == [4, 6, 6, 2] and excluded[1, 1] == 9
    assert included[0].tolist() == [9, 9, 9, 6] and included[3, 3] == 4


def test_resize_uses_a_kernel_where_its_flags_sample_the_same_positions():
    half_pixel = _node('g (float[1,2,4,4] x) => (float[1,2,8,8] y) <float[4] s = {1.0, 1.0, 2.0, 2.0}> '
                       '{ y = Resize <mode="linear"> (x, , s) }')
    plan = resize_plan(half_pixel)
    assert plan.kernel == ("RESIZE_BILINEAR", False, True)
    ceil = _node('g (float[1,2,4,4] x) => (float[1,2,9,9] y) <int64[4] s = {1, 2, 9, 9}> '
                 '{ y = Resize <mode="nearest", nearest_mode="ceil"> (x, , , s) }')
    plan = resize_plan(ceil)
    assert plan.kernel is None and [a.axis for a in plan.axes] == [2, 3]  # GATHER per axis
    cubic = _node('g (float[1,2,4,4] x) => (float[1,2,8,8] y) <float[4] s = {1.0, 1.0, 2.0, 2.0}> '
                  '{ y = Resize <mode="cubic"> (x, , s) }')
    assert "cubic" in resize_plan(cubic)


def test_transposed_kernel_makes_groups_block_diagonal_and_dilates_with_zeros():
    weights = np.arange(2 * 1 * 2 * 2, dtype=np.float32).reshape(2, 1, 2, 2) + 1  # [I=2, O/g=1, 2, 2], 2 groups
    kernel = transposed_kernel(weights, group=2, dilations=[2, 1])  # [O, kh', kw', I]
    assert kernel.shape == (2, 3, 2, 2)
    assert kernel[0, :, :, 1].sum() == 0 and kernel[1, :, :, 0].sum() == 0  # off the group's block
    assert kernel[0, 1, :, 0].tolist() == [0, 0]  # the dilation's zero row
    assert kernel[0, 0, :, 0].tolist() == [1, 2] and kernel[0, 2, :, 0].tolist() == [3, 4]


@pytest.mark.parametrize("equation, ranks, expected", [
    ("bhqd,bhkd->bhqk", (4, 4), (["bhqd", "bhkd"], "bhqk")),
    ("...ij,...jk", (3, 3), (["Aij", "Ajk"], "Aik")),
    ("ij->", (2,), (["ij"], "")),
])
def test_einsum_terms_spell_out_ellipses_and_implicit_outputs(equation, ranks, expected):
    inputs = ", ".join(f"float[{','.join(['2'] * r)}] x{i}" for i, r in enumerate(ranks))
    names = ", ".join(f"x{i}" for i in range(len(ranks)))
    node = _node(f'g ({inputs}) => (y) {{ y = Einsum <equation="{equation}"> ({names}) }}')
    assert einsum_terms(node) == expected
    diagonal = _node('g (float[2,2] x) => (y) { y = Einsum <equation="ii->i"> (x) }')
    assert "diagonal" in einsum_terms(diagonal)


def test_kernel_dtypes_widen_narrow_integers_and_refuse_the_rest():
    assert dtypes.compute_dtype("ADD", "int64") == "int64"
    assert dtypes.compute_dtype("ADD", "int8") == "int32"  # exact, wrapped back by the CAST
    assert dtypes.compute_dtype("DIV", "int64") is None
    assert "no int64 kernel" in dtypes.refusal("DIV", "int64")
    assert dtypes.refusal("LOGICAL_AND", "bool") == ""


def test_clip_bounds_read_attributes_below_opset_11_and_inputs_above():
    old = _node('g (float[4] x) => (y) { y = Clip <min=0.0, max=6.0> (x) }', opset=6)
    new = _node('g (float[4] x) => (y) <float lo = {0.0}> { y = Clip (x, lo) }')
    computed = _node('g (float[4] x, float lo) => (y) { y = Clip (x, lo) }')
    assert clip_bounds(old) == (0.0, 6.0)
    assert clip_bounds(new) == (0.0, None)
    assert clip_bounds(computed) is None


def test_error_line_is_the_error_never_a_log_line():
    text = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n"
    assert error_line("Traceback ...\nValueError: bad shape\n" + text) == "ValueError: bad shape"
    assert error_line("RuntimeError: tflite/kernels/add.cc:109 types differ\n" + text).startswith("RuntimeError")
    assert error_line("something went wrong\n" + text) == "something went wrong"
