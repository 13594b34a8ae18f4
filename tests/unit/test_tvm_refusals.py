"""The nodes TVM 0.27's ONNX import computes differently from ONNX are refused in one line, and their
sound neighbours are not (the whole node suite on tvm-x86 found them: 10 wrong forms, now refused)."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgec.backends import get_backend


def only_node(op_type: str, inputs: dict, constants: dict, **attributes) -> ir.Node:
    """The single node of a one-node model, its float inputs of the given shapes, `constants` as initializers."""
    graph = helper.make_graph(
        [helper.make_node(op_type, [*inputs, *constants], ["y"], **attributes)], "one",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(value), name) for name, value in constants.items()])
    model = ir.serde.deserialize_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]))
    return model.graph.node(0)


def resize(scales, mode="linear", **attributes):
    return only_node("Resize", {"x": [1, 3, 10, 10]},
                     {"roi": np.zeros(0, np.float32), "scales": np.array(scales, np.float32)}, mode=mode, **attributes)


@pytest.mark.parametrize("node, words", [
    (lambda: resize([1, 1, 0.75, 0.75]), "not whole"),
    (lambda: resize([1, 1, 0.5, 0.5], antialias=1), "antialias"),
    (lambda: resize([1, 1, 2, 2], mode="cubic"), "cubic"),
    (lambda: only_node("BatchNormalization", {"x": [1, 4, 6, 6]}, {n: np.ones(4, np.float32) for n in
                                                                    ("s", "b", "mean", "var")}, training_mode=1),
     "training-mode"),
    (lambda: only_node("ConvTranspose", {"x": [1, 2, 5, 5]}, {"w": np.ones((2, 2, 3, 3), np.float32)},
                       strides=[2, 2], output_shape=[12, 12]), "output_shape"),
    (lambda: only_node("SpaceToDepth", {"x": [1, 2, 4, 4]}, {}, blocksize=2, mode="CRD"), "always DCR"),
])
def test_faulty_forms_are_refused(node, words):
    reason = get_backend("tvm").check_node(node())
    assert words in reason and "\n" not in reason


@pytest.mark.parametrize("node", [
    lambda: resize([1, 1, 0.5, 0.5]),  # whole sizes: the ratio is the scale
    lambda: resize([1, 1, 0.75, 0.75], mode="nearest"),
    lambda: only_node("BatchNormalization", {"x": [1, 4, 6, 6]}, {n: np.ones(4, np.float32) for n in
                                                                   ("s", "b", "mean", "var")}),
    lambda: only_node("SpaceToDepth", {"x": [1, 2, 4, 4]}, {}, blocksize=2),
])
def test_sound_forms_are_taken(node):
    assert get_backend("tvm").check_node(node()) == ""
