"""The tflite-arm target: the .tflite writer's operators against onnxruntime, then the real models.

Operator cases are small ONNX graphs lowered by the backend itself and run in LiteRT with
XNNPACK; each must match onnxruntime. The model tests build artifacts with the CLI, as a
user would, and measure accuracy on the real data.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnx.parser
import onnx_ir as ir
import pytest

from conftest import ROOT, accuracy, edgec, harness, infer, manifest

pytest.importorskip("ai_edge_litert")

RNG = np.random.default_rng(0)


def weights(*shape, scale=0.5):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def make_model(text: str, **initializers) -> onnx.ModelProto:
    """An ONNX model from onnx's text format plus numpy initializers named in it."""
    model = onnx.parser.parse_model('<ir_version: 8, opset_import: ["" : 17]>\n' + text)
    model.graph.initializer.extend(onnx.numpy_helper.from_array(v, k) for k, v in initializers.items())
    for output in model.graph.output:
        output.type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    return onnx.shape_inference.infer_shapes(model, strict_mode=True)


def lower(proto: onnx.ModelProto, folder, precision="fp32", options=None):
    """Optimize and lower with the tflite backend, as the build does; return the .tflite path."""
    from edgec import passes
    from edgec.backends import BuildContext, get_backend
    from edgec.targets import load_target

    model = ir.from_proto(proto)
    passes.optimize(model)
    backend = get_backend("tflite")
    assert backend.unsupported(model) == []
    folder.mkdir(parents=True, exist_ok=True)
    ctx = BuildContext(load_target("tflite-arm"), precision, folder, None, options or {}, model)
    lowered = backend.lower(model, ctx)
    return folder / lowered.model_files[0], lowered


def run_tflite(path, feeds: dict) -> tuple[dict, list[str]]:
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils

    it = Interpreter(model_path=str(path), num_threads=1)
    it.allocate_tensors()
    for detail in it.get_input_details():
        it.set_tensor(detail["index"], feeds[detail["name"]])
    it.invoke()
    outputs = {d["name"]: it.get_tensor(d["index"]) for d in it.get_output_details()}
    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(flatbuffer_utils.BuiltinOperator).items() if not k.startswith("_")}
    ops = [names[model.operatorCodes[o.opcodeIndex].builtinCode] for o in model.subgraphs[0].operators]
    return outputs, ops


def run_onnxruntime(proto, feeds):
    import onnxruntime as ort

    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


X = "float[1,4,8,8] x"
CONV_W = dict(w=weights(6, 4, 3, 3), b=weights(6))

# name -> (graph text, initializers); every graph reads x [1,4,8,8] and writes y.
CASES = {
    "conv_same": (f"g ({X}) => (y) {{ y = Conv <pads=[1,1,1,1]> (x, w, b) }}", CONV_W),
    "conv_stride2_torch_pads": (f"g ({X}) => (y) {{ y = Conv <pads=[1,1,1,1], strides=[2,2]> (x, w, b) }}", CONV_W),
    "conv_same_upper": (f"g ({X}) => (y) {{ y = Conv <auto_pad=\"SAME_UPPER\", strides=[2,2]> (x, w, b) }}", CONV_W),
    "conv_same_lower": (f"g ({X}) => (y) {{ y = Conv <auto_pad=\"SAME_LOWER\", strides=[2,2]> (x, w, b) }}", CONV_W),
    "conv_valid": (f"g ({X}) => (y) {{ y = Conv <auto_pad=\"VALID\"> (x, w, b) }}", CONV_W),
    "conv_asymmetric_pads": (f"g ({X}) => (y) {{ y = Conv <pads=[0,1,2,0]> (x, w, b) }}", CONV_W),
    "conv_dilated": (f"g ({X}) => (y) {{ y = Conv <pads=[2,2,2,2], dilations=[2,2]> (x, w, b) }}", CONV_W),
    "conv_grouped": (f"g ({X}) => (y) {{ y = Conv <group=2, pads=[1,1,1,1]> (x, w, b) }}",
                     dict(w=weights(6, 2, 3, 3), b=weights(6))),
    "conv_depthwise_multiplier": (f"g ({X}) => (y) {{ y = Conv <group=4, pads=[1,1,1,1], strides=[2,2]> (x, w) }}",
                                  dict(w=weights(8, 1, 3, 3))),
    "conv_relu_fused": (f"g ({X}) => (y) {{ c = Conv <pads=[1,1,1,1]> (x, w, b) \n y = Relu (c) }}", CONV_W),
    "conv_relu6_fused": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = Clip (c, lo, hi) }}",
                         dict(**CONV_W, lo=np.array(0, np.float32), hi=np.array(6, np.float32))),
    "conv_transpose": (f"g ({X}) => (y) {{ y = ConvTranspose <strides=[2,2], pads=[1,1,1,1], output_padding=[1,1]> "
                       f"(x, w, b) }}", dict(w=weights(4, 3, 3, 3), b=weights(3))),
    "conv_transpose_k4": (f"g ({X}) => (y) {{ y = ConvTranspose <strides=[2,2], pads=[1,1,1,1]> (x, w) }}",
                          dict(w=weights(4, 2, 4, 4))),
    "nhwc_elementwise": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n a = Add (c, k) \n s = Sub (a, k) \n"
                         f"m = Mul (s, k) \n y = Div (m, d) }}",
                         dict(**CONV_W, k=weights(6, 1, 1), d=np.full((6, 1, 1), 2.0, np.float32))),
    "add_two_branches": (f"g ({X}) => (y) {{ c = Conv <pads=[1,1,1,1]> (x, w, b) \n d = Conv <pads=[1,1,1,1]> (x, w, b)"
                         f"\n e = Relu (d) \n y = Add (c, e) }}", CONV_W),
    "activations": (f"g ({X}) => (y) {{ a = Sigmoid (x) \n t = Tanh (a) \n h = HardSwish (x) \n"
                    f"s = HardSigmoid (h) \n l = LeakyRelu <alpha=0.1> (s) \n p = PRelu (l, slope) \n"
                    f"q = Add (t, p) \n y = Clip (q, lo, hi) }}",
                    dict(slope=weights(4, 1, 1), lo=np.array(-0.5, np.float32), hi=np.array(0.7, np.float32))),
    "maxpool_torch_pads": (f"g ({X}) => (y) {{ y = MaxPool <kernel_shape=[3,3], strides=[2,2], pads=[1,1,1,1]> (x) }}",
                           {}),
    "maxpool_same": (f"g ({X}) => (y) {{ y = MaxPool <kernel_shape=[2,2], strides=[2,2]> (x) }}", {}),
    "avgpool_include_pad": (f"g ({X}) => (y) {{ y = AveragePool <kernel_shape=[3,3], pads=[1,1,1,1], "
                            f"count_include_pad=1> (x) }}", {}),
    "avgpool_same_exclude_pad": (f"g ({X}) => (y) {{ y = AveragePool <kernel_shape=[3,3], pads=[1,1,1,1]> (x) }}", {}),
    "global_average_pool": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = GlobalAveragePool (c) }}", CONV_W),
    "concat_channels": (f"g ({X}) => (y) {{ c = Conv <pads=[1,1,1,1]> (x, w, b) \n y = Concat <axis=1> (c, x) }}",
                        CONV_W),
    "flatten_spatial": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n f = Flatten (c) \n y = Gemm <transB=1> (f, g, h) }}",
                        dict(**CONV_W, g=weights(5, 216), h=weights(5))),
    "gemm_alpha_beta": (f"g ({X}) => (y) {{ f = Flatten (x) \n y = Gemm <alpha=0.5, beta=2.0> (f, g, h) }}",
                        dict(g=weights(256, 7), h=weights(7))),
    "reshape_squeeze_unsqueeze": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n p = GlobalAveragePool (c) \n"
                                  f"s = Squeeze (p, ax) \n u = Unsqueeze (s, ax0) \n y = Reshape (u, shp) }}",
                                  dict(**CONV_W, ax=np.array([2, 3]), ax0=np.array([0]), shp=np.array([2, 3]))),
    "transpose_inside": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n t = Transpose <perm=[0,2,3,1]> (c) \n"
                         f"y = MatMul (t, m) }}", dict(**CONV_W, m=weights(6, 5))),
    "softmax_channels": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = Softmax <axis=1> (c) }}", CONV_W),
    "softmax_spatial": (f"g ({X}) => (y) {{ y = Softmax <axis=2> (x) }}", {}),
    "resize_nearest": (f"g ({X}) => (y) {{ y = Resize <mode=\"nearest\", "
                       f"coordinate_transformation_mode=\"asymmetric\", nearest_mode=\"floor\"> (x, , sc) }}",
                       dict(sc=np.array([1, 1, 2, 2], np.float32))),
    "resize_bilinear_half_pixel": (f"g ({X}) => (y) {{ y = Resize <mode=\"linear\"> (x, , sc) }}",
                                   dict(sc=np.array([1, 1, 2, 2], np.float32))),
    "resize_bilinear_align_corners": (f"g ({X}) => (y) {{ y = Resize <mode=\"linear\", "
                                      f"coordinate_transformation_mode=\"align_corners\"> (x, , , sz) }}",
                                      dict(sz=np.array([1, 4, 13, 11], np.int64))),
    "pad_constant": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = Pad (c, pads, v) }}",
                     dict(**CONV_W, pads=np.array([0, 0, 1, 2, 0, 0, 3, 1]), v=np.array(0.25, np.float32))),
    "reduce_mean_channels": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = ReduceMean <keepdims=0, axes=[1]> (c) }}",
                             CONV_W),
    "slice_steps": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n y = Slice (c, st, en, ax, sp) }}",
                    dict(**CONV_W, st=np.array([1, 0]), en=np.array([5, 6]), ax=np.array([1, -1]),
                         sp=np.array([2, 2]))),
    "slice_reverse": (f"g ({X}) => (y) {{ y = Slice (x, st, en, ax, sp) }}",
                      dict(st=np.array([-1]), en=np.array([-100]), ax=np.array([3]), sp=np.array([-1]))),
    "split_channels": (f"g ({X}) => (y) {{ c = Conv (x, w, b) \n p, q = Split <axis=1> (c, sz) \n y = Mul (p, q) }}",
                       dict(**CONV_W, sz=np.array([3, 3]))),
    "matmul_two_activations": (f"g ({X}) => (y) {{ r = Reshape (x, s) \n t = Transpose <perm=[0,2,1]> (r) \n"
                               f"y = MatMul (r, t) }}", dict(s=np.array([4, 8, 8]))),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_operator_matches_onnxruntime(name, tmp_path):
    text, initializers = CASES[name]
    proto = make_model(text, **initializers)
    x = RNG.standard_normal((1, 4, 8, 8)).astype(np.float32)
    expected = run_onnxruntime(proto, {"x": x})["y"]
    path, _ = lower(proto, tmp_path)
    got, ops = run_tflite(path, {"x": x})
    assert got["y"].shape == expected.shape
    np.testing.assert_allclose(got["y"], expected, rtol=1e-5, atol=1e-5)
    if name.startswith("conv_relu"):
        assert ops == ["TRANSPOSE", "CONV_2D", "TRANSPOSE"], ops  # the activation is fused into the conv
    if name in ("nhwc_elementwise", "add_two_branches", "concat_channels", "split_channels", "pad_constant"):
        assert ops.count("TRANSPOSE") == 2, ops  # one at the input, one at the output: NHWC propagates


def test_unsupported_operator_lists_each_node_exits_2_and_writes_nothing(tmp_path):
    proto = make_model(f"g ({X}) => (y) {{ a = Erf (x) \n b = Resize <mode=\"cubic\"> (a, , sc) \n"
                       f"y = Einsum <equation=\"nchw->nchw\"> (b) }}", sc=np.array([1, 1, 2, 2], np.float32))
    for node, name in zip(proto.graph.node, ("erf_node", "cubic_node", "einsum_node")):
        node.name = name
    source = tmp_path / "odd.onnx"
    onnx.save(proto, source)
    out = tmp_path / "out"
    proc = edgec("build", "--target", "tflite-arm", source, "-o", out)
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip().splitlines()[-1]
    assert message.startswith("edgec: error: target tflite-arm cannot take")
    for expected in ("3 node(s)", "Erf (node 'erf_node')", "Resize (node 'cubic_node')", "cubic",
                     "Einsum (node 'einsum_node')"):
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
    """Concat, pooling, resize, sigmoid, residual add and softmax in int8: only the ends convert."""
    from edgec import api

    proto = make_model(INT8_MIX, w=weights(6, 4, 3, 3), b=weights(6), sc=np.array([1, 1, 2, 2], np.float32),
                       gw=weights(5, 160), gb=weights(5))
    onnx.save(proto, tmp_path / "mix.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(1).standard_normal((32, 4, 8, 8)).astype(np.float32))
    built = api.build(str(tmp_path / "mix.onnx"), "tflite-arm", tmp_path / "out", precision="int8",
                      calibration=str(tmp_path / "calib.npz"))
    assert built.verified, built.manifest.verification
    types, ops = run_tflite_ops(tmp_path / "out" / "model.tflite")
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    int8 = 9  # TensorType.INT8
    assert all(t == int8 for t in types[:-1]), list(zip(ops, types))
    for op in ("CONCATENATION", "MAX_POOL_2D", "RESIZE_NEAREST_NEIGHBOR", "LOGISTIC", "AVERAGE_POOL_2D", "SOFTMAX"):
        assert op in ops


def test_writer_is_deterministic(tmp_path):
    text, initializers = CASES["add_two_branches"]
    proto = make_model(text, **initializers)
    first, _ = lower(proto, tmp_path / "a")
    second, _ = lower(proto, tmp_path / "b")
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
    args = ["--calibration", mobilenet_files["calib"]] if precision == "int8" else []
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
