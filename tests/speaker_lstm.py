"""The corpus speaker encoder's first LSTM layer (resemblyzer: 40 mel bands in, 256 hidden) as a graph of
its own, with its real weights and its real input: a real recurrent layer small enough for fast tests."""
from __future__ import annotations

import functools

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from conftest import ROOT

CORPUS = ROOT / "models" / "corpus" / "cache"
LAYER = "node_LSTM_53"  # the first of its three


@functools.lru_cache(maxsize=1)
def _layer_operands() -> dict[str, np.ndarray]:
    """The layer's input sequence, weights and biases as the encoder computes them from its real input
    (its weights are sliced and reordered from PyTorch's gate order inside the graph)."""
    import onnxruntime as ort

    model = onnx.load(CORPUS / "resemblyzer_stream.onnx")
    (node,) = [n for n in model.graph.node if n.name == LAYER]
    names = dict(zip(("x", "w", "r", "b"), node.input[:4]))
    model.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names.values())
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with np.load(CORPUS / "resemblyzer_stream.inputs.npz") as data:
        clips = {name: data[name] for name in data.files}
    runs = [session.run(list(names.values()), {"mels": clips["mels"][i:i + 1], "h0": clips["h0"][:, i:i + 1],
                                               "c0": clips["c0"][:, i:i + 1], "reset": clips["reset"]})
            for i in range(len(clips["mels"]))]  # one clip a call, as the encoder streams
    operands = dict(zip(names, runs[0]))
    operands["x"] = np.concatenate([run[0] for run in runs], axis=1)  # the clips as one batch
    return operands


def speaker_lstm(direction: str = "forward", layout: int = 0, steps: int = 160) -> tuple[onnx.ModelProto, dict]:
    """The layer over the first `steps` frames (both directions share its weights when bidirectional),
    its outputs Y and Y_h, and its real input: the corpus's 4 clips as one batch."""
    operands = _layer_operands()
    directions = 2 if direction == "bidirectional" else 1
    x = operands["x"][:steps]  # [T, batch, 40]
    if layout:
        x = x.transpose(1, 0, 2)
    w, r, b = (np.concatenate([operands[k]] * directions) for k in ("w", "r", "b"))
    hidden = r.shape[-1]
    batch = x.shape[1 - layout]
    y_shape = [steps, directions, batch, hidden] if layout == 0 else [batch, steps, directions, hidden]
    h_shape = [directions, batch, hidden] if layout == 0 else [batch, directions, hidden]
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "y_h"], hidden_size=hidden, direction=direction,
                          layout=layout)],
        "speaker_lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape),
         helper.make_tensor_value_info("y_h", TensorProto.FLOAT, h_shape)],
        [numpy_helper.from_array(v, k) for k, v in (("W", w), ("R", r), ("B", b))])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), {"x": np.ascontiguousarray(x)}
