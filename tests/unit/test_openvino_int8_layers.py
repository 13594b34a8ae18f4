"""Which layers an OpenVINO int8 model means to run in int8 (backends/openvino.py `_int8_layers`): the
harness's int8_layers check holds each of them to it."""
from __future__ import annotations

import numpy as np
import openvino as ov

from conftest import DIGITS
from edgec import frontends, passes
from edgec.backends.openvino import _convert, _int8_layers, _numbered_names
from edgec.package import samples as sampling
from edgec.quantize.data import CalibrationData
from edgec.quantize.qdq import Quantizer, Scheme
from edgec.targets import load_target


def test_a_convolution_kept_float_is_not_meant_for_int8(tmp_path):
    """The fallback keeps a convolution float while the tensor it reads stays quantized for the int8 layer
    that makes it: its weights are float, so OpenVINO runs it in f32, and the check must not expect int8
    (BlazeFace's four convolutions kept float failed it)."""
    model, _ = passes.optimize(frontends.load(str(DIGITS / "digits_cnn.onnx")), min_opset=13)
    specs, _ = sampling.model_interface(model)
    with np.load(DIGITS / "split.npz") as data:
        images = data["x_calib"][:8]
    calibration = CalibrationData(sampling.split(specs, {specs[0].name: images}, "digits", dynamic_batch=1),
                                  specs, "digits")
    convolutions = [node.name for node in model.graph if node.op_type == "Conv"]
    quantizer = Quantizer(model, Scheme.from_target(load_target("openvino-cpu").quantization), calibration,
                          "minmax", tmp_path)
    qdq = quantizer.run(exclude=(convolutions[1],))
    converted = _convert(qdq)  # as the backend lowers it
    _numbered_names(converted, qdq)
    ov.save_model(converted, tmp_path / "model.xml")
    meant = {name.removesuffix("/WithoutBiases") for name in _int8_layers(ov.Core().read_model(tmp_path / "model.xml"))}
    assert convolutions[1] not in meant and {convolutions[0], convolutions[2]} <= meant
