"""Real-weight models in the forms other exporters produce, for the import tests.

Each keeps the real trained weights (MobileNetV2's ImageNet weights, the digits CNN) and
changes only how the graph is written, the way real exporters do: TF-SAME padding computed
at run time and an opset-11 legacy export (EfficientNet ports), weights stored as Constant
nodes (paddle2onnx), an If on a configuration input with a streaming state, and a Loop.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
MOBILENET = ROOT / "models" / "mobilenet_v2"
DIGITS = ROOT / "models" / "digits" / "digits_cnn.onnx"


def same_pad_mobilenet(path: Path) -> Path:
    """MobileNetV2 (ImageNet weights) whose convolutions pad TF-SAME from the input's run-time size,
    exported by torch's legacy exporter at opset 11 with dynamic height and width."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(MOBILENET))
    from export import load_model

    class SamePadConv(torch.nn.Module):
        def __init__(self, conv: torch.nn.Conv2d):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            ih, iw = x.size()[-2:]
            kh, kw = self.conv.weight.size()[-2:]
            sh, sw = self.conv.stride
            pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
            pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
            c = self.conv
            return F.conv2d(x, c.weight, c.bias, c.stride, 0, c.dilation, c.groups)

    class Flattened(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            y = torch.nn.functional.adaptive_avg_pool2d(self.net.features(x), 1)
            return self.net.classifier(y.view(y.size(0), -1))

    model = load_model()
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Conv2d) and child.kernel_size != (1, 1):
                setattr(module, name, SamePadConv(child))
    wrapped = Flattened(model).eval()
    x = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(wrapped, (x,), str(path), opset_version=11, dynamo=False, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}})
    return path


def legacy_digits(path: Path) -> Path:
    """The digits CNN (trained weights) from torch's legacy exporter at opset 11."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("digits_model", DIGITS.parent / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.DigitsCNN()
    model.load_state_dict(torch.load(DIGITS.with_suffix(".pth"), weights_only=True))
    torch.onnx.export(model.eval(), (torch.zeros(1, 1, 8, 8),), str(path), opset_version=11, dynamo=False,
                      input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}})
    return path


def weights_as_constants(source: Path, path: Path) -> Path:
    """The same model with every initializer stored as a Constant node, as paddle2onnx writes them."""
    model = onnx.load(source)
    constants = [helper.make_node("Constant", [], [t.name], value=t) for t in model.graph.initializer]
    del model.graph.initializer[:]
    nodes = constants + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save(model, path)
    return path


def _digits_graph():
    model = onnx.load(DIGITS)
    return model, list(model.graph.node), list(model.graph.initializer)


def mode_switch_digits(path: Path) -> Path:
    """The digits CNN with a streaming state and an If on a scalar flag (probabilities or logits).

    The If passes the new state through with Identity in both branches, the pattern that made
    onnx_ir's IdentityEliminationPass raise.
    """
    model, nodes, initializers = _digits_graph()
    f = TensorProto.FLOAT
    nodes += [
        helper.make_node("ReduceMean", ["logits"], ["level"], axes=[1], keepdims=1),
        helper.make_node("Add", ["state_in", "level"], ["mixed"]),
        helper.make_node("Tanh", ["mixed"], ["state"]),
    ]
    then_branch = helper.make_graph(
        [helper.make_node("Softmax", ["logits"], ["then_y"], axis=1), helper.make_node("Identity", ["state"], ["then_s"])],
        "probabilities", [], [helper.make_tensor_value_info("then_y", f, None), helper.make_tensor_value_info("then_s", f, None)])
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["logits"], ["else_y"]), helper.make_node("Identity", ["state"], ["else_s"])],
        "logits", [], [helper.make_tensor_value_info("else_y", f, None), helper.make_tensor_value_info("else_s", f, None)])
    nodes.append(helper.make_node("If", ["probabilities"], ["scores", "state_copy"], then_branch=then_branch,
                                  else_branch=else_branch))
    graph = helper.make_graph(
        nodes, "digits_mode_switch",
        [helper.make_tensor_value_info("input", f, [1, 1, 8, 8]), helper.make_tensor_value_info("state_in", f, [1, 1]),
         helper.make_tensor_value_info("probabilities", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("scores", f, [1, 10]), helper.make_tensor_value_info("state", f, [1, 1]),
         helper.make_tensor_value_info("state_copy", f, [1, 1])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=model.opset_import), path)
    return path


def looped_digits(path: Path, trips: int = 3) -> Path:
    """The digits CNN followed by a Loop with a constant trip count that refines its logits and
    scans each step's rectified logits."""
    model, nodes, initializers = _digits_graph()
    f = TensorProto.FLOAT
    initializers += [numpy_helper.from_array(np.array(trips, np.int64), "trips"),
                     numpy_helper.from_array(np.array(True), "go"),
                     numpy_helper.from_array(np.array(0.5, np.float32), "half")]
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Cast", ["i"], ["i_float"], to=f),
         helper.make_node("Mul", ["x_in", "half"], ["scaled"]),
         helper.make_node("Add", ["scaled", "i_float"], ["x_out"]),
         helper.make_node("Relu", ["x_out"], ["step"])],
        "refine",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", f, [1, 10])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []), helper.make_tensor_value_info("x_out", f, [1, 10]),
         helper.make_tensor_value_info("step", f, [1, 10])])
    nodes.append(helper.make_node("Loop", ["trips", "go", "logits"], ["refined", "steps"], body=body))
    graph = helper.make_graph(nodes, "digits_loop", [helper.make_tensor_value_info("input", f, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("refined", f, [1, 10]),
                               helper.make_tensor_value_info("steps", f, [trips, 1, 10])], initializers)
    onnx.save(helper.make_model(graph, opset_imports=model.opset_import), path)
    return path
