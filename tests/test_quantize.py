"""Quantization on real models: accuracy, size, the per-layer report, fallback and bad data."""
from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest

from conftest import MOBILENET_INT8_CHOICES, ROOT, accuracy, edgec, infer, manifest
from test_cli import assert_one_line_error

sys.path.insert(0, str(ROOT))  # models.corpus


@pytest.fixture(scope="module")
def digits_builds(tmp_path_factory, digits_model, digits_files):
    folder = tmp_path_factory.mktemp("quant")
    for precision in ("fp32", "int8", "fp16"):
        edgec("build", digits_model, "-o", folder / precision, "--precision", precision,
              "--calibration", digits_files["calib"], check=True)
    return folder


def test_digits_int8_accuracy_and_size(digits_builds, digits_data, digits_accuracy, tmp_path):
    fp32 = infer(digits_builds / "fp32", {"input": digits_data["x_test"]}, tmp_path)["logits"]
    int8 = infer(digits_builds / "int8", {"input": digits_data["x_test"]}, tmp_path)["logits"]
    assert accuracy(fp32, digits_data["y_test"]) == pytest.approx(digits_accuracy)
    assert accuracy(int8, digits_data["y_test"]) >= digits_accuracy - 0.005
    size = {p: manifest(digits_builds / p)["model"]["bytes"] for p in ("fp32", "int8", "fp16")}
    assert size["int8"] <= 0.35 * size["fp32"]
    assert size["fp16"] <= 0.55 * size["fp32"]


def test_fp16_keeps_accuracy(digits_builds, digits_data, digits_accuracy, tmp_path):
    logits = infer(digits_builds / "fp16", {"input": digits_data["x_test"]}, tmp_path)["logits"]
    assert accuracy(logits, digits_data["y_test"]) == pytest.approx(digits_accuracy)
    assert manifest(digits_builds / "fp16")["backend"]["fp16_weights"] >= 4


def test_int8_model_runs_integer_kernels(digits_builds):
    import onnx_ir as ir

    ops = {n.op_type for n in ir.load(digits_builds / "int8" / "model.onnx").graph}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_per_layer_report_in_manifest_and_inspect(digits_builds):
    q = manifest(digits_builds / "int8")["quantization"]
    assert q["scheme"]["activations"] == "uint8" and q["scheme"]["per_channel"] is True
    layers = q["layers"]
    assert {l["op"] for l in layers} >= {"Conv", "Gemm"}
    assert all(l["sqnr_db"] > 20 and 0.99 < l["cosine"] <= 1.0 + 1e-9 for l in layers)
    assert [l["harm_db"] for l in layers] == sorted((l["harm_db"] for l in layers), reverse=True)
    assert all(l["worst_slice_db"] > 10 and l["harm_db"] >= l["sqnr_db"] - l["worst_slice_db"] - 1e-9 for l in layers)
    shown = edgec("inspect", digits_builds / "int8", check=True).stdout
    assert "per-layer quantization error" in shown and shown.count("int8") >= len(layers)
    listed = json.loads(edgec("inspect", digits_builds / "int8", "--json", "-", check=True).stdout)
    assert listed["artifact"]["quantization"]["layers"] == layers


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_calibration_methods(method, tmp_path, digits_model, digits_files, digits_data, digits_accuracy):
    out = tmp_path / method
    edgec("build", digits_model, "-o", out, "--precision", "int8", "--calibration", digits_files["calib"],
          "--calibration-method", method, check=True)
    assert manifest(out)["quantization"]["method"] == method
    logits = infer(out, {"input": digits_data["x_test"]}, tmp_path)["logits"]
    assert accuracy(logits, digits_data["y_test"]) >= digits_accuracy - 0.01


def test_calibration_method_is_measured_recorded_and_replayed(digits_builds, digits_model, digits_files, tmp_path):
    """The default --calibration-method auto judges minmax, percentile, entropy and mean-minmax on held-back calibration
    samples against fp32 and records each; a --config with the manifest's choices rebuilds the same bytes."""
    built = manifest(digits_builds / "int8")["quantization"]
    choice = built["calibration_choice"]
    assert [c["name"] for c in choice["candidates"]] == ["minmax", "percentile", "entropy", "mean-minmax"]
    assert all(c["top1_agreement"] >= 95 for c in choice["candidates"])
    # averaged per-run ranges clip the digits' activations (28.1 dB; 20.6 with the logits clipped too), which
    # the judge sees and passes over
    assert all(c["sqnr_db"] > 25 for c in choice["candidates"] if c["name"] != "mean-minmax")
    best = max(c["sqnr_db"] for c in choice["candidates"] if c["top1_agreement"] == 100.0)
    assert built["method"] == choice["chosen"] and choice["replay"] == f"--calibration-method {choice['chosen']}"
    assert next(c for c in choice["candidates"] if c["name"] == choice["chosen"])["sqnr_db"] == best
    bias = built["bias_choice"]  # judged the same way, with the method chosen
    assert [c["name"] for c in bias["candidates"]] == ["on", "off"] and bias["replay"] == f"--bias-correction {bias['chosen']}"
    assert (built["bias_corrected"] > 0) == (bias["chosen"] == "on")
    config = tmp_path / "choices.toml"
    config.write_text(f'calibration-method = "{choice["chosen"]}"\nint8-scheme = "{built["scheme_choice"]["chosen"]}"\n'
                      f'bias-correction = "{bias["chosen"]}"\n')
    edgec("build", digits_model, "-o", tmp_path / "again", "--precision", "int8", "--calibration",
          digits_files["calib"], "--config", config, check=True)
    again = manifest(tmp_path / "again")["quantization"]
    assert again["calibration_choice"] is None and again["method"] == choice["chosen"]
    assert again["bias_choice"] is None and again["bias_corrected"] == built["bias_corrected"]
    assert (tmp_path / "again" / "model.onnx").read_bytes() == (digits_builds / "int8" / "model.onnx").read_bytes()


@pytest.mark.parametrize("target", ["tflite-arm", "onnxruntime"])
def test_bias_correction_takes_back_weight_rounding(target, tmp_path, digits_model, digits_data):
    """Each layer's bias absorbs its int8 weights' mean output shift: on the digits CNN's test set (which
    calibration never saw) the logits come closer to fp32 and no accuracy is lost. The BatchNorms are
    folded first, as the build's passes do, so every convolution has a bias."""
    import onnx_ir as ir
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgec.ir import runtime
    from edgec.package.harness.interface import Runs
    from edgec.quantize.choose import sqnr
    from edgec.quantize.data import CalibrationData
    from edgec.quantize.qdq import Quantizer, Scheme
    from edgec.targets import load_target

    quant_pre_process(str(digits_model), str(tmp_path / "folded.onnx"))
    model, calib, test = ir.load(tmp_path / "folded.onnx"), digits_data["x_calib"], {"input": digits_data["x_test"]}
    data = CalibrationData(Runs("stacked", [{"input": calib[i:i + 1]} for i in range(len(calib))]), [], "digits")
    quantizer = Quantizer(model, Scheme.from_target(load_target(target).quantization), data, "minmax", tmp_path)
    corrected = runtime.session(quantizer.run()).run(None, test)[0]
    assert quantizer.bias_corrected == 4  # three convolutions and the classifier
    quantizer.correct_bias = False
    plain = runtime.session(quantizer.run()).run(None, test)[0]
    reference = runtime.session(model).run(None, test)[0]
    gain = sqnr([reference], [corrected]) - sqnr([reference], [plain])
    print(f"{target}: SQNR {sqnr([reference], [plain]):.2f} -> {sqnr([reference], [corrected]):.2f} dB")
    assert gain > 0.4  # measured: +1.1 dB (tflite-arm), +0.7 dB (onnxruntime)
    assert accuracy(corrected, digits_data["y_test"]) >= accuracy(plain, digits_data["y_test"]) - 0.005


def test_symmetric_uint8_activations_keep_relu_outputs_unsigned(tmp_path, digits_model, digits_data):
    """openvino-cpu's symmetric candidate, as NNCF's PERFORMANCE preset: a tensor that never goes below zero
    (a ReLU's output) is [0, max] with zero point 0, so the next convolution takes unsigned inputs and all 256
    codes; one that does is symmetric about 0 (zero point 128). Symmetric about 0 everywhere had left half of
    every ReLU output's codes unused (the corpus FER CNN then needed 2 layers float to verify; now none)."""
    import onnx_ir as ir

    from edgec.ir import runtime
    from edgec.package.harness.interface import Runs
    from edgec.quantize.choose import sqnr
    from edgec.quantize.data import CalibrationData
    from edgec.quantize.qdq import Quantizer, Scheme
    from edgec.quantize.ranges import calibrated_spans
    from edgec.targets import load_target

    model, calib = ir.load(digits_model), digits_data["x_calib"]
    data = CalibrationData(Runs("stacked", [{"input": calib[i:i + 1]} for i in range(len(calib))]), [], "digits")
    scheme = Scheme.from_target(load_target("openvino-cpu").quantization).variant("s8-symmetric-7bit-first")
    quantizer = Quantizer(model, scheme, data, "minmax", tmp_path)
    qdq = quantizer.run()
    spans = calibrated_spans(quantizer.cache)
    points = {node.inputs[0].name: int(node.inputs[2].const_value.numpy())
              for node in qdq.graph if node.op_type == "QuantizeLinear" and node.inputs[0].name in spans}
    unsigned = [name for name in points if spans[name].low >= 0]
    assert len(unsigned) >= 3 and {points[name] for name in unsigned} == {0}  # the ReLU outputs
    assert {points[name] for name in points if spans[name].low < 0} == {128}
    test = {"input": digits_data["x_test"]}
    reference, quantized = runtime.session(model).run(None, test)[0], runtime.session(qdq).run(None, test)[0]
    print(f"symmetric candidate on digits: {sqnr([reference], [quantized]):.1f} dB")
    assert sqnr([reference], [quantized]) > 20.0
    assert accuracy(quantized, digits_data["y_test"]) >= accuracy(reference, digits_data["y_test"]) - 0.01


def test_random_calibration_is_recorded(tmp_path, digits_model):
    out = tmp_path / "rand"
    edgec("build", digits_model, "-o", out, "--precision", "int8", "--calibration", "random", check=True)
    q = manifest(out)["quantization"]
    assert q["calibration"]["random"] is True and "noise" in q["warning"]


def test_image_folder_calibration(tmp_path, mobilenet_model):
    from PIL import Image
    from preprocess import load_raw_photos

    folder = tmp_path / "images"
    folder.mkdir()
    for name, image in list(load_raw_photos().items())[:4]:
        Image.fromarray(image).save(folder / f"{name}.png")
    from edgec import ir as eir
    from edgec.package.samples import model_interface
    from edgec.quantize.data import load_calibration

    model = eir.load(mobilenet_model)
    data = load_calibration(str(folder), model, model_interface(model)[0],
                            "size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,scale=255,order=rgb,layout=nchw")
    x = np.concatenate([feed["input"] for feed in data.feeds()])
    assert data.count == 4 and x.shape == (4, 3, 224, 224) and x.dtype == np.float32
    assert -2.2 < x.min() < 0 < x.max() < 2.7


def test_int8_without_calibration_is_refused(tmp_path, digits_model):
    proc = edgec("build", digits_model, "-o", tmp_path / "o", "--precision", "int8")
    assert_one_line_error(proc, "int8 needs calibration data", "--calibration")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("arrays, words", [
    ({"input": np.zeros((10, 1, 9, 9), np.float32)}, ["input 'input'", "[10, 1, 9, 9]", "expected [batch, 1, 8, 8]"]),
    ({"image": np.zeros((10, 1, 8, 8), np.float32), "x": np.zeros(3)}, ["no array for input", "input"]),
    ({"input": np.array([["a"] * 64] * 2).reshape(2, 1, 8, 8)}, ["'input' holds <U1 values", "real numbers"]),
])
def test_bad_calibration_data_names_input_and_shape(arrays, words, tmp_path, digits_model):
    np.savez(tmp_path / "calib.npz", **arrays)
    proc = edgec("build", digits_model, "-o", tmp_path / "o", "--precision", "int8",
                 "--calibration", tmp_path / "calib.npz")
    assert_one_line_error(proc, *words)


@pytest.fixture(scope="module")
def mobilenet_int8(tmp_path_factory, mobilenet_model, mobilenet_files):
    out = tmp_path_factory.mktemp("mnv2") / "int8"
    edgec("build", mobilenet_model, "-o", out, "--precision", "int8", "--calibration", mobilenet_files["calib"],
          *MOBILENET_INT8_CHOICES["onnxruntime"], check=True)
    return out


@pytest.mark.slow
def test_mobilenet_int8_top5_and_top1(mobilenet_int8, photos, tmp_path):
    logits = infer(mobilenet_int8, {"input": photos["x"]}, tmp_path)["logits"]
    reference = photos["logits"].argmax(1)
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert all(reference[i] in top5[i] for i in range(len(reference)))
    assert np.mean(logits.argmax(1) == reference) >= 0.8


@pytest.mark.slow
def test_fallback_keeps_named_layers_float_and_holds_the_budget(tmp_path, mobilenet_model, mobilenet_files, photos):
    """A zero-point budget on the photos: int8 calibrated on only 2 crops disagrees with fp32 on 6 of the 7
    photos (with 64 crops, bias correction keeps all 7 and leaves the fallback nothing to fix); the
    fallback keeps its most harmful layers float until none is lost."""
    out = tmp_path / "fallback"
    proc = edgec("build", mobilenet_model, "-o", out, "--precision", "int8", "--calibration",
                 mobilenet_files["calib"], "--calibration-samples", "2", "--max-accuracy-drop", "0",
                 "--eval", mobilenet_files["photos"], "--int8-scheme", "u8u8", check=True)
    fb = manifest(out)["quantization"]["fallback"]
    assert fb["steps"][0]["drop"] > 0, "plain int8 should lose something for this test to mean anything"
    assert fb["met"] and fb["drop_points"] <= 0 and fb["float_layers"]
    assert all(name in proc.stderr + proc.stdout for name in fb["float_layers"][:3])
    layers = {l["name"]: l for l in manifest(out)["quantization"]["layers"]}
    assert all(layers[name]["precision"] == "float" for name in fb["float_layers"])
    # the measured drop holds on the artifact itself, run through its own harness
    logits = infer(out, {"input": photos["x"]}, tmp_path)["logits"]
    assert np.array_equal(logits.argmax(1), photos["logits"].argmax(1))


@pytest.fixture(scope="module")
def fer_float():
    """The FER2013 emotion CNN of the corpus (Keras, real weights), optimized as a build does, with its real faces."""
    from models.corpus.registry import MODELS
    from edgec import frontends, passes

    corpus = next(m for m in MODELS if m.name == "fer_emotion")
    assert corpus.onnx_path.exists(), "run `make corpus`"
    model, _ = passes.optimize(frontends.load(str(corpus.onnx_path)))
    with np.load(corpus.inputs_path) as data:
        faces = data["input"]
    return model, faces


def _sqnr(got: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref.astype(np.float64) ** 2) / np.sum((got - ref).astype(np.float64) ** 2)))


@pytest.mark.parametrize("target", ["onnxruntime", "openvino-cpu"])
def test_int8_kernels_compute_what_their_qdq_graph_says(target, fer_float, tmp_path):
    """A target's int8 scheme runs in its runtime's integer kernels with the QDQ graph's own fidelity.

    U8S8 kernels on AVX2 without VNNI sum products in saturating int16 pairs; a scheme that let them
    saturate lost 4-6 dB of MobileNetV2's logits against the same graph computed in float, and on these
    faces 16 dB (onnxruntime U8S8: 9.6 dB against 25.9) and 13 dB (OpenVINO, no overflow fix: 12.7 dB; 7-bit
    weights on the first layer only: 13.4 dB). The class is a layer whose input goes below zero: its u8
    zero point lifts every code, and the pair sums saturate (BlazeFace's scores fell to -18.9 dB). Kernels that
    do not saturate still round otherwise than the graph: they are held within 2 dB of it against fp32."""
    from edgec import ir as eir
    from edgec.backends import get_backend
    from edgec.ir import runtime
    from edgec.options import resolve
    from edgec.package.samples import model_interface, split
    from edgec.quantize import quantize_for_target
    from edgec.quantize.data import CalibrationData
    from edgec.targets import load_target

    model, faces = fer_float
    specs, _ = model_interface(model)
    target = load_target(target)
    data = CalibrationData(split(specs, {specs[0].name: faces}, "faces", dynamic_batch=1), specs, "faces")
    edgec_graph = {"quantizer": "edgec"} if target.backend == "openvino" else {}  # the QDQ graph, not NNCF's
    # the ranges fixed, so that the kernels are what is measured: with the auto choices (percentile ranges,
    # 7-bit weights everywhere) OpenVINO's kernels came 2.1 dB under the graph computed in float (23.1 vs
    # 25.2 dB), with minmax 0.3 dB (24.3 vs 24.5); the scheme choice measures those kernels either way
    fixed = {"calibration_method": "minmax", "bias_correction": "off"}
    qdq, _ = quantize_for_target(model, target, "int8", data, get_backend(target.backend),
                                 resolve(target, {**edgec_graph, **fixed}))
    feed = {specs[0].name: faces}
    reference = runtime.session(model).run(None, feed)[0]
    computed_in_float = runtime.session(qdq).run(None, feed)[0]
    if target.backend == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(eir.save(qdq, tmp_path / "qdq.onnx")), "CPU")
        info = [op.get_rt_info() for op in compiled.get_runtime_model().get_ordered_ops()]
        precisions = {i["runtimePrecision"].astype(str) for i in info if i["layerType"].astype(str) == "Convolution"}
        assert precisions == {"u8"}, f"OpenVINO ran the convolutions in {precisions}, not int8"
        kernels = np.concatenate([compiled(faces[i : i + 1])[0] for i in range(len(faces))])
    else:
        kernels = runtime.session(qdq, optimize=True).run(None, feed)[0]
    # kernels round otherwise than the graph computed in float (OpenVINO's, against the graph: 24.5-26.4 dB over
    # its schemes), which moves them against fp32 by -1.2 to +2.2 dB; saturation cost these faces 13-16 dB
    print(f"{target.name}: kernels {_sqnr(kernels, reference):.2f} dB, graph {_sqnr(computed_in_float, reference):.2f} dB, "
          f"kernels against the graph {_sqnr(kernels, computed_in_float):.2f} dB")
    assert _sqnr(kernels, computed_in_float) >= 20.0
    assert _sqnr(kernels, reference) >= _sqnr(computed_in_float, reference) - 2.0


def test_nncf_keeps_7bit_weights_where_inputs_go_below_zero(fer_float, tmp_path):
    """NNCF's own first-layer-only overflow fix lets OpenVINO's non-VNNI kernels saturate after every layer
    whose input goes below zero (these faces: 15.0 dB against fp32; BlazeFace's scores -27.9 dB); edgec's
    NNCF engine follows the target's scheme, 7-bit weights there (19.7 dB)."""
    import openvino as ov

    from edgec import ir as eir
    from edgec.backends import openvino_nncf
    from edgec.ir import runtime
    from edgec.options import resolve
    from edgec.package.samples import model_interface, split
    from edgec.quantize.data import CalibrationData
    from edgec.targets import load_target

    model, faces = fer_float
    specs, _ = model_interface(model)
    target = load_target("openvino-cpu")
    data = CalibrationData(split(specs, {specs[0].name: faces}, "faces", dynamic_batch=1), specs, "faces")
    options = resolve(target, {"quantizer": "nncf"})
    quantized, record = openvino_nncf.quantize(ov.convert_model(str(eir.save(model, tmp_path / "m.onnx"))), data,
                                               options, openvino_nncf.scheme(target, options.int8_scheme))
    assert record["overflow_fix"] == "enable"
    compiled = ov.Core().compile_model(quantized, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    kernels = np.concatenate([compiled(faces[i : i + 1])[0] for i in range(len(faces))])
    assert _sqnr(kernels, runtime.session(model).run(None, {specs[0].name: faces})[0]) >= 18.0


@pytest.fixture(scope="module")
def yolox():
    """The corpus YOLOX detector (ddddocr_det, real weights) with its decode head: box centres and sizes in
    pixels (0-416) concatenated with sigmoid objectness and class scores (0-1); optimized as a build does."""
    from models.corpus.registry import MODELS
    from edgec import frontends, passes
    from edgec.package.samples import model_interface, split
    from edgec.quantize.data import CalibrationData

    corpus = next(m for m in MODELS if m.name == "ddddocr_det")
    assert corpus.onnx_path.exists(), "run `make corpus`"
    model, _ = passes.optimize(frontends.load(str(corpus.onnx_path), [], None), min_opset=13)
    images = corpus.load_inputs()
    specs, _ = model_interface(model)
    data = CalibrationData(split(specs, images, "images", dynamic_batch=1), specs, "images")
    return corpus, model, data, images


def _box_f1(corpus, model, images, reference: dict) -> float:
    """Box F1 at IoU 0.5 of `model` (onnxruntime's int8 kernels) against the float model's detections."""
    from edgec.ir import runtime

    session = runtime.session(model, optimize=True)
    names = [o.name for o in session.get_outputs()]
    outputs = corpus.stack([dict(zip(names, session.run(None, feed))) for feed in corpus.samples(images)])
    return corpus.fidelity.score(reference, outputs)


@pytest.mark.slow
def test_detector_head_keeps_its_scores(yolox, tmp_path):
    """Plain single-scale int8 collapses the detector's scores; the default build finds the mixed-range
    Concat, ranks it the worst layer, keeps the head float and holds box F1."""
    from edgec.backends import get_backend
    from edgec.ir import runtime
    from edgec.options import resolve
    from edgec.quantize import quantize_for_target, report
    from edgec.quantize.qdq import Quantizer, Scheme
    from edgec.targets import load_target

    corpus, model, data, images = yolox
    target = load_target("onnxruntime")
    session = runtime.session(model)
    names = [o.name for o in session.get_outputs()]
    reference = corpus.stack([dict(zip(names, session.run(None, feed))) for feed in corpus.samples(images)])

    plain = Quantizer(model, Scheme.from_target(target.quantization), data, "minmax", tmp_path).run()
    assert _box_f1(corpus, plain, images, reference) < 0.8
    worst = report.layer_errors(model, plain, data)[0]
    assert worst.op == "Concat" and worst.worst_slice_db < worst.sqnr_db - 20

    qdq, record = quantize_for_target(model, target, "int8", data, get_backend("onnxruntime"), resolve(target, {}))
    head = next(h for h in record.mixed_range_heads if h.float_nodes)
    assert head.ratio > 100 and worst.name in head.float_nodes
    assert _box_f1(corpus, qdq, images, reference) >= 0.9


def _saturating_u8s8_kernels() -> bool:
    """Whether onnxruntime's u8 x s8 kernels on this host add product pairs in int16 (x86 with AVX2 and no VNNI)."""
    from conftest import host_cpu_features

    features = host_cpu_features()
    return "avx2" in features and not {"avx512_vnni", "avx_vnni"} & features


def test_int8_scheme_is_measured_recorded_and_replayed(fer_float):
    """The onnxruntime target's int8 scheme candidates are measured on the corpus FER CNN and the choice is
    recorded with every candidate's measures; naming the choice rebuilds the same bytes without measuring.
    (MobileNetV2, the slow photo test, gets 7-bit weights on its first layers.)"""
    import onnx_ir as ir

    from edgec.backends import get_backend
    from edgec.options import resolve
    from edgec.package.samples import model_interface, split
    from edgec.quantize import quantize_for_target
    from edgec.quantize.data import CalibrationData
    from edgec.targets import load_target

    model, faces = fer_float
    specs, _ = model_interface(model)
    target = load_target("onnxruntime")
    data = CalibrationData(split(specs, {specs[0].name: faces}, "faces", dynamic_batch=1), specs, "faces")
    backend = get_backend(target.backend)
    measured, record = quantize_for_target(model, target, "int8", data, backend, resolve(target, {}))
    choice = record.scheme_choice
    # every candidate but the one that quantizes MatMul/Gemm only (a CNN's few MACs there)
    assert [c.name for c in choice.candidates] == [name for name in target.quantization["candidates"]
                                                  if name != "s8-dynamic"]
    assert all(c.p50_ms > 0 for c in choice.candidates)
    chosen = next(c for c in choice.candidates if c.name == choice.chosen)
    assert chosen.sqnr_db >= 20 and chosen.top1_agreement >= 90
    first_only = next(c for c in choice.candidates if c.name == "u8s8-7bit-first")
    signed_inputs = next(c for c in choice.candidates if c.name == "u8s8-7bit-signed-inputs")
    if _saturating_u8s8_kernels():
        # 7-bit weights on the first layer only leave this CNN's deeper layers saturating: measured, passed over
        assert first_only.sqnr_db <= chosen.sqnr_db - 5
        # the deeper layers that saturate are those whose input goes below zero: 7 bits there take it back
        assert signed_inputs.sqnr_db >= first_only.sqnr_db + 5
    else:  # VNNI sums u8 x s8 pairs in int32: where the 7 bits go costs at most a bit of resolution
        assert abs(first_only.sqnr_db - chosen.sqnr_db) < 3 and abs(signed_inputs.sqnr_db - chosen.sqnr_db) < 3
    assert record.scheme["weights"] == chosen.overrides.get("weights", target.quantization["weights"])
    replayed, again = quantize_for_target(model, target, "int8", data, backend,
                                          resolve(target, {"int8_scheme": choice.chosen}))
    assert again.scheme_choice.candidates == [] and choice.replay == f"--int8-scheme {choice.chosen}"
    assert ir.to_proto(replayed).SerializeToString() == ir.to_proto(measured).SerializeToString()


def test_data_movement_runs_in_int8_and_islands_are_reported():
    """The corpus BlazeFace detector (real weights, real faces) pads channels with zeros before its residual
    adds: 11 Pads that onnxruntime computed in float between int8 tensors. The onnxruntime scheme runs them,
    and the Transpose/Reshape chains of its heads, on the int8 tensors with their input's scale (the pad
    value is the zero point); the report lists what stays float, with its size, and the outputs lose nothing."""
    import dataclasses

    from edgec import frontends, passes
    from edgec.backends import get_backend
    from edgec.ir import runtime
    from edgec.options import resolve
    from edgec.package.samples import model_interface, split
    from edgec.quantize import quantize_for_target
    from edgec.quantize.data import CalibrationData
    from edgec.targets import load_target
    from models.corpus.registry import MODELS

    corpus = next(m for m in MODELS if m.name == "blazeface")
    model, _ = passes.optimize(frontends.load(str(corpus.onnx_path)))
    specs, _ = model_interface(model)
    with np.load(corpus.inputs_path) as data:
        images = data[specs[0].name]
    calibration = CalibrationData(split(specs, {specs[0].name: images}, "faces", dynamic_batch=1), specs, "faces")
    target = load_target("onnxruntime")
    plain = dataclasses.replace(target, quantization={**target.quantization, "int8_data_movement": False})
    options = resolve(target, {"int8_scheme": "u8u8"})
    backend = get_backend("onnxruntime")
    islands_kept, before = quantize_for_target(model, plain, "int8", calibration, backend, options)
    moved, after = quantize_for_target(model, target, "int8", calibration, backend, options)
    pads = [i for i in before.float_islands if i.op_type == "Pad"]
    assert len(pads) == 11 and all(i.elements > 0 for i in pads)
    assert after.float_islands == [] and after.scheme["int8_data_movement"] is True
    assert all(n.inputs[0].producer().op_type != "DequantizeLinear" for n in moved.graph if n.op_type == "Pad")

    def outputs(graph, optimize=True):
        session = runtime.session(graph, optimize=optimize)
        runs = [session.run(None, feed) for feed in calibration.feeds()]
        return [np.stack(values) for values in zip(*runs)]

    reference = outputs(model, optimize=False)
    for got, kept, ref in zip(outputs(moved), outputs(islands_kept), reference):
        assert _sqnr(got, ref) >= _sqnr(kept, ref) - 0.1


@pytest.mark.parametrize("target", ["onnxruntime", "openvino-cpu", "tflite-arm"])
def test_candidates_are_timed_over_several_compilations(target):
    """A candidate's latency is timed over COPIES compilations of it, each in as many interleaved rounds: where
    one compilation's memory lands moved a model 10 % on this host (NNCF's captcha CRNN read 1.10x itself
    compiled again), and the build chose by that. Run with each target's real runtime and int8 kernels on the
    FER CNN's int8 graph and its real faces."""
    from edgec import frontends, passes
    from edgec import ir as eir
    from edgec.backends import get_backend
    from edgec.options import resolve
    from edgec.package.harness.interface import Runs
    from edgec.package.samples import model_interface
    from edgec.quantize import choose, quantize_for_target
    from edgec.quantize.data import CalibrationData
    from edgec.targets import load_target
    from models.corpus.registry import BY_NAME

    corpus = BY_NAME["fer_emotion"]
    shapes = tuple(f"{name}:{','.join(map(str, dims))}" for name, dims in corpus.input_shapes.items())
    model, _ = passes.optimize(frontends.load(str(corpus.onnx_path), eir.parse_input_specs(shapes)))
    with np.load(corpus.inputs_path) as inputs:
        faces = inputs["input"]
    specs, _ = model_interface(model)
    data = CalibrationData(Runs("stacked", [{"input": faces[i:i + 1]} for i in range(len(faces))]), specs, "faces")
    target = load_target(target)
    backend = get_backend(target.backend)
    given = {"int8_scheme": next(iter(target.quantization["candidates"])), "calibration_method": "minmax",
             **({"quantizer": "edgec"} if target.backend == "openvino" else {})}  # one graph, nothing measured
    qdq, record = quantize_for_target(model, target, "int8", data, backend, resolve(target, given))
    assert record.scheme_choice.candidates == []
    opener = backend.int8_opener(qdq)
    compilations: list[list[int]] = []  # per compilation, its runs

    def counted_opener():
        run, runs = opener(), [0]
        compilations.append(runs)

        def counted(feed: dict) -> list:
            runs[0] += 1
            return run(feed)
        return counted

    (measured,) = choose.measure(model, {"int8": counted_opener}, {"int8": {}}, data, ["probabilities"])
    assert len(compilations) == choose.COPIES
    timed = [runs for runs, in compilations]
    per_round = 1 + choose.RUNS_PER_ROUND
    judged = min(choose.JUDGED_RUNS, len(faces))  # the first compilation also computes the outputs judged
    assert timed == [choose.ROUNDS // choose.COPIES * per_round + (judged if i == 0 else 0)
                     for i in range(choose.COPIES)]
    assert measured.p50_ms > 0 and measured.top1_expected >= 90.0 and measured.sqnr_db > 15


def test_scheme_choice_rule():
    """The most faithful candidate stays unless another is 10 % faster at equal fidelity: on class scores,
    expected top-1 agreement within 0.5 points (where it was not measured, observed top-1 and SQNR within 2 dB);
    on other outputs SQNR within 2 dB, any two above 40 dB alike, and of those the faster kept. The numbers are MobileNetV2's,
    the FER CNN's, the captcha CRNN's and the PP-OCR direction classifier's measures."""
    from edgec.package.harness.manifest import SchemeCandidate
    from edgec.quantize.choose import choose

    exact = SchemeCandidate("u8u8", {}, 70.3, 12.8, 29.3)
    seven_bit = SchemeCandidate("u8s8-7bit", {}, 70.3, 11.2, 21.4)
    saturating = SchemeCandidate("u8s8", {}, 70.3, 7.7, 21.1)  # top-1 holds, SQNR does not
    assert choose([exact, seven_bit, saturating])[0] is seven_bit
    assert choose([exact, saturating])[0] is exact
    assert choose([exact, SchemeCandidate("u8s8-7bit", {}, 68.8, 11.2, 21.4)])[0] is exact  # one photo less
    assert choose([exact, SchemeCandidate("u8s8-7bit", {}, 70.3, 11.2, 27.0)])[0] is exact  # under 10 % faster
    no_classes = [SchemeCandidate("u8u8", {}, None, 23.0, 22.5), SchemeCandidate("u8s8-7bit", {}, None, 20.3, 15.0)]
    assert choose(no_classes)[0].name == "u8u8"  # 2.7 dB lower is not equal fidelity
    near_float = [SchemeCandidate("s8-symmetric", {}, 100.0, 174.2, 3.28),
                  SchemeCandidate("nncf", {}, 100.0, 163.6, 2.65)]
    assert choose(near_float)[0].name == "nncf"  # both are fp32's result to the eye: the faster one
    assert choose([near_float[0], SchemeCandidate("nncf", {}, 100.0, 37.0, 2.65)])[0].name == "s8-symmetric"
    # the PP-OCR direction classifier's: above 40 dB neither is the more faithful, so under 10 % faster counts
    cls_edgec = SchemeCandidate("s8-symmetric-7bit-first", {}, 100.0, 164.3, 0.706, top1_expected=100.0)
    cls_nncf = SchemeCandidate("nncf s8-symmetric-7bit-first", {}, 100.0, 163.55, 0.667, top1_expected=100.0)
    assert choose([cls_edgec, cls_nncf])[0] is cls_nncf
    crnn_edgec = SchemeCandidate("s8-7bit-first", {}, 100.0, 30.84, 7.363, top1_expected=100.0)
    crnn_nncf = SchemeCandidate("nncf", {}, 100.0, 27.63, 5.46, top1_expected=99.83)
    assert choose([crnn_edgec, crnn_nncf])[0] is crnn_nncf  # 3.2 dB lower, the same characters
    noisier = SchemeCandidate("nncf", {}, 100.0, 18.98, 0.5, top1_expected=94.53)  # the FER CNN's
    assert choose([SchemeCandidate("s8-7bit", {}, 100.0, 26.2, 0.647, top1_expected=97.27), noisier])[0].name == "s8-7bit"
    # MobileNetV2 with OpenVINO: 3 flips in 32 crops are noise beside every crop's margin (1024 crops: 89.8 % / 88.8 %)
    asymmetric = SchemeCandidate("nncf s8-7bit-first", {}, 93.75, 19.98, 8.293, top1_expected=88.48)
    symmetric = SchemeCandidate("nncf s8-symmetric-7bit-first", {}, 84.38, 20.08, 6.886, top1_expected=88.77)
    assert choose([asymmetric, symmetric])[0] is symmetric
    assert choose([asymmetric, dataclasses.replace(symmetric, top1_expected=87.9)])[0] is asymmetric
    # the captcha CRNN with OpenVINO: both NNCF graphs are 10 % faster than edgec's at equal fidelity; the more
    # faithful of them is kept, not the one a 2 % timing difference favours
    nncf_first = SchemeCandidate("nncf s8-7bit-first", {}, 99.38, 29.1, 4.937, top1_expected=99.89)
    nncf_default = SchemeCandidate("nncf s8-symmetric-7bit-first", {}, 98.75, 30.59, 5.032, top1_expected=99.92)
    assert choose([crnn_edgec, nncf_first, nncf_default])[0] is nncf_default
    assert choose([crnn_edgec, nncf_first, dataclasses.replace(nncf_default, top1_expected=99.8)])[0] is nncf_first


def test_int8_that_does_not_verify_keeps_its_worst_layers_float(tmp_path):
    """The corpus facial-expression classifier (real weights, real faces) with 7-bit s8 weights, minmax ranges
    and bias correction: plain int8 misses the probabilities' 0.05 bound in onnxruntime's kernels (max abs
    error 0.059), so the build keeps its most harmful layers float (two convolutions: 97 % of the MACs stay
    int8, error 0.037) until every output verifies, and says what it cost; --strict-precision refuses
    instead, naming the worst layers. 10 s on the shared machine."""
    from models.corpus.registry import BY_NAME

    corpus = BY_NAME["fer_emotion"]
    # the choices are given: the held-back judge sees 4 of its faces and its picks vary with them
    args = ["build", corpus.onnx_path, *corpus.build_flags(), "--precision", "int8", "--calibration",
            corpus.inputs_path, "--int8-scheme", "u8s8-7bit", "--calibration-method", "minmax",
            "--bias-correction", "on"]
    proc = edgec(*args, "-o", tmp_path / "int8", check=True)
    record = manifest(tmp_path / "int8")["quantization"]
    fallback = record["policy_fallback"]
    assert fallback["passed"] and fallback["failed"]["predictions"].startswith("max_abs_err")
    assert 1 <= len(fallback["float_layers"]) and record["int8_mac_share"] >= 0.8
    assert fallback["added_bytes"] > 0 and fallback["latency_ratio"] > 0
    assert f"int8 verifies with {len(fallback['float_layers'])} layer(s) float" in proc.stderr
    layers = {layer["name"]: layer["precision"] for layer in record["layers"]}
    assert all(layers[name] == "float" for name in fallback["float_layers"])
    strict = edgec(*args, "-o", tmp_path / "strict", "--strict-precision")
    assert strict.returncode == 2 and not (tmp_path / "strict").exists() and "Traceback" not in strict.stderr
    refusal = strict.stderr.strip().splitlines()[-1]  # after the build's progress lines
    assert refusal.startswith("edgec: error: int8 does not verify (predictions: max_abs_err")
    assert "--strict-precision keeps every layer int8; the most harmful layers: " + fallback["float_layers"][0] in refusal


def test_integer_inputs_pass_through_int8_untouched():
    """The corpus MiniLM (real weights; int64 token ids and attention mask from real sentences): calibration
    keeps the inputs' dtype, the int8 graph takes them as they are (no quantization of an integer input)
    and runs on them. Its MACs are all MatMul, so onnxruntime's scheme measures the candidate with
    activation ranges taken at run time, which alone keeps a transformer's embedding (calibrated ranges:
    cosine 0.85-0.89 against fp32, under the 0.98 the policy asks)."""
    import onnx_ir as ir

    from edgec import frontends, passes
    from edgec.backends import get_backend
    from edgec.ir import runtime
    from edgec.options import resolve
    from edgec.package.samples import model_interface
    from edgec.quantize import quantize_for_target
    from edgec.quantize.data import load_calibration
    from edgec.targets import load_target
    from models.corpus.registry import BY_NAME

    corpus = BY_NAME["minilm_l6"]
    model, _ = passes.optimize(frontends.load(str(corpus.onnx_path)))
    specs, _ = model_interface(model)
    data = load_calibration(str(corpus.inputs_path), model, specs)
    assert data.count == 8 and {a.dtype for feed in data.feeds() for a in feed.values()} == {np.dtype(np.int64)}
    target = load_target("onnxruntime")
    qdq, record = quantize_for_target(model, target, "int8", data, get_backend(target.backend), resolve(target, {}))
    assert [v.dtype for v in qdq.graph.inputs] == [ir.DataType.INT64, ir.DataType.INT64]
    quantizers = {"QuantizeLinear", "DynamicQuantizeLinear"}
    assert not any(use.node.op_type in quantizers for v in qdq.graph.inputs for use in v.uses())
    # every MatMul with constant weights (attention's two activations stay float: 1.4 % of the MACs at the
    # build's 32 static tokens, uncounted here, where the sequence length is symbolic)
    assert record.scheme_choice.chosen == "s8-dynamic" and record.int8_mac_share >= 0.98
    assert sum(n.op_type == "MatMulInteger" for n in qdq.graph) == 36
    reference, quantized = runtime.session(model), runtime.session(qdq, optimize=True)
    for feed in data.feeds():
        expected, embedding = reference.run(None, feed)[0].ravel(), quantized.run(None, feed)[0].ravel()
        assert embedding @ expected / np.linalg.norm(embedding) / np.linalg.norm(expected) > 0.98


@pytest.mark.parametrize("target, dynamic, static", [("onnxruntime", "s8-dynamic", "u8u8"),
                                                     ("tflite-arm", "dynamic-range", "full-int8")])
def test_runtime_range_candidate_is_not_one_for_a_convolutional_model(target, dynamic, static, digits_model,
                                                                      digits_files, tmp_path):
    """A target's dynamic candidate quantizes MatMul (and Gemm) only: on the digits CNN that is under the
    80 % int8 MAC share, so the build does not measure it, and asking for it is refused."""
    from edgec.quantize.fallback import MacShare
    from edgec.quantize.qdq import Scheme
    from edgec.targets import load_target

    import onnx_ir as ir

    model = ir.load(digits_model)
    scheme = Scheme.from_target(load_target(target).quantization)
    feed = {"input": np.load(digits_files["calib"])["input"][:1]}
    share = MacShare(model, feed)
    layers = {node.name: node.op_type for node in model.graph if node.op_type in ("Conv", "Gemm", "MatMul")}
    assert share.int8_share(scheme.variant(dynamic).leaves_float(layers)) < 0.8
    assert share.int8_share(scheme.variant(static).leaves_float(layers)) == 1.0
    # with ranges taken at run time, a MatMul of two activations (attention's) stays float; calibrated, not
    products = {"scores": "MatMul", "dense": "MatMul"}
    assert scheme.variant(dynamic).leaves_float(products, ("scores",)) == ["scores"]
    assert scheme.variant(static).leaves_float(products, ("scores",)) == []
    out = tmp_path / "out"
    result = edgec("build", digits_model, "-t", target, "--precision", "int8", "--calibration", digits_files["calib"],
                   "--int8-scheme", dynamic, "-o", out)
    assert result.returncode == 2 and "under 80%" in result.stderr and not out.exists()


def test_fp16_text_detector_is_judged_by_its_mask(tmp_path):
    """The corpus PP-OCRv5 detector (real weights, text on real photos): fp16 weights move its Sigmoid map by
    about 0.2 of the range, which the range rule failed, while the text mask (IoU at 0.5) holds at 0.997."""
    from models.corpus.registry import BY_NAME

    corpus = BY_NAME["ppocr_det"]
    out = tmp_path / "fp16"
    edgec("build", corpus.onnx_path, "--precision", "fp16", "--samples", corpus.inputs_path, "-o", out, check=True)
    check = manifest(out)["verification"]["result"]["checks"]["reference"]["fetch_name_0"]
    assert check["passed"] and check["measures"]["mask_iou"] >= 0.98 and check["measures"]["rel_err"] > 0.02


def test_a_clipping_calibration_method_leaves_the_answer_unclipped(fer_float):
    """mean-minmax (NNCF's default) and entropy clip a tensor's rare extremes, but the logits a Softmax reads
    are the answer: their extremes are the winning class. Clipped to the runs' mean maximum, these faces'
    probabilities fell to 11.7 dB against fp32 (max error 0.38); the answers keep their seen range (calibrate.py:
    `answers`), 21.5 dB. MobileNetV2's logits showed it: 57 % top-1 agreement at 19.2 dB on unseen crops."""
    import onnx_ir as ir

    from edgec.backends import get_backend
    from edgec.ir import runtime
    from edgec.options import resolve
    from edgec.package.samples import model_interface, split
    from edgec.quantize import quantize_for_target
    from edgec.quantize.calibrate import answers
    from edgec.quantize.data import CalibrationData
    from edgec.targets import load_target

    model, faces = fer_float
    (softmax,) = [node for node in model.graph if node.op_type == "Softmax"]
    logits = softmax.inputs[0]
    pooled = logits.producer().inputs[0]  # Softmax <- Squeeze <- GlobalAveragePool: the pool is no answer's copy
    assert answers(model) == {model.graph.outputs[0].name, logits.name, pooled.name}

    specs, _ = model_interface(model)
    target = load_target("onnxruntime")
    data = CalibrationData(split(specs, {specs[0].name: faces}, "faces", dynamic_batch=1), specs, "faces")
    options = resolve(target, {"calibration_method": "mean-minmax", "bias_correction": "off", "int8_scheme": "u8u8"})
    qdq, _ = quantize_for_target(model, target, "int8", data, get_backend(target.backend), options)
    feed = {specs[0].name: faces}
    reference = runtime.session(model).run(None, feed)[0]
    probabilities = runtime.session(qdq).run(None, feed)[0]
    assert _sqnr(probabilities, reference) >= 20.0

    (quantize,) = [node for node in qdq.graph if node.op_type == "QuantizeLinear" and node.inputs[0].name == pooled.name]
    scale, zero_point = (v.const_value.numpy() for v in quantize.inputs[1:])
    with_scores = ir.from_proto(ir.to_proto(model))
    with_scores.graph.outputs.append(next(n for n in with_scores.graph if n.op_type == "GlobalAveragePool").outputs[0])
    scores = runtime.session(with_scores).run([pooled.name], feed)[0]
    assert float(scale) * (255 - int(zero_point)) >= scores.max() * 0.999  # the top class's score is not clipped


def test_layers_that_share_a_bias_each_take_their_own_shift(tmp_path, digits_model, digits_data):
    """A siamese digits CNN, one tower's weights and biases for two images, calibrated on different images in
    each. onnxruntime gives each layer its own int32 bias, and each takes its own layer's shift: the float
    model corrected before quantization had taken both towers' shifts from the shared bias (a CRNN's
    unrolled LSTM, one bias for 20 steps, lost 3 dB to it, and the judge then kept the correction off). Where
    layers do share one quantized bias, it takes the mean of their shifts. The correction still brings both
    outputs closer to fp32."""
    import onnx
    import onnx_ir as ir
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgec.ir import runtime
    from edgec.package.harness.interface import Runs
    from edgec.quantize import bias
    from edgec.quantize.choose import sqnr
    from edgec.quantize.data import CalibrationData
    from edgec.quantize.qdq import Quantizer, Scheme
    from edgec.targets import load_target

    quant_pre_process(str(digits_model), str(tmp_path / "folded.onnx"))
    tower = onnx.load(tmp_path / "folded.onnx")
    shared = {init.name for init in tower.graph.initializer}
    twin = lambda name: name if name in shared or not name else f"{name}_b"  # noqa: E731
    for node in list(tower.graph.node):
        copy = tower.graph.node.add()
        copy.CopyFrom(node)
        copy.name = f"{node.name}_b"
        copy.input[:] = [twin(name) for name in node.input]
        copy.output[:] = [twin(name) for name in node.output]
    for values in (tower.graph.input, tower.graph.output):
        for value in [v for v in values if v.name not in shared]:
            values.add().CopyFrom(value)
            values[-1].name = twin(value.name)
    onnx.save(tower, tmp_path / "siamese.onnx")
    model = ir.load(tmp_path / "siamese.onnx")
    first, second = (v.name for v in model.graph.inputs)
    calib, test = digits_data["x_calib"], digits_data["x_test"]
    data = CalibrationData(Runs("stacked", [{first: calib[i:i + 1], second: calib[-i - 1:len(calib) - i]}
                                            for i in range(len(calib) // 2)]), [], "digits")
    quantizer = Quantizer(model, Scheme.from_target(load_target("tflite-arm").quantization), data, "minmax", tmp_path)
    corrected = quantizer.run()
    assert quantizer.bias_corrected == 8  # both towers' three convolutions and classifier
    quantizer.correct_bias = False
    plain = quantizer.run()
    float_model = ir.load(quantizer.float_path)
    shifts = bias.output_shifts(float_model, bias.dequantized_weights(plain), quantizer.ranges.input_means)
    biases = bias.float_biases(float_model)

    def dequantized(graph: ir.Model, layer: str) -> tuple[np.ndarray, np.ndarray]:
        dequantize = next(n for n in graph.graph if n.name == layer).inputs[2].producer()
        scale = dequantize.inputs[1].const_value.numpy().astype(np.float64)
        return dequantize.inputs[0].const_value.numpy() * scale, scale

    pairs = [(name, f"{name}_b") for name in shifts if not name.endswith("_b")]
    for layer in (name for pair in pairs for name in pair):
        value, scale = dequantized(corrected, layer)
        np.testing.assert_array_less(np.abs(value - (biases[layer] - shifts[layer])), scale / 2 + 1e-9)
    assert all(not np.allclose(shifts[a], shifts[b]) for a, b in pairs)  # the towers saw different images

    rewired = {n.name: n for n in plain.graph}  # each pair made to share the first layer's quantized bias
    for a, b in pairs:
        rewired[b].replace_input_with(2, rewired[a].inputs[2])
    assert bias.correct(plain, biases, shifts) == 8
    for a, b in pairs:
        value, scale = dequantized(plain, b)
        np.testing.assert_array_less(np.abs(value - (biases[a] - (shifts[a] + shifts[b]) / 2)), scale / 2 + 1e-9)

    uncorrected = quantizer.run()  # the correction still off: a fresh copy of the graph onnxruntime made
    half = len(test) // 2
    feed = {first: test[:half], second: test[half:2 * half]}
    reference = runtime.session(model).run(None, feed)
    gain = sqnr(reference, runtime.session(corrected).run(None, feed)) - sqnr(
        reference, runtime.session(uncorrected).run(None, feed))
    print(f"SQNR gain of the correction on both towers: {gain:.2f} dB")
    assert gain > 0
