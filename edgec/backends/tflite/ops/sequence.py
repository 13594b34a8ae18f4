"""LSTM, GRU and RNN: forward, reverse and bidirectional, with initial states, peepholes, clip, coupled gates,
linear_before_reset and either layout.

An LSTM that LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM computes exactly (zero initial states, default
activations, no clip or coupled gates, no Y_c) becomes one kernel per direction: measured faster than
the unrolled form (benchmarks/results/tflite_lstm.md). Everything else is unrolled over the (static)
sequence into FULLY_CONNECTED, ADD, LOGISTIC, TANH and MUL steps that XNNPACK runs: the input
projection of every time step is one FULLY_CONNECTED over the whole sequence, each step adds the
recurrent projection of the previous hidden state, Y stacks the steps (PACK), Y_h and Y_c are the last.

An LSTM whose W and R are DequantizeLinear of int8 constants (the run-time-range scheme, hybrid.py) runs
LiteRT's hybrid kernels: the sequence kernel with int8 weights, or int8-weight FULLY_CONNECTED steps,
both quantizing their float inputs at run time (asymmetric_quantize_inputs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.common import optional_input, static_shape
from edgec.backends.tflite.ops.dense import HYBRID_PER_CHANNEL, HYBRID_PER_TENSOR
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import QConst, QParams, constant, is_constant

# UNIDIRECTIONAL_SEQUENCE_LSTM's version with int8 weights on float inputs quantized asymmetrically at run
# time, as TensorFlow's converter writes it (tools/versioning/op_version.cc)
HYBRID_LSTM_VERSION = 3

ACTIVATIONS = {"Sigmoid": "LOGISTIC", "Tanh": "TANH", "Relu": "RELU"}
DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


@dataclass(frozen=True)
class Recurrence:
    """One LSTM/GRU node's settings, read once."""

    kind: str
    hidden: int
    directions: tuple[str, ...]  # ("forward",), ("reverse",) or both
    batch_major: bool  # layout = 1
    clip: float | None
    activations: tuple[tuple[str, ...], ...]  # per direction: f, g (and h for LSTM)

    @classmethod
    def of(cls, node: ir.Node) -> "Recurrence":
        direction = node.attributes.get_string("direction", "forward")
        directions = ("forward", "reverse") if direction == "bidirectional" else (direction,)
        names = list(node.attributes.get_strings("activations", [])) or DEFAULTS[node.op_type] * len(directions)
        per = len(DEFAULTS[node.op_type])
        clip = node.attributes.get_float("clip", None)
        return cls(node.op_type, node.attributes.get_int("hidden_size", 0) or static_shape(node.inputs[2])[-1],
                   directions, bool(node.attributes.get_int("layout", 0)), clip,
                   tuple(tuple(names[i * per:(i + 1) * per]) for i in range(len(directions))))


def _check_recurrent(node: ir.Node) -> str:
    if any(v is not None and not is_constant(v) for v in (node.inputs[1], node.inputs[2], optional_input(node, 3),
                                                          optional_input(node, 7))):
        return "weights, biases and peepholes must be constants"
    names = list(node.attributes.get_strings("activations", []))
    unknown = sorted(set(names) - set(ACTIVATIONS))
    if unknown:
        return f"activation {', '.join(unknown)} is not lowered (Sigmoid, Tanh and Relu are)"
    lengths = optional_input(node, 4)
    shape = static_shape(node.inputs[0])
    if lengths is not None:
        values = constant(lengths)
        steps = shape[1 if node.attributes.get_int("layout", 0) else 0] if shape else None
        if values is None or steps is None or not np.all(values == steps):
            return "sequence_lens shorter than the sequence are not lowered"
    if dtypes.of(node.inputs[0]) != "float32":
        return f"{node.op_type} is lowered for float32, not {dtypes.of(node.inputs[0])}"
    return ""


@dataclass(frozen=True)
class Dense:
    """A FULLY_CONNECTED's constant operands: weight and bias tensors (-1: none), its output width, and
    the hybrid kernel's version where the weights are int8 (None: float)."""

    weights: int
    bias: int
    features: int
    hybrid_version: int | None = None


def _int8_weights(lowering: Lowering, node: ir.Node) -> tuple[QConst, QConst] | None:
    """W and R as symmetric int8 data with their scales, where both are DequantizeLinear of constants."""
    pair = (lowering.qconst(node.inputs[1]), lowering.qconst(node.inputs[2]))
    if any(q is None or any(q.params.zero_point) for q in pair):
        return None
    return pair


def _rows(q: QConst | None, direction: int, rows: slice = slice(None)) -> QConst | None:
    """Rows of one direction of int8 weights [dirs, gates * hidden, in], with their scales: one where
    they share it, else one per row (a FULLY_CONNECTED's output channels)."""
    if q is None:
        return None
    params = q.params
    scales = params.scale if params.per_tensor else (params.scale[direction],) if params.axis == 0 else \
        params.scale[rows]
    if len(set(scales)) == 1:
        scales = scales[:1]
    return QConst(np.ascontiguousarray(q.data[direction][rows]), QParams(tuple(scales), (0,) * len(scales), 0))


class _Emitter:
    """Small helpers over the lowering context for one recurrent node's operators."""

    def __init__(self, lowering: Lowering, name: str, batch: int, hidden: int):
        self.lowering, self.name, self.batch, self.hidden = lowering, name, batch, hidden
        self.count = 0

    def op(self, op: str, inputs: list[int], shape=None, options=None, version: int | None = None) -> int:
        self.count += 1
        return self.lowering.compute(op, inputs, f"{self.name}/{op.lower()}{self.count}", shape=shape,
                                     options=options, version=version)

    def prepare(self, weights: np.ndarray, bias: np.ndarray | None = None, int8: QConst | None = None) -> "Dense":
        """Constant weights [N, K] (and bias [N]) written once, for a FULLY_CONNECTED every time step reuses;
        with `int8` (the same weights as int8 data), a hybrid one."""
        lowering = self.lowering
        self.count += 1
        name = f"{self.name}/dense{self.count}"
        bias_index = lowering.weight(name + "/bias", bias) if bias is not None else -1
        if int8 is not None:
            return Dense(lowering.qweight(name + "/weights", int8), bias_index, weights.shape[0],
                         HYBRID_PER_TENSOR if int8.params.per_tensor else HYBRID_PER_CHANNEL)
        return Dense(lowering.weight(name + "/weights", np.ascontiguousarray(weights, np.float32)), bias_index,
                     weights.shape[0])

    def dense(self, x: int, layer: "Dense", keep_dims: bool = False) -> int:
        """x @ weights.T (+ bias): FULLY_CONNECTED."""
        lowering = self.lowering
        shape = lowering.writer.shape(x)[:-1] + [layer.features] if keep_dims else [self.batch, layer.features]
        return self.op("FULLY_CONNECTED", [x, layer.weights, layer.bias], shape=shape,
                       options=lowering.writer.options("FullyConnectedOptions", keepNumDims=keep_dims,
                                                       asymmetricQuantizeInputs=layer.hybrid_version is not None),
                       version=layer.hybrid_version)

    def split(self, x: int, parts: int) -> list[int]:
        """Equal parts along axis 1 (SPLIT, which XNNPACK runs; it does not run SPLIT_V)."""
        lowering = self.lowering
        self.count += 1
        name = f"{self.name}/split{self.count}"
        size = lowering.writer.shape(x)[1] // parts
        outputs = [lowering.scratch(f"{name}/{i}", [self.batch, size]) for i in range(parts)]
        lowering.emit("SPLIT", [lowering.param(name + "/axis", 1), x], outputs,
                      lowering.writer.options("SplitOptions", numSplits=parts))
        return outputs

    def activation(self, name: str, x: int) -> int:
        return self.op(ACTIVATIONS[name], [x])

    def clipped(self, x: int, clip: float | None) -> int:
        if clip is None:
            return x
        low = self.op("MAXIMUM", [x, self.lowering.scalar(f"{self.name}/clip_low", -clip)])
        return self.op("MINIMUM", [low, self.lowering.scalar(f"{self.name}/clip_high", clip)])

    def unpacked(self, x: int, count: int, shape) -> list[int]:
        """The `count` slices of x along axis 0."""
        lowering = self.lowering
        self.count += 1
        outputs = [lowering.scratch(f"{self.name}/step{self.count}_{i}", shape) for i in range(count)]
        lowering.emit("UNPACK", [x], outputs, lowering.writer.options("UnpackOptions", num=count, axis=0))
        return outputs

    def packed(self, pieces: list[int], shape) -> int:
        if len(pieces) == 1:
            return self.op("RESHAPE", [pieces[0], self.lowering.param(f"{self.name}/packed_shape", shape)],
                           shape=shape, options=self.lowering.writer.options("ReshapeOptions", newShape=list(shape)))
        return self.op("PACK", pieces, shape=shape,
                       options=self.lowering.writer.options("PackOptions", valuesCount=len(pieces), axis=0))


def _initial_states(emit: _Emitter, value: ir.Value | None, recurrence: Recurrence) -> list[int]:
    """Per direction, the [batch, hidden] initial state (zeros when absent)."""
    lowering = emit.lowering
    count = len(recurrence.directions)
    if value is None:
        zeros = lowering.weight(f"{emit.name}/zeros", np.zeros((emit.batch, emit.hidden), np.float32))
        return [zeros] * count
    ref = lowering.get(value, (1, 0, 2) if recurrence.batch_major else (0, 1, 2), float_=True)  # [dirs, batch, H]
    return emit.unpacked(ref.index, count, [emit.batch, emit.hidden])


@lowers("LSTM", "GRU", "RNN", check=_check_recurrent)
def recurrent(lowering: Lowering, node: ir.Node) -> None:
    recurrence = Recurrence.of(node)
    x = node.inputs[0]
    shape = lowering.shape(x)
    steps, batch = (shape[1], shape[0]) if recurrence.batch_major else (shape[0], shape[1])
    hidden = recurrence.hidden
    emit = _Emitter(lowering, node.outputs[0].name if node.outputs[0] is not None else node.name, batch, hidden)
    sequence = lowering.get(x, (1, 0, 2) if recurrence.batch_major else (0, 1, 2), float_=True)  # [T, batch, I]
    weights, recurrent_weights = lowering.const(node.inputs[1]), lowering.const(node.inputs[2])
    gates = GATES[recurrence.kind]
    bias_value, peephole_value = optional_input(node, 3), optional_input(node, 7)
    biases = lowering.const(bias_value) if bias_value is not None else \
        np.zeros((len(recurrence.directions), 2 * gates * hidden), np.float32)
    int8 = _int8_weights(lowering, node)
    if int8 is not None:
        lowering.note(f"{node.op_type} runs hybrid: int8 weights, its inputs quantized at run time")
    if lowering.recurrent == "kernel" and recurrence.kind == "LSTM":
        reason = _kernel_refusal(lowering, node, recurrence, int8)
        if not reason:
            _lstm_kernel(lowering, emit, node, recurrence, sequence, steps, int8)
            lowering.note("LSTM state lives in variable tensors: call the interpreter's reset_all_variables() "
                          "before each invoke (run.py does)")
            return
        lowering.note(f"LSTM '{node.name}' is unrolled: LiteRT's kernel {reason}")
    hiddens = _initial_states(emit, optional_input(node, 5), recurrence)
    cells = _initial_states(emit, optional_input(node, 6), recurrence) if recurrence.kind == "LSTM" else [None] * 2
    all_steps, finals_h, finals_c = [], [], []
    for d, direction in enumerate(recurrence.directions):
        bias_w, bias_r = biases[d][:gates * hidden], biases[d][gates * hidden:]
        folded = bias_w + bias_r  # every recurrent bias adds outside the gates except GRU's h with linear_before_reset
        if recurrence.kind == "GRU" and node.attributes.get_int("linear_before_reset", 0):
            folded[2 * hidden:] = bias_w[2 * hidden:]
        w_int8, r_int8 = (_rows(q, d) for q in int8) if int8 is not None else (None, None)
        projection = emit.dense(sequence.index, emit.prepare(weights[d], folded, w_int8), keep_dims=True)  # [T, B, G*H]
        inputs = emit.unpacked(projection, steps, [batch, gates * hidden])
        order = range(steps) if direction == "forward" else range(steps - 1, -1, -1)
        h, c = hiddens[d], cells[d]
        outputs = [0] * steps
        if recurrence.kind == "LSTM":
            peepholes = lowering.const(peephole_value)[d] if peephole_value is not None else None
            cell = _LstmCell(emit, node, recurrence, recurrence.activations[d],
                             emit.prepare(recurrent_weights[d], int8=r_int8), peepholes)
        elif recurrence.kind == "GRU":
            cell = _GruCell(emit, node, recurrence, recurrence.activations[d], recurrent_weights[d], bias_r)
        else:
            cell = _RnnCell(emit, recurrence, recurrence.activations[d], emit.prepare(recurrent_weights[d]))
        for t in order:
            h, c = cell.step(inputs[t], h, c)
            outputs[t] = h
        all_steps.append(outputs)
        finals_h.append(h)
        finals_c.append(c)
    _outputs(lowering, emit, node, recurrence, all_steps, finals_h, finals_c, steps)


class _LstmCell:
    """ONNX's LSTM step: gates i, o, f, c (with peepholes, clip, f = 1 - i when input_forget)."""

    def __init__(self, emit: _Emitter, node: ir.Node, recurrence: Recurrence, activations, recurrent: Dense,
                 peepholes: np.ndarray | None):
        self.emit, self.recurrence, self.recurrent = emit, recurrence, recurrent
        self.f_act, self.g_act, self.h_act = activations
        self.coupled = bool(node.attributes.get_int("input_forget", 0))
        hidden = recurrence.hidden
        self.peepholes = None if peepholes is None else [
            emit.lowering.weight(f"{emit.name}/peephole{k}", peepholes[k * hidden:(k + 1) * hidden]) for k in range(3)]

    def _peephole(self, gate: int, k: int, state: int) -> int:
        if self.peepholes is None:
            return gate
        return self.emit.op("ADD", [gate, self.emit.op("MUL", [state, self.peepholes[k]])])

    def step(self, projected: int, h: int, c: int) -> tuple[int, int]:
        emit = self.emit
        gates = emit.clipped(emit.op("ADD", [projected, emit.dense(h, self.recurrent)]), self.recurrence.clip)
        i, o, f, candidate = emit.split(gates, 4)
        i = emit.activation(self.f_act, self._peephole(i, 0, c))
        if self.coupled:
            f = emit.op("SUB", [emit.lowering.scalar(f"{emit.name}/one", 1.0), i])
        else:
            f = emit.activation(self.f_act, self._peephole(f, 2, c))
        cell = emit.op("ADD", [emit.op("MUL", [f, c]), emit.op("MUL", [i, emit.activation(self.g_act, candidate)])])
        o = emit.activation(self.f_act, self._peephole(o, 1, cell))
        return emit.op("MUL", [o, emit.activation(self.h_act, cell)]), cell


class _GruCell:
    """ONNX's GRU step: gates z, r, h; h' = h~ + z (h - h~), the recurrent bias of h inside r with
    linear_before_reset."""

    def __init__(self, emit: _Emitter, node: ir.Node, recurrence: Recurrence, activations,
                 recurrent_weights: np.ndarray, bias_r: np.ndarray):
        hidden = recurrence.hidden
        self.emit, self.recurrence = emit, recurrence
        self.f_act, self.g_act = activations
        self.before_reset = bool(node.attributes.get_int("linear_before_reset", 0))
        self.update_reset = emit.prepare(recurrent_weights[:2 * hidden])
        self.candidate = emit.prepare(recurrent_weights[2 * hidden:],
                                      bias_r[2 * hidden:] if self.before_reset else None)

    def step(self, projected: int, h: int, c: None) -> tuple[int, None]:
        emit, clip = self.emit, self.recurrence.clip
        x_update, x_reset, x_candidate = emit.split(projected, 3)
        h_update, h_reset = emit.split(emit.dense(h, self.update_reset), 2)
        update = emit.activation(self.f_act, emit.clipped(emit.op("ADD", [x_update, h_update]), clip))
        reset = emit.activation(self.f_act, emit.clipped(emit.op("ADD", [x_reset, h_reset]), clip))
        if self.before_reset:
            recurrent_part = emit.op("MUL", [reset, emit.dense(h, self.candidate)])
        else:
            recurrent_part = emit.dense(emit.op("MUL", [reset, h]), self.candidate)
        candidate = emit.activation(self.g_act, emit.clipped(emit.op("ADD", [x_candidate, recurrent_part]), clip))
        return emit.op("ADD", [candidate, emit.op("MUL", [update, emit.op("SUB", [h, candidate])])]), None


class _RnnCell:
    """ONNX's RNN step: h' = f(x W + h R + biases)."""

    def __init__(self, emit: _Emitter, recurrence: Recurrence, activations, recurrent: Dense):
        self.emit, self.clip, self.recurrent = emit, recurrence.clip, recurrent
        (self.f_act,) = activations

    def step(self, projected: int, h: int, c: None) -> tuple[int, None]:
        emit = self.emit
        total = emit.op("ADD", [projected, emit.dense(h, self.recurrent)])
        return emit.activation(self.f_act, emit.clipped(total, self.clip)), None


def _wanted(node: ir.Node) -> list[ir.Value | None]:
    """Y, Y_h, Y_c where something reads them (None otherwise: nothing is written for them)."""
    outputs = list(node.outputs) + [None] * (3 - len(node.outputs))
    return [v if v is not None and (v.uses() or v.is_graph_output()) else None for v in outputs[:3]]


def _outputs(lowering: Lowering, emit: _Emitter, node: ir.Node, recurrence: Recurrence, all_steps, finals_h,
             finals_c, steps: int) -> None:
    """Y [T, dirs, batch, H] and Y_h / Y_c [dirs, batch, H] (batch first with layout = 1), as storage orders."""
    batch, hidden, count = emit.batch, emit.hidden, len(recurrence.directions)
    y, y_h, y_c = _wanted(node)
    if y is not None:
        per_direction = [emit.packed(all_steps[d], [steps, batch, hidden]) for d in range(count)]
        stacked = emit.packed(per_direction, [count, steps, batch, hidden])  # [dirs, T, batch, H]
        # stored axes (dirs, T, batch, H) hold ONNX axes (1, 0, 2, 3), or (2, 1, 0, 3) batch first
        lowering.refs[y] = Ref(stacked, (2, 1, 0, 3) if recurrence.batch_major else (1, 0, 2, 3))
    for value, finals in ((y_h, finals_h), (y_c, finals_c)):
        if value is not None:
            lowering.refs[value] = Ref(emit.packed(finals, [count, batch, hidden]),
                                       (1, 0, 2) if recurrence.batch_major else (0, 1, 2))


# ---- LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM (recurrent = "kernel") ---------------------------

def _kernel_refusal(lowering: Lowering, node: ir.Node, recurrence: Recurrence,
                    int8: tuple[QConst, QConst] | None) -> str:
    """Why LiteRT's LSTM kernel would not compute what this node does, or ''."""
    if int8 is not None:
        hidden = recurrence.hidden
        gates = [_rows(q, d, slice(k * hidden, (k + 1) * hidden)) for q in int8
                 for d in range(len(recurrence.directions)) for k in range(4)]
        if not all(gate.params.per_tensor for gate in gates):
            return "with int8 weights takes one scale per gate's weight tensor, and these have one per row"
        if optional_input(node, 7) is not None:
            return "with int8 weights takes int8 peepholes"
    if any(names != tuple(DEFAULTS["LSTM"]) for names in recurrence.activations):
        return "has fixed activations (sigmoid, tanh, tanh)"
    if recurrence.clip is not None or node.attributes.get_int("input_forget", 0):
        return "clips the cell state, not the gates, and couples the other gate"
    for state in (optional_input(node, 5), optional_input(node, 6)):
        if state is not None and (lowering.const(state) is None or np.any(lowering.const(state))):
            return "starts from zero states (they are variables inside the model)"
    cell = node.outputs[2] if len(node.outputs) > 2 else None
    if cell is not None and (cell.uses() or cell.is_graph_output()):
        return "does not output the last cell state"
    return ""


def _lstm_kernel(lowering: Lowering, emit: _Emitter, node: ir.Node, recurrence: Recurrence, sequence: Ref,
                 steps: int, int8: tuple[QConst, QConst] | None) -> None:
    """One UNIDIRECTIONAL_SEQUENCE_LSTM per direction (reverse: REVERSE_V2 around it), states as variable
    tensors that the harness resets before each inference."""
    batch, hidden, name = emit.batch, emit.hidden, emit.name
    weights, recurrent_weights = lowering.const(node.inputs[1]), lowering.const(node.inputs[2])
    bias_value, peephole_value = optional_input(node, 3), optional_input(node, 7)
    time_axis = lowering.param(name + "/time_axis", [0])
    sequences, finals = [], []
    for d, direction in enumerate(recurrence.directions):
        gate = {g: slice(k * hidden, (k + 1) * hidden) for k, g in enumerate("iofc")}  # ONNX's gate order
        biases = lowering.const(bias_value)[d] if bias_value is not None else np.zeros(8 * hidden, np.float32)
        bias = biases[:4 * hidden] + biases[4 * hidden:]
        x = sequence.index
        if direction == "reverse":
            x = emit.op("REVERSE_V2", [x, time_axis])
        inputs = [x]
        for kind, data, q in (("w", weights, int8 and int8[0]), ("r", recurrent_weights, int8 and int8[1])):
            inputs += [lowering.qweight(f"{name}/{d}/{kind}_{g}", _rows(q, d, gate[g])) if q is not None else
                       lowering.weight(f"{name}/{d}/{kind}_{g}", data[d][gate[g]]) for g in "ifco"]
        if peephole_value is not None:  # ONNX: [p_i, p_o, p_f]; LiteRT: cell-to-input, -forget, -output
            peepholes = lowering.const(peephole_value)[d]
            inputs += [lowering.weight(f"{name}/{d}/p_{g}", peepholes[k * hidden:(k + 1) * hidden])
                       for g, k in (("i", 0), ("f", 2), ("o", 1))]
        else:
            inputs += [-1, -1, -1]
        inputs += [lowering.weight(f"{name}/{d}/b_{g}", bias[gate[g]]) for g in "ifco"]
        inputs += [-1, -1]  # no projection
        inputs += [lowering.writer.tensor(f"{name}/{d}/{state}", [batch, hidden], "float32", variable=True)
                   for state in ("h", "c")]
        inputs += [-1] * 4  # no layer normalization
        options = lowering.writer.options("UnidirectionalSequenceLSTMOptions", timeMajor=True,
                                          fusedActivationFunction=lowering.writer.fb.ActivationFunctionType.TANH,
                                          asymmetricQuantizeInputs=int8 is not None)
        output = emit.op("UNIDIRECTIONAL_SEQUENCE_LSTM", inputs, shape=[steps, batch, hidden], options=options,
                         version=HYBRID_LSTM_VERSION if int8 is not None else None)
        if direction == "reverse":
            output = emit.op("REVERSE_V2", [output, time_axis])
        last = 0 if direction == "reverse" else steps - 1
        finals.append(emit.op("SLICE", [output, lowering.param(f"{name}/{d}/last", [last, 0, 0]),
                                        lowering.param(f"{name}/{d}/size", [1, batch, hidden])],
                              shape=[1, batch, hidden]))
        sequences.append(output)
    count = len(sequences)
    outputs = _wanted(node)
    if outputs[0] is not None:  # stored [T, dirs, batch, H]
        stacked = emit.op("RESHAPE", [sequences[0], lowering.param(name + "/stacked", [steps, 1, batch, hidden])],
                          shape=[steps, 1, batch, hidden]) if count == 1 else \
            emit.op("PACK", sequences, shape=[steps, count, batch, hidden],
                    options=lowering.writer.options("PackOptions", valuesCount=count, axis=1))
        lowering.refs[outputs[0]] = Ref(stacked, (1, 2, 0, 3) if recurrence.batch_major else (0, 1, 2, 3))
    if outputs[1] is not None:
        last_states = finals[0] if count == 1 else emit.op(
            "CONCATENATION", finals, shape=[count, batch, hidden],
            options=lowering.writer.options("ConcatenationOptions", axis=0))
        lowering.refs[outputs[1]] = Ref(last_states, (1, 0, 2) if recurrence.batch_major else (0, 1, 2))
