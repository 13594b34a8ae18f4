"""Activations: the ones TFLite has kernels for (int8 too where it does), Clip on any dtype, and
decompositions into kernels XNNPACK runs (HardSigmoid, Softplus, Mish, Selu, Softsign, ThresholdedRelu)."""
from __future__ import annotations

import onnx_ir as ir

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.lowering import FIXED_OUTPUT, Lowering, Ref
from edgec.backends.tflite.ops.arithmetic import check_dtypes
from edgec.backends.tflite.ops.common import operand
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import QParams, is_constant
from edgec.ir.clip import clip_bounds


def kernel(op: str, options=None, int8: bool = True):
    """Lower a one-input activation to TFLite's `op` (int8 when `int8` and the graph quantizes around it)."""
    def lower(lowering: Lowering, node: ir.Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        out_params = lowering.int8_mode([x], out) if int8 else None
        ref = lowering.get(x, float_=out_params is None)
        fixed = FIXED_OUTPUT.get(op) if out_params is not None else None
        result = lowering.new(out, ref.perm, QParams((fixed[0],), (fixed[1],)) if fixed else out_params)
        lowering.emit(op, [ref.index], [result.index], options(lowering, node) if options else None)
        if fixed:
            lowering.refs[out] = lowering.requantize(result, out_params, out.name + "/requantized")
    return lower


KERNELS = {
    "Relu": ("RELU", None, True),
    "Sigmoid": ("LOGISTIC", None, True),
    "Tanh": ("TANH", None, True),
    "HardSwish": ("HARD_SWISH", None, True),
    "LeakyRelu": ("LEAKY_RELU", lambda lowering, node: lowering.writer.options(
        "LeakyReluOptions", alpha=node.attributes.get_float("alpha", 0.01)), True),
    "Gelu": ("GELU", lambda lowering, node: lowering.writer.options(
        "GeluOptions", approximate=node.attributes.get_string("approximate", "none") == "tanh"), False),
}
for _op_type, (_op, _options, _int8) in KERNELS.items():
    lowers(_op_type, check=check_dtypes(_op))(kernel(_op, _options, _int8))


# ---- Clip ---------------------------------------------------------------------------------

# Clips with a kernel of their own (XNNPACK runs these; it does not run RELU_0_TO_1, so [0, 1] is a clamp pair)
CLIP_KERNELS = {(0.0, 6.0): "RELU6", (-1.0, 1.0): "RELU_N1_TO_1", (0.0, None): "RELU"}


def _check_clip(node: ir.Node) -> str:
    return check_dtypes("MAXIMUM")(node)


@lowers("Clip", check=_check_clip)
def clip(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    bounds = clip_bounds(node)
    if dtypes.of(x) == "float32" and bounds in CLIP_KERNELS:
        kernel(CLIP_KERNELS[bounds])(lowering, node)
        return
    ref = lowering.get(x, float_=True)
    rank = len(lowering.shape(x))
    dtype = dtypes.compute_dtype("MAXIMUM", dtypes.of(x))
    current = lowering.cast(ref, dtype, x.name).index
    if bounds is None:  # bounds computed at run time: inputs 1 and 2
        limits = [node.inputs[i] if len(node.inputs) > i else None for i in (1, 2)]
        operands = [operand(lowering, v, ref.perm, rank, dtype=dtype) if v is not None else None for v in limits]
    else:
        operands = [lowering.scalar(f"{out.name}/bound{i}", b, dtype) if b is not None else None
                    for i, b in enumerate(bounds)]
    for bound, op in zip(operands, ("MAXIMUM", "MINIMUM")):
        if bound is not None:
            current = lowering.compute(op, [current, bound], f"{out.name}/{op.lower()}",
                                       shape=lowering.writer.shape(current))
    lowering.refs[out] = lowering.cast(Ref(current, ref.perm), dtypes.of(out), out.name)


# ---- decompositions ------------------------------------------------------------------------

def _float_input(lowering: Lowering, node: ir.Node) -> tuple[Ref, ir.Value, str]:
    x, out = node.inputs[0], node.outputs[0]
    return lowering.get(x, float_=True), out, out.name


@lowers("HardSigmoid", check=check_dtypes("MUL"))
def hard_sigmoid(lowering: Lowering, node: ir.Node) -> None:
    """max(0, min(1, alpha x + beta))."""
    ref, out, name = _float_input(lowering, node)
    alpha, beta = node.attributes.get_float("alpha", 0.2), node.attributes.get_float("beta", 0.5)
    scaled = lowering.compute("MUL", [ref.index, lowering.scalar(name + "/alpha", alpha)], name + "/scaled")
    shifted = lowering.compute("ADD", [scaled, lowering.scalar(name + "/beta", beta)], name + "/shifted")
    positive = lowering.compute("RELU", [shifted], name + "/positive")
    lowering.emit("MINIMUM", [positive, lowering.scalar(name + "/one", 1.0)], [lowering.new(out, ref.perm).index])


def _check_prelu(node: ir.Node) -> str:
    return check_dtypes("PRELU")(node) or ("" if is_constant(node.inputs[1]) else "the slope must be a constant")


@lowers("PRelu", check=_check_prelu)
def prelu(lowering: Lowering, node: ir.Node) -> None:
    ref, out, _ = _float_input(lowering, node)
    slope = operand(lowering, node.inputs[1], ref.perm, len(lowering.shape(out)))
    lowering.emit("PRELU", [ref.index, slope], [lowering.new(out, ref.perm).index])


def softplus(lowering: Lowering, x: int, name: str) -> int:
    """log(1 + exp(x)) as max(x, 0) + log(1 + exp(-|x|)): no overflow for large x."""
    negative_magnitude = lowering.compute("NEG", [lowering.compute("ABS", [x], name + "/abs")], name + "/neg_abs")
    one_plus = lowering.compute("ADD", [lowering.compute("EXP", [negative_magnitude], name + "/exp"),
                                        lowering.scalar(name + "/one", 1.0)], name + "/one_plus")
    return lowering.compute("ADD", [lowering.compute("RELU", [x], name + "/relu"),
                                    lowering.compute("LOG", [one_plus], name + "/log")], name + "/softplus")


@lowers("Softplus", check=check_dtypes("EXP"))
def softplus_node(lowering: Lowering, node: ir.Node) -> None:
    ref, out, name = _float_input(lowering, node)
    lowering.refs[out] = Ref(softplus(lowering, ref.index, name), ref.perm)


MISH_EXP_LIMIT = 20.0  # above it tanh(softplus(x)) is 1 in float32; below, e^x cannot overflow


@lowers("Mish", check=check_dtypes("EXP"))
def mish(lowering: Lowering, node: ir.Node) -> None:
    """x tanh(softplus(x)) = x n / (n + 2) with n = e^x (e^x + 2): no log(1 + tiny) to lose digits for
    negative x, and e^x taken of min(x, 20)."""
    ref, out, name = _float_input(lowering, node)
    limited = lowering.compute("MINIMUM", [ref.index, lowering.scalar(name + "/limit", MISH_EXP_LIMIT)],
                               name + "/limited")
    exp = lowering.compute("EXP", [limited], name + "/exp")
    two = lowering.scalar(name + "/two", 2.0)
    n = lowering.compute("MUL", [exp, lowering.compute("ADD", [exp, two], name + "/exp_plus_2")], name + "/n")
    ratio = lowering.compute("DIV", [n, lowering.compute("ADD", [n, two], name + "/n_plus_2")], name + "/tanh_softplus")
    lowering.emit("MUL", [ref.index, ratio], [lowering.new(out, ref.perm).index])


def _exponential_linear(lowering: Lowering, ref: Ref, name: str, alpha: float, scale: float = 1.0) -> int:
    """scale (max(x, 0) + alpha (exp(min(x, 0)) - 1)): Elu, Selu and Celu's shared shape."""
    negative = lowering.compute("MINIMUM", [ref.index, lowering.scalar(name + "/zero", 0.0)], name + "/negative")
    expm1 = lowering.compute("SUB", [lowering.compute("EXP", [negative], name + "/exp"),
                                     lowering.scalar(name + "/one", 1.0)], name + "/expm1")
    tail = lowering.compute("MUL", [expm1, lowering.scalar(name + "/alpha", alpha)], name + "/tail")
    total = lowering.compute("ADD", [lowering.compute("RELU", [ref.index], name + "/relu"), tail], name + "/sum")
    if scale == 1.0:
        return total
    return lowering.compute("MUL", [total, lowering.scalar(name + "/gamma", scale)], name + "/scaled")


@lowers("Elu", check=check_dtypes("EXP"))
def elu(lowering: Lowering, node: ir.Node) -> None:
    ref, out, name = _float_input(lowering, node)
    alpha = node.attributes.get_float("alpha", 1.0)
    if alpha == 1.0:
        lowering.emit("ELU", [ref.index], [lowering.new(out, ref.perm).index])
        return
    lowering.refs[out] = Ref(_exponential_linear(lowering, ref, name, alpha), ref.perm)


@lowers("Selu", check=check_dtypes("EXP"))
def selu(lowering: Lowering, node: ir.Node) -> None:
    ref, out, name = _float_input(lowering, node)
    alpha = node.attributes.get_float("alpha", 1.67326319217681884765625)
    gamma = node.attributes.get_float("gamma", 1.05070102214813232421875)
    lowering.refs[out] = Ref(_exponential_linear(lowering, ref, name, alpha, gamma), ref.perm)


@lowers("Softsign", check=check_dtypes("DIV"))
def softsign(lowering: Lowering, node: ir.Node) -> None:
    """x / (1 + |x|)."""
    ref, out, name = _float_input(lowering, node)
    denominator = lowering.compute("ADD", [lowering.compute("ABS", [ref.index], name + "/abs"),
                                           lowering.scalar(name + "/one", 1.0)], name + "/denominator")
    lowering.emit("DIV", [ref.index, denominator], [lowering.new(out, ref.perm).index])


@lowers("ThresholdedRelu", check=check_dtypes("GREATER"))
def thresholded_relu(lowering: Lowering, node: ir.Node) -> None:
    """x where x > alpha, else 0."""
    ref, out, name = _float_input(lowering, node)
    alpha = node.attributes.get_float("alpha", 1.0)
    above = lowering.compute("GREATER", [ref.index, lowering.scalar(name + "/alpha", alpha)], name + "/above",
                             dtype="bool")
    lowering.emit("SELECT_V2", [above, ref.index, lowering.scalar(name + "/zero", 0.0)],
                  [lowering.new(out, ref.perm).index])
