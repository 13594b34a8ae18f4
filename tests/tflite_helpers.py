"""Small ONNX graphs lowered by the tflite backend itself and run in LiteRT, next to onnxruntime.

Shared by the tflite operator, integer and transformer tests.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir

OPSET = 17


def make_model(text: str, opset: int = OPSET, **initializers) -> onnx.ModelProto:
    """An ONNX model from onnx's text format plus numpy initializers named in it (untyped outputs: float)."""
    model = onnx.parser.parse_model(f'<ir_version: 8, opset_import: ["" : {opset}]>\n' + text)
    model.graph.initializer.extend(onnx.numpy_helper.from_array(v, k) for k, v in initializers.items())
    for output in model.graph.output:
        if not output.type.tensor_type.elem_type:
            output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def lower(proto: onnx.ModelProto, folder: Path, precision: str = "fp32", calibration: dict | None = None,
          options: dict | None = None):
    """Optimize (and for int8 quantize with the shared engine), then lower, as the build does.

    Returns the .tflite path, the backend's Lowered record and the model it lowered (the QDQ graph in int8).
    """
    from edgec import passes
    from edgec.backends import BuildContext, get_backend
    from edgec.package import samples
    from edgec.quantize.data import CalibrationData
    from edgec.quantize.qdq import Quantizer, Scheme
    from edgec.targets import load_target

    model = ir.from_proto(proto)
    model, _ = passes.optimize(model)
    backend = get_backend("tflite")
    assert backend.unsupported(model) == []
    target = load_target("tflite-arm")
    lowered_model = model
    if precision == "int8":
        specs, _ = samples.model_interface(model)
        if all(spec.batch_axis is None for spec in specs):  # no batch: one sample per run, stacked
            shapes = {spec.name: spec.shape for spec in specs}
            calibration = {name: value.reshape(-1, *shapes[name]) for name, value in calibration.items()}
        data = CalibrationData(samples.split(specs, calibration, "test", dynamic_batch=1), specs, "test")
        with tempfile.TemporaryDirectory(prefix="tflite-test-quant-") as tmp:
            quantizer = Quantizer(model, Scheme.from_target(target.quantization), data, "minmax", Path(tmp))
            lowered_model = quantizer.run()
    folder.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(target, precision, folder, None, options or {}, model)
    lowered = backend.lower(lowered_model, ctx)
    return folder / lowered.model_files[0], lowered, lowered_model


def operator_names(path) -> list[str]:
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(flatbuffer_utils.BuiltinOperator).items() if not k.startswith("_")}
    return [names[model.operatorCodes[o.opcodeIndex].builtinCode] for o in model.subgraphs[0].operators]


def run_tflite(path, feeds: dict) -> tuple[dict, list[str]]:
    """Outputs by name (LiteRT with XNNPACK, one thread) and the model's operator names."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    for detail in it.get_input_details():
        it.set_tensor(detail["index"], np.asarray(feeds[detail["name"]]).astype(detail["dtype"]))
    it.invoke()
    return {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}, operator_names(path)


def run_onnxruntime(model, feeds: dict) -> dict:
    """Outputs by name from onnxruntime without graph optimizations: a QDQ graph runs as written (dequantize,
    float op, quantize), not through onnxruntime's own integer kernels."""
    from edgec.ir.runtime import session

    sess = session(ir.from_proto(model) if isinstance(model, onnx.ModelProto) else model)
    names = [i.name for i in sess.get_inputs()]
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {n: feeds[n] for n in names})))
