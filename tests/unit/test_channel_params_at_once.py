"""onnxruntime's per-channel weight parameters, and the weights quantized with them, computed for all channels
at once give what its own channel-by-channel loops give, array for array and byte for byte: on BlazeFace's real
weights, with 7-bit weights on some layers (the overflow fix's override), one channel of zeros (onnxruntime's
scale 1), and a weight with another override left to onnxruntime."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization import qdq_quantizer
from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

from conftest import ROOT
from edgec.quantize.qdq import Reader, _channels_quantized_at_once, _initializer_params, _plain_channel_weights

BLAZEFACE = ROOT / "models" / "corpus" / "cache" / "blazeface.onnx"
PARAMETERS = "_calc_initializer_quant_params"


@pytest.mark.parametrize("weights", [QuantType.QInt8, QuantType.QUInt8])
def test_all_channels_at_once_give_onnxruntimes_parameters_and_weights(weights, tmp_path, monkeypatch):
    model = onnx.load(BLAZEFACE)
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    initializers = {init.name: init for init in model.graph.initializer}
    first = initializers[convs[0].input[1]]
    zeroed = onnx.numpy_helper.to_array(first).copy()
    zeroed[3] = 0.0  # a channel of zeros: its scale is 1, its zero point 0
    first.CopyFrom(onnx.numpy_helper.from_array(zeroed, first.name))
    onnx.save(model, tmp_path / "blazeface.onnx")
    overrides = {node.input[1]: [{"axis": 0, "reduce_range": True}] for node in convs[::3]}
    overrides[convs[1].input[1]] = [{"axis": 0, "symmetric": True}]  # onnxruntime's own loop

    original = getattr(QDQQuantizer, PARAMETERS)
    answers = []

    def both(quantizer):
        theirs = original(quantizer)
        answers.append((theirs, _initializer_params(quantizer, original), len(_plain_channel_weights(quantizer))))
        return theirs

    monkeypatch.setattr(QDQQuantizer, PARAMETERS, both)
    quantize = qdq_quantizer.quantize_onnx_initializer
    quantized_alike, left_to_onnxruntime = [], []

    def both_quantized(*args, **kwargs):
        theirs = quantize(*args, **kwargs)
        ours = _channels_quantized_at_once(lambda *a: left_to_onnxruntime.append(1) or quantize(*a))(*args, **kwargs)
        quantized_alike.append(ours.SerializeToString() == theirs.SerializeToString())
        return theirs

    monkeypatch.setattr(qdq_quantizer, "quantize_onnx_initializer", both_quantized)
    with np.load(ROOT / "models" / "corpus" / "cache" / "blazeface.inputs.npz") as data:
        images = data["input"][:2]
    quantize_static(str(tmp_path / "blazeface.onnx"), str(tmp_path / "int8.onnx"),
                    Reader([{"input": images[i:i + 1]} for i in range(len(images))]),
                    quant_format=QuantFormat.QDQ, per_channel=True, weight_type=weights,
                    activation_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"TensorQuantOverrides": overrides})
    [(theirs, ours, at_once)] = answers
    assert list(ours) == list(theirs)
    assert len(theirs) == len(convs) == 37 and at_once == 36
    for name, params in theirs.items():
        for key in ("zero_point", "scale"):
            assert ours[name][key].dtype == params[key].dtype, (name, key)
            assert np.array_equal(ours[name][key], params[key]), (name, key)
        assert ours[name].get("axis") == params.get("axis") and ours[name]["quant_type"] == params["quant_type"]
    assert theirs[first.name]["scale"][3] == 1.0 and theirs[first.name]["zero_point"][3] == 0
    assert len(quantized_alike) == len(convs) and all(quantized_alike) and not left_to_onnxruntime
