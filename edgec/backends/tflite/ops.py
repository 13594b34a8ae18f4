"""The lowering table: one small function per ONNX operator, and the checks that run before any work.

`TABLE[op_type](L, node)` emits TFLite operators through the lowering context `L`
(lowering.py). `check(node)` returns why a node of a listed type still cannot be lowered
(an attribute or shape TFLite has no exact equivalent for), or ''.
"""
from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import layout
from edgec.backends.tflite.lowering import FIXED_OUTPUT, Lowering, Ref
from edgec.backends.tflite.quant import QConst, QParams, constant, integer_dtype, node_params

TABLE: dict = {}
CHECKS: dict = {}


def lowers(*op_types, check=None):
    def register(fn):
        for op_type in op_types:
            TABLE[op_type] = fn
            if check is not None:
                CHECKS[op_type] = check
        return fn
    return register


def check(node: ir.Node) -> str:
    """Why this node cannot be lowered exactly, or ''. Shape-dependent checks wait for static shapes."""
    fn = CHECKS.get(node.op_type)
    return fn(node) if fn else ""


# ---- helpers ------------------------------------------------------------------------------

def _attr_ints(node, name, default):
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else list(default)


def _shape(value) -> list | None:
    return list(value.shape) if value is not None and value.shape is not None else None


def _static(*dims) -> bool:
    return all(isinstance(d, int) for d in dims)


def _is_const(value) -> bool:
    if value is None:
        return False
    if value.const_value is not None:
        return True
    producer = value.producer()
    return (producer is not None and producer.op_type == "DequantizeLinear"
            and producer.inputs[0].const_value is not None)


def onnx_pads(node, in_hw, kernel, strides, dilations) -> list[int]:
    """ONNX's [top, left, bottom, right] for a 2-D window op, auto_pad resolved."""
    auto = node.attributes.get_string("auto_pad", "NOTSET")
    if auto == "VALID":
        return [0, 0, 0, 0]
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        begin, end = [], []
        for size, k, s, d in zip(in_hw, kernel, strides, dilations):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            small, big = total // 2, total - total // 2
            begin.append(small if auto == "SAME_UPPER" else big)
            end.append(big if auto == "SAME_UPPER" else small)
        return begin + end
    return _attr_ints(node, "pads", [0, 0, 0, 0])


def tf_same_pads(in_hw, kernel, strides, dilations) -> list[int]:
    begin, end = [], []
    for size, k, s, d in zip(in_hw, kernel, strides, dilations):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        begin.append(total // 2)
        end.append(total - total // 2)
    return begin + end


def padding_plan(pads, in_hw, kernel, strides, dilations) -> str:
    """'VALID', 'SAME' (TF's split matches ONNX's), or 'EXPLICIT' (a PAD op and VALID)."""
    if not any(pads):
        return "VALID"
    if pads == tf_same_pads(in_hw, kernel, strides, dilations):
        return "SAME"
    return "EXPLICIT"


def _window(node, weight_shape=None):
    kernel = _attr_ints(node, "kernel_shape", weight_shape[2:] if weight_shape else [])
    strides = _attr_ints(node, "strides", [1] * len(kernel))
    dilations = _attr_ints(node, "dilations", [1] * len(kernel))
    return kernel, strides, dilations


def _pad_spatial(L: Lowering, x: ir.Value, ref: Ref, pads, value: float | None = None) -> Ref:
    """An explicit PAD (or PADV2 with `value`) of an NHWC tensor by ONNX [t, l, b, r]."""
    t, l, b, r = pads
    shape = L.w.shape(ref.index)
    out_shape = [shape[0], shape[1] + t + b, shape[2] + l + r, shape[3]]
    paddings = L.param(x.name + "/paddings", [[0, 0], [t, b], [l, r], [0, 0]])
    out = L.scratch(x.name + "/padded", out_shape, ref.quant)
    if value is None:
        L.emit("PAD", [ref.index, paddings], [out])
    else:
        fill = (np.array(ref.quant.zero_point[0] + round(value / ref.quant.scale[0]) if np.isfinite(value) else -128,
                         np.int8) if ref.quant else np.array(value, np.float32))
        L.emit("PADV2", [ref.index, paddings, L.w.tensor(x.name + "/pad_value", [], fill.dtype.name, fill,
                                                          quant=ref.quant)], [out])
    return Ref(out, ref.perm, ref.quant)


def _check_shape(L: Lowering, node, produced: list[int], value: ir.Value, perm) -> None:
    expected = layout.apply(L.shape(value), perm)
    if list(produced) != expected:
        from edgec.errors import UnsupportedError

        raise UnsupportedError(f"{node.op_type} (node '{node.name}'): TFLite would produce shape {produced}, "
                               f"ONNX expects {expected}")


def _window_output(in_hw, kernel, strides, dilations, plan):
    if plan == "SAME":
        return [math.ceil(i / s) for i, s in zip(in_hw, strides)]
    return [(i - ((k - 1) * d + 1)) // s + 1 for i, k, s, d in zip(in_hw, kernel, strides, dilations)]


def _per_output_channel(q: QConst | None, axis: int) -> QConst | None:
    """Quantized weights TFLite can take: per-tensor, or per-channel along the output channels."""
    if q is None or q.params.per_tensor or q.params.axis == axis:
        return q
    return None


# ---- convolutions -------------------------------------------------------------------------

def _check_conv(node) -> str:
    x, w = node.inputs[0], node.inputs[1]
    if _shape(x) is None or len(_shape(x)) != 4:
        return "only 2-D convolutions (4-D NCHW inputs) are supported"
    if not _is_const(w) or (len(node.inputs) > 2 and node.inputs[2] is not None and not _is_const(node.inputs[2])):
        return "weights and bias must be constants"
    if node.op_type == "ConvTranspose":
        if node.attributes.get_int("group", 1) != 1 or any(d != 1 for d in _attr_ints(node, "dilations", [1, 1])):
            return "grouped or dilated ConvTranspose has no TFLite equivalent"
        if node.attributes.get("output_shape") is not None:
            return "ConvTranspose with output_shape: give pads instead"
        pads = _attr_ints(node, "pads", [0, 0, 0, 0])
        if any(p > e for p, e in zip(_attr_ints(node, "output_padding", [0, 0]), pads[2:])):
            return "output_padding larger than the end padding"
        if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
            return "ConvTranspose auto_pad SAME: export with explicit pads"
    return ""


@lowers("Conv", check=_check_conv)
def conv(L: Lowering, node: ir.Node) -> None:
    fb = L.w.fb
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    act, out = L.fused_activation(node)
    x_shape, w_shape = L.shape(x), L.shape(w)
    kernel, strides, dilations = _window(node, w_shape)
    group = node.attributes.get_int("group", 1)
    cin, cout = x_shape[1], w_shape[0]
    depthwise = group > 1 and group == cin and cout % group == 0

    wq = _per_output_channel(L.qconst(w), 0)
    q = L.int8_mode([x], out) if wq is not None else None
    ref = L.get(x, layout.NHWC, float_=q is None)
    pads = onnx_pads(node, x_shape[2:], kernel, strides, dilations)
    plan = padding_plan(pads, x_shape[2:], kernel, strides, dilations)
    if plan == "EXPLICIT":
        ref = _pad_spatial(L, x, ref, pads)
    in_hw = L.w.shape(ref.index)[1:3]

    if q is not None:
        data, wparams = wq.data, wq.params
        bias_q = L.qconst(b)
        if bias_q is None:
            scales = tuple(ref.quant.scale[0] * s for s in wparams.scale)
            bias_q = QConst(np.zeros(cout, np.int32), QParams(scales, (0,) * len(scales), 0))
    else:
        data, wparams = L.const(w), None
        bias = L.const(b) if b is not None else np.zeros(cout, np.float32)

    if depthwise:
        weights = np.transpose(data, (1, 2, 3, 0))  # [O, 1, kh, kw] -> [1, kh, kw, O]
        axis = 3
    else:
        weights = np.transpose(data, (0, 2, 3, 1))  # [O, I/g, kh, kw] -> [O, kh, kw, I/g]
        axis = 0
    if q is not None:
        params = QParams(wparams.scale, wparams.zero_point, axis if not wparams.per_tensor else 0)
        w_index = L.qweight(w.name, QConst(weights, params))
        b_index = L.qweight(f"{node.name}/bias", bias_q, "int32")
    else:
        w_index = L.weight(w.name, weights)
        b_index = L.weight(f"{node.name}/bias", bias)

    padding = fb.Padding.SAME if plan == "SAME" else fb.Padding.VALID
    out_hw = _window_output(in_hw, kernel, strides, dilations, "SAME" if plan == "SAME" else "VALID")
    _check_shape(L, node, [x_shape[0], *out_hw, cout], out, layout.NHWC)
    result = L.new(out, layout.NHWC, q)
    common = dict(padding=padding, strideH=strides[0], strideW=strides[1], fusedActivationFunction=act,
                  dilationHFactor=dilations[0], dilationWFactor=dilations[1])
    if depthwise:
        options = L.w.options("DepthwiseConv2DOptions", depthMultiplier=cout // group, **common)
        L.emit("DEPTHWISE_CONV_2D", [ref.index, w_index, b_index], [result.index], options)
    else:
        L.emit("CONV_2D", [ref.index, w_index, b_index], [result.index], L.w.options("Conv2DOptions", **common))


@lowers("ConvTranspose", check=_check_conv)
def conv_transpose(L: Lowering, node: ir.Node) -> None:
    fb = L.w.fb
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    out = node.outputs[0]
    x_shape, w_shape = L.shape(x), L.shape(w)
    kernel, strides, _ = _window(node, w_shape)
    pads = _attr_ints(node, "pads", [0, 0, 0, 0]) if node.attributes.get_string("auto_pad", "NOTSET") != "VALID" \
        else [0, 0, 0, 0]
    cout = w_shape[1]
    ref = L.get(x, layout.NHWC, float_=True)
    full = [x_shape[0]] + [s * (i - 1) + k for i, s, k in zip(x_shape[2:], strides, kernel)] + [cout]
    weights = np.transpose(L.const(w), (1, 2, 3, 0))  # [I, O, kh, kw] -> [O, kh, kw, I]
    bias = L.const(b) if b is not None else np.zeros(cout, np.float32)
    out_shape = layout.apply(L.shape(out), layout.NHWC)
    crop = full != out_shape
    target = L.scratch(out.name + "/full", full) if crop else L.new(out, layout.NHWC).index
    options = L.w.options("TransposeConvOptions", padding=fb.Padding.VALID, strideH=strides[0], strideW=strides[1])
    L.emit("TRANSPOSE_CONV", [L.param(out.name + "/output_shape", full), L.weight(w.name, weights), ref.index,
                              L.weight(f"{node.name}/bias", bias)], [target], options)
    if crop:
        begin = [0, pads[0], pads[1], 0]
        result = L.new(out, layout.NHWC)
        L.emit("SLICE", [target, L.param(out.name + "/begin", begin), L.param(out.name + "/size", out_shape)],
               [result.index])


# ---- dense layers -------------------------------------------------------------------------

def _check_gemm(node) -> str:
    if node.attributes.get_int("transA", 0):
        return "transA=1 is not supported"
    if not _is_const(node.inputs[1]):
        return "B must be a constant (weights)"
    c = node.inputs[2] if len(node.inputs) > 2 else None
    if c is not None and (not _is_const(c) or (c.shape is not None and len(c.shape) == 2 and c.shape[0] != 1)):
        return "C must be a constant vector"
    return ""


@lowers("Gemm", check=_check_gemm)
def gemm(L: Lowering, node: ir.Node) -> None:
    a, bw = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    alpha, beta = node.attributes.get_float("alpha", 1.0), node.attributes.get_float("beta", 1.0)
    trans_b = node.attributes.get_int("transB", 0)
    bq = _per_output_channel(L.qconst(bw), 0 if trans_b else 1)
    act, out = L.fused_activation(node)
    q = L.int8_mode([a], out) if bq is not None and alpha == 1.0 and beta == 1.0 else None
    n = L.shape(out)[1]
    if q is not None:
        data, params = bq.data, bq.params
        if not trans_b:
            data = data.T
            params = QParams(params.scale, params.zero_point, 1 - params.axis if not params.per_tensor else 0)
        cq = L.qconst(c)
        ref = L.get(a, layout.identity(2), memory=True)
        if cq is None:
            scales = tuple(ref.quant.scale[0] * s for s in params.scale)
            cq = QConst(np.zeros(n, np.int32), QParams(scales, (0,) * len(scales), 0))
        else:
            cq = QConst(np.broadcast_to(cq.data.reshape(-1), (n,)).astype(np.int32), cq.params)
        _fully_connected(L, node, ref, L.qweight(bw.name, QConst(np.ascontiguousarray(data), params)),
                         L.qweight(f"{node.name}/bias", cq, "int32"), out, act, q)
        return
    weights = L.const(bw) * alpha
    weights = weights if trans_b else weights.T
    bias = beta * np.broadcast_to(L.const(c).reshape(-1), (n,)) if c is not None else np.zeros(n, np.float32)
    ref = L.get(a, layout.identity(2), float_=True, memory=True)
    _fully_connected(L, node, ref, L.weight(bw.name, np.ascontiguousarray(weights)),
                     L.weight(f"{node.name}/bias", bias), out, act, None)


def _fully_connected(L, node, ref, w_index, b_index, out, act, q, keep_dims=False):
    result = L.new(out, layout.identity(len(L.shape(out))), q)
    options = L.w.options("FullyConnectedOptions", fusedActivationFunction=act, keepNumDims=keep_dims)
    L.emit("FULLY_CONNECTED", [ref.index, w_index, b_index], [result.index], options)


def _check_matmul(node) -> str:
    a, b = _shape(node.inputs[0]), _shape(node.inputs[1])
    if a is None or b is None or len(a) < 2 or len(b) < 2:
        return "both operands need rank 2 or more"
    if _is_const(node.inputs[1]) and len(b) != 2:
        return "a constant right operand must be 2-D"
    return ""


@lowers("MatMul", check=_check_matmul)
def matmul(L: Lowering, node: ir.Node) -> None:
    a, b = node.inputs
    rank = len(L.shape(a))
    if L.is_const(b):
        act, out = L.fused_activation(node)
        bq = _per_output_channel(L.qconst(b), 1)
        q = L.int8_mode([a], out) if bq is not None else None
        if q is not None:
            params = QParams(bq.params.scale, bq.params.zero_point, 0)
            ref = L.get(a, layout.identity(rank), memory=True)
            n = bq.data.shape[1]
            bias = QConst(np.zeros(n, np.int32), QParams(tuple(ref.quant.scale[0] * s for s in params.scale),
                                                          (0,) * len(params.scale), 0))
            _fully_connected(L, node, ref, L.qweight(b.name, QConst(np.ascontiguousarray(bq.data.T), params)),
                             L.qweight(f"{node.name}/bias", bias, "int32"), out, act, q, keep_dims=rank > 2)
            return
        ref = L.get(a, layout.identity(rank), float_=True, memory=True)
        weights = np.ascontiguousarray(L.const(b).T)
        _fully_connected(L, node, ref, L.weight(b.name, weights), -1, out, act, None, keep_dims=rank > 2)
        return
    out = node.outputs[0]
    refs = [L.get(v, layout.identity(len(L.shape(v))), float_=True) for v in (a, b)]
    result = L.new(out, layout.identity(len(L.shape(out))))
    L.emit("BATCH_MATMUL", [r.index for r in refs], [result.index], L.w.options("BatchMatMulOptions"))


# ---- elementwise --------------------------------------------------------------------------

def _operand(L: Lowering, value, perm, rank, int8: bool) -> int:
    """An elementwise input: the tensor in `perm`, or a constant broadcast to `rank` and stored in `perm`."""
    if L.is_const(value):
        q = L.qconst(value) if int8 else None
        data = q.data if q is not None else np.asarray(L.const(value), np.float32)
        data = np.transpose(data.reshape((1,) * (rank - data.ndim) + data.shape), perm)
        if q is not None:
            return L.w.tensor(value.name, data.shape, data.dtype.name, data, quant=q.params)
        return L.weight(value.name, data)
    return L.get(value, perm, float_=not int8).index


def _elementwise_perm(L: Lowering, node, rank):
    for value in node.inputs:
        if value is not None and not L.is_const(value) and len(L.shape(value)) == rank:
            return L.ref(value).perm
    return layout.identity(rank)


BINARY = {"Add": ("ADD", "AddOptions", True), "Sub": ("SUB", "SubOptions", True),
          "Mul": ("MUL", "MulOptions", True), "Div": ("DIV", "DivOptions", False)}


@lowers(*BINARY)
def binary(L: Lowering, node: ir.Node) -> None:
    op, options_name, int8_ok = BINARY[node.op_type]
    act, out = L.fused_activation(node)
    rank = len(L.shape(out))
    perm = _elementwise_perm(L, node, rank)
    inputs = list(node.inputs)
    consts_ok = all(not L.is_const(v) or (L.qconst(v) is not None and L.qconst(v).params.per_tensor) for v in inputs)
    q = L.int8_mode(inputs, out) if int8_ok and consts_ok else None
    indices = [_operand(L, v, perm, rank, q is not None) for v in inputs]
    result = L.new(out, perm, q)
    L.emit(op, indices, [result.index], L.w.options(options_name, fusedActivationFunction=act))


def _unary(op: str, options=None):
    def lower(L: Lowering, node: ir.Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        q = L.int8_mode([x], out)
        ref = L.get(x, float_=q is None)
        fixed = FIXED_OUTPUT.get(op) if q is not None else None
        result = L.new(out, ref.perm, QParams((fixed[0],), (fixed[1],)) if fixed else q)
        L.emit(op, [ref.index], [result.index], options(L, node) if options else None)
        if fixed:
            L.refs[out] = L.requantize(result, q, out.name + "/requantized")
    return lower


TABLE.update({
    "Relu": _unary("RELU"),
    "Sigmoid": _unary("LOGISTIC"),
    "Tanh": _unary("TANH"),
    "HardSwish": _unary("HARD_SWISH"),
    "LeakyRelu": _unary("LEAKY_RELU", lambda L, n: L.w.options("LeakyReluOptions",
                                                                alpha=n.attributes.get_float("alpha", 0.01))),
})


def _clip_bounds(node):
    if len(node.inputs) > 1:
        bounds = [constant(v) if v is not None else None for v in list(node.inputs[1:3]) + [None]][:2]
        return [None if b is None else float(b) for b in bounds]
    return [node.attributes.get_float("min", None), node.attributes.get_float("max", None)]


def _check_clip(node) -> str:
    if any(v is not None and v.const_value is None for v in node.inputs[1:]):
        return "min and max must be constants"
    return ""


CLIP_OPS = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, None): "RELU", (0.0, 1.0): "RELU_0_TO_1"}


@lowers("Clip", check=_check_clip)
def clip(L: Lowering, node: ir.Node) -> None:
    low, high = _clip_bounds(node)
    op = CLIP_OPS.get((low, high))
    if op is not None:
        _unary(op)(L, node)
        return
    x, out = node.inputs[0], node.outputs[0]
    ref = L.get(x, float_=True)
    current = ref.index
    for bound, name in ((low, "MAXIMUM"), (high, "MINIMUM")):
        if bound is None:
            continue
        target = L.scratch(f"{out.name}/{name.lower()}", L.w.shape(ref.index))
        L.emit(name, [current, L.weight(f"{out.name}/{name.lower()}_bound", np.array(bound, np.float32))], [target])
        current = target
    L.refs[out] = Ref(current, ref.perm)


@lowers("HardSigmoid")
def hard_sigmoid(L: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    ref = L.get(x, float_=True)
    shape = L.w.shape(ref.index)
    alpha, beta = node.attributes.get_float("alpha", 0.2), node.attributes.get_float("beta", 0.5)
    scaled, shifted = L.scratch(out.name + "/scaled", shape), L.scratch(out.name + "/shifted", shape)
    L.emit("MUL", [ref.index, L.weight(out.name + "/alpha", np.array(alpha, np.float32))], [scaled],
           L.w.options("MulOptions"))
    L.emit("ADD", [scaled, L.weight(out.name + "/beta", np.array(beta, np.float32))], [shifted],
           L.w.options("AddOptions"))
    result = L.new(out, ref.perm)
    L.emit("RELU_0_TO_1", [shifted], [result.index])


def _check_prelu(node) -> str:
    return "" if _is_const(node.inputs[1]) else "the slope must be a constant"


@lowers("PRelu", check=_check_prelu)
def prelu(L: Lowering, node: ir.Node) -> None:
    x, slope = node.inputs
    out = node.outputs[0]
    rank = len(L.shape(out))
    ref = L.get(x, float_=True)
    alpha = _operand(L, slope, ref.perm, rank, False)
    result = L.new(out, ref.perm)
    L.emit("PRELU", [ref.index, alpha], [result.index])


# ---- pooling and reductions ---------------------------------------------------------------

def _check_pool(node) -> str:
    if _shape(node.inputs[0]) is None or len(_shape(node.inputs[0])) != 4:
        return "only 2-D pooling is supported"
    if node.op_type.startswith("Global"):
        return ""
    if any(d != 1 for d in _attr_ints(node, "dilations", [1, 1])):
        return "dilated pooling has no TFLite equivalent"
    if node.attributes.get_int("storage_order", 0):
        return "storage_order=1 is not supported"
    kernel, strides, dilations = _window(node)
    in_hw = _shape(node.inputs[0])[2:]
    out_shape = _shape(node.outputs[0])
    if out_shape is None or not _static(*in_hw, *out_shape[2:]):
        return ""
    pads = onnx_pads(node, in_hw, kernel, strides, dilations)
    plan = padding_plan(pads, in_hw, kernel, strides, dilations)
    padded = [i + pads[d] + pads[d + 2] for d, i in enumerate(in_hw)]
    floor_out = _window_output(in_hw if plan == "SAME" else padded, kernel, strides, dilations,
                               "SAME" if plan == "SAME" else "VALID")
    if out_shape[2:] != floor_out:
        return "ceil_mode=1 changes the output size here, which TFLite pooling cannot"
    if node.op_type == "AveragePool" and any(pads) and plan == "EXPLICIT" \
            and not node.attributes.get_int("count_include_pad", 0):
        return "average pooling that excludes padding needs TF SAME padding; these pads differ"
    return ""


@lowers("MaxPool", "AveragePool", check=_check_pool)
def pool(L: Lowering, node: ir.Node) -> None:
    fb = L.w.fb
    x, out = node.inputs[0], node.outputs[0]
    kernel, strides, dilations = _window(node)
    x_shape = L.shape(x)
    q = L.int8_mode([x], out) if node.op_type == "AveragePool" else None
    ref = L.get(x, layout.NHWC, float_=node.op_type == "AveragePool" and q is None)
    pads = onnx_pads(node, x_shape[2:], kernel, strides, dilations)
    plan = padding_plan(pads, x_shape[2:], kernel, strides, dilations)
    include_pad = node.attributes.get_int("count_include_pad", 0)
    if plan == "EXPLICIT" or (plan == "SAME" and include_pad and node.op_type == "AveragePool"):
        ref = _pad_spatial(L, x, ref, pads, value=-np.inf if node.op_type == "MaxPool" else None)
        plan = "VALID"
    options = L.w.options("Pool2DOptions", padding=fb.Padding.SAME if plan == "SAME" else fb.Padding.VALID,
                          strideH=strides[0], strideW=strides[1], filterHeight=kernel[0], filterWidth=kernel[1])
    result = L.new(out, layout.NHWC, q if node.op_type == "AveragePool" else ref.quant)
    L.emit("MAX_POOL_2D" if node.op_type == "MaxPool" else "AVERAGE_POOL_2D", [ref.index], [result.index], options)


def _mean(L: Lowering, node, x, out, onnx_axes, keepdims) -> None:
    q = L.int8_mode([x], out)
    ref = L.get(x, float_=q is None)
    stored = sorted(layout.axis(a, ref.perm) for a in onnx_axes)
    if keepdims:
        perm = ref.perm
    else:
        remaining = [p for p in ref.perm if p not in onnx_axes]
        order = sorted(remaining)
        perm = tuple(order.index(p) for p in remaining)
    result = L.new(out, perm, q)
    L.emit("MEAN", [ref.index, L.param(out.name + "/axes", stored)], [result.index],
           L.w.options("ReducerOptions", keepDims=bool(keepdims)))


@lowers("GlobalAveragePool", check=_check_pool)
def global_average_pool(L: Lowering, node: ir.Node) -> None:
    _mean(L, node, node.inputs[0], node.outputs[0], [2, 3], True)


def _reduce_axes(node) -> list[int] | None:
    if len(node.inputs) > 1 and node.inputs[1] is not None:
        axes = constant(node.inputs[1])
        return None if axes is None else [int(a) for a in axes.reshape(-1)]
    return _attr_ints(node, "axes", [])


def _check_reduce(node) -> str:
    axes = _reduce_axes(node)
    if axes is None:
        return "axes must be constant"
    if not axes and node.attributes.get_int("noop_with_empty_axes", 0):
        return "noop_with_empty_axes is not supported"
    return ""


@lowers("ReduceMean", check=_check_reduce)
def reduce_mean(L: Lowering, node: ir.Node) -> None:
    x = node.inputs[0]
    rank = len(L.shape(x))
    axes = [a % rank for a in _reduce_axes(node)] or list(range(rank))
    _mean(L, node, x, node.outputs[0], axes, node.attributes.get_int("keepdims", 1))


def _check_softmax(node) -> str:
    rank = len(_shape(node.inputs[0]) or [])
    axis = node.attributes.get_int("axis", -1 if _opset_13(node) else 1) % max(rank, 1)
    if not _opset_13(node) and axis != rank - 1:
        return "opset < 13 Softmax over several axes: use axis=-1 or opset 13"
    return ""


def _opset_13(node) -> bool:
    return node.graph is None or node.graph.opset_imports.get("", 13) >= 13


@lowers("Softmax", check=_check_softmax)
def softmax(L: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    rank = len(L.shape(x))
    axis = node.attributes.get_int("axis", -1 if L.opset >= 13 else 1) % rank
    q = L.int8_mode([x], out)
    have = L.ref(x).perm
    perm = tuple(p for p in have if p != axis) + (axis,)
    ref = L.get(x, perm, float_=q is None)
    fixed = FIXED_OUTPUT["SOFTMAX"] if q is not None else None
    result = L.new(out, perm, QParams((fixed[0],), (fixed[1],)) if fixed else None)
    L.emit("SOFTMAX", [ref.index], [result.index], L.w.options("SoftmaxOptions", beta=1.0))
    if fixed:
        L.refs[out] = L.requantize(result, q, out.name + "/requantized")


# ---- shape and data movement --------------------------------------------------------------

@lowers("Reshape", "Flatten", "Squeeze", "Unsqueeze")
def reshape(L: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    ref = L.get(x, layout.identity(len(L.shape(x))), memory=True)
    shape = L.shape(out)
    result = L.new(out, layout.identity(len(shape)), ref.quant)
    L.emit("RESHAPE", [ref.index, L.param(out.name + "/shape", shape)], [result.index],
           L.w.options("ReshapeOptions", newShape=shape))


@lowers("Transpose")
def transpose(L: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    rank = len(L.shape(x))
    perm = _attr_ints(node, "perm", list(reversed(range(rank))))
    ref = L.ref(x)
    L.refs[out] = Ref(ref.index, layout.after_transpose(ref.perm, perm), ref.quant)


@lowers("Concat")
def concat(L: Lowering, node: ir.Node) -> None:
    out = node.outputs[0]
    rank = len(L.shape(out))
    axis = node.attributes.get_int("axis", 0) % rank
    perm = _elementwise_perm(L, node, rank)
    acts = [v for v in node.inputs if not L.is_const(v)]
    int8 = L.precision == "int8" and all(L.quantized(v) for v in acts) and all(
        L.qconst(v) is not None for v in node.inputs if L.is_const(v))
    q = (L.output_params(out) or L.ref(acts[0]).quant) if int8 else None
    indices = []
    for value in node.inputs:
        if q is not None and not L.is_const(value):
            ref = L.get(value, perm)
            indices.append(L.requantize(ref, q, f"{value.name}/requantized").index)
        else:
            indices.append(_operand(L, value, perm, rank, q is not None))
    result = L.new(out, perm, q)
    L.emit("CONCATENATION", indices, [result.index],
           L.w.options("ConcatenationOptions", axis=layout.axis(axis, perm)))


def _slice_params(node):
    return [constant(v) if v is not None else None for v in list(node.inputs[1:5]) + [None] * 4][:4]


def _check_slice(node) -> str:
    if any(v is not None and v.const_value is None for v in node.inputs[1:]):
        return "starts, ends, axes and steps must be constants"
    return ""


@lowers("Slice", check=_check_slice)
def slice_(L: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    shape = L.shape(x)
    rank = len(shape)
    starts, ends, axes, steps = _slice_params(node)
    axes = [int(a) % rank for a in (axes if axes is not None else range(len(starts)))]
    steps = steps if steps is not None else np.ones(len(axes), np.int64)
    begin, end, stride = [0] * rank, list(shape), [1] * rank
    end_mask = 0
    for a, s, e, st in zip(axes, starts, ends, steps):
        b_, e_, st_ = slice(int(s), int(e), int(st)).indices(shape[a])
        begin[a], end[a], stride[a] = b_, e_, st_
    ref = L.get(x)
    order = list(ref.perm)
    for i, a in enumerate(order):
        if stride[a] < 0 and end[a] < 0:
            end_mask |= 1 << i
    result = L.new(out, ref.perm, ref.quant)
    L.emit("STRIDED_SLICE", [ref.index, L.param(out.name + "/begin", [begin[a] for a in order]),
                             L.param(out.name + "/end", [max(end[a], 0) if stride[a] > 0 else end[a] for a in order]),
                             L.param(out.name + "/strides", [stride[a] for a in order])], [result.index],
           L.w.options("StridedSliceOptions", endMask=end_mask))


def _check_split(node) -> str:
    if len(node.inputs) > 1 and node.inputs[1] is not None and node.inputs[1].const_value is None:
        return "split sizes must be constants"
    return ""


@lowers("Split", check=_check_split)
def split(L: Lowering, node: ir.Node) -> None:
    x = node.inputs[0]
    rank = len(L.shape(x))
    axis = node.attributes.get_int("axis", 0) % rank
    sizes = [L.shape(o)[axis] for o in node.outputs]
    ref = L.get(x)
    results = [L.new(o, ref.perm, ref.quant).index for o in node.outputs]
    stored_axis = L.param(x.name + "/axis", layout.axis(axis, ref.perm))
    L.emit("SPLIT_V", [ref.index, L.param(x.name + "/sizes", sizes), stored_axis], results,
           L.w.options("SplitVOptions", numSplits=len(sizes)))


def _check_pad(node) -> str:
    if node.attributes.get_string("mode", "constant") != "constant":
        return "only constant padding is supported"
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        return "the axes input is not supported"
    if any(v is not None and v.const_value is None for v in node.inputs[1:3]):
        return "pads and the constant value must be constants"
    if len(node.inputs) < 2:
        return "opset < 11 Pad is not supported"
    return ""


@lowers("Pad", check=_check_pad)
def pad(L: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    rank = len(L.shape(x))
    pads = [int(p) for p in constant(node.inputs[1]).reshape(-1)]
    value = float(constant(node.inputs[2])) if len(node.inputs) > 2 and node.inputs[2] is not None else 0.0
    ref = L.get(x)
    paddings = L.param(out.name + "/paddings", [[pads[a], pads[a + rank]] for a in ref.perm])
    result = L.new(out, ref.perm, ref.quant)
    if value == 0.0:
        L.emit("PAD", [ref.index, paddings], [result.index])
        return
    if ref.quant is not None:
        fill = np.array(np.clip(round(value / ref.quant.scale[0]) + ref.quant.zero_point[0], -128, 127), np.int8)
    else:
        fill = np.array(value, np.float32)
    L.emit("PADV2", [ref.index, paddings, L.w.tensor(out.name + "/value", [], fill.dtype.name, fill, ref.quant)],
           [result.index])


# ---- resize -------------------------------------------------------------------------------

def _onnx_coordinates(node, size_in, size_out, scale):
    mode = node.attributes.get_string("coordinate_transformation_mode", "half_pixel")
    x = np.arange(size_out, dtype=np.float64)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if size_out > 1 else np.zeros_like(x)
    if mode == "align_corners":
        return x * (size_in - 1) / (size_out - 1) if size_out > 1 else np.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    return None


def _onnx_nearest(node, coords, size_in):
    mode = node.attributes.get_string("nearest_mode", "round_prefer_floor")
    rounding = {"round_prefer_floor": lambda c: np.ceil(c - 0.5), "round_prefer_ceil": lambda c: np.floor(c + 0.5),
                "floor": np.floor, "ceil": np.ceil}[mode]
    return np.clip(rounding(coords), 0, size_in - 1).astype(int)


def _tf_coordinates(size_in, size_out, align, half, nearest):
    x = np.arange(size_out, dtype=np.float64)
    scale = (size_in - 1) / (size_out - 1) if align and size_out > 1 else size_in / size_out
    if nearest:
        if align:
            index = np.floor(x * scale + 0.5)
        else:
            index = np.floor((x + (0.5 if half else 0.0)) * scale)
        return np.clip(index, 0, size_in - 1).astype(int)
    coords = (x + 0.5) * scale - 0.5 if half else x * scale
    return np.clip(coords, 0, size_in - 1)


def resize_plan(node):
    """(TFLite op, align_corners, half_pixel_centers) that computes exactly what ONNX Resize does, or a reason."""
    x, out = _shape(node.inputs[0]), _shape(node.outputs[0])
    if x is None or out is None or len(x) != 4:
        return "only resizing H and W of a 4-D NCHW tensor is supported"
    if x[:2] != out[:2]:
        return "only resizing H and W of a 4-D NCHW tensor is supported"
    mode = node.attributes.get_string("mode", "nearest")
    if mode not in ("nearest", "linear") or node.attributes.get_int("antialias", 0) \
            or node.attributes.get_int("exclude_outside", 0):
        return f"mode '{mode}' (or antialias / exclude_outside) has no TFLite equivalent"
    scales = constant(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else None
    scales = scales if scales is not None and scales.size else None
    wanted = []
    for d in (2, 3):
        scale = float(scales[d]) if scales is not None else out[d] / x[d]
        coords = _onnx_coordinates(node, x[d], out[d], scale)
        if coords is None:
            return "this coordinate_transformation_mode has no TFLite equivalent"
        wanted.append(_onnx_nearest(node, coords, x[d]) if mode == "nearest" else np.clip(coords, 0, x[d] - 1))
    for align, half in ((False, True), (False, False), (True, False)):
        got = [_tf_coordinates(x[d], out[d], align, half, mode == "nearest") for d in (2, 3)]
        if all(np.allclose(g, w, atol=1e-6) for g, w in zip(got, wanted)):
            return ("RESIZE_NEAREST_NEIGHBOR" if mode == "nearest" else "RESIZE_BILINEAR", align, half)
    return "these coordinate and rounding modes map no TFLite resize exactly"


def _check_resize(node) -> str:
    if not _static(*(_shape(node.inputs[0]) or []), *(_shape(node.outputs[0]) or [])):
        return ""  # judged when the build makes shapes static
    plan = resize_plan(node)
    return plan if isinstance(plan, str) else ""


@lowers("Resize", check=_check_resize)
def resize(L: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    op, align, half = resize_plan(node)
    ref = L.get(x, layout.NHWC)
    result = L.new(out, layout.NHWC, ref.quant)
    options = "ResizeNearestNeighborOptions" if op == "RESIZE_NEAREST_NEIGHBOR" else "ResizeBilinearOptions"
    L.emit(op, [ref.index, L.param(out.name + "/size", L.shape(out)[2:])], [result.index],
           L.w.options(options, alignCorners=align, halfPixelCenters=half))


# ---- QDQ: the shared engine's int8 graph ---------------------------------------------------

def _check_qdq(node) -> str:
    params = node_params(node)
    if params is None:
        return "scale and zero point must be constants"
    if node.op_type == "QuantizeLinear":
        if _is_const(node.inputs[0]):
            return "quantizing a constant at run time: fold it first"
        if integer_dtype(node) != "int8" or not params.per_tensor:
            return "only per-tensor int8/uint8 activations are supported"
    elif not _is_const(node.inputs[0]) and not params.per_tensor:
        return "per-channel activations are not supported"
    return ""


@lowers("QuantizeLinear", check=_check_qdq)
def quantize_linear(L: Lowering, node: ir.Node) -> None:
    x, y = node.inputs[0], node.outputs[0]
    L.refs[y] = L.requantize(L.ref(x), node_params(node), y.name)


@lowers("DequantizeLinear", check=_check_qdq)
def dequantize_linear(L: Lowering, node: ir.Node) -> None:
    x, y = node.inputs[0], node.outputs[0]
    if x.const_value is None:  # an activation: the int8 tensor already is this real value
        L.refs[y] = L.ref(x)
    # constants stay in the IR: their consumers read the integer data with L.qconst
