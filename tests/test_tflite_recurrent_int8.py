"""int8 LSTM on tflite-arm: the run-time-range scheme's DynamicQuantizeLSTM as an ONNX LSTM of dequantized
int8 weights (backends/tflite/hybrid.py), written as LiteRT's hybrid kernels, on the corpus speaker
encoder's first layer with its real weights and clips."""
from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from ai_edge_litert.interpreter import Interpreter

from edgec.backends.tflite import _written
from edgec.backends.tflite.hybrid import as_weights_only
from edgec.quantize.qdq import Scheme
from edgec.targets import load_target
from speaker_lstm import speaker_lstm

STEPS = 40


def _run(proto: onnx.ModelProto, feed: dict) -> list[np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a.ravel() @ b.ravel() / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module", params=["forward", "bidirectional"])
def quantized(request, tmp_path_factory):
    """The float layer, the engine's dynamically quantized one (the dynamic-range candidate's settings) and a feed."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    scheme = Scheme.from_target(load_target("tflite-arm").quantization).variant("dynamic-range")
    assert "LSTM" in scheme.ops and scheme.activation_ranges == "runtime"
    proto, feed = speaker_lstm(request.param, steps=STEPS)
    folder = tmp_path_factory.mktemp("lstm8")
    onnx.save(proto, folder / "float.onnx")
    quantize_dynamic(str(folder / "float.onnx"), str(folder / "int8.onnx"), op_types_to_quantize=list(scheme.ops),
                     per_channel=scheme.per_channel, weight_type=QuantType.QInt8)
    engine = onnx.load(folder / "int8.onnx")
    assert [n.op_type for n in engine.graph.node] == ["DynamicQuantizeLSTM"]
    return proto, engine, feed


def test_the_rewrite_states_the_engines_int8_weights(quantized):
    """The LSTM reads DequantizeLinear of int8 constants: one direction's are the engine's integers and
    per-row scales exactly; two directions' (a DequantizeLinear scales along one axis) get a scale per
    direction, each weight within half of its step of the engine's."""
    _, engine, _ = quantized
    model = ir.from_proto(engine)
    as_weights_only(model)
    (lstm,) = [n for n in model.graph if n.op_type == "LSTM"]
    initial = {i.name: onnx.numpy_helper.to_array(i) for i in engine.graph.initializer}
    node = engine.graph.node[0]
    for operand, q, scale, zero in ((lstm.inputs[1], *node.input[1:2], *node.input[8:10]),
                                    (lstm.inputs[2], *node.input[2:3], *node.input[10:12])):
        dequantize = operand.producer()
        data, scales = (v.const_value.numpy() for v in dequantize.inputs[:2])
        assert dequantize.op_type == "DequantizeLinear" and data.dtype == np.int8 and not np.any(initial[zero])
        engine_data = initial[q].transpose(0, 2, 1)
        directions = data.shape[0]
        if directions == 1:
            assert np.array_equal(data, engine_data) and np.array_equal(scales, initial[scale].reshape(-1))
            continue
        assert dequantize.attributes.get_int("axis", 1) == 0 and scales.shape == (directions,)
        engine_real = engine_data * initial[scale].reshape(directions, -1, 1)
        assert np.all(np.abs(data * scales.reshape(-1, 1, 1) - engine_real) <= scales.reshape(-1, 1, 1) / 2 * 1.0001)


@pytest.mark.parametrize("form", ["kernel", "unrolled"])
def test_litert_hybrid_lstm_computes_the_rewritten_graph(quantized, form):
    """LiteRT's hybrid kernels (int8 weights, each input quantized at run time) agree with onnxruntime
    running the rewritten float graph, and the last state with the float layer's (measured: cosine 0.9999
    forward, 0.9905 bidirectional with its scale per direction, either form). Weights with a scale per row
    run as FULLY_CONNECTED steps, as LiteRT's sequence kernel takes one scale per weight tensor."""
    proto, engine, feed = quantized
    model = ir.from_proto(engine)
    as_weights_only(model)
    rewritten = _run(ir.to_proto(model), feed)
    expected = _run(proto, feed)
    lowering = _written(ir.from_proto(engine), "int8", "nchw", "float32", form)
    directions = expected[0].shape[1]
    kernel = form == "kernel" and directions == 2
    assert ("UNIDIRECTIONAL_SEQUENCE_LSTM" in lowering.writer.op_counts()) == kernel
    assert any(note.startswith("LSTM runs hybrid") for note in lowering.notes)
    interpreter = Interpreter(model_content=lowering.writer.to_bytes(), num_threads=1)
    interpreter.allocate_tensors()
    int8_weights = [t for t in interpreter.get_tensor_details() if t["dtype"] == np.int8 and  # not the scratch
                    any(part in t["name"] for part in ("/w_", "/r_", "/weights"))]
    assert len(int8_weights) == (8 if kernel else 2) * directions
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], feed["x"])
    interpreter.reset_all_variables()
    interpreter.invoke()
    got = {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}
    assert np.abs(got["y"] - rewritten[0]).max() < 0.02  # measured 0.005-0.008
    assert _cosine(got["y_h"], expected[1]) > (0.985 if directions == 2 else 0.999)
