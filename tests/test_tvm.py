"""The tvm backend: tvm-x86 against onnxruntime on real models, the aarch64 cross build under
emulation, the tuning database's reuse, and the refusals (int8, fp16 without native fp16).

Untuned builds take seconds; tuning (even a handful of trials) and emulation take minutes
on 2 cores, so those tests are `slow`.
"""
from __future__ import annotations

import json
import platform
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from conftest import accuracy, edgec, harness, infer, manifest
from test_cli import assert_one_line_error

pytest.importorskip("tvm")


def ort_outputs(model, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(len(x))])


@pytest.fixture(scope="module")
def digits_x86(tmp_path_factory, digits_model):
    out = tmp_path_factory.mktemp("tvm") / "digits-x86"
    edgec("build", digits_model, "-t", "tvm-x86", "-o", out,
          "--tuning-db", tmp_path_factory.mktemp("empty-db"), check=True)
    return out


def test_digits_x86_matches_onnxruntime(digits_x86, digits_model, digits_data, digits_accuracy, tmp_path):
    x = digits_data["x_test"]
    got = infer(digits_x86, {"input": x}, tmp_path)["logits"]
    want = ort_outputs(digits_model, x)
    assert np.max(np.abs(got - want)) < 1e-4
    assert accuracy(got, digits_data["y_test"]) == accuracy(want, digits_data["y_test"]) == digits_accuracy


def test_digits_x86_manifest_says_untuned(digits_x86):
    meta = manifest(digits_x86)["backend"]
    assert meta["cpu_detected"] and meta["cpu"] not in ("", "native", "detect")
    assert meta["tuning"]["tuned"] is False and meta["tuning"]["records"] == 0
    assert "untuned" in meta["tuning"]["note"]
    assert meta["libraries"] == {"x86_64": "model.x86_64.so"}
    assert manifest(digits_x86)["verification"]["result"]["passed"]
    requirements = (digits_x86 / "requirements.txt").read_text().split()
    assert "apache-tvm==0.27.0.post1" in requirements and "apache-tvm-ffi==0.1.14.post1" in requirements


def test_digits_x86_harness_verify_and_profile(digits_x86, tmp_path):
    assert harness(digits_x86, "verify").returncode == 0
    proc = harness(digits_x86, "profile", "--warmup", "2", "--iters", "5", "--json", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stderr
    layers = json.loads((tmp_path / "p.json").read_text())["layers"]
    assert any(layer["op"] == "conv2d" for layer in layers) and all(layer["ms"] >= 0 for layer in layers)


def test_int8_is_refused_naming_the_int8_targets(digits_model, tmp_path):
    proc = edgec("build", digits_model, "-t", "tvm-x86", "-o", tmp_path / "q", "--precision", "int8",
                 "--calibration", "random")
    assert proc.returncode == 2
    assert "QDQ into float arithmetic" in proc.stderr and "onnxruntime" in proc.stderr
    assert not (tmp_path / "q").exists()


def test_fp16_needs_native_fp16(digits_model, tmp_path):
    from edgec.backends.tvm.target import resolve
    from edgec.targets import load_target

    if resolve(load_target("tvm-x86")).has_native_fp16():
        pytest.skip("this CPU has avx512fp16")
    proc = edgec("build", digits_model, "-t", "tvm-x86", "-o", tmp_path / "h", "--precision", "fp16")
    assert proc.returncode == 2 and "no native fp16" in proc.stderr


def test_cross_target_refuses_tuning(digits_model, tmp_path):
    if not shutil.which("aarch64-linux-gnu-g++"):
        pytest.skip("no aarch64 cross compiler")
    proc = edgec("build", digits_model, "-t", "tvm-rpi4", "-o", tmp_path / "t", "--tune-trials", "8")
    assert proc.returncode == 2 and "tuning measures candidates on the target CPU" in proc.stderr


@pytest.mark.slow
@pytest.mark.full  # the corpus CNNs on tvm-x86 (tests/test_corpus_tvm.py) cover real models in make test
def test_mobilenet_x86_matches_onnxruntime(mobilenet_model, photos, tmp_path):
    out = tmp_path / "mnv2"
    edgec("build", mobilenet_model, "-t", "tvm-x86", "-o", out, "--tuning-db", tmp_path / "db", check=True)
    x = photos["x"]
    got = infer(out, {"input": x}, tmp_path)["logits"]
    want = ort_outputs(mobilenet_model, x)
    assert np.max(np.abs(got - want)) < 1e-4
    assert np.array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.slow
@pytest.mark.parametrize("target, cpu, precision, host_tolerance", [
    ("tvm-rpi4", "cortex-a72", "fp32", 1e-5),
    ("tvm-rpi5", "cortex-a76", "fp16", 2e-2),  # the device rounds in fp16, the host twin through fp32
])
def test_digits_aarch64_runs_under_emulation(digits_model, tmp_path, target, cpu, precision, host_tolerance):
    if platform.machine() != "x86_64":
        pytest.skip("the emulation test runs on an x86_64 build machine")
    out = tmp_path / target
    edgec("build", digits_model, "-t", target, "--precision", precision, "-o", out, check=True)
    meta = manifest(out)["backend"]
    assert meta["libraries"] == {"aarch64": "model.aarch64.so", "x86_64": "model.x86_64.so"}
    assert (out / "model.aarch64.so").read_bytes()[18] == 0xB7  # ELF e_machine EM_AARCH64
    assert meta["tvm_target"]["mcpu"] == cpu and meta["cross_compiled"]
    assert manifest(out)["verification"]["build_host"]["default"]["criteria"] == [
        {"measure": "rel_err", "limit": host_tolerance}]
    proc = edgec("verify", out, "--device", f"{target.split('-')[1]}-emulated", "--json", tmp_path / "v.json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["emulated"] and report["passed"]
    assert "aarch64" in report["runtime_checks"]["library"]["detail"]
    build_host = report["checks"]["build_host"]["logits"]
    assert build_host["measures"]["rel_err"] <= host_tolerance and build_host["measures"]["top1_agreement"] == 1.0
    if precision == "fp32":
        assert build_host["measures"]["max_abs_err"] <= 1e-5
    if target == "tvm-rpi5":  # Cortex-A76 code on a Cortex-A72 (no fp16, no dotprod): refused before it runs
        assert_one_line_error(edgec("verify", out, "--device", "rpi4-emulated"), "fp16, dotprod, which rpi4-emulated",
                              "build for tvm-rpi4")


@pytest.mark.full  # MetaSchedule's tuning takes minutes even at 4 trials
def test_tuning_database_is_reused(digits_model, digits_data, tmp_path):
    """A second build with the same database spends no tuning time and applies the same records."""
    db = tmp_path / "db"
    first, second = tmp_path / "first", tmp_path / "second"
    edgec("build", digits_model, "-t", "tvm-x86", "-o", first, "--tune-trials", "4", "--tuning-db", db, check=True)
    tuned = manifest(first)["backend"]["tuning"]
    assert tuned["tuned"] and tuned["trials_run"] >= 4 and tuned["seconds"] > 0
    assert tuned["records_in_artifact"] == tuned["records"] >= 1
    assert tuned["db"] == str(db.resolve())
    proc = edgec("build", digits_model, "-t", "tvm-x86", "-o", second, "--tune-trials", "4", "--tuning-db", db,
                 check=True)
    again = manifest(second)["backend"]["tuning"]
    assert "no tuning time spent" in " ".join(proc.stderr.split())  # the console wraps long lines
    assert again["seconds"] == 0 and again["trials_run"] == 0 and again["tasks_tuned_now"] == 0
    assert again["records"] == tuned["records"] and again["tasks_from_db"] == tuned["tasks"]
    for name in ("database_workload.json", "database_tuning_record.json"):
        assert (first / "tuning" / name).read_bytes() == (second / "tuning" / name).read_bytes()
    assert (first / "model.x86_64.so").read_bytes() == (second / "model.x86_64.so").read_bytes()
    x = digits_data["x_test"][:50]
    np.testing.assert_array_equal(infer(first, {"input": x}, tmp_path)["logits"],
                                  infer(second, {"input": x}, tmp_path)["logits"])


def test_coverage_list_is_tvms_own_converter_map():
    from tvm.relax.frontend.onnx import onnx_frontend

    from edgec.backends.tvm.operators import CONVERTED

    assert CONVERTED == frozenset(onnx_frontend._get_convert_map())


@pytest.mark.slow
def test_recurrent_model_is_unrolled_for_tvm(tmp_path):
    """TVM has no LSTM converter: the shared lowering unrolls it and the build matches onnxruntime."""
    import onnx
    from test_recurrent import recurrent_model

    proto, feeds = recurrent_model("LSTM", "bidirectional", 0, False, peepholes=True)
    onnx.save(proto, tmp_path / "lstm.onnx")
    out = tmp_path / "art"
    proc = edgec("build", tmp_path / "lstm.onnx", "-t", "tvm-x86", "-o", out, check=True)
    assert "unrolled LSTM" in proc.stderr
    got = infer(out, feeds, tmp_path)
    expected = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    for name, value in zip(["y", "y_h", "y_c"], expected):
        np.testing.assert_allclose(got[name], value, atol=1e-5)


def test_tile_is_computed_without_the_vectorizer_fault(tmp_path):
    """A feature map tiled along three axes: TVM's own Tile kernel read past the input row on AVX-512 hosts
    (1440 of 2880 values wrong); the build lowers it as Reshape -> Expand -> Reshape, exact everywhere."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    repeats = np.array([1, 5, 4, 2], np.int64)
    graph = helper.make_graph([helper.make_node("Tile", ["features", "repeats"], ["tiled"])], "tile",
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 3, 4, 6])],
                              [helper.make_tensor_value_info("tiled", TensorProto.FLOAT, [1, 15, 16, 12])],
                              [numpy_helper.from_array(repeats, "repeats")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "tile.onnx")
    out = tmp_path / "art"
    edgec("build", tmp_path / "tile.onnx", "-t", "tvm-x86", "-o", out, check=True)
    features = np.random.default_rng(0).standard_normal((1, 3, 4, 6)).astype(np.float32)
    np.testing.assert_array_equal(infer(out, {"features": features}, tmp_path)["tiled"], np.tile(features, repeats))
