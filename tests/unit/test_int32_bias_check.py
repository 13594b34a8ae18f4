"""onnxruntime's check that a bias's int32 scale is not too small, answered for all channels at once: the same
answer as its own channel-by-channel loop on BlazeFace's real weights and biases, whether no channel needs a
wider weight scale (a calibrated input scale) or some do (an input scale so small the biases overflow int32)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import qdq_quantizer

from conftest import ROOT
from edgec.quantize.qdq import _int32_bias_checked_at_once

CHECK = "_adjust_weight_scale_for_int32_bias"


def _layers() -> list[tuple[np.ndarray, onnx.TensorProto]]:
    """Each convolution's per-channel symmetric int8 weight scales and its bias."""
    model = onnx.load(ROOT / "models" / "corpus" / "cache" / "blazeface.onnx")
    weights = {init.name: init for init in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type == "Conv" and len(node.input) == 3:
            w = onnx.numpy_helper.to_array(weights[node.input[1]])
            scale = (np.abs(w).reshape(len(w), -1).max(1) / 127).astype(np.float32)
            layers.append((scale, weights[node.input[2]]))
    return layers


@pytest.mark.parametrize("input_scale, widened", [(0.02, False), (1e-9, True)])
def test_all_channels_at_once_answer_as_onnxruntime_does(input_scale, widened):
    original = getattr(qdq_quantizer.QDQQuantizer, CHECK)
    layers = _layers()
    assert len(layers) == 37
    answers = []
    with _int32_bias_checked_at_once():
        at_once = getattr(qdq_quantizer.QDQQuantizer, CHECK)
        assert at_once is not original
        for scale, bias in layers:
            ours = at_once(None, np.array(input_scale, np.float32), scale.copy(), "w", bias, True)
            theirs = original(None, np.array(input_scale, np.float32), scale.copy(), "w", bias, True)
            assert ours[0] == theirs[0] and np.array_equal(ours[1], theirs[1]) and ours[1].dtype == theirs[1].dtype
            answers.append(ours[0])
    assert any(answers) == widened
    assert getattr(qdq_quantizer.QDQQuantizer, CHECK) is original
