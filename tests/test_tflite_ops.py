"""tflite-arm operators: small ONNX graphs lowered by the backend and run in LiteRT with XNNPACK.

Every case runs in fp32 (outputs within 1e-5 of onnxruntime, or the case's stated tolerance for a
decomposition) and in int8 through the shared quantization engine (outputs against onnxruntime
running the same QDQ graph, and against float within the int8 verify tolerance). The cases cover
each operator family of the lowering table; tests below check integer arithmetic exactly, the Erf
decomposition's bound, and that a graph LiteRT rejects never becomes an artifact.
"""
from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np
import onnx
import pytest

from conftest import ROOT
from tflite_helpers import lower, make_model, run_onnxruntime, run_tflite

pytest.importorskip("ai_edge_litert")

RNG = np.random.default_rng(0)
CALIBRATION_SAMPLES = 16


def weights(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


@dataclass(frozen=True)
class Case:
    """A graph reading float x [1,4,8,8] (unless it declares other inputs) and writing y."""

    text: str
    initializers: dict = field(default_factory=dict)
    atol: float = 1e-5  # fp32 bound against onnxruntime; a decomposition states its own
    opset: int = 17
    integers: tuple[int, int] = (0, 4)  # the range integer inputs are drawn from


X = "float[1,4,8,8] x"
CONV_W = dict(w=weights(6, 4, 3, 3), b=weights(6))

CASES = {
    # ---- convolutions, pooling, dense and data movement of CNNs

    "conv_same": Case(f"g ({X}) => (y) {{ y = Conv <pads=[1,1,1,1]> (x, w, b) }}", CONV_W),
    "conv_stride2_torch_pads": Case(f"g ({X}) => (y) {{ y = Conv <pads=[1,1,1,1], strides=[2,2]> (x, w, b) }}", CONV_W),
    "conv_same_upper": Case(f"g ({X}) => (y) {{ y = Conv <auto_pad=\"SAME_UPPER\", strides=[2,2]> (x, w, b) }}",
                            CONV_W),
    "conv_same_lower": Case(f"g ({X}) => (y) {{ y = Conv <auto_pad=\"SAME_LOWER\", strides=[2,2]> (x, w, b) }}",
                            CONV_W),
    "conv_valid": Case(f"g ({X}) => (y) {{ y = Conv <auto_pad=\"VALID\"> (x, w, b) }}", CONV_W),
    "conv_asymmetric_pads": Case(f"g ({X}) => (y) {{ y = Conv <pads=[0,1,2,0]> (x, w, b) }}", CONV_W),
    "conv_dilated": Case(f"g ({X}) => (y) {{ y = Conv <pads=[2,2,2,2], dilations=[2,2]> (x, w, b) }}", CONV_W),
    "conv_grouped": Case(f"g ({X}) => (y) {{ y = Conv <group=2, pads=[1,1,1,1]> (x, w, b) }}",
                     dict(w=weights(6, 2, 3, 3), b=weights(6))),
    "conv_depthwise_multiplier": Case(f"g ({X}) => (y) {{ y = Conv <group=4, pads=[1,1,1,1], strides=[2,2]> (x, w) }}",
                                  dict(w=weights(8, 1, 3, 3))),
    "conv_relu_fused": Case(f"g ({X}) => (y) {{ c = Conv <pads=[1,1,1,1]> (x, w, b) \n y = Relu (c) }}", CONV_W),
    "conv_relu6_fused": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = Clip (c, lo, hi) }}",
                         dict(**CONV_W, lo=np.array(0, np.float32), hi=np.array(6, np.float32))),
    "conv_transpose": Case(f"g ({X}) => (y) {{ y = ConvTranspose <strides=[2,2], pads=[1,1,1,1], output_padding=[1,1]> "
                       f"(x, w, b) }}", dict(w=weights(4, 3, 3, 3), b=weights(3))),
    "conv_transpose_k4": Case(f"g ({X}) => (y) {{ y = ConvTranspose <strides=[2,2], pads=[1,1,1,1]> (x, w) }}",
                          dict(w=weights(4, 2, 4, 4))),
    "nhwc_elementwise": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n a = Add (c, k) \n s = Sub (a, k) \n"
                         f"m = Mul (s, k) \n y = Div (m, d) }}",
                         dict(**CONV_W, k=weights(6, 1, 1), d=np.full((6, 1, 1), 2.0, np.float32))),
    "add_two_branches": Case(f"g ({X}) => (y) {{ c = Conv <pads=[1,1,1,1]> (x, w, b) \n"
                             f"d = Conv <pads=[1,1,1,1]> (x, w, b)"
                         f"\n e = Relu (d) \n y = Add (c, e) }}", CONV_W),
    "activations": Case(f"g ({X}) => (y) {{ a = Sigmoid (x) \n t = Tanh (a) \n h = HardSwish (x) \n"
                    f"s = HardSigmoid (h) \n l = LeakyRelu <alpha=0.1> (s) \n p = PRelu (l, slope) \n"
                    f"q = Add (t, p) \n y = Clip (q, lo, hi) }}",
                    dict(slope=weights(4, 1, 1), lo=np.array(-0.5, np.float32), hi=np.array(0.7, np.float32))),
    "maxpool_torch_pads": Case(f"g ({X}) => (y) {{ y = MaxPool <kernel_shape=[3,3], strides=[2,2], "
                               f"pads=[1,1,1,1]> (x) }}",
                           {}),
    "maxpool_same": Case(f"g ({X}) => (y) {{ y = MaxPool <kernel_shape=[2,2], strides=[2,2]> (x) }}", {}),
    "avgpool_include_pad": Case(f"g ({X}) => (y) {{ y = AveragePool <kernel_shape=[3,3], pads=[1,1,1,1], "
                            f"count_include_pad=1> (x) }}", {}),
    "avgpool_same_exclude_pad": Case(f"g ({X}) => (y) {{ y = AveragePool <kernel_shape=[3,3], pads=[1,1,1,1]> "
                                     f"(x) }}"),
    "global_average_pool": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = GlobalAveragePool (c) }}", CONV_W),
    "concat_channels": Case(f"g ({X}) => (y) {{ c = Conv <pads=[1,1,1,1]> (x, w, b) \n y = Concat <axis=1> (c, x) }}",
                        CONV_W),
    "flatten_spatial": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n f = Flatten (c) \n"
                            f"y = Gemm <transB=1> (f, g, h) }}",
                        dict(**CONV_W, g=weights(5, 216), h=weights(5))),
    "gemm_alpha_beta": Case(f"g ({X}) => (y) {{ f = Flatten (x) \n y = Gemm <alpha=0.5, beta=2.0> (f, g, h) }}",
                        dict(g=weights(256, 7), h=weights(7))),
    "reshape_squeeze_unsqueeze": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n p = GlobalAveragePool (c) \n"
                                  f"s = Squeeze (p, ax) \n u = Unsqueeze (s, ax0) \n y = Reshape (u, shp) }}",
                                  dict(**CONV_W, ax=np.array([2, 3]), ax0=np.array([0]), shp=np.array([2, 3]))),
    "transpose_inside": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n t = Transpose <perm=[0,2,3,1]> (c) \n"
                         f"y = MatMul (t, m) }}", dict(**CONV_W, m=weights(6, 5))),
    "softmax_channels": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = Softmax <axis=1> (c) }}", CONV_W),
    "softmax_spatial": Case(f"g ({X}) => (y) {{ y = Softmax <axis=2> (x) }}", {}),
    "resize_nearest": Case(f"g ({X}) => (y) {{ y = Resize <mode=\"nearest\", "
                       f"coordinate_transformation_mode=\"asymmetric\", nearest_mode=\"floor\"> (x, , sc) }}",
                       dict(sc=np.array([1, 1, 2, 2], np.float32))),
    "resize_bilinear_half_pixel": Case(f"g ({X}) => (y) {{ y = Resize <mode=\"linear\"> (x, , sc) }}",
                                   dict(sc=np.array([1, 1, 2, 2], np.float32))),
    "resize_bilinear_align_corners": Case(f"g ({X}) => (y) {{ y = Resize <mode=\"linear\", "
                                      f"coordinate_transformation_mode=\"align_corners\"> (x, , , sz) }}",
                                      dict(sz=np.array([1, 4, 13, 11], np.int64))),
    "pad_constant": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = Pad (c, pads, v) }}",
                     dict(**CONV_W, pads=np.array([0, 0, 1, 2, 0, 0, 3, 1]), v=np.array(0.25, np.float32))),
    "reduce_mean_channels": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n"
                                 f"y = ReduceMean <keepdims=0, axes=[1]> (c) }}",
                             CONV_W),
    "slice_steps": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = Slice (c, st, en, ax, sp) }}",
                    dict(**CONV_W, st=np.array([1, 0]), en=np.array([5, 6]), ax=np.array([1, -1]),
                         sp=np.array([2, 2]))),
    "slice_reverse": Case(f"g ({X}) => (y) {{ y = Slice (x, st, en, ax, sp) }}",
                      dict(st=np.array([-1]), en=np.array([-100]), ax=np.array([3]), sp=np.array([-1]))),
    "split_channels": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n p, q = Split <axis=1> (c, sz) \n"
                           f"y = Mul (p, q) }}",
                       dict(**CONV_W, sz=np.array([3, 3]))),
    "matmul_two_activations": Case(f"g ({X}) => (y) {{ r = Reshape (x, s) \n t = Transpose <perm=[0,2,1]> (r) \n"
                               f"y = MatMul (r, t) }}", dict(s=np.array([4, 8, 8]))),
    # ---- normalization
    "batch_norm_alone": Case(f"g ({X}) => (y) {{ y = BatchNormalization (x, s, b, m, v) }}",
                             dict(s=weights(4), b=weights(4), m=weights(4), v=np.abs(weights(4)) + 0.5)),
    "instance_norm": Case(f"g ({X}) => (y) {{ y = InstanceNormalization <epsilon=0.01> (x, s, b) }}",
                          dict(s=weights(4), b=weights(4))),
    "layer_norm_last_axis": Case(f"g ({X}) => (y) {{ y = LayerNormalization (x, s, b) }}",
                                 dict(s=weights(8), b=weights(8))),
    "layer_norm_from_axis_1": Case(f"g ({X}) => (y) {{ y = LayerNormalization <axis=1> (x, s, b) }}",
                                   dict(s=weights(4, 8, 8), b=weights(4, 8, 8))),
    "group_norm": Case(f"g ({X}) => (y) {{ y = GroupNormalization <num_groups=2> (x, s, b) }}",
                       dict(s=weights(4), b=weights(4)), opset=21),
    "lp_norm": Case(f"g ({X}) => (y) {{ y = LpNormalization <axis=1, p=2> (x) }}"),
    # ---- elementwise math (Erf: A&S 7.1.26, stated bound 1e-4)
    "unary_math": Case(f"g ({X}) => (y) {{ a = Abs (x) \n s = Sqrt (a) \n e = Exp (x) \n l = Log (e) \n"
                       f"n = Neg (l) \n r = Reciprocal (e) \n f = Floor (x) \n c = Ceil (x) \n o = Round (x) \n"
                       f"g = Sign (x) \n i = Sin (x) \n k = Cos (x) \n y = Sum (s, n, r, f, c, o, g, i, k) }}"),
    "powers": Case(f"g ({X}) => (y) {{ a = Abs (x) \n p = Pow (x, two) \n q = Pow (a, half) \n r = Pow (a, three) \n"
                   f"y = Sum (p, q, r) }}", dict(two=np.array(2.0, np.float32), half=np.array(0.5, np.float32),
                                                 three=np.array(3.0, np.float32)), atol=1e-4),
    "erf": Case(f"g ({X}) => (y) {{ s = Mul (x, k) \n y = Erf (s) }}", dict(k=np.array(2.0, np.float32)), atol=1e-4),
    "gelu_exact_and_tanh": Case(f"g ({X}) => (y) {{ a = Gelu (x) \n b = Gelu <approximate=\"tanh\"> (x) \n"
                                f"y = Add (a, b) }}", opset=20),
    "smooth_activations": Case(f"g ({X}) => (y) {{ a = Softplus (x) \n b = Mish (x) \n c = Elu <alpha=0.5> (x) \n"
                               f"d = Selu (x) \n e = Softsign (x) \n f = ThresholdedRelu <alpha=0.3> (x) \n"
                               f"y = Sum (a, b, c, d, e, f) }}", opset=18),
    "min_max_mean_variadic": Case(f"g ({X}) => (y) {{ t = Tanh (x) \n a = Max (x, t, k) \n b = Min (x, t, k) \n"
                                  f"y = Mean (a, b, x) }}", dict(k=weights(8))),
    # ---- comparisons, logic, Where, Cast
    "compare_and_select": Case(f"g ({X}) => (y) {{ g = Greater (x, lo) \n l = Less (x, hi) \n a = And (g, l) \n"
                               f"e = Equal (x, x) \n o = Or (a, e) \n n = Not (a) \n q = Xor (n, o) \n"
                               f"ge = GreaterOrEqual (x, lo) \n le = LessOrEqual (x, hi) \n w = And (ge, le) \n"
                               f"s = Where (q, x, k) \n y = Where (w, s, lo) }}",
                               dict(lo=np.array(-0.5, np.float32), hi=np.array(0.7, np.float32), k=weights(8))),
    "cast_truncates": Case(f"g ({X}) => (y) {{ s = Mul (x, k) \n i = Cast <to=6> (s) \n f = Cast <to=1> (i) \n"
                           f"b = Cast <to=9> (i) \n c = Cast <to=1> (b) \n y = Add (f, c) }}",
                           dict(k=np.array(3.0, np.float32))),
    # ---- indexing
    "gather_constant_indices": Case(f"g ({X}) => (y) {{ y = Gather <axis=1> (x, i) }}", dict(i=np.array([3, -1, 0]))),
    "gather_progression_and_scalar": Case(f"g ({X}) => (y) {{ c = Conv (x, w, b) \n a = Gather <axis=1> (c, i) \n"
                                          f"s = Gather <axis=3> (c, j) \n u = Unsqueeze (s, one) \n y = Add (a, u) }}",
                                          dict(**CONV_W, i=np.array([1, 3, 5]), j=np.array(-4), one=np.array([1]))),
    "gather_computed_indices": Case(f"g ({X}, int64[1,5] i) => (y) {{ t = Reshape (x, s) \n y = Gather (t, i) }}",
                                    dict(s=np.array([32, 8])), integers=(-32, 32)),
    "gather_elements": Case(f"g ({X}) => (y) {{ y = GatherElements <axis=2> (x, i) }}",
                            dict(i=RNG.integers(-8, 8, (1, 4, 3, 8)))),
    "gather_nd": Case(f"g ({X}) => (y) {{ y = GatherND (x, i) }}", dict(i=np.array([[[0, 1], [0, -1], [0, 2]]]))),
    "scatter_nd": Case(f"g ({X}) => (y) {{ y = ScatterND (x, i, u) }}",
                       dict(i=np.array([[0, 1], [0, 3]]), u=weights(2, 8, 8))),
    "one_hot_expand_tile": Case(f"g ({X}) => (y) {{ h = OneHot <axis=1> (i, d, v) \n e = Expand (h, s) \n"
                                f"t = Tile (e, r) \n y = Add (t, x) }}",
                                dict(i=np.array([[[1, -1, 2, 0, 3, 1, 2, 0]]]), d=np.array(4), v=np.array([0.0, 2.0],
                                     np.float32), s=np.array([1, 4, 2, 8]), r=np.array([1, 1, 4, 1]))),
    # ---- reductions
    "reductions": Case(f"g ({X}) => (y) {{ a = ReduceSum <keepdims=1> (x, ax) \n b = ReduceMax <keepdims=1> (x, ax) \n"
                       f"c = ReduceMin <keepdims=1> (x, ax) \n d = ReduceL2 <keepdims=1> (x, ax) \n"
                       f"e = ReduceSumSquare <keepdims=1> (x, ax) \n f = ReduceLogSumExp <keepdims=1> (x, ax) \n"
                       f"g = ReduceL1 <keepdims=1> (x, ax) \n t = Tanh (x) \n p = ReduceProd <keepdims=1> (t, ax) \n"
                       f"y = Sum (a, b, c, d, e, f, g, p) }}", dict(ax=np.array([1, 3])), opset=18),
    "argmax_keepdims_last_index": Case(f"g ({X}) => (y) {{ r = Round (x) \n"
                                       f"a = ArgMax <axis=1, select_last_index=1> (r) \n"
                                       f"b = ArgMin <axis=3, keepdims=0> (x) \n c = Cast <to=1> (a) \n"
                                       f"d = Cast <to=1> (b) \n e = Unsqueeze (d, three) \n y = Add (c, e) }}",
                                       dict(three=np.array([3]))),
    "top_k_largest_and_smallest": Case(f"g ({X}) => (y) {{ v, i = TopK <axis=1> (x, k) \n"
                                       f"w, j = TopK <largest=0> (x, k) \n f = Cast <to=1> (i) \n"
                                       f"t = Transpose <perm=[0,1,3,2]> (w) \n s = ReduceSum (t, ax) \n"
                                       f"y = Sum (v, f, s) }}", dict(k=np.array([2]), ax=np.array([1, 2]))),
    "cumsum_reverse_exclusive": Case(f"g ({X}) => (y) {{ a = CumSum <reverse=1, exclusive=1> (x, ax) \n"
                                     f"b = CumSum (x, ax2) \n y = Add (a, b) }}",
                                     dict(ax=np.array(3), ax2=np.array(-2))),
    # ---- layout
    "depth_space_both_modes": Case(f"g ({X}) => (y) {{ a = DepthToSpace <blocksize=2> (x) \n"
                                   f"b = DepthToSpace <blocksize=2, mode=\"CRD\"> (x) \n c = Add (a, b) \n"
                                   f"y = SpaceToDepth <blocksize=2> (c) }}"),
    "trilu_and_identity_transpose": Case(f"g ({X}) => (y) {{ t = Transpose <perm=[0,1,2,3]> (x) \n"
                                         f"u = Trilu (t, k) \n l = Trilu <upper=0> (x) \n y = Add (u, l) }}",
                                         dict(k=np.array(1))),
    # ---- pooling (ceil_mode, count_include_pad, 1-D) and convolution in 1-D
    "maxpool_ceil_mode": Case(f"g ({X}) => (y) {{ y = MaxPool <kernel_shape=[3,3], strides=[2,2], ceil_mode=1> (x) }}"),
    "avgpool_ceil_exclude_pad": Case(f"g ({X}) => (y) {{ y = AveragePool <kernel_shape=[3,3], strides=[2,2], "
                                     f"pads=[1,0,1,0], ceil_mode=1> (x) }}"),
    "avgpool_ceil_include_pad": Case(f"g ({X}) => (y) {{ y = AveragePool <kernel_shape=[3,3], strides=[2,2], "
                                     f"pads=[1,1,1,1], ceil_mode=1, count_include_pad=1> (x) }}"),
    "conv_and_pool_1d": Case(f"g ({X}) => (y) {{ r = Reshape (x, s) \n c = Conv <pads=[1,2], strides=[2]> (r, w, b) \n"
                             f"m = MaxPool <kernel_shape=[3], strides=[2], ceil_mode=1> (c) \n"
                             f"y = AveragePool <kernel_shape=[2], pads=[1,0]> (m) }}",
                             dict(s=np.array([1, 4, 64]), w=weights(6, 4, 4), b=weights(6))),
    "global_max_pool_lrn": Case(f"g ({X}) => (y) {{ m = GlobalMaxPool (x) \n n = LRN <size=3> (x) \n"
                                f"y = Add (m, n) }}"),
    # ---- Pad
    "pad_reflect_edge_negative": Case(f"g ({X}) => (y) {{ a = Pad <mode=\"reflect\"> (x, p) \n"
                                      f"b = Pad <mode=\"edge\"> (x, p) \n c = Add (a, b) \n y = Pad (c, q) }}",
                                      dict(p=np.array([0, 0, 2, 3, 0, 0, 1, 2]),
                                           q=np.array([0, 0, -1, 1, 0, 0, 2, -3]))),
    "pad_wrap": Case(f"g ({X}) => (y) {{ y = Pad <mode=\"wrap\"> (x, p) }}", dict(p=np.array([0, 0, 2, 3, 0, 0, 1, 2])),
                     opset=19),
    # ---- Resize where no TFLite kernel flag matches: GATHER plans
    "resize_nearest_round_prefer_ceil": Case(f"g ({X}) => (y) {{ y = Resize <mode=\"nearest\", "
                                             f"coordinate_transformation_mode=\"asymmetric\", "
                                             f"nearest_mode=\"round_prefer_ceil\"> (x, , , sz) }}",
                                             dict(sz=np.array([1, 4, 13, 5]))),
    "resize_linear_pytorch_downsample": Case(f"g ({X}) => (y) {{ y = Resize <mode=\"linear\", "
                                             f"coordinate_transformation_mode=\"pytorch_half_pixel\"> (x, , , sz) }}",
                                             dict(sz=np.array([1, 4, 5, 3]))),
    # ---- MatMul, Einsum, Softmax
    "matmul_batched_broadcast": Case(f"g ({X}) => (y) {{ r = Reshape (x, s) \n a = MatMul (r, m) \n"
                                     f"b = MatMul (v, r) \n"
                                     f"c = MatMul (r, v2) \n d = Unsqueeze (c, ax) \n e = Add (a, d) \n"
                                     f"f = Unsqueeze (b, one) \n y = Add (e, f) }}",
                                     dict(s=np.array([4, 8, 8]), m=weights(1, 8, 8), v=weights(8), v2=weights(8),
                                          ax=np.array([2]), one=np.array([1]))),
    "einsum_attention": Case(f"g ({X}) => (y) {{ q = Reshape (x, s) \n k = Mul (q, two) \n"
                             f"a = Einsum <equation=\"bhqd,bhkd->bhqk\"> (q, k) \n"
                             f"p = Softmax <axis=-1> (a) \n y = Einsum <equation=\"bhqk,bhkd->bhqd\"> (p, q) }}",
                             dict(s=np.array([1, 2, 16, 8]), two=np.array(2.0, np.float32)), atol=1e-4),
    "softmax_any_axis_and_log": Case(f"g ({X}) => (y) {{ a = Softmax <axis=0> (x) \n b = LogSoftmax <axis=2> (x) \n"
                                     f"y = Add (a, b) }}", atol=1e-4),
    "softmax_opset11_flattens": Case(f"g ({X}) => (y) {{ y = Softmax <axis=1> (x) }}", opset=11),
    # ---- sequence models
    "lstm_bidirectional_all_outputs": Case(f"g ({X}) => (y) {{ r = Reshape (x, s) \n"
                                           f"o, h, c = LSTM <hidden_size=5, direction=\"bidirectional\"> "
                                           f"(r, w, rw, bb, , h0, c0, p) \n f = Flatten <axis=0> (o) \n"
                                           f"g = Flatten <axis=0> (h) \n e = Flatten <axis=0> (c) \n"
                                           f"y = Concat <axis=1> (f, g, e) }}",
                                           dict(s=np.array([8, 4, 8]), w=weights(2, 20, 8), rw=weights(2, 20, 5),
                                                bb=weights(2, 40), h0=weights(2, 4, 5), c0=weights(2, 4, 5),
                                                p=weights(2, 15))),
    "gru_reverse_linear_before_reset": Case(f"g ({X}) => (y) {{ r = Reshape (x, s) \n"
                                            f"o, h = GRU <hidden_size=6, linear_before_reset=1, "
                                            f"direction=\"reverse\"> (r, w, rw, bb, , h0) \n"
                                            f"f = Flatten <axis=0> (o) \n"
                                            f"g = Flatten <axis=0> (h) \n y = Concat <axis=1> (f, g) }}",
                                            dict(s=np.array([8, 4, 8]), w=weights(1, 18, 8), rw=weights(1, 18, 6),
                                                 bb=weights(1, 36), h0=weights(1, 4, 6))),
}


def _samples(proto: onnx.ModelProto, case: Case, count: int, rng) -> dict[str, np.ndarray]:
    """`count` samples of every graph input, stacked along the leading (batch 1) axis."""
    arrays = {}
    initializers = {i.name for i in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        shape = [d.dim_value for d in value.type.tensor_type.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type)
        full = [count * shape[0], *shape[1:]]
        arrays[value.name] = rng.standard_normal(full).astype(dtype) if dtype.kind == "f" else \
            rng.integers(*case.integers, full).astype(dtype)
    return arrays


@pytest.mark.parametrize("precision", ["fp32", "int8"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_operator_matches_onnxruntime(name, precision, tmp_path):
    case = CASES[name]
    proto = make_model(case.text, opset=case.opset, **case.initializers)
    feeds = _samples(proto, case, 1, np.random.default_rng(1))
    expected = run_onnxruntime(proto, feeds)["y"]
    calibration = _samples(proto, case, CALIBRATION_SAMPLES, np.random.default_rng(2))
    path, _, lowered_model = lower(proto, tmp_path, precision, calibration)
    got, ops = run_tflite(path, feeds)
    assert got["y"].shape == expected.shape
    if precision == "fp32":
        np.testing.assert_allclose(got["y"], expected, rtol=1e-5, atol=case.atol)
        if name.startswith("conv_relu"):
            assert ops == ["TRANSPOSE", "CONV_2D", "TRANSPOSE"], ops  # the activation is fused into the conv
        if name in ("nhwc_elementwise", "add_two_branches", "concat_channels", "split_channels", "pad_constant"):
            assert ops.count("TRANSPOSE") == 2, ops  # one at the input, one at the output: NHWC propagates
        return
    # int8: the same numbers as onnxruntime on the same QDQ graph, up to TFLite's integer rounding
    span = float(np.ptp(expected)) or 1.0
    reference = run_onnxruntime(lowered_model, feeds)["y"]
    assert np.abs(got["y"] - reference).max() <= INT8_AGREEMENT * span, np.abs(got["y"] - reference).max() / span
    assert np.abs(got["y"] - expected).max() <= INT8_FIDELITY * span


# of the output range: TFLite's int8 kernels against onnxruntime on the same QDQ graph (worst measured: 0.050, the
# activations case, from TFLite's int8 LOGISTIC/TANH/HARD_SWISH tables; the others stay under 0.013)
INT8_AGREEMENT = 0.06
INT8_FIDELITY = 0.25  # of the output range: against float, the int8 verify tolerance


# ---- Erf: a decomposition with a stated bound ------------------------------------------------

def test_erf_decomposition_within_its_stated_bound(tmp_path):
    """A&S 7.1.26 in float32 over [-8, 8] and at the edges: within ERF_TOLERANCE (1e-4) of erf."""
    from edgec.backends.tflite.ops.arithmetic import ERF_TOLERANCE

    x = np.concatenate([np.linspace(-8, 8, 4001), [0.0, -0.0, 1e-30, -1e-30, 1e-8, 30.0, -30.0]]).astype(np.float32)
    proto = make_model(f"g (float[{x.size}] x) => (y) {{ y = Erf (x) }}")
    path, _, _ = lower(proto, tmp_path)
    got, ops = run_tflite(path, {"x": x})
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    error = np.abs(got["y"] - exact).max()
    assert error <= ERF_TOLERANCE, error
    assert error <= 2e-6  # what it measures: the bound leaves room for other CPUs' exp
    assert "SIGN" not in ops and "POW" not in ops  # every step is one XNNPACK runs


# ---- integers: exact arithmetic on their own kernels --------------------------------------------

INDEX_ARITHMETIC = """g (int32[1,16] i, int64[1,16] j, int8[1,16] k) => (int32[1,16] flat, int64[1,16] picked,
                                                                   int8[1,16] narrow, int64[1,16] steps) {
    r = Mul (i, rows)
    j32 = Cast <to=6> (j)
    c = Add (r, j32)
    q = Div (c, three)
    m = Mod (c, five)
    n = Mod <fmod=1> (c, five)
    d = Sub (q, m)
    flat = Add (d, n)
    big = Greater (flat, ten)
    clipped = Where (big, flat, zero)
    wide = Cast <to=7> (clipped)
    picked = Gather <axis=0> (table, wide)
    narrow = Add (k, k)
    steps = CumSum (j, axis)
}"""


def test_int32_index_arithmetic_is_exact(tmp_path):
    """Index computation on int32/int64/int8 tensors: each op on the kernel for its dtype (int8 widened to
    int32 and wrapped back), the integers exactly onnxruntime's."""
    proto = make_model(INDEX_ARITHMETIC, rows=np.array(7, np.int32), three=np.array(3, np.int32),
                       five=np.array(5, np.int32), ten=np.array(10, np.int32), zero=np.array(0, np.int32),
                       table=np.arange(100, 100 + 64, dtype=np.int64) * 3, axis=np.array(1))
    rng = np.random.default_rng(3)
    feeds = {"i": rng.integers(-20, 20, (1, 16)).astype(np.int32), "j": rng.integers(0, 9, (1, 16)),
             "k": rng.integers(-128, 128, (1, 16)).astype(np.int8)}
    expected = run_onnxruntime(proto, feeds)
    path, lowered, _ = lower(proto, tmp_path)
    got, ops = run_tflite(path, feeds)
    for name, value in expected.items():
        assert got[name].dtype == value.dtype, name
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert {"MUL", "ADD", "DIV", "FLOOR_MOD", "SUB", "GREATER", "SELECT_V2", "GATHER", "CUMSUM"} <= set(ops)
    assert [spec.dtype for spec in lowered.outputs] == ["int32", "int64", "int8", "int64"]


def test_an_integer_op_without_a_kernel_is_refused_by_name():
    from edgec.backends import get_backend
    import onnx_ir as ir

    proto = make_model("g (int64[4] a, int64[4] b) => (int64[4] y) { y = Div (a, b) }")
    (refusal,) = get_backend("tflite").unsupported(ir.from_proto(proto))
    assert refusal.op_type == "Div" and "no int64 kernel" in refusal.reason


# ---- valid flatbuffers or no file ----------------------------------------------------------------

BROKEN_LOWERING = """
import sys
from edgec.backends.tflite.ops import registry
from edgec.cli import main

def broken_tanh(lowering, node):  # a lowering bug: an int32 ADD of a float tensor
    ref = lowering.get(node.inputs[0], float_=True)
    out = lowering.new(node.outputs[0], ref.perm, dtype="int32")
    lowering.emit("ADD", [ref.index, lowering.scalar("one", 1, "int32")], [out.index])

registry.TABLE["Tanh"] = broken_tanh
sys.exit(main(sys.argv[1:]))
"""


def test_a_model_litert_rejects_names_the_operator_exits_2_and_writes_nothing(tmp_path):
    proto = make_model(f"g ({X}) => (y) {{ c = Conv <pads=[1,1,1,1]> (x, w, b) \n y = Tanh (c) }}", **CONV_W)
    proto.graph.node[1].name = "the_tanh"
    source = tmp_path / "model.onnx"
    onnx.save(proto, source)
    out = tmp_path / "out"
    command = [sys.executable, "-c", BROKEN_LOWERING, "build", "-t", "tflite-arm", str(source), "-o", str(out)]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("edgec:")]
    assert len(lines) == 1, proc.stderr
    assert "Tanh (node 'the_tanh')" in lines[0] and "ADD" in lines[0] and "INFO:" not in lines[0], lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out*"))


# ---- LSTM: LiteRT's kernel where exact, unrolled steps otherwise ------------------------------------

LSTM_ZERO_STATE = Case(f"g ({X}) => (y) {{ r = Reshape (x, s) \n"
                       f"o, h = LSTM <hidden_size=5, direction=\"bidirectional\"> (r, w, rw, bb, , , , p) \n"
                       f"f = Flatten <axis=0> (o) \n g = Flatten <axis=0> (h) \n y = Concat <axis=1> (f, g) }}",
                       dict(s=np.array([8, 4, 8]), w=weights(2, 20, 8), rw=weights(2, 20, 5), bb=weights(2, 40),
                            p=weights(2, 15)))


@pytest.mark.parametrize("form", ["kernel", "unrolled"])
def test_lstm_forms_agree_with_onnxruntime_run_after_run(form, tmp_path):
    """The kernel keeps its state in variable tensors: reset before each run (as run.py does), every run
    starts from zero like onnxruntime's."""
    from ai_edge_litert.interpreter import Interpreter

    proto = make_model(LSTM_ZERO_STATE.text, **LSTM_ZERO_STATE.initializers)
    path, lowered, _ = lower(proto, tmp_path, options={"recurrent": form})
    assert ("UNIDIRECTIONAL_SEQUENCE_LSTM" in lowered.config.operators) == (form == "kernel")
    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    for seed in range(3):
        feeds = _samples(proto, LSTM_ZERO_STATE, 1, np.random.default_rng(seed))
        interpreter.reset_all_variables()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], feeds["x"])
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(got, run_onnxruntime(proto, feeds)["y"], rtol=1e-5, atol=1e-5)


def test_opset_9_slice_reads_its_attributes(tmp_path):
    proto = make_model(f"g ({X}) => (y) {{ y = Slice <starts=[1, -3], ends=[3, 100], axes=[1, 3]> (x) }}", opset=9)
    feeds = {"x": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)}
    path, _, _ = lower(proto, tmp_path)
    np.testing.assert_array_equal(run_tflite(path, feeds)[0]["y"], run_onnxruntime(proto, feeds)["y"])


@pytest.mark.parametrize("text, opset", [
    ('y = Resize <mode="nearest"> (x, s)', 10),  # opset 10: x / scale, rounded down
    ('y = Upsample <mode="linear"> (x, s)', 9),
    ('y = Pad <pads=[0, 0, 1, 2, 0, 0, 2, 1], value=0.5> (x)', 2),
])
def test_old_opsets_read_their_own_forms(text, opset, tmp_path):
    proto = make_model(f"g ({X}) => (y) {{ {text} }}", opset=opset, s=np.array([1, 1, 2, 3], np.float32))
    feeds = {"x": RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)}
    path, _, _ = lower(proto, tmp_path)
    np.testing.assert_allclose(run_tflite(path, feeds)[0]["y"], run_onnxruntime(proto, feeds)["y"], atol=1e-5)
