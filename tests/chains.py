"""Long chains of operator pairs (MatMul+Relu, Conv+Relu): graphs whose cost is all node count, for the
scaling benchmark and the test that keeps the optimizer linear in nodes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STYLES = ("matmul", "conv")


def chain(nodes: int, style: str) -> onnx.ModelProto:
    """`nodes` nodes: nodes/2 layers of a small weight (16x16 MatMul, 4-channel 3x3 Conv) each followed by Relu."""
    rng = np.random.default_rng(0)
    shape = [1, 16] if style == "matmul" else [1, 4, 8, 8]
    layers, weights, prev = [], [], "x"
    for i in range(nodes // 2):
        if style == "matmul":
            weight = rng.standard_normal((16, 16)) / 4
            layers.append(helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"matmul{i}"))
        else:
            weight = rng.standard_normal((4, 4, 3, 3)) / 6
            layers.append(helper.make_node("Conv", [prev, f"w{i}"], [f"m{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        weights.append(numpy_helper.from_array(weight.astype(np.float32), f"w{i}"))
        prev = "y" if i == nodes // 2 - 1 else f"r{i}"
        layers.append(helper.make_node("Relu", [f"m{i}"], [prev], name=f"relu{i}"))
    graph = helper.make_graph(layers, f"{style}_chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def save_chain(nodes: int, style: str, folder: Path) -> Path:
    path = Path(folder) / f"{style}_{nodes}.onnx"
    onnx.save(chain(nodes, style), path)
    return path
