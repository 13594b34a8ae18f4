"""LSTM, GRU and RNN lowered to basic operators, unrolled over a static sequence length.

TVM 0.27's ONNX importer has no recurrent converters, and other runtimes run the unrolled
form well. Each direction computes its input projections for all time steps in one MatMul,
then per step one MatMul with the recurrent weights and the gate arithmetic; Y, Y_h and Y_c
keep ONNX's layouts (a reverse direction's outputs stay aligned with the input's time steps).
The build applies this only for a target that cannot take the recurrent node itself.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

logger = logging.getLogger(__name__)

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
MAX_STEPS = 512
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
ACTIVATIONS = {"Sigmoid", "Tanh", "Relu", "HardSigmoid", "LeakyRelu"}


def _constant(value: ir.Value | None) -> np.ndarray | None:
    return None if value is None or value.const_value is None else value.const_value.numpy()


def _input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if len(node.inputs) > index else None


@dataclass
class Recurrence:
    """A recurrent node's static facts, read once."""

    node: ir.Node
    steps: int
    batch: int
    hidden: int
    directions: list[str]  # "forward"/"reverse", in ONNX's direction order
    activations: list[tuple[str, float | None, float | None]]  # per direction, per function: (name, alpha, beta)
    clip: float | None
    batch_first: bool

    @property
    def gates(self) -> int:
        return GATES[self.node.op_type]

    def weights(self, index: int) -> np.ndarray | None:
        return _constant(_input(self.node, index))


def why_not_lowerable(node: ir.Node) -> str:
    """'' when the recurrent node can be unrolled, else the reason."""
    try:
        _read(node)
    except ValueError as exc:
        return str(exc)
    return ""


def _read(node: ir.Node) -> Recurrence:
    x = node.inputs[0]
    if x.shape is None or len(x.shape) != 3 or not all(isinstance(d, int) for d in x.shape):
        raise ValueError("its input has no static [sequence, batch, features] shape")
    if any(_constant(_input(node, i)) is None for i in (1, 2)) or (_input(node, 3) is not None and _constant(_input(node, 3)) is None):
        raise ValueError("its weights are computed at run time")
    batch_first = node.attributes.get_int("layout", 0) == 1
    steps, batch = (x.shape[1], x.shape[0]) if batch_first else (x.shape[0], x.shape[1])
    if steps > MAX_STEPS:
        raise ValueError(f"its {steps} time steps are more than {MAX_STEPS} to unroll")
    lengths = _input(node, 4)
    if lengths is not None:
        given = _constant(lengths)
        if given is None or not np.all(given == steps):
            raise ValueError("its sequence_lens vary or are computed at run time")
    if node.op_type == "LSTM" and node.attributes.get_int("input_forget", 0):
        raise ValueError("input_forget=1 (coupled gates) is not lowered")
    direction = node.attributes.get_string("direction", "forward")
    directions = ["forward", "reverse"] if direction == "bidirectional" else [direction]
    per = len(DEFAULT_ACTIVATIONS[node.op_type])
    names = list(node.attributes.get_strings("activations", []) or DEFAULT_ACTIVATIONS[node.op_type] * len(directions))
    alphas = list(node.attributes.get_floats("activation_alpha", []) or [])
    betas = list(node.attributes.get_floats("activation_beta", []) or [])
    unknown = sorted(set(names) - ACTIVATIONS)
    if unknown:
        raise ValueError(f"activation {unknown[0]} is not lowered")
    parameterized = iter(range(len(names)))
    activations = []
    for name in names:  # alpha/beta are listed only for the functions that take them, in order
        slot = next(parameterized) if name in ("HardSigmoid", "LeakyRelu") else None
        activations.append((name, alphas[slot] if slot is not None and slot < len(alphas) else None,
                            betas[slot] if slot is not None and slot < len(betas) else None))
    clip = node.attributes.get_float("clip", 0.0) or None
    hidden = node.attributes.get_int("hidden_size", 0) or _constant(_input(node, 2)).shape[-1]
    return Recurrence(node, steps, batch, hidden, directions,
                      [activations[d * per:(d + 1) * per] for d in range(len(directions))], clip, batch_first)


class _Builder:
    """Emits nodes on a tape, with small constants as initializers."""

    def __init__(self, prefix: str):
        self.tape = ir.tape.Tape()
        self.prefix = prefix
        self.count = 0

    def const(self, array) -> ir.Value:
        self.count += 1
        array = np.asarray(array)
        name = f"{self.prefix}c{self.count}"
        return self.tape.initializer(ir.tensor(array, name=name), name=name)

    def op(self, op_type: str, *inputs: ir.Value, **attributes) -> ir.Value:
        return self.tape.op(op_type, list(inputs), attributes or None)

    def columns(self, value: ir.Value, start: int, stop: int) -> ir.Value:
        return self.op("Slice", value, self.const(np.array([start], np.int64)), self.const(np.array([stop], np.int64)),
                       self.const(np.array([1], np.int64)))

    def activate(self, value: ir.Value, function: tuple[str, float | None, float | None]) -> ir.Value:
        name, alpha, beta = function
        if name == "HardSigmoid":
            return self.op("HardSigmoid", value, alpha=alpha if alpha is not None else 0.2,
                           beta=beta if beta is not None else 0.5)
        if name == "LeakyRelu":
            return self.op("LeakyRelu", value, alpha=alpha if alpha is not None else 0.01)
        return self.op(name, value)

    def clipped(self, value: ir.Value, clip: float | None) -> ir.Value:
        if clip is None:
            return value
        return self.op("Max", self.op("Min", value, self.const(np.float32(clip))), self.const(np.float32(-clip)))


def _initial_state(b: _Builder, r: Recurrence, index: int, direction: int) -> ir.Value:
    value = _input(r.node, index)
    if value is None:
        return b.const(np.zeros((r.batch, r.hidden), np.float32))
    if r.batch_first:  # [batch, directions, hidden]
        return b.op("Gather", value, b.const(np.int64(direction)), axis=1)
    return b.op("Gather", value, b.const(np.int64(direction)), axis=0)


def _direction(b: _Builder, r: Recurrence, sequence: ir.Value, d: int) -> tuple[list[ir.Value], ir.Value, ir.Value | None]:
    """One direction: per-step hidden states (in time order), the last hidden and cell state."""
    h, gates, kind = r.hidden, r.gates, r.node.op_type
    w, recurrent = r.weights(1)[d], r.weights(2)[d]  # [gates*h, input], [gates*h, h]
    bias = r.weights(3)[d] if r.weights(3) is not None else np.zeros(2 * gates * h, np.float32)
    w_bias, r_bias = bias[: gates * h], bias[gates * h:]
    separate_reset = kind == "GRU" and not r.node.attributes.get_int("linear_before_reset", 0)
    input_bias = w_bias if kind == "GRU" else w_bias + r_bias  # GRU adds its recurrent biases inside the gates
    projected = b.op("Add", b.op("MatMul", sequence, b.const(w.T.astype(np.float32))),
                     b.const(input_bias.astype(np.float32)))  # [steps, batch, gates*h]
    functions = r.activations[d]
    state = _initial_state(b, r, 5, d)
    cell = _initial_state(b, r, 6, d) if kind == "LSTM" else None
    peepholes = r.weights(7)[d] if kind == "LSTM" and r.weights(7) is not None else None
    order = range(r.steps) if r.directions[d] == "forward" else range(r.steps - 1, -1, -1)
    outputs: dict[int, ir.Value] = {}
    for t in order:
        step = b.op("Gather", projected, b.const(np.int64(t)), axis=0)  # [batch, gates*h]
        if kind == "GRU":
            state = _gru_step(b, r, step, state, recurrent, r_bias, separate_reset, functions)
        else:
            total = b.op("Add", step, b.op("MatMul", state, b.const(recurrent.T.astype(np.float32))))
            if kind == "RNN":
                state = b.activate(b.clipped(total, r.clip), functions[0])
            else:
                state, cell = _lstm_step(b, r, total, cell, peepholes, functions)
        outputs[t] = state
    return [outputs[t] for t in range(r.steps)], state, cell


def _lstm_step(b: _Builder, r: Recurrence, total, cell, peepholes, functions):
    h = r.hidden
    i, o, f, c = (b.clipped(b.columns(total, k * h, (k + 1) * h), r.clip) for k in range(4))
    if peepholes is not None:
        i = b.op("Add", i, b.op("Mul", cell, b.const(peepholes[:h].astype(np.float32))))
        f = b.op("Add", f, b.op("Mul", cell, b.const(peepholes[2 * h:].astype(np.float32))))
    gate, candidate, output_act = functions
    cell = b.op("Add", b.op("Mul", b.activate(f, gate), cell), b.op("Mul", b.activate(i, gate), b.activate(c, candidate)))
    if peepholes is not None:
        o = b.op("Add", o, b.op("Mul", cell, b.const(peepholes[h:2 * h].astype(np.float32))))
    return b.op("Mul", b.activate(o, gate), b.activate(cell, output_act)), cell


def _gru_step(b: _Builder, r: Recurrence, step, state, recurrent, r_bias, separate_reset, functions):
    h = r.hidden
    gate, candidate = functions
    if separate_reset:
        zr = b.op("MatMul", state, b.const(recurrent[: 2 * h].T.astype(np.float32)))
        zr = b.op("Add", zr, b.const(r_bias[: 2 * h].astype(np.float32)))
    else:
        zr = b.op("Add", b.op("MatMul", state, b.const(recurrent.T.astype(np.float32))), b.const(r_bias.astype(np.float32)))
    z = b.activate(b.clipped(b.op("Add", b.columns(step, 0, h), b.columns(zr, 0, h)), r.clip), gate)
    reset = b.activate(b.clipped(b.op("Add", b.columns(step, h, 2 * h), b.columns(zr, h, 2 * h)), r.clip), gate)
    if separate_reset:
        hidden = b.op("Add", b.op("MatMul", b.op("Mul", reset, state), b.const(recurrent[2 * h:].T.astype(np.float32))),
                      b.const(r_bias[2 * h:].astype(np.float32)))
    else:
        hidden = b.op("Mul", reset, b.columns(zr, 2 * h, 3 * h))
    candidate_state = b.activate(b.clipped(b.op("Add", b.columns(step, 2 * h, 3 * h), hidden), r.clip), candidate)
    return b.op("Add", candidate_state, b.op("Mul", z, b.op("Sub", state, candidate_state)))


def lower(node: ir.Node) -> None:
    """Replace one recurrent node by its unrolled form, in place."""
    r = _read(node)
    b = _Builder(f"{node.name or node.op_type}/unrolled/")
    sequence = node.inputs[0]
    if r.batch_first:
        sequence = b.op("Transpose", sequence, perm=[1, 0, 2])
    per_direction = [_direction(b, r, sequence, d) for d in range(len(r.directions))]
    one_step = b.const(np.array([1, 1, r.batch, r.hidden], np.int64))
    state_shape = b.const(np.array([1, r.batch, r.hidden], np.int64))
    y = b.op("Concat", *[b.op("Concat", *[b.op("Reshape", s, one_step) for s in steps], axis=0)
                         for steps, _, _ in per_direction], axis=1)  # [steps, directions, batch, hidden]
    y_h = b.op("Concat", *[b.op("Reshape", last, state_shape) for _, last, _ in per_direction], axis=0)
    results = [y, y_h]
    if r.node.op_type == "LSTM":
        results.append(b.op("Concat", *[b.op("Reshape", cell, state_shape) for _, _, cell in per_direction], axis=0))
    if r.batch_first:
        results = [b.op("Transpose", results[0], perm=[2, 0, 1, 3])] + [b.op("Transpose", v, perm=[1, 0, 2])
                                                                         for v in results[1:]]
    graph = node.graph
    for value in b.tape.initializers:
        graph.register_initializer(value)
    graph.insert_before(node, b.tape.nodes)
    for old, new in zip(node.outputs, results):
        if not old.uses() and not old.is_graph_output():
            continue
        name = old.name
        ir.convenience.replace_all_uses_with(old, new, replace_graph_outputs=True)
        if new.is_graph_output():
            new.name = name
    graph.remove(node, safe=True)


class LowerRecurrentPass(ir.passes.InPlacePass):
    """Unroll every LSTM/GRU/RNN whose shapes and weights are static (others stay, with the reason logged)."""

    def __init__(self, op_types: tuple[str, ...] = RECURRENT_OPS):
        super().__init__()
        self.op_types = op_types

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for node in [n for n in ir.traversal.RecursiveGraphIterator(model.graph) if n.op_type in self.op_types]:
            reason = why_not_lowerable(node)
            if reason:
                logger.info("%s '%s' not unrolled: %s", node.op_type, node.name, reason)
                continue
            lower(node)
            modified = True
        return ir.passes.PassResult(model, modified)
