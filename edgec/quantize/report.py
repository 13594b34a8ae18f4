"""Per-layer quantization error: where does an int8 model lose accuracy?

For every quantized activation we compare the float model's tensor with the same tensor
after quantization (the DequantizeLinear that follows it in the QDQ graph) on calibration
samples, as SQNR in dB and cosine similarity; a layer whose output the scheme leaves float
(TensorRT's placement quantizes layer inputs only) is judged on that float output. Errors
accumulate through the network, so each layer also gets `added_db`: how much SQNR it loses
relative to its quantized inputs. That is the measure of harm the fallback uses.
"""
from __future__ import annotations

import itertools

import numpy as np
import onnx_ir as ir

from edgec import ir as eir
from edgec.ir import runtime
from edgec.package.harness.manifest import LayerError
from edgec.quantize.data import CalibrationData

REPORT_SAMPLES = 4  # enough to rank layers; each sample runs both models with every tensor exposed
SQNR_CAP = 200.0


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


def _session(model: ir.Model, outputs: list[str]):
    """A session that also returns the named intermediate tensors."""
    model = eir.clone(model)
    values = {v.name: v for node in model.graph for v in node.outputs}
    existing = {v.name for v in model.graph.outputs} | {v.name for v in model.graph.inputs}
    for tensor in outputs:
        if tensor not in existing:
            model.graph.outputs.append(values[tensor])
    return runtime.session(model)


def _fetch(session, names: list[str], feed: dict) -> dict:
    graph_inputs = {n: v for n, v in feed.items() if n in names}
    rest = [n for n in names if n not in graph_inputs]
    return {**graph_inputs, **dict(zip(rest, session.run(rest, feed)))}


def _float_name(name: str, dq_name: str, known: set[str]) -> str | None:
    """The float model's name for a quantized tensor: graph outputs keep their name on the DQ side."""
    return name if name in known else dq_name if dq_name in known else None


def tensor_errors(float_model: ir.Model, qdq: ir.Model, data: CalibrationData,
                  unquantized: list[str]) -> dict[str, tuple[float, float]]:
    """QDQ-graph tensor name -> (SQNR dB, cosine) of its quantized version, over calibration samples;
    the `unquantized` tensors (layer outputs left float) are compared as the QDQ graph computes them."""
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
    float_names = sorted(dequantized)
    quant_names = sorted(set(dequantized.values()))
    sums = {name: np.zeros(4) for name in float_names}  # signal², noise², dot, quantized²
    fsess, qsess = _session(float_model, float_names), _session(qdq, quant_names)
    for feed in itertools.islice(data.feeds(), REPORT_SAMPLES):
        f = _fetch(fsess, float_names, feed)
        q = _fetch(qsess, quant_names, feed)
        for name in float_names:
            a, b = f[name].ravel(), q[dequantized[name]].ravel()
            d = a - b
            sums[name] += [np.dot(a, a), np.dot(d, d), np.dot(a, b), np.dot(b, b)]  # float32 BLAS
    errors = {}
    for name, (signal, noise, dot, quant) in sums.items():
        sqnr = 10 * np.log10(signal / noise) if noise > 0 and signal > 0 else SQNR_CAP
        cosine = dot / np.sqrt(signal * quant) if signal > 0 and quant > 0 else 1.0
        errors[aliases[name]] = (float(min(sqnr, SQNR_CAP)), float(cosine))
    return errors


def layer_errors(float_model: ir.Model, qdq: ir.Model, data: CalibrationData) -> list[LayerError]:
    """One row per quantized layer, the most harmful (largest SQNR loss) first."""
    layers = quantized_layers(qdq)
    if not layers:
        return []
    errors = tensor_errors(float_model, qdq, data, [layer["output"] for layer in layers.values()])
    rows = []
    for name, layer in layers.items():
        if layer["output"] not in errors:
            continue
        sqnr, cosine = errors[layer["output"]]
        sqnr_in = min(errors[i][0] for i in layer["inputs"] if i in errors) if layer["inputs"] else SQNR_CAP
        rows.append(LayerError(name, layer["op"], layer["output"], sqnr, cosine, max(0.0, sqnr_in - sqnr)))
    return sorted(rows, key=lambda r: (-r.added_db, r.sqnr_db))
