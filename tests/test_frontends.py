"""PyTorch and TensorFlow sources build like ONNX ones: same numbers as the framework, one-line errors.

PyTorch: MobileNetV2 from its class + ImageNet weights (top-1 and logits against PyTorch's on
the bundled photos), a saved torch.export program, `inspect`, and each user mistake.
TensorFlow: a Keras CNN trained here on the digits (seeded, seconds), built from .keras,
SavedModel and .h5, judged on the 450 held-out images against Keras's own accuracy.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import DIGITS, MOBILENET, ROOT, accuracy, digits_cnn_class, edgec, infer, manifest

MOBILENET_SOURCE = [str(MOBILENET / "model.py") + ":MobileNetV2",
                    "--weights", MOBILENET / "mobilenet_v2-b0353104.pth", "--input-shape", "x:1,3,224,224"]
DIGITS_SOURCE = str(DIGITS / "model.py") + ":DigitsCNN"

# Keras 3 converts with np.array(x) under numpy 2: a deprecation notice, not our concern.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def one_line_error(proc, *words) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgec: error:"), proc.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def available_targets() -> set[str]:
    from edgec.targets import available

    return {t.name for t in available()}


# ---- PyTorch -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("target", ["onnxruntime",  # the frontend is shared; the other targets repeat the class
                                    pytest.param("tflite-arm", marks=pytest.mark.full),
                                    pytest.param("openvino-cpu", marks=pytest.mark.full)])
def test_mobilenet_from_pytorch_class_matches_pytorch(target, tmp_path, photos):
    if target not in available_targets():
        pytest.skip(f"target {target} is not available in this checkout")
    if not (MOBILENET / "mobilenet_v2-b0353104.pth").exists():
        pytest.skip("run `make models` to fetch the MobileNetV2 weights")
    out = tmp_path / "art"
    edgec("build", "--trust-code", *MOBILENET_SOURCE, "-t", target, "--precision", "fp32", "-o", out, check=True)
    spec = manifest(out)["inputs"][0]
    assert spec["name"] == "x"
    x = photos["x"]
    if spec.get("source_perm"):  # a target whose interface is NHWC
        x = np.ascontiguousarray(np.transpose(x, spec["source_perm"]))
    logits = next(iter(infer(out, {"x": x}, tmp_path).values()))
    torch_logits = photos["logits"]
    assert (logits.argmax(1) == torch_logits.argmax(1)).all()
    assert np.abs(logits - torch_logits).max() <= 1e-4


@pytest.fixture(scope="module")
def pt2_program(tmp_path_factory) -> Path:
    """DigitsCNN with its trained weights, saved as a torch.export program."""
    import torch

    DigitsCNN = digits_cnn_class()

    module = DigitsCNN().eval()
    module.load_state_dict(torch.load(DIGITS / "digits_cnn.pth", weights_only=True))
    path = tmp_path_factory.mktemp("pt2") / "digits.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(1, 1, 8, 8),)), path)
    return path


def test_pt2_program_builds_and_verifies(pt2_program, tmp_path, digits_data, digits_accuracy):
    out = tmp_path / "art"
    edgec("build", "--trust-code", pt2_program, "-o", out, check=True)
    assert manifest(out)["inputs"][0]["shape"] == [1, 1, 8, 8]
    assert json.loads(edgec("verify", out, "--json", "-", check=True).stdout)["passed"]
    logits = next(iter(infer(out, {"x": digits_data["x_test"]}, tmp_path).values()))
    assert accuracy(logits, digits_data["y_test"]) == pytest.approx(digits_accuracy)


def test_pt2_with_another_shape_says_which_it_was_exported_for(pt2_program, tmp_path):
    one_line_error(edgec("build", "--trust-code", pt2_program, "--input-shape", "x:4,1,8,8", "-o", tmp_path / "a"),
                   "x:1,1,8,8", "dynamic_shapes")


def test_inspect_takes_a_pytorch_class():
    proc = edgec("inspect", "--trust-code", DIGITS_SOURCE, "--weights", DIGITS / "digits_cnn.pth", "--input-shape", "x:1,1,8,8",
                 "--json", "-", check=True)
    model = json.loads(proc.stdout)["model"]
    assert [(i["name"], i["shape"]) for i in model["inputs"]] == [("x", [1, 1, 8, 8])]
    assert model["outputs"][0]["shape"] == [1, 10]
    assert model["operators"]["Conv"] == 3 and model["macs"]["complete"] and model["macs"]["by_op"]["Conv"] > 0
    assert json.loads(proc.stdout)["unsupported_by_target"]["onnxruntime"] == []


def test_model_file_without_the_class(tmp_path):
    proc = edgec("build", "--trust-code", str(DIGITS / "model.py") + ":Digits", "--input-shape", "x:1,1,8,8", "-o", tmp_path / "a")
    one_line_error(proc, "no nn.Module class 'Digits'", "DigitsCNN")


def test_weights_that_do_not_fit_the_class(tmp_path):
    proc = edgec("build", "--trust-code", str(MOBILENET / "model.py") + ":MobileNetV2", "--weights", DIGITS / "digits_cnn.pth",
                 "--input-shape", "x:1,3,224,224", "-o", tmp_path / "a")
    one_line_error(proc, "do not fit MobileNetV2", "missing keys", "unexpected keys", "shape mismatches")


def test_missing_input_shape_names_the_flag(tmp_path):
    proc = edgec("build", "--trust-code", DIGITS_SOURCE, "--weights", DIGITS / "digits_cnn.pth", "-o", tmp_path / "a")
    one_line_error(proc, "--input-shape x:")


def test_input_shape_for_an_unknown_argument(tmp_path):
    proc = edgec("build", "--trust-code", DIGITS_SOURCE, "--input-shape", "input:1,1,8,8", "-o", tmp_path / "a")
    one_line_error(proc, "'input'", "forward() takes: x")


@pytest.mark.parametrize("module,extra,source", [("torch", "torch", DIGITS_SOURCE),
                                                 ("tensorflow", "tf", str(DIGITS / "model.keras"))],
                         ids=["torch", "tf"])
def test_missing_extra_gives_the_install_command(module, extra, source, tmp_path):
    """The framework made unimportable in a fresh process, as on a machine without the extra."""
    code = f"import sys; sys.modules[{module!r}] = None; from edgec.cli import main; main(prog_name='edgec')"
    proc = subprocess.run([sys.executable, "-c", code, "build", "--trust-code", source, "--input-shape", "x:1,1,8,8",
                           "-o", str(tmp_path / "a")], capture_output=True, text=True, cwd=ROOT, timeout=300)
    one_line_error(proc, f"pip install 'edgec[{extra}]'")


# ---- TensorFlow / Keras --------------------------------------------------------------------


@pytest.fixture(scope="module")
def keras_digits(tmp_path_factory, digits_data) -> dict:
    """A small Keras CNN trained (seeded) on the digits not held out, saved in all three formats."""
    import keras
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[..., None]  # NHWC [N, 8, 8, 1]
    train = np.setdiff1d(np.arange(len(images)), digits_data["test_indices"])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(16, 3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(),
        keras.layers.Conv2D(32, 3, strides=2, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(images[train], digits.target[train], epochs=15, batch_size=32, verbose=0)
    folder = tmp_path_factory.mktemp("keras")
    model.save(folder / "digits.keras")
    model.save(folder / "digits.h5")
    model.export(folder / "saved_model", verbose=False)
    x_test = np.ascontiguousarray(np.moveaxis(digits_data["x_test"], 1, -1))
    assert np.array_equal(x_test, images[digits_data["test_indices"]])
    np.savez(folder / "calib.npz", image=np.moveaxis(digits_data["x_calib"], 1, -1))
    logits = model.predict(x_test, verbose=0)
    return {"folder": folder, "x_test": x_test, "logits": logits,
            "accuracy": accuracy(logits, digits_data["y_test"]), "calib": folder / "calib.npz"}


@pytest.mark.slow
@pytest.mark.parametrize("source", ["digits.keras", "saved_model", "digits.h5"])
def test_keras_sources_match_keras_accuracy(source, keras_digits, tmp_path, digits_data):
    out = tmp_path / "art"
    edgec("build", keras_digits["folder"] / source, "-o", out, check=True)
    m = manifest(out)
    assert m["inputs"][0]["name"] == "image" and m["inputs"][0]["shape"][1:] == [8, 8, 1]  # NHWC kept
    assert "Transpose" not in m["build"]["passes"]["ops_after"]
    logits = infer(out, {"image": keras_digits["x_test"]}, tmp_path)["output_0"]
    assert accuracy(logits, digits_data["y_test"]) == keras_digits["accuracy"]
    assert np.abs(logits - keras_digits["logits"]).max() <= 1e-4
    assert keras_digits["accuracy"] > 0.9


@pytest.mark.slow
def test_keras_int8_within_half_a_point(keras_digits, tmp_path, digits_data):
    out = tmp_path / "art"
    edgec("build", keras_digits["folder"] / "digits.keras", "--precision", "int8",
          "--calibration", keras_digits["calib"], "-o", out, check=True)
    assert manifest(out)["precision"] == "int8"
    logits = infer(out, {"image": keras_digits["x_test"]}, tmp_path)["output_0"]
    assert accuracy(logits, digits_data["y_test"]) >= keras_digits["accuracy"] - 0.005


@pytest.mark.slow
def test_inspect_takes_a_saved_model(keras_digits):
    from edgec import api

    model = api.inspect(str(keras_digits["folder"] / "saved_model"))["model"]
    assert [(i["name"], i["shape"]) for i in model["inputs"]] == [("image", ["batch", 8, 8, 1])]
    assert model["operators"]["Conv"] == 2 and model["parameters"] > 5000


@pytest.mark.slow
def test_layout_rule_removes_the_transpose_before_a_keras_flatten(keras_digits):
    """tf2onnx keeps Transpose(NCHW->NHWC) before Flatten+Dense; permuting the Dense rows removes it."""
    import keras
    import onnx_ir as ir
    import onnxruntime as ort
    from edgec import frontends, passes
    from edgec.ir import InputSpec

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((6, 6, 3), name="image"),
                              keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Flatten(), keras.layers.Dense(5)])
    path = keras_digits["folder"] / "flatten.keras"
    model.save(path)
    graph = frontends.load(str(path), [InputSpec.parse("image:2,6,6,3")])
    _, report = passes.optimize(graph)
    assert report.ops_before["Transpose"] == 2
    assert report.ops_after["Transpose"] == 1  # the NHWC input's own, for the NCHW Conv
    x = np.random.default_rng(0).random((2, 6, 6, 3), dtype=np.float32)
    session = ort.InferenceSession(ir.serde.serialize_model(graph).SerializeToString())
    assert np.abs(session.run(None, {"image": x})[0] - model(x).numpy()).max() < 1e-5
