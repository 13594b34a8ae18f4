"""Bias correction's shift (edgec/quantize/bias.py) is the layer's exact mean output shift on real data,
whatever its padding, stride and groups, and is taken from the calibration runs only."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir

from edgec import ir as eir
from edgec.ir import runtime
from edgec.quantize import bias
from edgec.quantize.calibrate import Ranges

MOBILENET = Path(__file__).resolve().parents[2] / "models" / "mobilenet_v2"
# a 3x3 depthwise convolution (576 groups), stride 2, padding 1, from 14x14 maps: a quarter of its
# outputs read padding
LAYER = "/features/features.14/conv/conv.1/conv.1.0/Conv"


def _layer_and_inputs(runs: int) -> tuple[ir.Model, list[dict]]:
    """MobileNetV2's LAYER alone (zero bias) and its real inputs: the float model's tensor on calibration crops."""
    model = ir.load(MOBILENET / "mobilenet_v2.onnx")
    conv = next(node for node in model.graph if node.name == LAYER)
    model.graph.outputs.append(conv.inputs[0])
    session = runtime.session(model)
    with np.load(MOBILENET / "calibration.npz") as data:
        crops = data["input"][:runs]
    maps = [session.run([conv.inputs[0].name], {"input": crops[i:i + 1]})[0] for i in range(runs)]
    weight = conv.inputs[1].const_value.numpy()
    x = ir.Value(name="x", shape=ir.Shape(["batch", *maps[0].shape[1:]]), type=ir.TensorType(ir.DataType.FLOAT))
    w = ir.Value(name="w", const_value=ir.tensor(weight, name="w"))
    b = ir.Value(name="b", const_value=ir.tensor(np.zeros(weight.shape[0], np.float32), name="b"))
    y = ir.Value(name="y")
    node = ir.Node("", "Conv", [x, w, b], [ir.Attr(a.name, a.type, a.value) for a in conv.attributes.values()],
                   outputs=[y], name="conv")
    graph = ir.Graph([x], [y], nodes=[node], initializers=[w, b], opset_imports={"": 13})
    return ir.Model(graph, ir_version=8), [{"x": m} for m in maps]


def _with_weight(layer: ir.Model, weight: np.ndarray) -> ir.Model:
    node = next(iter(layer.graph))
    node.inputs[1].const_value = ir.tensor(weight.astype(np.float32), name="w")
    return layer


def test_shift_is_the_mean_output_shift_with_padding_stride_and_groups(tmp_path):
    layer, runs = _layer_and_inputs(8)
    weight = next(iter(layer.graph)).inputs[1].const_value.numpy().astype(np.float64)
    scale = np.abs(weight).max(axis=(1, 2, 3), keepdims=True) / 127  # per-channel symmetric int8
    rounded = np.round(weight / scale) * scale
    ranges = Ranges(eir.save(layer, tmp_path / "layer.onnx"), ("Conv",), runs, tmp_path, frozenset({"x"}))
    calibration_runs = runs[:len(runs) - len(ranges.held_back)]
    assert len(ranges.held_back) == 2 and sum(ranges.input_means["x"].counts.values()) == 6  # held-back runs unseen

    shift = bias.output_shifts(layer, {"conv": rounded}, ranges.input_means)["conv"]

    inputs = {"x": np.concatenate([run["x"] for run in calibration_runs])}
    float_out = runtime.session(layer).run(None, inputs)[0].astype(np.float64)
    int8_out = runtime.session(_with_weight(layer, rounded)).run(None, inputs)[0]
    measured = (int8_out - float_out).mean(axis=(0, 2, 3))
    naive = (rounded - weight).sum(axis=(1, 2, 3)) * inputs["x"].mean(axis=(0, 2, 3))  # every tap sees the mean
    exact_error, naive_error = np.abs(shift - measured).max(), np.abs(naive - measured).max()
    print(f"shift max {np.abs(measured).max():.3g}; error: exact {exact_error:.2g}, per-channel mean {naive_error:.2g}")
    assert exact_error < 1e-3 * np.abs(measured).max()
    assert naive_error > 20 * exact_error
