"""The onnxruntime target end to end: build, the artifact's harness, accuracy, determinism."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import accuracy, edgec, harness, infer, manifest


@pytest.fixture(scope="module")
def digits_artifact(tmp_path_factory, digits_model):
    out = tmp_path_factory.mktemp("ort") / "digits"
    edgec("build", "--target", "onnxruntime", digits_model, "-o", out, check=True)
    return out


def test_artifact_layout_and_manifest(digits_artifact, digits_model):
    names = {p.name for p in digits_artifact.iterdir()}
    assert {"edgec.json", "model.onnx", "samples", "run.py", "edgec_harness", "requirements.txt",
            "README.md"} <= names
    m = manifest(digits_artifact)
    assert m["target"]["name"] == "onnxruntime" and m["precision"] == "fp32"
    assert m["inputs"][0]["name"] == "input" and m["outputs"][0]["shape"] == ["batch", 10]
    assert len(m["source"]["sha256"]) == 64 and m["model"]["files"]["model.onnx"]["bytes"] > 50_000
    assert m["verification"]["result"]["passed"] is True
    assert m["runtime"]["requirement"] in (digits_artifact / "requirements.txt").read_text()


def test_the_built_manifest_round_trips_through_its_types_unchanged(digits_artifact):
    from edgec.package.harness.manifest import Manifest, dumps, loads

    text = (digits_artifact / "edgec.json").read_text()
    manifest = loads(text)
    assert isinstance(manifest, Manifest) and dumps(manifest) == text
    assert manifest.inputs[0].batch_axis == 0 and manifest.samples.count == 8


def test_verify_passes_and_infer_matches_pytorch_accuracy(digits_artifact, digits_data, digits_accuracy, tmp_path):
    proc = edgec("verify", digits_artifact, "--json", tmp_path / "v.json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "v.json").read_text())
    assert report["passed"] and report["checks"]["reference"]["logits"]["measures"]["max_abs_err"] < 1e-4
    logits = infer(digits_artifact, {"input": digits_data["x_test"]}, tmp_path)["logits"]
    assert logits.shape == (450, 10)
    assert accuracy(logits, digits_data["y_test"]) == pytest.approx(digits_accuracy, abs=1e-9)


def test_bench_json_has_percentiles_and_throughput(digits_artifact, tmp_path):
    edgec("bench", digits_artifact, "--iters", "30", "--warmup", "3", "--json", tmp_path / "r.json", check=True)
    report = json.loads((tmp_path / "r.json").read_text())
    for key in ("mean_ms", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "std_ms", "throughput_per_s",
                "load_time_ms", "peak_rss_mb"):
        assert report[key] > 0, key
    assert report["min_ms"] <= report["p50_ms"] <= report["p90_ms"] <= report["p99_ms"] <= report["max_ms"]
    assert report["iters"] == 30


def test_profile_reports_per_operator_times(digits_artifact, tmp_path):
    edgec("profile", digits_artifact, "--json", tmp_path / "p.json", check=True)
    layers = json.loads((tmp_path / "p.json").read_text())["layers"]
    ops = {layer["op"] for layer in layers}
    assert ops & {"Conv", "FusedConv"} and all(layer["ms"] >= 0 for layer in layers)


@pytest.mark.parametrize("target, precision", [("onnxruntime", "fp32"), ("tflite-arm", "int8")])
def test_builds_are_byte_identical(tmp_path, digits_model, digits_files, target, precision):
    """Every file of two builds is the same; the manifest differs only in when and how long it was built."""
    for name in ("a", "b"):
        edgec("build", digits_model, "-t", target, "--precision", precision, "--calibration", digits_files["calib"],
              "-o", tmp_path / name, check=True)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        if rel.name != "edgec.json":
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    first, second = manifest(tmp_path / "a"), manifest(tmp_path / "b")
    for m in (first, second):
        m.pop("created"), m["build"].pop("seconds")
    assert first == second


def test_harness_refuses_a_tampered_model(tmp_path, digits_model):
    out = tmp_path / "a"
    edgec("build", digits_model, "-o", out, check=True)
    data = bytearray((out / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (out / "model.onnx").write_bytes(bytes(data))
    proc = harness(out, "verify")
    assert proc.returncode == 4 and "sha256" in proc.stderr
    assert edgec("verify", out).returncode == 4


def test_input_shape_fixes_batch(tmp_path, digits_model):
    out = tmp_path / "b4"
    edgec("build", digits_model, "-o", out, "--input-shape", "input:4,1,8,8", check=True)
    assert manifest(out)["inputs"][0]["shape"] == [4, 1, 8, 8]
    assert harness(out, "verify").returncode == 0


@pytest.mark.slow
def test_mobilenet_matches_pytorch_on_every_photo(tmp_path, mobilenet_model, photos):
    out = tmp_path / "mnv2"
    edgec("build", mobilenet_model, "-o", out, check=True)
    logits = infer(out, {"input": photos["x"]}, tmp_path)["logits"]
    assert np.array_equal(logits.argmax(1), photos["logits"].argmax(1))
    assert np.abs(logits - photos["logits"]).max() <= 1e-4


def test_inspect_reports_ops_params_macs_and_coverage(digits_model, mobilenet_model):
    data = json.loads(edgec("inspect", digits_model, "--json", "-", check=True).stdout)
    model = data["model"]
    assert 24_000 < model["parameters"] < 25_000  # 24,058 trainable + BatchNorm statistics
    assert model["operators"]["Conv"] == 3 and model["operators"]["BatchNormalization"] == 3
    assert model["macs"]["total"] > 0 and "Conv" in model["macs"]["by_op"]
    assert data["unsupported_by_target"]["onnxruntime"] == []
    mnv2 = json.loads(edgec("inspect", mobilenet_model, "--input-shape", "input:1,3,224,224", "--json", "-",
                            check=True).stdout)["model"]
    assert mnv2["macs"]["complete"] and 290e6 < mnv2["macs"]["total"] < 320e6  # MobileNetV2: ~300 MMACs
    assert 3.4e6 < mnv2["parameters"] < 3.6e6


def test_build_takes_the_callers_samples_and_can_skip_host_verification(digits_model, digits_data, tmp_path):
    """The hooks the ONNX node suite builds with: its inputs as the samples, its own harness run."""
    from edgec import api
    from edgec.package.harness import interface

    rows = digits_data["x_test"][:3]
    interface.save(tmp_path / "samples.npz", {"input": rows})
    result = api.build(str(digits_model), "onnxruntime", tmp_path / "a", samples=tmp_path / "samples.npz",
                       host_verify=False)
    assert result.manifest.verification.result is None and result.path == tmp_path / "a"
    assert not (tmp_path / "a" / "samples" / "host.npz").exists()
    stored = interface.load(tmp_path / "a" / "samples" / "inputs.npz")["input"]  # stacked: one sample per run
    np.testing.assert_array_equal(stored, rows[:, None])
