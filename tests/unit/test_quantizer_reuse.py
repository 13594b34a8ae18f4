"""One Quantizer's repeated runs (the method and bias choices, the scheme candidates, the fallback) reuse
its weights' quantization and its graphs, and each gives the bytes a fresh Quantizer gives."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir
import pytest
from onnxruntime.quantization import qdq_quantizer

from edgec.package.harness.interface import Runs
from edgec.quantize import qdq
from edgec.quantize.data import CalibrationData
from edgec.quantize.qdq import Quantizer, Scheme
from edgec.targets import load_target

DIGITS = Path(__file__).resolve().parents[2] / "models" / "digits"
# the configurations a build's choices run one after another: (method, bias correction, excluded nodes)
RUNS = [("minmax", True, ()), ("percentile", True, ()), ("entropy", True, ()), ("minmax", False, ()),
        ("percentile", True, ()), ("minmax", True, ("/features/features.1/features.1.0/Conv",))]


def _quantizer(target: str, folder: Path, model_path: Path = DIGITS / "digits_cnn.onnx") -> Quantizer:
    folder.mkdir()
    with np.load(DIGITS / "split.npz") as split:
        calib = split["x_calib"][:24]
    data = CalibrationData(Runs("stacked", [{"input": calib[i:i + 1]} for i in range(len(calib))]), [], "digits")
    model = ir.load(model_path)
    return Quantizer(model, Scheme.from_target(load_target(target).quantization), data, "minmax", folder)


def _bytes(quantizer: Quantizer, method: str, correct_bias: bool, exclude: tuple[str, ...]) -> tuple[bytes, int]:
    quantizer.use(method)
    quantizer.correct_bias = correct_bias
    return ir.to_proto(quantizer.run(exclude)).SerializeToString(), quantizer.bias_corrected


@pytest.mark.parametrize("target", ["tflite-arm", "openvino-cpu"])
def test_repeated_runs_give_a_fresh_quantizers_bytes_and_quantize_weights_once(target, tmp_path, monkeypatch):
    computed = []
    for module, name in ((qdq_quantizer, "compute_data_quant_params"), (qdq, "_symmetric_channel_params")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, original=original, **k: computed.append(1) or original(*a, **k))
    shared = _quantizer(target, tmp_path / "shared")
    repeated, computed_by_run = [], []
    for run in RUNS:
        before = len(computed)
        repeated.append(_bytes(shared, *run))
        computed_by_run.append(len(computed) - before)
    assert repeated[4] == repeated[1]  # the same question answered again
    fresh = [_bytes(_quantizer(target, tmp_path / f"fresh{i}"), *run) for i, run in enumerate(RUNS)]
    assert repeated == fresh
    # the shared quantizer's weights: in its first run, and again only where the weights quantized change
    assert computed_by_run[0] and computed_by_run[1:5] == [0, 0, 0, 0]


def test_the_corrected_biases_are_onnxruntimes_quantization_of_the_corrected_float_model(tmp_path):
    """Bias correction is an edit of the int32 biases of the graph onnxruntime quantized: onnxruntime's own
    quantization of the float model with each bias less its shift, on the same ranges, gives the same bytes."""
    import onnx
    from onnx import numpy_helper
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgec import ir as eir
    from edgec.quantize import bias

    quant_pre_process(str(DIGITS / "digits_cnn.onnx"), str(tmp_path / "folded.onnx"))  # every convolution a bias
    quantizer = _quantizer("tflite-arm", tmp_path / "q", tmp_path / "folded.onnx")
    edited = ir.to_proto(quantizer.run())
    assert quantizer.bias_corrected == 4  # three convolutions and the classifier
    quantizer.correct_bias = False
    plain = quantizer.run()
    float_model = ir.load(quantizer.float_path)
    shifts = bias.output_shifts(float_model, bias.dequantized_weights(plain), quantizer.ranges.input_means)
    for node in float_model.graph:
        if node.name in shifts:
            value = node.inputs[2]
            value.const_value = ir.tensor((value.const_value.numpy() - shifts[node.name]).astype(np.float32),
                                          name=value.name)
    quantizer._write_qdq(eir.save(float_model, tmp_path / "corrected.onnx"), tmp_path / "of-corrected.onnx", (), [])
    expected = onnx.load(tmp_path / "of-corrected.onnx")
    assert {i.name: numpy_helper.to_array(i).tobytes() for i in edited.graph.initializer} == \
        {i.name: numpy_helper.to_array(i).tobytes() for i in expected.graph.initializer}
    assert [n.op_type for n in edited.graph.node] == [n.op_type for n in expected.graph.node]
