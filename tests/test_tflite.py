"""The tflite-arm target on real models: artifacts built with the CLI, as a user would, measured on real data.

The operator cases live in test_tflite_ops.py, the backend's pure logic in unit/test_tflite_plans.py and
unit/test_tflite_helpers.py.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import MOBILENET_INT8_CHOICES, ROOT, accuracy, edgec, harness, infer, manifest
from tflite_helpers import lower, make_model, operator_names, run_onnxruntime

pytest.importorskip("ai_edge_litert")

RNG = np.random.default_rng(0)
X = "float[1,4,8,8] x"


def weights(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def test_unsupported_operator_lists_each_node_exits_2_and_writes_nothing(tmp_path):
    proto = make_model(f"g ({X}) => (y) {{ a = Resize <mode=\"cubic\"> (x, , sc) \n b = Mod <fmod=1> (a, a) \n"
                       f"y = Hardmax (b) }}", sc=np.array([1, 1, 2, 2], np.float32))
    for node, name in zip(proto.graph.node, ("cubic_node", "mod_node", "hardmax_node")):
        node.name = name
    source = tmp_path / "odd.onnx"
    onnx.save(proto, source)
    out = tmp_path / "out"
    proc = edgec("build", "--target", "tflite-arm", source, "-o", out)
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("edgec: error: target tflite-arm cannot take")
    for expected in ("3 node(s)", "Resize (node 'cubic_node')", "cubic", "Mod (node 'mod_node')",
                     "Hardmax (node 'hardmax_node')"):
        assert expected in message
    assert not out.exists() and not list(tmp_path.glob(".out.edgec-*"))


def test_build_never_imports_tensorflow(tmp_path, digits_model, digits_files):
    script = (
        "import sys\n"
        "from edgec import api\n"
        f"api.build({str(digits_model)!r}, 'tflite-arm', {str(tmp_path / 'out')!r}, precision='int8',\n"
        f"          calibration={str(digits_files['calib'])!r})\n"
        "leaked = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.'))\n"
        "print('leaked:', leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "out" / "model.tflite").exists()


INT8_MIX = """g (float[1,4,8,8] x) => (y) {
    c = Conv <pads=[1,1,1,1]> (x, w, b)
    r = Relu (c)
    k = Concat <axis=1> (r, x)
    m = MaxPool <kernel_shape=[2,2], strides=[2,2]> (k)
    u = Resize <mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor"> (m, , sc)
    s = Sigmoid (u)
    a = Add (s, k)
    p = AveragePool <kernel_shape=[2,2], strides=[2,2]> (a)
    f = Flatten (p)
    g = Gemm <transB=1> (f, gw, gb)
    y = Softmax (g)
}"""


def test_int8_operator_mix_stays_integer(tmp_path):
    """Concat, pooling, resize, sigmoid and residual add in int8: only the ends convert, and the softmax
    runs in float after them, where XNNPACK runs it (it has no int8 softmax)."""
    from edgec import api

    proto = make_model(INT8_MIX, w=weights(6, 4, 3, 3), b=weights(6), sc=np.array([1, 1, 2, 2], np.float32),
                       gw=weights(5, 160), gb=weights(5))
    onnx.save(proto, tmp_path / "mix.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).standard_normal((32, 4, 8, 8)).astype(np.float32))
    built = api.build(str(tmp_path / "mix.onnx"), "tflite-arm", tmp_path / "out", precision="int8",
                      calibration=str(tmp_path / "calib.npz"))
    assert built.verified, built.manifest.verification
    types, ops = run_tflite_ops(tmp_path / "out" / "model.tflite")
    softmax = ops.index("SOFTMAX")
    assert ops[0] == "QUANTIZE" and ops[softmax - 1] == "DEQUANTIZE"
    int8 = 9  # TensorType.INT8
    assert all(t == int8 for t in types[:softmax - 1]), list(zip(ops, types))
    for op in ("CONCATENATION", "MAX_POOL_2D", "DEPTH_TO_SPACE", "LOGISTIC", "AVERAGE_POOL_2D"):  # resize: copies
        assert op in ops


def test_writer_is_deterministic(tmp_path):
    proto = make_model(f"g ({X}) => (y) {{ c = Conv <pads=[1,1,1,1]> (x, w, b) \n d = Conv <pads=[1,1,1,1]> (x, w, b)"
                       f"\n e = Relu (d) \n y = Add (c, e) }}", w=weights(6, 4, 3, 3), b=weights(6))
    first, _, _ = lower(proto, tmp_path / "a")
    second, _, _ = lower(proto, tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()


# ---- digits: accuracy per precision ----------------------------------------------------------

@pytest.fixture(scope="module")
def digits_builds(tmp_path_factory, digits_model, digits_files):
    root = tmp_path_factory.mktemp("tflite-digits")
    builds = {
        "fp32": [],
        "fp16": ["--precision", "fp16"],
        "int8": ["--precision", "int8", "--calibration", digits_files["calib"]],
        "int8-io": ["--precision", "int8", "--calibration", digits_files["calib"], "--io-dtype", "int8"],
    }
    for name, args in builds.items():
        edgec("build", "--target", "tflite-arm", digits_model, "-o", root / name, *args, check=True)
    return {name: root / name for name in builds}


def _run_interface(artifact, x, tmp_path):
    """Feed source-layout float inputs through the artifact's interface; real-valued outputs back."""
    from edgec.package.artifact import read_manifest
    from edgec.package.harness import interface

    m = read_manifest(artifact)
    fed = interface.to_interface({m.inputs[0].name: x}, m.inputs, stacked=False)
    return interface.real_values(infer(artifact, fed, tmp_path), m.outputs)[m.outputs[0].name]


def test_digits_accuracy_per_precision(digits_builds, digits_data, digits_accuracy, tmp_path):
    results = {}
    for name, artifact in digits_builds.items():
        m = manifest(artifact)
        assert m["verification"]["result"]["passed"], name
        assert m["verification"]["result"]["runtime_checks"]["xnnpack_delegation"]["facts"]["all_delegated"], m["verification"]["result"]["runtime_checks"]
        results[name] = accuracy(_run_interface(artifact, digits_data["x_test"], tmp_path), digits_data["y_test"])
    assert results["fp32"] == pytest.approx(digits_accuracy, abs=1e-9)
    assert results["fp16"] >= digits_accuracy - 0.005
    assert results["int8"] >= digits_accuracy - 0.005
    assert results["int8-io"] == results["int8"]


def test_int8_artifact_is_full_integer_with_manifest_quantization(digits_builds):
    _, ops = run_tflite_ops(digits_builds["int8-io"] / "model.tflite")
    assert "DEQUANTIZE" not in ops and "QUANTIZE" not in ops and "CONV_2D" in ops
    m = manifest(digits_builds["int8-io"])
    for spec in m["inputs"] + m["outputs"]:
        assert spec["dtype"] == "int8" and set(spec["quantization"]) == {"scale", "zero_point"}
    float_io = manifest(digits_builds["int8"])
    assert float_io["inputs"][0]["dtype"] == "float32" and float_io["inputs"][0]["quantization"] is None
    assert m["inputs"][0]["layout"] == "NCHW" and m["inputs"][0]["shape"] == [1, 1, 8, 8]


def run_tflite_ops(path):
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(flatbuffer_utils.BuiltinOperator).items() if not k.startswith("_")}
    types = [model.subgraphs[0].tensors[o.outputs[0]].type for o in model.subgraphs[0].operators]
    return types, [names[model.operatorCodes[o.opcodeIndex].builtinCode] for o in model.subgraphs[0].operators]


def test_fp16_stores_half_weights_with_dequantize(digits_builds):
    m = manifest(digits_builds["fp16"])
    assert m["backend"]["operators"]["DEQUANTIZE"] >= 4
    assert m["model"]["bytes"] < 0.6 * manifest(digits_builds["fp32"])["model"]["bytes"]


def test_profile_reports_each_operator(digits_builds, tmp_path):
    proc = harness(digits_builds["int8"], "profile", "--iters", "5", "--warmup", "1", "--json", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stderr
    layers = json.loads((tmp_path / "p.json").read_text())["layers"]
    ops = [layer["op"] for layer in layers]
    assert ops.count("CONV_2D") == 3 and "FULLY_CONNECTED" in ops
    assert all(layer["ms"] > 0 for layer in layers)


@pytest.mark.slow
def test_int8_on_emulated_raspberry_pi_equals_host(digits_builds, tmp_path):
    """The int8 artifact on an emulated Pi 4 (qemu, aarch64 LiteRT wheel): identical outputs to the host."""
    for name, bound in (("int8", 0.0), ("fp32", 1e-5)):
        proc = edgec("verify", digits_builds[name], "--device", "rpi4-emulated", "--json", tmp_path / f"{name}.json")
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads((tmp_path / f"{name}.json").read_text())
        assert report["passed"] and report["emulated"]
        assert report["checks"]["build_host"]["logits"]["measures"]["max_abs_err"] <= bound
        assert report["runtime_checks"]["xnnpack_delegation"]["facts"]["all_delegated"]


# ---- MobileNetV2: real photos ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_mobilenet_v2_nhwc_on_photos(precision, tmp_path, mobilenet_model, mobilenet_files, photos):
    out = tmp_path / precision
    args = ["--calibration", mobilenet_files["calib"], *MOBILENET_INT8_CHOICES["tflite-arm"]] if precision == "int8" else []
    edgec("build", "--target", "tflite-arm", mobilenet_model, "-o", out, "--precision", precision,
          "--io-layout", "nhwc", *args, check=True)
    m = manifest(out)
    assert m["inputs"][0]["shape"] == [1, 224, 224, 3] and m["inputs"][0]["layout"] == "NHWC"
    assert "TRANSPOSE" not in m["backend"]["operators"], m["backend"]["operators"]
    assert m["verification"]["result"]["runtime_checks"]["xnnpack_delegation"]["facts"]["all_delegated"], m["verification"]["result"]["runtime_checks"]
    logits = _run_interface(out, photos["x"], tmp_path)
    reference = photos["logits"]
    if precision == "fp32":
        assert np.array_equal(logits.argmax(1), reference.argmax(1))
        assert np.abs(logits - reference).max() <= 1e-4
    else:
        top5 = np.argsort(-logits, axis=1)[:, :5]
        assert all(reference[i].argmax() in top5[i] for i in range(len(reference)))
        assert np.mean(logits.argmax(1) == reference.argmax(1)) >= 0.8


def test_output_kind_is_read_from_the_optimized_graph(tmp_path, digits_model):
    """An exporter can declare a wrong output shape (ddddocr's CTC logits [24, 1, 8210] are declared [1, seqlen]);
    the judge reads each output's kind once shapes are inferred, so steps of logits are judged as a sequence (by
    their decoded strings), not by the cosine of an unknown tensor. Here the digits CNN's logits, reshaped
    time-major by shape arithmetic: one step of ten classes."""
    from onnx import TensorProto, helper

    model = onnx.load(digits_model)
    gemm = model.graph.node[-1]
    gemm.output[0] = "scores"
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([1], np.int64), "one"))
    model.graph.node.extend([
        helper.make_node("Shape", ["scores"], ["scores_shape"]),
        helper.make_node("Concat", ["one", "scores_shape"], ["steps_shape"], axis=0),
        helper.make_node("Reshape", ["scores", "steps_shape"], ["logits"])])
    model.graph.ClearField("output")
    model.graph.output.append(helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, "seqlen"]))
    path = tmp_path / "steps.onnx"
    onnx.save(model, path)
    edgec("build", "--target", "tflite-arm", path, "-o", tmp_path / "out", "--precision", "fp16", check=True)
    judged = manifest(tmp_path / "out")["verification"]["reference"]["outputs"]["logits"]
    assert judged["kind"] == "sequences" and judged["criteria"] == [{"limit": 0.99, "measure": "strings_equal"}]
    assert manifest(tmp_path / "out")["outputs"][0]["shape"] == [1, 1, 10]


def test_an_additive_attention_mask_keeps_the_scores_float_in_int8(tmp_path, digits_data):
    """Self-attention over the rows of real digit images (8 tokens of 8 pixels, no weights), padding masked
    by adding -1e4 to its scores as BERT exporters do. One int8 scale over scores (0..4) plus mask (-1e4) leaves
    every score zero and the attention uniform; the build keeps the mask, the Add and the Softmax float."""
    from onnx import TensorProto, helper

    def tensor(name, *dims):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", *dims])

    graph = helper.make_graph([
        helper.make_node("Transpose", ["x"], ["xt"], "xt", perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["dots"], "dots"),
        helper.make_node("Mul", ["dots", "sharpness"], ["scores"], "scores"),
        helper.make_node("Sub", ["one", "mask"], ["padding"], "padding"),
        helper.make_node("Mul", ["padding", "minus_large"], ["mask_bias"], "mask_bias"),
        helper.make_node("Unsqueeze", ["mask_bias", "axis1"], ["mask_rows"], "mask_rows"),
        helper.make_node("Add", ["scores", "mask_rows"], ["masked"], "masked"),
        helper.make_node("Softmax", ["masked"], ["attention"], "attention", axis=-1),
        helper.make_node("MatMul", ["attention", "x"], ["context"], "context")],
        "masked_attention", [tensor("x", 8, 8), tensor("mask", 8)], [tensor("attention", 8, 8), tensor("context", 8, 8)],
        [onnx.numpy_helper.from_array(np.array(v, dtype), n) for n, v, dtype in (
            ("sharpness", 4.0, np.float32), ("one", 1.0, np.float32), ("minus_large", -1e4, np.float32),
            ("axis1", [1], np.int64))])
    path = tmp_path / "attention.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    x = digits_data["x_test"][:48].reshape(-1, 8, 8).astype(np.float32)
    mask = np.ones((len(x), 8), np.float32)
    for row, padded in enumerate(np.random.default_rng(0).integers(1, 4, len(x))):
        mask[row, 8 - padded:] = 0
    np.savez(tmp_path / "tokens.npz", x=x, mask=mask)
    out = tmp_path / "int8"
    edgec("build", "--target", "tflite-arm", path, "-o", out, "--precision", "int8", "--calibration",
          tmp_path / "tokens.npz", check=True)
    m = manifest(out)
    assert [(head["node"], head["float_nodes"]) for head in m["quantization"]["mixed_range_heads"]] == \
        [("masked", ["masked", "attention"])]
    assert m["quantization"]["mixed_range_heads"][0]["ratio"] > 100
    assert m["quantization"]["policy_fallback"] is None, m["quantization"]["policy_fallback"]
    assert m["verification"]["result"]["passed"]


# ---- int8 with activation ranges taken at run time (TFLite's dynamic-range kernels) ------------

def _dense_digits_cnn(path, digits_cnn_class):
    """The trained digits CNN with every layer as a MatMul: each convolution (with its BatchNorm) is a linear map
    of the flattened image, its matrix that map applied to the unit basis; pooling a matrix of 1/16s. The same
    logits from 1.2 M MACs in 5 MatMuls: the MatMul-dominated shape of a transformer's dense layers."""
    import torch
    from onnx import helper, numpy_helper

    from conftest import DIGITS

    cnn = digits_cnn_class()()
    cnn.load_state_dict(torch.load(DIGITS / "digits_cnn.pth", map_location="cpu"))
    cnn.eval()
    layers, shape = [], (1, 8, 8)
    with torch.no_grad():
        for block in cnn.features:
            affine = block[:2]  # Conv, BatchNorm
            size = int(np.prod(shape))
            offset = affine(torch.zeros(1, *shape)).reshape(-1)
            matrix = affine(torch.eye(size).reshape(size, *shape)).reshape(size, -1) - offset
            layers.append((matrix.numpy(), offset.numpy(), True))
            shape = tuple(affine(torch.zeros(1, *shape)).shape[1:])
        channels, pixels = shape[0], shape[1] * shape[2]
        pool = np.repeat(np.eye(channels, dtype=np.float32), pixels, axis=0) / pixels
        layers.append((pool, np.zeros(channels, np.float32), False))
        layers.append((cnn.classifier.weight.numpy().T, cnn.classifier.bias.numpy(), False))
    nodes, inits, current = [], [], "x"
    for i, (matrix, bias, relu) in enumerate(layers):
        inits += [numpy_helper.from_array(np.ascontiguousarray(matrix, np.float32), f"w{i}"),
                  numpy_helper.from_array(np.asarray(bias, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [current, f"w{i}"], [f"m{i}"], f"dense{i}"),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"], f"bias{i}")]
        current = f"a{i}"
        if relu:
            nodes.append(helper.make_node("Relu", [current], [f"r{i}"], f"relu{i}"))
            current = f"r{i}"
    nodes[-1].output[0] = "logits"
    graph = helper.make_graph(nodes, "dense_digits", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT,
                                                                                    ["batch", 64])],
                              [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_int8_with_run_time_activation_ranges_runs_hybrid_kernels(tmp_path, digits_data, digits_accuracy):
    """`--int8-scheme dynamic-range` on a MatMul-only model (the digits CNN as dense layers, its real weights):
    every FULLY_CONNECTED takes float32 activations and int8 per-channel weights (LiteRT quantizes each input
    row at run time), the artifact verifies, its weights are ~4x smaller, and its logits stay within a few
    hundredths of fp32's on the 450 held-out digits."""
    from ai_edge_litert.interpreter import Interpreter

    from conftest import digits_cnn_class

    source = tmp_path / "dense_digits.onnx"
    _dense_digits_cnn(source, digits_cnn_class)
    x = digits_data["x_test"].reshape(-1, 64)
    reference = run_onnxruntime(onnx.load(source), {"x": x})["logits"]
    assert accuracy(reference, digits_data["y_test"]) == pytest.approx(digits_accuracy, abs=1e-9)
    np.savez(tmp_path / "calib.npz", x=digits_data["x_calib"].reshape(-1, 64))
    out = tmp_path / "int8"
    # calibrated ranges and bias correction do not touch run-time ranges: fixed, so that none are measured
    edgec("build", "--target", "tflite-arm", source, "-o", out, "--precision", "int8", "--calibration",
          tmp_path / "calib.npz", "--int8-scheme", "dynamic-range", "--calibration-method", "minmax",
          "--bias-correction", "off", check=True)
    m = manifest(out)
    assert m["verification"]["result"]["passed"] and m["quantization"]["scheme"]["activation_ranges"] == "runtime"
    assert m["quantization"]["int8_mac_share"] == 1.0

    it = Interpreter(model_path=str(out / "model.tflite"), num_threads=1)
    it.allocate_tensors()
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    dense = [op for op in it._get_ops_details() if op["op_name"] == "FULLY_CONNECTED"]
    assert operator_names(out / "model.tflite") == ["FULLY_CONNECTED"] * 5  # the Relus fused
    assert m["verification"]["result"]["runtime_checks"]["xnnpack_delegation"]["facts"]["all_delegated"]
    for op in dense:
        activation, weights, output = (tensors[op["inputs"][0]], tensors[op["inputs"][1]], tensors[op["outputs"][0]])
        assert (activation["dtype"], weights["dtype"], output["dtype"]) == (np.float32, np.int8, np.float32)
        assert len(weights["quantization_parameters"]["scales"]) == weights["shape"][0]  # per output channel
    float_bytes = sum(4 * a.size for a in (onnx.numpy_helper.to_array(i) for i in onnx.load(source).graph.initializer))
    assert (out / "model.tflite").stat().st_size < 0.3 * float_bytes

    logits = []
    for row in x:
        it.set_tensor(it.get_input_details()[0]["index"], row[None])
        it.invoke()
        logits.append(it.get_tensor(it.get_output_details()[0]["index"])[0])
    logits = np.stack(logits)
    assert np.abs(logits - reference).max() <= 0.03 * np.ptp(reference)
    assert (logits.argmax(1) == reference.argmax(1)).mean() >= 0.99
    assert accuracy(logits, digits_data["y_test"]) >= digits_accuracy - 0.005


def test_run_time_ranges_tflite_has_no_kernel_for_leave_the_other_candidate(tmp_path):
    """A MatMul whose constant weights carry a batch axis (per-head [4, 8, 6]) has no hybrid kernel to take
    run-time ranges: the build measures the full-integer candidate alone, and naming the dynamic one is
    refused in one line that names the layer."""
    proto = make_model("g (float[1,4,3,8] x) => (y) { y = MatMul (x, w) }", w=weights(4, 8, 6))
    onnx.save(proto, tmp_path / "heads.onnx")
    np.savez(tmp_path / "calib.npz", x=weights(16, 4, 3, 8, scale=1.0))
    args = ("build", "--target", "tflite-arm", tmp_path / "heads.onnx", "--precision", "int8",
            "--calibration", tmp_path / "calib.npz")
    edgec(*args, "-o", tmp_path / "auto", check=True)
    choice = manifest(tmp_path / "auto")["quantization"]["scheme_choice"]
    assert choice["chosen"] == "full-int8" and [c["name"] for c in choice["candidates"]] == ["full-int8"]
    refused = edgec(*args, "--int8-scheme", "dynamic-range", "-o", tmp_path / "dynamic")
    assert refused.returncode == 2 and not (tmp_path / "dynamic").exists()
    assert "MatMulInteger (node" in refused.stderr and "no TFLite hybrid kernel" in refused.stderr
    assert "Traceback" not in refused.stderr
