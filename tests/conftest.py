"""Shared fixtures: the real models, their data, and a way to run the edgec CLI as a user does."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "models" / "digits"
MOBILENET = ROOT / "models" / "mobilenet_v2"
sys.path.insert(0, str(MOBILENET))
FULL = bool(os.environ.get("EDGEC_FULL"))
# The int8 choices a full MobileNetV2 build measures per target (calibration method, bias correction, scheme;
# some by timing), as the manifest's `replay` lines give them: tests about something else pass them instead of
# measuring again (an openvino-cpu build: 29 CPU-s instead of 112), and the artifact is byte-identical. The
# choices themselves are tested on the digits CNN (test_quantize.py, test_openvino.py, test_tflite.py).
MOBILENET_INT8_CHOICES = {
    "onnxruntime": ("--calibration-method", "mean-minmax", "--bias-correction", "on",
                    "--int8-scheme", "u8s8-7bit-first"),
    "openvino-cpu": ("--calibration-method", "mean-minmax", "--bias-correction", "on", "--quantizer", "nncf",
                     "--int8-scheme", "s8-7bit-first"),
    "tflite-arm": ("--calibration-method", "mean-minmax", "--bias-correction", "on", "--int8-scheme", "full-int8"),
}


def pytest_collection_modifyitems(config, items):
    """`full` tests repeat what a cheaper test covers on a slower model or target: make test-full runs them."""
    if FULL:
        return
    leave_out = pytest.mark.skip(reason="make test-full (EDGEC_FULL=1) runs it: it repeats a cheaper test's class")
    for item in items:
        if "full" in item.keywords:
            item.add_marker(leave_out)


def digits_cnn_class():
    """models/digits/model.py's DigitsCNN, imported by path: a bare `import model` would find whichever
    model.py another test put on sys.path first (MobileNetV2's)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("digits_cnn_model", DIGITS / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.DigitsCNN


def edgec(*args, check: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `edgec ARGS` in a fresh process, exactly as a user would."""
    proc = subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"edgec {' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return proc


def harness(artifact: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(artifact / "run.py"), *map(str, args)], capture_output=True,
                          text=True, timeout=900)


def host_cpu_features() -> frozenset[str]:
    """This host's x86 instruction-set features as edgec's device probe reads them (none off x86): what a
    runtime's int8 kernels do can depend on them."""
    import platform

    from edgec.runners.device_probe import x86_features

    return frozenset(x86_features()) if platform.machine() in ("x86_64", "AMD64") else frozenset()


def manifest(artifact: Path) -> dict:
    return json.loads((artifact / "edgec.json").read_text())


def infer(artifact: Path, inputs: dict, tmp: Path) -> dict:
    """Run the artifact's own harness on `inputs` and return its outputs."""
    src, dst = tmp / "infer_in.npz", tmp / "infer_out.npz"
    np.savez(src, **inputs)
    proc = harness(artifact, "infer", "--inputs", src, "--outputs", dst)
    assert proc.returncode == 0, proc.stderr
    with np.load(dst) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def digits_model() -> Path:
    return DIGITS / "digits_cnn.onnx"


@pytest.fixture(scope="session")
def digits_data() -> dict:
    with np.load(DIGITS / "split.npz") as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="session")
def digits_accuracy() -> float:
    return json.loads((DIGITS / "metrics.json").read_text())["test_accuracy"]


@pytest.fixture(scope="session")
def digits_files(tmp_path_factory, digits_data) -> dict:
    """Calibration and evaluation .npz files keyed by the model's input name."""
    folder = tmp_path_factory.mktemp("digits-data")
    np.savez(folder / "calib.npz", input=digits_data["x_calib"])
    np.savez(folder / "eval.npz", input=digits_data["x_test"], labels=digits_data["y_test"])
    return {"calib": folder / "calib.npz", "eval": folder / "eval.npz"}


@pytest.fixture(scope="session")
def mobilenet_model() -> Path:
    path = MOBILENET / "mobilenet_v2.onnx"
    assert path.exists(), "run `make models` to fetch and export MobileNetV2"
    return path


@pytest.fixture(scope="session")
def photos() -> dict:
    from preprocess import load_photos

    x, names, logits = load_photos()
    return {"x": x, "names": names, "logits": logits}


@pytest.fixture(scope="session")
def mobilenet_files(tmp_path_factory, photos) -> dict:
    folder = tmp_path_factory.mktemp("mobilenet-data")
    np.savez(folder / "photos.npz", input=photos["x"])
    return {"calib": MOBILENET / "calibration.npz", "photos": folder / "photos.npz"}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(logits.argmax(1) == labels))
