"""LSTM and GRU: forward, reverse and bidirectional, with initial states, peepholes, clip, coupled gates,
linear_before_reset and either layout, unrolled over the (static) sequence into FULLY_CONNECTED, ADD,
LOGISTIC, TANH and MUL steps that XNNPACK runs.

The input projection of every time step is one FULLY_CONNECTED over the whole sequence; each step then
adds the recurrent projection of the previous hidden state. Y stacks the steps' hidden states (PACK),
Y_h and Y_c are the last ones. benchmarks/tflite_lstm.py measures this form against LiteRT's
UNIDIRECTIONAL_SEQUENCE_LSTM kernel.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes
from edgec.backends.tflite.lowering import Lowering, Ref
from edgec.backends.tflite.ops.common import optional_input, static_shape
from edgec.backends.tflite.ops.registry import lowers
from edgec.backends.tflite.quant import constant, is_constant

ACTIVATIONS = {"Sigmoid": "LOGISTIC", "Tanh": "TANH", "Relu": "RELU"}
DEFAULTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
GATES = {"LSTM": 4, "GRU": 3}


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


class _Emitter:
    """Small helpers over the lowering context for one recurrent node's operators."""

    def __init__(self, lowering: Lowering, name: str, batch: int, hidden: int):
        self.lowering, self.name, self.batch, self.hidden = lowering, name, batch, hidden
        self.count = 0

    def op(self, op: str, inputs: list[int], shape=None, options=None) -> int:
        self.count += 1
        return self.lowering.compute(op, inputs, f"{self.name}/{op.lower()}{self.count}", shape=shape,
                                     options=options)

    def dense(self, x: int, weights: np.ndarray, bias: np.ndarray | None, keep_dims: bool = False) -> int:
        """x @ weights.T (+ bias): FULLY_CONNECTED."""
        lowering = self.lowering
        self.count += 1
        name = f"{self.name}/dense{self.count}"
        w_index = lowering.weight(name + "/weights", np.ascontiguousarray(weights, np.float32))
        b_index = lowering.weight(name + "/bias", bias) if bias is not None else -1
        shape = lowering.w.shape(x)[:-1] + [weights.shape[0]] if keep_dims else [self.batch, weights.shape[0]]
        return lowering.compute("FULLY_CONNECTED", [x, w_index, b_index], name, shape=shape,
                                options=lowering.w.options("FullyConnectedOptions", keepNumDims=keep_dims))

    def split(self, x: int, sizes: list[int]) -> list[int]:
        lowering = self.lowering
        self.count += 1
        name = f"{self.name}/split{self.count}"
        outputs = [lowering.scratch(f"{name}/{i}", [self.batch, s]) for i, s in enumerate(sizes)]
        lowering.emit("SPLIT_V", [x, lowering.param(name + "/sizes", sizes), lowering.param(name + "/axis", 1)],
                      outputs, lowering.w.options("SplitVOptions", numSplits=len(sizes)))
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
        lowering.emit("UNPACK", [x], outputs, lowering.w.options("UnpackOptions", num=count, axis=0))
        return outputs

    def packed(self, pieces: list[int], shape) -> int:
        if len(pieces) == 1:
            return self.op("RESHAPE", [pieces[0], self.lowering.param(f"{self.name}/packed_shape", shape)],
                           shape=shape, options=self.lowering.w.options("ReshapeOptions", newShape=list(shape)))
        return self.op("PACK", pieces, shape=shape,
                       options=self.lowering.w.options("PackOptions", valuesCount=len(pieces), axis=0))


def _initial_states(emit: _Emitter, value: ir.Value | None, recurrence: Recurrence) -> list[int]:
    """Per direction, the [batch, hidden] initial state (zeros when absent)."""
    lowering = emit.lowering
    count = len(recurrence.directions)
    if value is None:
        zeros = lowering.weight(f"{emit.name}/zeros", np.zeros((emit.batch, emit.hidden), np.float32))
        return [zeros] * count
    ref = lowering.get(value, (1, 0, 2) if recurrence.batch_major else (0, 1, 2), float_=True)  # [dirs, batch, H]
    return emit.unpacked(ref.index, count, [emit.batch, emit.hidden])


@lowers("LSTM", "GRU", check=_check_recurrent)
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
    hiddens = _initial_states(emit, optional_input(node, 5), recurrence)
    cells = _initial_states(emit, optional_input(node, 6), recurrence) if recurrence.kind == "LSTM" else [None] * 2
    all_steps, finals_h, finals_c = [], [], []
    for d, direction in enumerate(recurrence.directions):
        bias_w, bias_r = biases[d][:gates * hidden], biases[d][gates * hidden:]
        folded = bias_w + bias_r  # every recurrent bias adds outside the gates except GRU's h with linear_before_reset
        if recurrence.kind == "GRU" and node.attributes.get_int("linear_before_reset", 0):
            folded[2 * hidden:] = bias_w[2 * hidden:]
        projection = emit.dense(sequence.index, weights[d], folded, keep_dims=True)  # [T, batch, G*H]
        inputs = emit.unpacked(projection, steps, [batch, gates * hidden])
        order = range(steps) if direction == "forward" else range(steps - 1, -1, -1)
        h, c = hiddens[d], cells[d]
        outputs = [0] * steps
        for t in order:
            if recurrence.kind == "LSTM":
                peepholes = lowering.const(peephole_value)[d] if peephole_value is not None else None
                h, c = _lstm_step(emit, node, recurrence, recurrence.activations[d], inputs[t], h, c,
                                  recurrent_weights[d], peepholes)
            else:
                h = _gru_step(emit, node, recurrence, recurrence.activations[d], inputs[t], h, recurrent_weights[d],
                              bias_r)
            outputs[t] = h
        all_steps.append(outputs)
        finals_h.append(h)
        finals_c.append(c)
    _outputs(lowering, emit, node, recurrence, all_steps, finals_h, finals_c, steps)


def _lstm_step(emit: _Emitter, node: ir.Node, recurrence: Recurrence, activations, projected: int, h: int, c: int,
               recurrent_weights: np.ndarray, peepholes: np.ndarray | None) -> tuple[int, int]:
    """ONNX's LSTM step: gates i, o, f, c; f = 1 - i when input_forget."""
    lowering, hidden = emit.lowering, recurrence.hidden
    f_act, g_act, h_act = activations
    gates = emit.clipped(emit.op("ADD", [projected, emit.dense(h, recurrent_weights, None)]), recurrence.clip)
    i, o, f, candidate = emit.split(gates, [hidden] * 4)

    def peephole(gate: int, k: int, state: int) -> int:
        if peepholes is None:
            return gate
        weight = lowering.weight(f"{emit.name}/peephole{k}", peepholes[k * hidden:(k + 1) * hidden])
        return emit.op("ADD", [gate, emit.op("MUL", [state, weight])])

    i = emit.activation(f_act, peephole(i, 0, c))
    if node.attributes.get_int("input_forget", 0):
        f = emit.op("SUB", [lowering.scalar(f"{emit.name}/one", 1.0), i])
    else:
        f = emit.activation(f_act, peephole(f, 2, c))
    cell = emit.op("ADD", [emit.op("MUL", [f, c]), emit.op("MUL", [i, emit.activation(g_act, candidate)])])
    o = emit.activation(f_act, peephole(o, 1, cell))
    return emit.op("MUL", [o, emit.activation(h_act, cell)]), cell


def _gru_step(emit: _Emitter, node: ir.Node, recurrence: Recurrence, activations, projected: int, h: int,
              recurrent_weights: np.ndarray, bias_r: np.ndarray) -> int:
    """ONNX's GRU step: gates z, r, h; h' = h~ + z (h - h~)."""
    hidden = recurrence.hidden
    f_act, g_act = activations
    x_update_reset, x_candidate = emit.split(projected, [2 * hidden, hidden])
    update_reset = emit.op("ADD", [x_update_reset, emit.dense(h, recurrent_weights[:2 * hidden], None)])
    update, reset = emit.split(emit.activation(f_act, emit.clipped(update_reset, recurrence.clip)), [hidden, hidden])
    if node.attributes.get_int("linear_before_reset", 0):
        recurrent_part = emit.op("MUL", [reset, emit.dense(h, recurrent_weights[2 * hidden:], bias_r[2 * hidden:])])
    else:
        recurrent_part = emit.dense(emit.op("MUL", [reset, h]), recurrent_weights[2 * hidden:], None)
    candidate = emit.activation(g_act, emit.clipped(emit.op("ADD", [x_candidate, recurrent_part]), recurrence.clip))
    return emit.op("ADD", [candidate, emit.op("MUL", [update, emit.op("SUB", [h, candidate])])])


def _outputs(lowering: Lowering, emit: _Emitter, node: ir.Node, recurrence: Recurrence, all_steps, finals_h,
             finals_c, steps: int) -> None:
    """Y [T, dirs, batch, H] and Y_h / Y_c [dirs, batch, H] (batch first with layout = 1), as storage orders."""
    batch, hidden, count = emit.batch, emit.hidden, len(recurrence.directions)
    outputs = list(node.outputs) + [None] * (3 - len(node.outputs))
    y, y_h, y_c = outputs[:3]
    if y is not None:
        per_direction = [emit.packed(all_steps[d], [steps, batch, hidden]) for d in range(count)]
        stacked = emit.packed(per_direction, [count, steps, batch, hidden])  # [dirs, T, batch, H]
        # stored axes (dirs, T, batch, H) hold ONNX axes (1, 0, 2, 3), or (2, 1, 0, 3) batch first
        lowering.refs[y] = Ref(stacked, (2, 1, 0, 3) if recurrence.batch_major else (1, 0, 2, 3))
    for value, finals in ((y_h, finals_h), (y_c, finals_c)):
        if value is not None:
            lowering.refs[value] = Ref(emit.packed(finals, [count, batch, hidden]),
                                       (1, 0, 2) if recurrence.batch_major else (0, 1, 2))
