"""Elementwise arithmetic on every dtype: Add/Sub/Mul/Div/Pow, Min/Max/Sum/Mean of any arity, and unary math.

Float ops map to TFLite's float kernels (Add/Sub/Mul also to its int8 kernels). Integer ops run on the
kernel for their dtype, or on int32 between CASTs for a narrow integer (dtypes.py); anything else is
refused by name. Erf has no builtin: it is Abramowitz & Stegun 7.1.26, within 1.5e-7 of erf in exact
arithmetic and 1e-6 in float32 (tested against 1e-4).
"""
from __future__ import annotations

import onnx_ir as ir

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.common import common_perm, operand
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import QParams, rescalable


def elementwise(lowering: Lowering, node: ir.Node, op: str, inputs, out: ir.Value, options=None) -> None:
    """`op` over broadcast inputs in the dtype its kernel computes, the result in `out`'s own dtype."""
    rank = len(lowering.shape(out))
    perm = common_perm(lowering, node, rank)
    compute = dtypes.compute_dtype(op, dtypes.of(inputs[0]))
    indices = [operand(lowering, value, perm, rank, dtype=compute) for value in inputs]
    want = dtypes.of(out)
    produced_dtype = compute if want == dtypes.of(inputs[0]) else want
    if produced_dtype == want:
        lowering.emit(op, indices, [lowering.new(out, perm).index], options)
        return
    produced = lowering.compute(op, indices, f"{out.name}/{produced_dtype}", dtype=produced_dtype, options=options)
    lowering.refs[out] = lowering.cast(Ref(produced, perm), want, out.name)


def check_dtypes(op: str):
    """A pre-check: every value representable, and `op` has a kernel for the inputs' dtype."""
    def check(node: ir.Node) -> str:
        return dtypes.unrepresentable([*node.inputs, *node.outputs]) or dtypes.refusal(op, dtypes.of(node.inputs[0]))
    return check


# ---- binary ------------------------------------------------------------------------------

BINARY = {"Add": "ADD", "Sub": "SUB", "Mul": "MUL", "Div": "DIV", "Pow": "POW"}
INT8_BINARY = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions"}


def _check_binary(node: ir.Node) -> str:
    return check_dtypes(BINARY[node.op_type])(node)


@lowers(*BINARY, check=_check_binary)
def binary(lowering: Lowering, node: ir.Node) -> None:
    op = BINARY[node.op_type]
    if dtypes.of(node.outputs[0]) != "float32":
        elementwise(lowering, node, op, list(node.inputs), node.outputs[0])
        return
    if op == "POW" and _special_power(lowering, node):
        return
    activation, out = lowering.fused_activation(node)
    rank = len(lowering.shape(out))
    perm = common_perm(lowering, node, rank)
    inputs = list(node.inputs)
    per_tensor = all(not lowering.is_const(v) or (lowering.qconst(v) is not None
                                                   and lowering.qconst(v).params.per_tensor) for v in inputs)
    out_params = lowering.int8_mode(inputs, out) if op in INT8_BINARY and per_tensor else None
    if out_params is not None and not _rescalable(lowering, op, inputs, out_params):
        out_params = None
    int8 = out_params is not None
    indices = [operand(lowering, v, perm, rank, int8, dtype=None if int8 else "float32") for v in inputs]
    result = lowering.new(out, perm, out_params)
    options = lowering.writer.options(INT8_BINARY[op], fusedActivationFunction=activation) if op in INT8_BINARY else \
        lowering.writer.options("DivOptions", fusedActivationFunction=activation) if op == "DIV" else None
    lowering.emit(op, indices, [result.index], options)


def _rescalable(lowering: Lowering, op: str, inputs, out_params: QParams) -> bool:
    """Whether TFLite's int8 ADD/SUB (inputs rescaled to twice the larger scale, 20 bits of headroom) or MUL
    (the product of the input scales over the output's) can represent these scales."""
    scales = [(lowering.qconst(v).params if lowering.is_const(v) else lowering.ref(v).quant).scale[0] for v in inputs]
    if op == "MUL":
        return rescalable(scales[0] * scales[1] / out_params.scale[0])
    twice = 2 * max(scales)
    return rescalable(*(s / twice for s in scales), twice / (2 ** 20 * out_params.scale[0]))


def _special_power(lowering: Lowering, node: ir.Node) -> bool:
    """x^2 as MUL, x^0.5 as SQRT, x^1 as x: exact, and what XNNPACK runs (it has no POW)."""
    exponent = lowering.const(node.inputs[1])
    if exponent is None or exponent.size != 1 or lowering.shape(node.outputs[0]) != lowering.shape(node.inputs[0]):
        return False
    value = float(exponent.reshape(-1)[0])
    x, out = node.inputs[0], node.outputs[0]
    if value not in (0.5, 1.0, 2.0):
        return False
    ref = lowering.get(x, float_=True)
    if value == 1.0:
        lowering.refs[out] = ref
    elif value == 2.0:
        lowering.emit("MUL", [ref.index, ref.index], [lowering.new(out, ref.perm).index])
    else:
        lowering.emit("SQRT", [ref.index], [lowering.new(out, ref.perm).index])
    return True


# ---- Mod ----------------------------------------------------------------------------------

def _check_mod(node: ir.Node) -> str:
    dtype = dtypes.of(node.inputs[0])
    if dtype == "float32":
        return "float Mod (C fmod) is not lowered; integers are"
    return dtypes.refusal("DIV" if node.attributes.get_int("fmod", 0) else "FLOOR_MOD", dtype)


@lowers("Mod", check=_check_mod)
def mod(lowering: Lowering, node: ir.Node) -> None:
    """fmod=0 (the divisor's sign) is FLOOR_MOD; fmod=1 (the dividend's sign) is a - trunc(a / b) * b."""
    out = node.outputs[0]
    if not node.attributes.get_int("fmod", 0):
        elementwise(lowering, node, "FLOOR_MOD", list(node.inputs), out)
        return
    rank = len(lowering.shape(out))
    perm = common_perm(lowering, node, rank)
    compute = dtypes.compute_dtype("DIV", dtypes.of(node.inputs[0]))
    a, b = (operand(lowering, v, perm, rank, dtype=compute) for v in node.inputs)
    quotient = lowering.compute("DIV", [a, b], out.name + "/quotient")
    remainder = lowering.compute("SUB", [a, lowering.compute("MUL", [quotient, b], out.name + "/multiple")],
                                 out.name + "/remainder")
    lowering.refs[out] = lowering.cast(Ref(remainder, perm), dtypes.of(out), out.name)


# ---- any number of inputs ----------------------------------------------------------------

VARIADIC = {"Max": "MAXIMUM", "Min": "MINIMUM", "Sum": "ADD", "Mean": "ADD"}


def _check_variadic(node: ir.Node) -> str:
    return check_dtypes(VARIADIC[node.op_type])(node)


@lowers(*VARIADIC, check=_check_variadic)
def variadic(lowering: Lowering, node: ir.Node) -> None:
    """A left fold of the binary kernel over the inputs; Mean divides the sum by the count."""
    op, out = VARIADIC[node.op_type], node.outputs[0]
    if len(node.inputs) == 1:
        lowering.refs[out] = lowering.ref(node.inputs[0])
        return
    rank = len(lowering.shape(out))
    perm = common_perm(lowering, node, rank)
    compute = dtypes.compute_dtype(op, dtypes.of(node.inputs[0]))
    indices = [operand(lowering, v, perm, rank, dtype=compute) for v in node.inputs]
    total = indices[0]
    for i, index in enumerate(indices[1:], 1):
        total = lowering.compute(op, [total, index], f"{out.name}/partial{i}")
    if node.op_type == "Mean":
        total = lowering.compute("DIV", [total, lowering.scalar(out.name + "/count", len(indices))], out.name + "/mean")
    lowering.refs[out] = lowering.cast(Ref(total, perm), dtypes.of(out), out.name)


# ---- unary math --------------------------------------------------------------------------

UNARY = {"Sqrt": "SQRT", "Exp": "EXP", "Log": "LOG", "Abs": "ABS", "Neg": "NEG", "Floor": "FLOOR",
         "Ceil": "CEIL", "Round": "ROUND", "Sign": "SIGN", "Sin": "SIN", "Cos": "COS"}


def _check_unary(node: ir.Node) -> str:
    return check_dtypes(UNARY[node.op_type])(node)


@lowers(*UNARY, check=_check_unary)
def unary(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    op = UNARY[node.op_type]
    ref = lowering.get(x, float_=True)
    compute = dtypes.compute_dtype(op, dtypes.of(x))
    if compute == dtypes.of(x):
        lowering.emit(op, [ref.index], [lowering.new(out, ref.perm).index])
        return
    produced = lowering.compute(op, [lowering.cast(ref, compute, x.name).index], f"{out.name}/{compute}")
    lowering.refs[out] = lowering.cast(Ref(produced, ref.perm), dtypes.of(out), out.name)


@lowers("Reciprocal", check=check_dtypes("DIV"))
def reciprocal(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    ref = lowering.get(x, float_=True)
    lowering.emit("DIV", [lowering.scalar(out.name + "/one", 1.0), ref.index], [lowering.new(out, ref.perm).index])


@lowers("Identity")
def identity(lowering: Lowering, node: ir.Node) -> None:
    lowering.refs[node.outputs[0]] = lowering.ref(node.inputs[0])


# Abramowitz & Stegun 7.1.26: erf(x) = 1 - (a1 t + ... + a5 t^5) exp(-x^2), t = 1 / (1 + p x), x >= 0
ERF_P = 0.3275911
ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
ERF_TOLERANCE = 1e-4  # the bound tests hold the float32 decomposition to (it measures about 1e-6)


def erf(lowering: Lowering, x: int, name: str) -> int:
    """erf of a float tensor: sign(x) * (1 - poly(t) exp(-x^2)), all on kernels XNNPACK runs."""
    def const(suffix, value):
        return lowering.scalar(f"{name}/{suffix}", value)

    one = const("one", 1.0)
    magnitude = lowering.compute("ABS", [x], name + "/abs")
    scaled = lowering.compute("MUL", [magnitude, const("p", ERF_P)], name + "/px")
    t = lowering.compute("DIV", [one, lowering.compute("ADD", [scaled, one], name + "/1px")], name + "/t")
    poly = lowering.compute("MUL", [t, const("a5", ERF_A[4])], name + "/poly5")
    for k in (3, 2, 1, 0):  # Horner: (((a5 t + a4) t + a3) t + a2) t + a1) t
        shifted = lowering.compute("ADD", [poly, const(f"a{k + 1}", ERF_A[k])], f"{name}/poly{k + 1}a")
        poly = lowering.compute("MUL", [shifted, t], f"{name}/poly{k + 1}")
    square = lowering.compute("MUL", [x, x], name + "/x2")
    gauss = lowering.compute("EXP", [lowering.compute("NEG", [square], name + "/neg_x2")], name + "/exp")
    tail = lowering.compute("MUL", [poly, gauss], name + "/tail")
    positive = lowering.compute("SUB", [one, tail], name + "/erf_abs")
    # sign(x) as clamp(x * 2^100, -1, 1): XNNPACK runs it (it has no SIGN); below |x| = 2^-100 erf is 0 anyway
    stretched = lowering.compute("MUL", [x, const("huge", 2.0 ** 100)], name + "/stretched")
    return lowering.compute("MUL", [positive, lowering.compute("RELU_N1_TO_1", [stretched], name + "/sign")],
                            name + "/erf")


@lowers("Erf", check=check_dtypes("EXP"))
def erf_node(lowering: Lowering, node: ir.Node) -> None:
    x, out = node.inputs[0], node.outputs[0]
    ref = lowering.get(x, float_=True)
    lowering.refs[out] = Ref(erf(lowering, ref.index, out.name), ref.perm)

