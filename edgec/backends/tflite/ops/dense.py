"""Dense layers: Gemm and MatMul as FULLY_CONNECTED (constant weights) or BATCH_MATMUL (two activations,
batched and broadcast, 1-D operands included), and Einsum for the patterns attention uses."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes, layout
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.common import operand, optional_input, per_output_channel, static_shape
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import QConst, QParams, zero_bias

# FULLY_CONNECTED's versions for float inputs quantized at run time against int8 weights, as TensorFlow's
# converter writes them (tools/versioning/op_version.cc): asymmetric input quantization, per-channel weights.
HYBRID_PER_TENSOR, HYBRID_PER_CHANNEL = 9, 12


def _fully_connected(lowering: Lowering, ref: Ref, w_index: int, b_index: int, out: ir.Value, activation: int,
                     out_params, keep_dims: bool) -> None:
    result = lowering.new(out, layout.identity(len(lowering.shape(out))), out_params)
    options = lowering.writer.options("FullyConnectedOptions", fusedActivationFunction=activation,
                                      keepNumDims=keep_dims)
    lowering.emit("FULLY_CONNECTED", [ref.index, w_index, b_index], [result.index], options)


def _int8_fully_connected(lowering: Lowering, node: ir.Node, a: ir.Value, weights: QConst, bias: QConst | None,
                          out: ir.Value, activation: int, out_params) -> None:
    """FULLY_CONNECTED on int8 data; `weights` is [N, K] quantized per tensor or per output row."""
    rank = len(lowering.shape(a))
    ref = lowering.get(a, layout.identity(rank), memory=True)
    n = weights.data.shape[0]
    bias = bias or zero_bias(n, ref.quant.scale[0], weights.params)
    bias = QConst(np.broadcast_to(bias.data.reshape(-1), (n,)).astype(np.int32), bias.params)
    w_index = lowering.qweight(f"{node.name}/weights", weights)
    _fully_connected(lowering, ref, w_index, lowering.qweight(f"{node.name}/bias", bias, "int32"), out, activation,
                     out_params, keep_dims=rank > 2)


def _transposed_weights(weights: QConst) -> QConst:
    """[K, N] int8 weights (per-channel along N) as FULLY_CONNECTED's [N, K] (per-channel along axis 0)."""
    params = weights.params
    return QConst(np.ascontiguousarray(weights.data.T), QParams(params.scale, params.zero_point, 0))


# ---- Gemm ---------------------------------------------------------------------------------

def _bias_vector(lowering: Lowering, c: ir.Value | None, n: int) -> np.ndarray | None:
    """C as FULLY_CONNECTED's [N] bias when it is a constant that broadcasts along rows only."""
    if c is None:
        return np.zeros(n, np.float32)
    data = lowering.const(c)
    if data is None or (data.ndim == 2 and data.shape[0] != 1):
        return None
    return np.broadcast_to(data.reshape(-1), (n,)).astype(np.float32)


@lowers("Gemm")
def gemm(lowering: Lowering, node: ir.Node) -> None:
    a, b, c = node.inputs[0], node.inputs[1], optional_input(node, 2)
    alpha, beta = node.attributes.get_float("alpha", 1.0), node.attributes.get_float("beta", 1.0)
    trans_a, trans_b = node.attributes.get_int("transA", 0), node.attributes.get_int("transB", 0)
    n = lowering.shape(node.outputs[0])[1]
    bias = _bias_vector(lowering, c, n)
    if lowering.is_const(b) and bias is not None:
        activation, out = lowering.fused_activation(node)
        int8_weights = per_output_channel(lowering.qconst(b), 0 if trans_b else 1)
        exact = alpha == 1.0 and beta == 1.0 and not trans_a
        out_params = lowering.int8_mode([a], out) if int8_weights is not None and exact else None
        if out_params is not None:
            weights = int8_weights if trans_b else _transposed_weights(int8_weights)
            _int8_fully_connected(lowering, node, a, weights, lowering.qconst(c), out, activation, out_params)
            return
        weights = lowering.const(b) * alpha
        ref = lowering.get(a, (1, 0) if trans_a else (0, 1), float_=True, memory=True)
        w_index = lowering.weight(f"{node.name}/weights", np.ascontiguousarray(weights if trans_b else weights.T))
        _fully_connected(lowering, ref, w_index, lowering.weight(f"{node.name}/bias", beta * bias), out, activation,
                         None, keep_dims=False)
        return
    # computed B, or a C with a row dimension: BATCH_MATMUL, then alpha and beta * C
    out = node.outputs[0]
    refs = [lowering.get(v, layout.identity(2), float_=True) for v in (a, b)]
    product = lowering.scratch(out.name + "/product", lowering.shape(out))
    lowering.emit("BATCH_MATMUL", [r.index for r in refs], [product],
                  lowering.writer.options("BatchMatMulOptions", adjX=bool(trans_a), adjY=bool(trans_b)))
    if alpha != 1.0:
        scaled = lowering.scratch(out.name + "/alpha", lowering.shape(out))
        lowering.emit("MUL", [product, lowering.weight(out.name + "/alpha_value", np.float32(alpha))], [scaled],
                      lowering.writer.options("MulOptions"))
        product = scaled
    if c is None:
        lowering.refs[out] = lowering.reshaped(Ref(product, layout.identity(2)), lowering.shape(out), out.name)
        return
    c_index = operand(lowering, c, layout.identity(2), 2)
    if beta != 1.0:
        scaled_c = lowering.scratch(out.name + "/beta_c", lowering.writer.shape(c_index))
        lowering.emit("MUL", [c_index, lowering.weight(out.name + "/beta_value", np.float32(beta))], [scaled_c],
                      lowering.writer.options("MulOptions"))
        c_index = scaled_c
    result = lowering.new(out, layout.identity(2))
    lowering.emit("ADD", [product, c_index], [result.index], lowering.writer.options("AddOptions"))


# ---- MatMul -------------------------------------------------------------------------------

def _check_matmul(node: ir.Node) -> str:
    a, b = static_shape(node.inputs[0]), static_shape(node.inputs[1])
    if a is None or b is None:
        return "operand ranks must be known"
    if max(len(a), len(b)) > 5:
        return "TFLite's BATCH_MATMUL takes at most 5 dimensions"
    return ""


def _matmul_shapes(a_shape, b_shape) -> tuple[list[int], list[int]]:
    """numpy matmul's operand shapes after 1-D promotion ([K] -> [1, K] or [K, 1]) and rank alignment."""
    a = [1, *a_shape] if len(a_shape) == 1 else list(a_shape)
    b = [*b_shape, 1] if len(b_shape) == 1 else list(b_shape)
    rank = max(len(a), len(b))
    return [1] * (rank - len(a)) + a, [1] * (rank - len(b)) + b


@lowers("MatMul", check=_check_matmul)
def matmul(lowering: Lowering, node: ir.Node) -> None:
    a, b = node.inputs
    a_shape, b_shape = _matmul_shapes(lowering.shape(a), lowering.shape(b))
    weights = lowering.const(b)
    if weights is not None and all(d == 1 for d in b_shape[:-2]) and len(lowering.shape(a)) > 1:
        _matmul_constant(lowering, node, weights.reshape(b_shape[-2:]))
        return
    out = node.outputs[0]
    refs = []  # in float even in int8 graphs (FLOAT_IN_XNNPACK)
    for value, shape in ((a, a_shape), (b, b_shape)):
        if lowering.is_const(value):
            refs.append(lowering.weight(f"{node.name}/{value.name}", lowering.const(value).reshape(shape)))
            continue
        ref = lowering.get(value, layout.identity(len(lowering.shape(value))), float_=True, memory=True)
        refs.append(ref.index if list(lowering.writer.shape(ref.index)) == shape else
                    lowering.reshaped(ref, shape, f"{value.name}/as_{len(shape)}d").index)
    batch = list(np.broadcast_shapes(tuple(a_shape[:-2]), tuple(b_shape[:-2])))
    produced = [*batch, a_shape[-2], b_shape[-1]]
    product = lowering.compute("BATCH_MATMUL", refs, out.name + "/product", shape=produced)
    rank = len(produced)
    lowering.refs[out] = Ref(product, layout.identity(rank)) if produced == lowering.shape(out) else \
        lowering.reshaped(Ref(product, layout.identity(rank)), lowering.shape(out), out.name)


def _following_bias(lowering: Lowering, value: ir.Value, columns: int) -> tuple[ir.Node, list[ir.Node]] | None:
    """The Add of a constant [N] vector that alone consumes `value`, directly or through the QuantizeLinear and
    DequantizeLinear of a QDQ graph: (the Add, the nodes in between). Exporters write a 3-D Linear this way."""
    between, current = [], value
    while True:
        uses = current.uses()
        if len(uses) != 1 or current.is_graph_output():
            return None
        user = uses[0].node
        if user.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(between) == 2:
            break
        between.append(user)
        current = user.outputs[0]
    if user.op_type != "Add" or len(between) == 1:
        return None
    bias = user.inputs[1] if user.inputs[0] is current else user.inputs[0]
    data = lowering.const(bias)
    if data is None or data.size != columns or (data.ndim and data.shape[-1] != columns) or \
            len(lowering.shape(user.outputs[0])) != len(lowering.shape(value)):
        return None
    return user, between


def _matmul_constant(lowering: Lowering, node: ir.Node, weights: np.ndarray) -> None:
    """A @ W with W constant [K, N]: FULLY_CONNECTED, keeping A's leading dimensions, with the bias of a
    following Add folded in."""
    a = node.inputs[0]
    columns = weights.shape[1]
    produced = [*lowering.shape(a)[:-1], columns]
    reshape = produced != lowering.shape(node.outputs[0])  # [.., K] @ [K] drops the last axis: [.., 1], reshaped
    bias_add = None if reshape else _following_bias(lowering, node.outputs[0], columns)
    last = node if bias_add is None else bias_add[0]
    activation, out = (lowering.writer.fb.ActivationFunctionType.NONE, node.outputs[0]) if reshape else \
        lowering.fused_activation(last)
    if bias_add is not None:
        add, between = bias_add
        lowering.consumed.update([add, *between])
        bias_value = add.inputs[1] if add.inputs[0] in [node.outputs[0], *(n.outputs[0] for n in between)] \
            else add.inputs[0]
        bias = lowering.const(bias_value).reshape(-1).astype(np.float32)
    else:
        bias = None
    int8_weights = per_output_channel(lowering.qconst(node.inputs[1]), 1)
    if int8_weights is not None and int8_weights.data.ndim != 2:
        int8_weights = None
    out_params = lowering.int8_mode([a], out) if int8_weights is not None and not reshape else None
    if out_params is not None:
        weights_int8 = _transposed_weights(int8_weights)
        bias_int32 = None
        if bias is not None:
            scales = np.asarray(lowering.ref(a).quant.scale[0] * np.asarray(weights_int8.params.scale))
            bias_int32 = QConst(np.round(bias / np.broadcast_to(scales, bias.shape)).astype(np.int32),
                                QParams(tuple(float(s) for s in np.atleast_1d(scales)), (0,) * np.size(scales), 0))
        _int8_fully_connected(lowering, node, a, weights_int8, bias_int32, out, activation, out_params)
        return
    rank = len(lowering.shape(a))
    ref = lowering.get(a, layout.identity(rank), float_=True, memory=True)
    hybrid = int8_weights is not None and not reshape and not lowering.quantized(a)
    if hybrid:  # int8 weights on a float activation: TFLite's dynamic-range kernel (hybrid.py)
        int8_weights = _transposed_weights(int8_weights)
        w_index = lowering.qweight(f"{node.name}/weights", int8_weights)
        lowering.note(f"{node.op_type} runs hybrid: int8 weights, each input row quantized at run time")
    else:
        w_index = lowering.weight(f"{node.name}/weights", np.ascontiguousarray(weights.T))
    b_index = lowering.weight(f"{node.name}/bias", bias) if bias is not None else -1
    options = lowering.writer.options("FullyConnectedOptions", fusedActivationFunction=activation, keepNumDims=rank > 2,
                                      asymmetricQuantizeInputs=hybrid)
    version = (HYBRID_PER_TENSOR if int8_weights.params.per_tensor else HYBRID_PER_CHANNEL) if hybrid else None
    if not reshape:
        result = lowering.new(out, layout.identity(rank))
        lowering.emit("FULLY_CONNECTED", [ref.index, w_index, b_index], [result.index], options, version)
        return
    product = lowering.scratch(out.name + "/product", produced)
    lowering.emit("FULLY_CONNECTED", [ref.index, w_index, b_index], [product], options)
    lowering.refs[out] = lowering.reshaped(Ref(product, layout.identity(len(produced))), lowering.shape(out),
                                           out.name)


# ---- Einsum -------------------------------------------------------------------------------

def einsum_terms(node: ir.Node) -> tuple[list[str], str] | str:
    """The equation's input and output letter strings with '...' spelled out, or why it is not lowered."""
    equation = node.attributes.get_string("equation", "").replace(" ", "")
    inputs, _, output = equation.partition("->")
    terms = inputs.split(",")
    ranks = [len(static_shape(v) or []) for v in node.inputs]
    if len(terms) not in (1, 2) or len(terms) != len(ranks):
        return "only one- and two-operand equations are lowered"
    spare = iter(sorted(set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") - set(equation)))
    ellipsis = "".join(next(spare) for _ in range(max(r - len(t.replace("...", "")) for t, r in zip(terms, ranks))))
    terms = [t.replace("...", ellipsis[len(ellipsis) - (r - len(t.replace("...", ""))):]) for t, r in zip(terms, ranks)]
    if not _:
        output = "".join(sorted(c for c in set("".join(terms)) if "".join(terms).count(c) == 1))
        output = ellipsis + output.replace(ellipsis, "") if ellipsis else output
    output = output.replace("...", ellipsis)
    if any(len(set(t)) != len(t) for t in [*terms, output]):
        return "repeated letters in one term (diagonals) are not lowered"
    return terms, output


def _check_einsum(node: ir.Node) -> str:
    terms = einsum_terms(node)
    if isinstance(terms, str):
        return terms
    return "" if all(dtypes.of(v) == "float32" for v in node.inputs) else "Einsum is lowered for float32"


def _arranged(lowering: Lowering, index: int, letters: str, order: str, name: str) -> int:
    """A tensor whose axes are named by `letters`, with its axes in `order` (a TRANSPOSE unless already so)."""
    if letters == order:
        return index
    shape = lowering.writer.shape(index)
    perm = [letters.index(c) for c in order]
    return lowering.compute("TRANSPOSE", [index, lowering.param(name + "/perm", perm)], name,
                            shape=[shape[p] for p in perm])


def _flat(lowering: Lowering, index: int, shape, name: str) -> int:
    return lowering.restored(Ref(index, layout.identity(len(lowering.writer.shape(index)))), shape,
                             layout.identity(len(shape)), name).index


@lowers("Einsum", check=_check_einsum)
def einsum(lowering: Lowering, node: ir.Node) -> None:
    """Letters only one operand has are summed first; two operands then meet in one BATCH_MATMUL of
    [batch, free_a, contracted] by [batch, contracted, free_b]; the output's letter order is a storage
    permutation (no data moves)."""
    terms, output = einsum_terms(node)
    out = node.outputs[0]
    operands = []
    for i, (term, value) in enumerate(zip(terms, node.inputs)):
        index = lowering.get(value, layout.identity(len(term)), float_=True).index
        elsewhere = "".join(t for j, t in enumerate(terms) if j != i) + output
        alone = [c for c in term if c not in elsewhere]
        if alone:
            kept = "".join(c for c in term if c not in alone)
            shape = lowering.writer.shape(index)
            axes = lowering.param(f"{out.name}/sum{i}", [term.index(c) for c in alone])
            index = lowering.compute("SUM", [index, axes],
                                     f"{out.name}/summed{i}", shape=[shape[term.index(c)] for c in kept],
                                     options=lowering.writer.options("ReducerOptions", keepDims=False))
            term = kept
        operands.append((index, term, dict(zip(term, lowering.writer.shape(index)))))
    if len(operands) == 1:
        index, term, _ = operands[0]
        lowering.refs[out] = Ref(index, tuple(output.index(c) for c in term))
        return
    (index_a, term_a, sizes_a), (index_b, term_b, sizes_b) = operands
    batch = "".join(c for c in output if c in term_a and c in term_b)
    contracted = "".join(c for c in term_a if c in term_b and c not in output)
    free_a = "".join(c for c in term_a if c not in term_b)
    free_b = "".join(c for c in term_b if c not in term_a)

    def matrix(index: int, term: str, sizes: dict, rows: str, columns: str, name: str) -> int:
        arranged = _arranged(lowering, index, term, batch + rows + columns, name)
        shape = [sizes[c] for c in batch] + [int(np.prod([sizes[c] for c in rows])),
                                             int(np.prod([sizes[c] for c in columns]))]
        return _flat(lowering, arranged, shape, name + "/matrix")

    left = matrix(index_a, term_a, sizes_a, free_a, contracted, out.name + "/a")
    right = matrix(index_b, term_b, sizes_b, contracted, free_b, out.name + "/b")
    sizes = {c: max(sizes_a.get(c, 1), sizes_b.get(c, 1)) for c in batch + free_a + free_b}
    product_shape = [sizes[c] for c in batch] + [int(np.prod([sizes[c] for c in free_a])),
                                                 int(np.prod([sizes[c] for c in free_b]))]
    product = lowering.compute("BATCH_MATMUL", [left, right], out.name + "/product", shape=product_shape)
    letters = batch + free_a + free_b
    spread = _flat(lowering, product, [sizes[c] for c in letters], out.name + "/spread")
    lowering.refs[out] = Ref(spread, tuple(output.index(c) for c in letters))
