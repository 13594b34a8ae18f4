"""Per-layer quantization error: where does an int8 model lose accuracy?

For every quantized activation we compare the float model's tensor with the same tensor
after quantization (the DequantizeLinear that follows it in the QDQ graph) on calibration
samples, as SQNR in dB and cosine similarity, for the whole tensor and for its worst slice
(a layer whose output the scheme leaves float, as TensorRT's placement does, is judged on that
float output):
its worst live channel, or a Concat's worst input. The whole-tensor figure hides a slice whose
values are small beside the others: a detector's scores concatenated with pixel coordinates
rated 49.9 dB while every score was crushed. Errors accumulate through the network, so a
layer's harm is the larger of the SQNR it loses relative to its quantized inputs and the gap
between its whole tensor and its worst slice; the fallback keeps the most harmful layers float first.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from edgec import ir as eir
from edgec.ir import runtime
from edgec.package.harness.manifest import LayerError
from edgec.quantize.data import CalibrationData

REPORT_SAMPLES = 4  # enough to rank layers; each sample runs both models with every tensor exposed
SQNR_CAP = 200.0
EXACT_DB = 50.0  # an input reproduced better than this counts as exact (a first layer's integer pixels)
DEAD_CHANNEL = 1e-6  # a channel with less energy than this share of the strongest one carries nothing


def _dequantized(qdq: ir.Model) -> dict[str, str]:
    """float activation name -> name of its DequantizeLinear(QuantizeLinear(x)) output."""
    mapping = {}
    for node in qdq.graph:
        if node.op_type != "QuantizeLinear" or node.inputs[0].is_initializer():
            continue
        for use in node.outputs[0].uses():
            if use.node.op_type == "DequantizeLinear":
                mapping[node.inputs[0].name] = use.node.outputs[0].name
                break
    return mapping


def _source(value: ir.Value | None) -> str | None:
    """The float activation a node input was dequantized from, or None (weights, plain inputs)."""
    dq = value.producer() if value is not None else None
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = dq.inputs[0].producer()
    return q.inputs[0].name if q is not None and q.op_type == "QuantizeLinear" else None


def quantized_layers(qdq: ir.Model) -> dict[str, dict]:
    """node name -> {op, output, inputs} for nodes computing on dequantized activations."""
    layers = {}
    for node in qdq.graph:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or not node.outputs:
            continue
        inputs = [s for s in (_source(v) for v in node.inputs) if s is not None]
        if inputs:
            layers[node.name] = {"op": node.op_type, "output": node.outputs[0].name, "inputs": inputs}
    return layers


def _runs(model: ir.Model, outputs: list[str], feeds: list[dict]):
    """Each feed's named tensors (graph inputs among them) as the model computes them, in batches
    (runtime.run_each)."""
    model = eir.clone(model)
    values = {v.name: v for node in model.graph for v in node.outputs}
    existing = {v.name for v in model.graph.outputs} | {v.name for v in model.graph.inputs}
    for tensor in outputs:
        if tensor not in existing:
            model.graph.outputs.append(values[tensor])
    session = runtime.session(model, batches=True)
    names = [output.name for output in session.get_outputs()]
    for feed, computed in zip(feeds, runtime.run_each(session, feeds, runtime.input_free(model))):
        yield {**{n: v for n, v in feed.items() if n in outputs}, **dict(zip(names, computed))}


def _float_name(name: str, dq_name: str, known: set[str]) -> str | None:
    """The float model's name for a quantized tensor: graph outputs keep their name on the DQ side."""
    return name if name in known else dq_name if dq_name in known else None


@dataclass(frozen=True)
class TensorError:
    sqnr_db: float
    cosine: float
    worst_slice_db: float


def _db(signal, noise):
    """SQNR in dB, capped; a slice without signal or without noise is perfect."""
    with np.errstate(all="ignore"):
        db = np.where((noise > 0) & (signal > 0), 10 * np.log10(signal / np.maximum(noise, 1e-300)), SQNR_CAP)
    return np.minimum(db, SQNR_CAP)


class _Slices:
    """Sums of signal², noise², dot and quantized² per index along one axis of a tensor."""

    def __init__(self, axis: int | None):
        self.axis, self.sums, self.sizes = axis, None, None

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        axis = self.axis if self.axis is not None and a.ndim > self.axis else None
        a2 = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1) if axis is not None else a.reshape(1, -1)
        b2 = np.moveaxis(b, axis, 0).reshape(a2.shape) if axis is not None else b.reshape(1, -1)
        d = a2 - b2
        rows = np.stack([np.einsum("ij,ij->i", a2, a2), np.einsum("ij,ij->i", d, d),
                         np.einsum("ij,ij->i", a2, b2), np.einsum("ij,ij->i", b2, b2)], 1).astype(np.float64)
        self.sums = rows if self.sums is None else self.sums + rows

    def result(self, groups: list[int] | None) -> TensorError:
        signal, noise, dot, quant = self.sums.sum(0)
        cosine = dot / np.sqrt(signal * quant) if signal > 0 and quant > 0 else 1.0
        if groups:  # a Concat's inputs: each is read apart downstream, however small beside the others
            per_slice = np.add.reduceat(self.sums, np.cumsum([0, *groups[:-1]]), 0)
        else:
            per_slice = self.sums[self.sums[:, 0] >= DEAD_CHANNEL * self.sums[:, 0].max()]
        worst = float(_db(per_slice[:, 0], per_slice[:, 1]).min())
        return TensorError(float(_db(signal, noise)), float(cosine), worst)


def _concat_parts(float_model: ir.Model, qdq: ir.Model) -> dict[str, tuple[int, list[str]]]:
    """Concat output (float model's name) -> (axis, its inputs' names), for slicing by input."""
    names = {node.name for node in qdq.graph if node.op_type == "Concat"}
    return {node.outputs[0].name: (node.attributes["axis"].as_int(), [v.name for v in node.inputs])
            for node in float_model.graph if node.op_type == "Concat" and node.name in names}


def tensor_errors(float_model: ir.Model, qdq: ir.Model, data: CalibrationData,
                  unquantized: list[str] = ()) -> dict[str, TensorError]:
    """QDQ-graph tensor name -> the error of its quantized version, over calibration samples; the
    `unquantized` tensors (layer outputs left float) are compared as the QDQ graph computes them."""
    known = {v.name for node in float_model.graph for v in node.outputs} | {v.name for v in float_model.graph.inputs}
    dequantized = {}
    aliases = {}
    for name, dq_name in _dequantized(qdq).items():
        float_name = _float_name(name, dq_name, known)
        if float_name is not None:
            dequantized[float_name] = dq_name
            aliases[float_name] = name
    for name in unquantized:
        if name in known and name not in dequantized:
            dequantized[name] = aliases[name] = name
    concats = {name: part for name, part in _concat_parts(float_model, qdq).items() if name in dequantized}
    parts = sorted({i for _, inputs in concats.values() for i in inputs} - set(dequantized))
    float_names = sorted(dequantized) + parts
    quant_names = sorted(set(dequantized.values()))
    slices = {name: _Slices(concats[name][0] if name in concats else 1) for name in dequantized}
    groups: dict[str, list[int]] = {}
    feeds = list(itertools.islice(data.feeds(), REPORT_SAMPLES))
    for f, q in zip(_runs(float_model, float_names, feeds), _runs(qdq, quant_names, feeds)):
        for name in dequantized:
            a, b = np.asarray(f[name], np.float32), np.asarray(q[dequantized[name]], np.float32)
            slices[name].add(a, b)
            if name in concats:
                axis, inputs = concats[name]
                groups[name] = [f[i].shape[axis % a.ndim] for i in inputs]
    return {aliases[name]: s.result(groups.get(name)) for name, s in slices.items() if s.sums is not None}


def layer_errors(float_model: ir.Model, qdq: ir.Model, data: CalibrationData) -> list[LayerError]:
    """One row per quantized layer, the most harmful first."""
    layers = quantized_layers(qdq)
    if not layers:
        return []
    errors = tensor_errors(float_model, qdq, data, [layer["output"] for layer in layers.values()])
    rows = []
    for name, layer in layers.items():
        if layer["output"] not in errors:
            continue
        error = errors[layer["output"]]
        sqnr_in = min((errors[i].sqnr_db for i in layer["inputs"] if i in errors), default=SQNR_CAP)
        added = max(0.0, sqnr_in - error.sqnr_db)
        # what the layer loses, or what its average hides: a slice far below the whole tensor
        harm = max(min(sqnr_in, EXACT_DB) - error.sqnr_db, error.sqnr_db - error.worst_slice_db, 0.0)
        rows.append(LayerError(name, layer["op"], layer["output"], error.sqnr_db, error.cosine, added,
                               worst_slice_db=error.worst_slice_db, harm_db=harm))
    return sorted(rows, key=lambda r: (-r.harm_db, r.worst_slice_db))
