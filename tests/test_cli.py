"""The command line as a user meets it: bad input gets one line and exit 2, --help stays light."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import edgec, manifest


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("edgec: error:") and "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


def test_help_imports_no_heavy_module():
    code = ("import sys, edgec.cli; heavy = [m for m in ('numpy', 'onnx', 'onnx_ir', 'onnxruntime', 'rich', "
            "'torch', 'tensorflow', 'openvino', 'tvm') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    assert edgec("--help", check=True).stdout.startswith("Usage: edgec")


@pytest.fixture
def truncated(tmp_path, digits_model):
    path = tmp_path / "truncated.onnx"
    path.write_bytes(digits_model.read_bytes()[: digits_model.stat().st_size // 3])
    return path


@pytest.fixture
def not_onnx(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_text("definitely not protobuf\n" * 20)
    return path


@pytest.mark.parametrize("case", ["missing", "not_onnx", "truncated", "unknown_target", "bad_shape", "unknown_input"])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(case, tmp_path, digits_model, request):
    source = {"missing": tmp_path / "nope.onnx", "not_onnx": None, "truncated": None}.get(case, digits_model)
    if case in ("not_onnx", "truncated"):
        source = request.getfixturevalue(case)
    extra = {"unknown_target": ["--target", "tflite-moon"], "bad_shape": ["--input-shape", "input:1,x,8"],
             "unknown_input": ["--input-shape", "image:1,1,8,8"]}.get(case, [])
    out = tmp_path / "artifact"
    proc = edgec("build", source, "-o", out, *extra)
    words = {"missing": ["not found"], "unknown_target": ["unknown target", "edgec targets"],
             "bad_shape": ["malformed --input-shape"], "unknown_input": ["image", "input"],
             "not_onnx": ["ONNX"], "truncated": ["ONNX"]}[case]
    assert_one_line_error(proc, *words)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".artifact")]


def test_existing_output_needs_force(tmp_path, digits_model):
    out = tmp_path / "artifact"
    edgec("build", digits_model, "-o", out, check=True)
    (out / "stale.txt").write_text("from an older build")
    assert_one_line_error(edgec("build", digits_model, "-o", out), "already exists", "--force")
    assert (out / "stale.txt").exists()
    edgec("build", digits_model, "-o", out, "--force", check=True)
    assert (out / "edgec.json").exists() and not (out / "stale.txt").exists()


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_shows_traceback_before_or_after_the_command(tmp_path, where):
    args = ["build", tmp_path / "nope.onnx", "-o", tmp_path / "o"]
    proc = edgec(*(["--debug", *args] if where == "before" else [*args, "--debug"]))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_an_option_the_target_does_not_take_is_refused(tmp_path, digits_model):
    proc = edgec("build", "-t", "onnxruntime", digits_model, "--io-layout", "nhwc", "-o", tmp_path / "o")
    assert_one_line_error(proc, "target onnxruntime does not take --io-layout", "targets that take it: tflite-arm")
    assert not (tmp_path / "o").exists()


def test_library_noise_only_with_verbose(tmp_path, digits_model, digits_files):
    """onnxruntime's quantizer warns about pre-processing through the root logger: noise to a user."""
    args = ["build", digits_model, "--precision", "int8", "--calibration", digits_files["calib"]]
    quiet = edgec(*args, "-o", tmp_path / "quiet", check=True)
    assert "pre-processing" not in quiet.stderr and "calibrating int8 ranges" in quiet.stderr
    loud = edgec(*args, "-o", tmp_path / "loud", "--verbose", check=True)
    assert "pre-processing" in loud.stderr


def test_an_unfaithful_build_goes_to_unverified_and_exits_3(tmp_path, digits_model):
    """The real build with a limit no fp16 model meets: nothing at OUT, the artifact in OUT.unverified/, whose
    report names the failing output, its measure and the limit."""
    out = tmp_path / "fp16"
    proc = edgec("build", digits_model, "--precision", "fp16", "--tolerance", "logits.max_abs_err=1e-9", "-o", out)
    assert proc.returncode == 3, proc.stderr
    assert not out.exists() and (tmp_path / "fp16.unverified" / "edgec.json").exists()
    assert "fp16.unverified" in proc.stderr
    check = manifest(tmp_path / "fp16.unverified")["verification"]["result"]["checks"]["reference"]["logits"]
    assert not check["passed"] and check["detail"].startswith("max_abs_err ") and "(limit 1e-09)" in check["detail"]
    assert check["measures"]["top1_agreement"] == 1.0  # the logits' own measure, taken and passed
    verify = edgec("verify", tmp_path / "fp16.unverified", "--json", tmp_path / "verify.json")
    assert verify.returncode == 3 and "FAIL logits vs reference: logits: max abs err" in json.loads(
        (tmp_path / "verify.json").read_text())["output"]


def test_verify_of_non_artifact_and_unknown_device(tmp_path, digits_model):
    assert_one_line_error(edgec("verify", tmp_path), "not an edgec artifact")
    out = tmp_path / "a"
    edgec("build", digits_model, "-o", out, check=True)
    assert_one_line_error(edgec("verify", out, "--device", "toaster"), "unknown device")


def test_a_manifest_from_a_newer_edgec_is_refused_in_one_line(tmp_path, digits_model):
    import json

    from conftest import harness

    out = tmp_path / "a"
    edgec("build", digits_model, "-o", out, check=True)
    m = json.loads((out / "edgec.json").read_text())
    m["schema_version"] += 1
    (out / "edgec.json").write_text(json.dumps(m))
    assert_one_line_error(edgec("verify", out), "newer than")
    proc = harness(out, "verify")
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "newer than" in proc.stderr


def test_targets_lists_bundled_targets_as_json():
    import json

    data = json.loads(edgec("targets", "--json", "-", check=True).stdout)
    names = {t["name"] for t in data["targets"]}
    assert "onnxruntime" in names
    assert all(t["backend"] for t in data["targets"])
    # the operators each target claims: the ONNX node suite holds it to them
    claims = {t["name"]: set(t["operators"]) for t in data["targets"]}
    from edgec.backends.tflite import ops

    # its kernels, and the shape queries its static shapes fold into constants
    assert claims["tflite-arm"] == set(ops.TABLE) | {"Shape", "Size"}
    assert {"Conv", "LSTM", "QuantizeLinear"} <= claims["onnxruntime"]
    assert "Conv" in claims["tvm-x86"] and "QuantizeLinear" not in claims["tvm-x86"]
