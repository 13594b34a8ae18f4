"""tensorrt-gpu and tensorrt-jetson: the TensorRT-ready ONNX model, its explicit quantization, and the harness.

No GPU and no TensorRT here: the models run in onnxruntime (`run.py --simulate`, the build host's
simulation), and the harness's device paths are tested through their refusal (exit 5).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from conftest import ROOT, accuracy, edgec, harness, manifest
from edgec.package.harness.errors import ExitCode

QUANTIZED_INPUT_OPS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Add"}
INSTALL = "install tensorrt or onnxruntime-gpu"


def error_lines(proc):
    """What edgec (`edgec: error: ...`) or run.py (`error: ...`) reported; progress lines are not errors."""
    return [line for line in proc.stderr.splitlines() if line.startswith(("edgec: error:", "error:"))]


def simulated(artifact, inputs: np.ndarray, tmp_path) -> np.ndarray:
    """The artifact's outputs in onnxruntime, through its own harness (`run.py infer --simulate`)."""
    np.savez(tmp_path / "in.npz", input=inputs)
    proc = harness(artifact, "infer", "--simulate", "--inputs", tmp_path / "in.npz", "--outputs", tmp_path / "out.npz")
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "out.npz") as data:
        return data["logits"]


@pytest.fixture(scope="module")
def digits_builds(tmp_path_factory, digits_model, digits_files):
    folder = tmp_path_factory.mktemp("tensorrt-digits")
    built = {}
    for target, precision in (("tensorrt-gpu", "fp32"), ("tensorrt-gpu", "fp16"), ("tensorrt-gpu", "int8"),
                              ("tensorrt-jetson", "int8")):
        out = folder / f"{target}-{precision}"
        edgec("build", digits_model, "-t", target, "--precision", precision, "--calibration", digits_files["calib"],
              "-o", out, check=True)
        built[target, precision] = out
    return built


def test_digits_every_precision_holds_its_accuracy(digits_builds, digits_data, digits_accuracy, tmp_path):
    for (target, precision), out in digits_builds.items():
        m = manifest(out)
        assert m["verification"]["result"]["passed"] and "simulated" in m["verification"]["result"]["device"]
        assert "not a TensorRT engine run" in m["backend"]["host_simulation"]["note"]
        assert (out / "engines").is_dir() and not any((out / "engines").iterdir())
        assert not any(name.startswith("engines/") for name in m["model"]["files"])
        assert m["backend"]["engine"]["precision_flags"] == {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"]}[precision]
        logits = simulated(out, digits_data["x_test"], tmp_path)
        assert accuracy(logits, digits_data["y_test"]) >= digits_accuracy - 0.005, (target, precision)


def test_fp16_is_verified_on_an_fp16_copy(digits_builds):
    out = digits_builds["tensorrt-gpu", "fp16"]
    m = manifest(out)
    copy = onnx.load(out / m["backend"]["host_simulation"]["model"])
    weights = [t for t in copy.graph.initializer if len(t.dims) > 1]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert onnx.load(out / "model.onnx").graph.initializer[0].data_type == onnx.TensorProto.FLOAT  # TRT gets fp32


def assert_placed_for_tensorrt(model: onnx.ModelProto) -> int:
    """TensorRT's Q/DQ placement: every Conv/Gemm reads DQ inputs, activations per tensor and weights per channel,
    zero points 0, and every DQ feeds a layer input (never a Q/DQ pair alone on a layer's output).
    Returns the number of quantized layers."""
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {out: node for node in model.graph.node for out in node.output}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    layers = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm")]
    for layer in layers:
        data, weight = (producer.get(name) for name in layer.input[:2])
        assert data is not None and data.op_type == "DequantizeLinear", layer.name
        assert weight is not None and weight.op_type == "DequantizeLinear", layer.name
        scale, zero = inits[weight.input[1]], inits[weight.input[2]]
        transposed = any(a.name == "transB" and a.i for a in layer.attribute)  # Gemm's B is [N, K]
        channels = inits[weight.input[0]].shape[0 if layer.op_type == "Conv" or transposed else 1]
        assert scale.shape == (channels,) and zero.dtype == np.int8 and not zero.any(), layer.name
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            assert inits[node.input[1]].shape == () and inits[node.input[2]].dtype == np.int8
            assert not inits[node.input[2]].any()
        if node.op_type == "DequantizeLinear":
            assert all(c.op_type in QUANTIZED_INPUT_OPS for c in consumers[node.output[0]]), node.name
    return len(layers)


def test_int8_graph_has_tensorrt_placement(digits_builds):
    for target in ("tensorrt-gpu", "tensorrt-jetson"):
        out = digits_builds[target, "int8"]
        assert assert_placed_for_tensorrt(onnx.load(out / "model.onnx")) == 4
        assert len(manifest(out)["backend"]["int8_layers"]) == 4


def test_verify_without_tensorrt_is_exit_5(digits_builds):
    out = digits_builds["tensorrt-gpu", "int8"]
    for proc in (harness(out, "verify"), harness(out, "build-engine"), harness(out, "bench", "--cuda-graph"),
                 edgec("verify", out)):
        lines = error_lines(proc)
        assert proc.returncode == ExitCode.RUNTIME_MISSING and len(lines) == 1 and INSTALL in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_simulate_is_refused_for_a_runtime_the_host_runs(tmp_path, digits_model):
    out = tmp_path / "ort"
    edgec("build", digits_model, "-t", "onnxruntime", "-o", out, check=True)
    proc = harness(out, "verify", "--simulate")
    assert proc.returncode == ExitCode.REFUSED and "only for runtimes the build host cannot run" in proc.stderr


def test_an_operator_the_parser_lacks_is_exit_2(tmp_path, digits_model):
    model = onnx.load(digits_model)
    model.graph.node.append(onnx.helper.make_node("Det", ["input"], ["det"], name="my_det"))
    model.graph.output.append(onnx.helper.make_tensor_value_info("det", onnx.TensorProto.FLOAT, None))
    onnx.save(model, tmp_path / "det.onnx")
    proc = edgec("build", tmp_path / "det.onnx", "-t", "tensorrt-gpu", "--precision", "fp32", "-o", tmp_path / "out")
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "Det (node 'my_det')" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.unverified").exists()


def dynamic_digits(tmp_path, digits_model, dims):
    model = onnx.load(digits_model)
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, dims):
        if isinstance(value, str):
            dim.dim_param = value  # a oneof: clears dim_value
    path = tmp_path / "dynamic.onnx"
    onnx.save(model, path)
    return path


def test_a_dynamic_dimension_needs_a_profile(tmp_path, digits_model):
    path = dynamic_digits(tmp_path, digits_model, ["N", 1, "H", 8])
    proc = edgec("build", path, "-t", "tensorrt-gpu", "--precision", "fp32", "-o", tmp_path / "out")
    lines = error_lines(proc)
    assert proc.returncode == 2 and len(lines) == 1 and "--input-shape" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
    proc = edgec("build", path, "-t", "tensorrt-gpu", "--min-shapes", "input:1x1x8x8", "-o", tmp_path / "out")
    assert proc.returncode == 2 and "all three of --min-shapes, --opt-shapes and --max-shapes" in proc.stderr


def test_a_profile_keeps_the_batch_dynamic(tmp_path, digits_model):
    path = dynamic_digits(tmp_path, digits_model, ["N", 1, 8, 8])
    out = tmp_path / "out"
    edgec("build", path, "-t", "tensorrt-gpu", "--precision", "fp32", "--min-shapes", "input:1x1x8x8",
          "--opt-shapes", "input:4x1x8x8", "--max-shapes", "input:16x1x8x8", "-o", out, check=True)
    m = manifest(out)
    assert m["backend"]["engine"]["profiles"] == [{"input": "input", "min": [1, 1, 8, 8], "opt": [4, 1, 8, 8],
                                                   "max": [16, 1, 8, 8]}]
    assert isinstance(onnx.load(out / "model.onnx").graph.input[0].type.tensor_type.shape.dim[0].dim_param, str)
    assert m["inputs"][0]["shape"][0] == "N"


def test_dla_core_is_for_jetson_only(tmp_path, digits_model, digits_files):
    proc = edgec("build", digits_model, "-t", "tensorrt-gpu", "--dla-core", "0", "-o", tmp_path / "gpu")
    assert proc.returncode == 2 and "targets that take it: tensorrt-jetson" in proc.stderr
    out = tmp_path / "dla"
    edgec("build", digits_model, "-t", "tensorrt-jetson", "--precision", "int8", "--dla-core", "1",
          "--calibration", digits_files["calib"], "-o", out, check=True)
    assert manifest(out)["backend"]["engine"]["dla_core"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("target, precision", [("tensorrt-gpu", "fp32"), ("tensorrt-gpu", "fp16"),
                                               ("tensorrt-gpu", "int8"), ("tensorrt-jetson", "int8")])
def test_mobilenet(tmp_path, mobilenet_model, mobilenet_files, photos, target, precision):
    out = tmp_path / "mnv2"
    edgec("build", mobilenet_model, "-t", target, "--precision", precision, "--calibration", mobilenet_files["calib"],
          "-o", out, check=True)
    logits = simulated(out, photos["x"], tmp_path)
    fp32_top1 = photos["logits"].argmax(1)
    top5 = np.argsort(-logits, 1)[:, :5]
    assert all(fp32_top1[i] in top5[i] for i in range(len(fp32_top1)))
    assert np.mean(logits.argmax(1) == fp32_top1) >= (0.8 if precision == "int8" else 1.0)
    if precision == "int8":
        assert assert_placed_for_tensorrt(onnx.load(out / "model.onnx")) == 53
        assert len(manifest(out)["backend"]["int8_layers"]) == 53


def test_only_a_residual_add_is_quantized(tmp_path):
    """Q/DQ on both inputs of an Add of two computed tensors, none on an Add of a constant (a bias), whose
    input therefore carries no Q/DQ of its own. The graph's structure is asserted, not its accuracy."""
    import tomllib

    import onnx_ir as ir
    from onnx import TensorProto, helper, numpy_helper

    from edgec.package.harness.interface import Runs
    from edgec.quantize.data import CalibrationData
    from edgec.quantize.qdq import Quantizer, Scheme

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w", (4, 3, 3, 3)), ("b", (1, 4, 1, 1)), ("w2", (4, 4, 1, 1)))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Add", ["c", "b"], ["a"]), helper.make_node("Conv", ["a", "w2"], ["c2"], name="conv2"),
         helper.make_node("Add", ["c2", "a"], ["y"], name="residual")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights)
    model = ir.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    scheme = Scheme.from_target(tomllib.loads((ROOT / "edgec/targets/tensorrt-gpu.toml").read_text())["quantization"])
    runs = Runs("stacked", [{"x": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(4)])
    qdq = Quantizer(model, scheme, CalibrationData(runs, [], "noise"), "minmax", tmp_path).run()
    inputs = {n.name or n.op_type: [v.producer().op_type if v.producer() else "constant" for v in n.inputs]
              for n in qdq.graph if n.op_type in ("Add", "Conv")}
    assert inputs["residual"] == ["DequantizeLinear", "DequantizeLinear"]
    assert inputs["Add_1"] == ["Conv", "constant"]
    assert inputs["conv2"] == ["DequantizeLinear", "DequantizeLinear"]
    assert assert_placed_for_tensorrt(ir.to_proto(qdq)) == 2


def test_an_engine_is_named_by_its_device_and_checked_by_its_whole_key():
    from edgec.package.harness.rt_tensorrt import engine_file

    key = {"gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9", "tensorrt": "10.7.0",
           "model_sha256": "ab" * 32, "settings": {"precision_flags": ["INT8"]}}
    name = engine_file(key)
    assert name.startswith("nvidia-geforce-rtx-4090-sm89-trt10.7.0-") and name.endswith(".engine")
    assert engine_file(dict(key, model_sha256="cd" * 32)) != name  # another model never reuses the file
    assert engine_file(dict(key)) == name


def test_per_layer_report_and_fallback_with_outputs_left_float(tmp_path, digits_builds, digits_model, digits_files):
    """TensorRT's placement leaves layer outputs float: each layer is judged on that output, so the report
    covers every quantized layer and the fallback can keep the most harmful in float."""
    layers = manifest(digits_builds["tensorrt-gpu", "int8"])["quantization"]["layers"]
    assert sorted(l["op"] for l in layers) == ["Conv", "Conv", "Conv", "Gemm"]
    assert all(l["sqnr_db"] > 20 and l["cosine"] > 0.99 for l in layers)
    out = tmp_path / "fallback"
    # one calibration image: int8 then loses 0.44 points (random noise, once, lost more; bias correction and
    # entropy ranges took that away)
    edgec("build", digits_model, "-t", "tensorrt-gpu", "--precision", "int8", "--calibration", digits_files["calib"],
          "--calibration-samples", "1", "--max-accuracy-drop", "0", "--eval", digits_files["eval"], "-o", out,
          check=True)
    m = manifest(out)
    fallback = m["quantization"]["fallback"]
    assert fallback["met"] and fallback["steps"][0]["drop"] > 0 and fallback["float_layers"]
    assert not set(fallback["float_layers"]) & set(m["backend"]["int8_layers"])
    assert len(m["backend"]["int8_layers"]) == 4 - len(fallback["float_layers"])
