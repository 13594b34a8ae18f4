"""The hostile-input catalogue: malformed models, hostile calibration data, odd CLI values, tampered
artifacts, bad harness inputs and crafted device strings.

Every case ends with its documented exit code (never 1, which means a bug in edgec) and, when refused,
one line and no traceback; no case leaves a staging folder or a half-written output behind. The CLI
runs in-process (click's runner) so that the catalogue stays fast; the harness runs as on a device.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import DIGITS
from malformed_models import CASES

ROOT = Path(__file__).resolve().parents[1]
MODEL = DIGITS / "digits_cnn.onnx"


def cli(*args, cwd: Path):
    """Run `edgec ARGS` in-process in `cwd`; return (exit code, non-empty lines of its output)."""
    from edgec.cli import main

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(previous)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def assert_outcome(code: int, lines: list[str], expected: set[int], folder: Path):
    assert code in expected and code != 1, (code, lines)
    assert not any("Traceback" in line for line in lines), lines
    if code in (2, 4) and lines and lines[-1].startswith("edgec: error:"):
        errors = [line for line in lines if line.startswith("edgec:")]
        assert len(errors) == 1, lines
    assert not [p for p in folder.rglob(".*.edgec-*")], "a staging folder was left behind"


# ---- models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_model_build_is_refused(case, tmp_path):
    if case == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads a file without read permission")
    source = CASES[case](tmp_path)
    code, lines = cli("build", source, "-t", "onnxruntime", "-o", tmp_path / "out", cwd=tmp_path)
    assert_outcome(code, lines, {2}, tmp_path)
    assert lines[-1].startswith("edgec: error:") and not (tmp_path / "out").exists()


def test_a_zero_size_input_is_valid_and_builds(tmp_path):
    """A dimension of 0 is legal ONNX (an empty axes list, an empty batch): not malformed."""
    from malformed_models import dim_zero

    code, lines = cli("build", dim_zero(tmp_path), "-t", "onnxruntime", "-o", tmp_path / "out", cwd=tmp_path)
    assert code == 0, lines


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_model_inspect_never_crashes(case, tmp_path):
    source = CASES[case](tmp_path)
    code, lines = cli("inspect", source, cwd=tmp_path)
    assert_outcome(code, lines, {0, 2}, tmp_path)


# ---- calibration data --------------------------------------------------------------------------


def _digits_calibration(count: int = 200) -> np.ndarray:
    with np.load(DIGITS / "calibration.npz") as data:
        return data[data.files[0]][:count].astype(np.float32)


def _with(value, index, what):
    value = value.copy()
    value.flat[index] = what
    return value


def _lying_npz(path: Path) -> None:
    """An .npz whose header claims six million samples but holds a few bytes."""
    import zipfile

    header = {"descr": "<f4", "fortran_order": False, "shape": (6_000_000, 1, 8, 8)}
    import io

    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("input.npy", buffer.getvalue() + b"\0" * 1024)


def _calibration_case(case: str, folder: Path) -> Path:
    x = _digits_calibration()
    path = folder / f"{case}.npz"
    arrays = {
        "nan": {"input": _with(x, 5000, np.nan)},
        "one_inf_in_200": {"input": _with(x, 64 * 150, np.inf)},
        "zero_samples": {"input": x[:0]},
        "complex": {"input": x.astype(np.complex64)},
        "strings": {"input": x.astype(str)},
        "two_unknown_keys": {"a": x, "b": x},
        "wrong_shape": {"input": np.zeros((10, 3, 8, 8), np.float32)},
    }
    if case in arrays:
        np.savez(path, **arrays[case])
    elif case == "object_pickle":
        np.savez(path, input=np.array([{"a": 1}], dtype=object))
    elif case == "pickled_npy":
        path = folder / "pickled.npy"
        np.save(path, np.array([object()], dtype=object), allow_pickle=True)
    elif case == "garbage":
        path.write_bytes(os.urandom(2048))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        np.savez(path, input=x)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif case == "lying_header":
        _lying_npz(path)
    elif case == "missing":
        path = folder / "nowhere.npz"
    elif case == "corrupt_image":
        path = folder / "images"
        path.mkdir()
        (path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    elif case == "no_images":
        path = folder / "empty-folder"
        path.mkdir()
    return path


CALIBRATION_CASES = ["nan", "one_inf_in_200", "zero_samples", "complex", "strings", "two_unknown_keys", "wrong_shape",
                     "object_pickle", "pickled_npy", "garbage", "empty", "truncated", "lying_header", "missing",
                     "corrupt_image", "no_images"]


@pytest.mark.parametrize("case", CALIBRATION_CASES)
def test_hostile_calibration_is_refused(case, tmp_path):
    calibration = _calibration_case(case, tmp_path)
    code, lines = cli("build", MODEL, "-t", "onnxruntime", "--precision", "int8", "--calibration", calibration,
                      "-o", tmp_path / "out", cwd=tmp_path)
    assert_outcome(code, lines, {2}, tmp_path)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.unverified").exists()


# ---- command-line values -------------------------------------------------------------------------


CLI_CASES = {
    "conflicting_input_shapes": ["build", MODEL, "--input-shape", "input:1,1,8,8", "--input-shape", "input:2,1,8,8"],
    "zero_input_shape": ["build", MODEL, "--input-shape", "input:0,1,8,8"],
    "negative_input_shape": ["build", MODEL, "--input-shape", "input:-1,1,8,8"],
    "huge_batch": ["build", MODEL, "--input-shape", "input:100000000,1,8,8"],
    "empty_input_shape": ["build", MODEL, "--input-shape", "input:"],
    "unknown_precision": ["build", MODEL, "--precision", "int4"],
    "unknown_target": ["build", MODEL, "-t", "tpu-9000"],
    "negative_accuracy_drop": ["build", MODEL, "--max-accuracy-drop", "-1"],
    "negative_tune_trials": ["build", MODEL, "-t", "tvm-x86", "--tune-trials", "-3"],
    "bad_const_input": ["build", MODEL, "--const-input", "=3"],
    "const_input_unknown": ["build", MODEL, "--const-input", "nope=3"],
    "option_not_taken": ["build", MODEL, "--io-layout", "nhwc"],
    "weights_for_onnx": ["build", MODEL, "--weights", MODEL],
    "inspect_missing": ["inspect", "nowhere.onnx"],
    "verify_missing": ["verify", "nowhere"],
    "verify_not_an_artifact": ["verify", "."],
    "bench_not_an_artifact": ["bench", "."],
    "unknown_device_setup": ["device", "setup", "rpi9-emulated"],
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_odd_command_line_values_are_refused(case, tmp_path):
    args = [*CLI_CASES[case], *(["-o", tmp_path / "out"] if CLI_CASES[case][0] == "build" else [])]
    code, lines = cli(*args, cwd=tmp_path)
    assert_outcome(code, lines, {2}, tmp_path)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("text", ["threads = 'four'", "precision = 3", "backend = ['onnxruntime']",
                                  "[options]\ntune_trials = 'many'", "this is not toml", "name = 'x'\nnope = 1"])
def test_target_files_are_type_checked(text, tmp_path):
    target = tmp_path / "board.toml"
    base = "backend = 'onnxruntime'\nprecision = 'fp32'\n"
    target.write_text(text if "backend" in text or "not toml" in text else base + text)
    code, lines = cli("build", MODEL, "-t", target, "-o", tmp_path / "out", cwd=tmp_path)
    assert_outcome(code, lines, {2}, tmp_path)


# ---- artifacts ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def artifact(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-artifact")
    code, lines = cli("build", MODEL, "-t", "onnxruntime", "-o", folder / "art", cwd=folder)
    assert code == 0, lines
    return folder / "art"


@pytest.fixture
def copy(artifact, tmp_path) -> Path:
    target = tmp_path / "art"
    shutil.copytree(artifact, target, symlinks=True)
    return target


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_manifest(art: Path, change) -> None:
    manifest = json.loads((art / "edgec.json").read_text())
    change(manifest)
    (art / "edgec.json").write_text(json.dumps(manifest))


TAMPERINGS = {
    "model_byte": (lambda a: _flip(a / "model.onnx"), 4),
    "run_py": (lambda a: (a / "run.py").write_text((a / "run.py").read_text() + "\nprint('x')\n"), 4),
    "adapter": (lambda a: (a / "edgec_harness/rt_onnxruntime.py").write_text("import os\n"), 4),
    "commands": (lambda a: _flip(a / "edgec_harness/commands.py"), 4),
    "sample_inputs": (lambda a: _flip(a / "samples/inputs.npz"), 4),
    "expected": (lambda a: _flip(a / "samples/expected.npz"), 4),
    "requirements": (lambda a: (a / "requirements.txt").write_text("evil==1.0\n"), 4),
    "readme": (lambda a: (a / "README.md").write_text("changed"), 4),
    "planted_module": (lambda a: (a / "json.py").write_text("raise SystemExit(0)\n"), 4),
    "planted_in_package": (lambda a: (a / "edgec_harness/numpy.py").write_text("x = 1\n"), 4),
    "planted_pycache": (lambda a: (a / "edgec_harness/__pycache__").mkdir() or
                        (a / "edgec_harness/__pycache__/commands.cpython-311.pyc").write_bytes(b"x"), 4),
    "deleted_sample": (lambda a: (a / "samples/inputs.npz").unlink(), 4),
    "model_symlink": (lambda a: (a / "model.onnx").unlink() or (a / "model.onnx").symlink_to("/etc/passwd"), 4),
    "no_file_list": (lambda a: _edit_manifest(a, lambda m: m.update(files={})), 4),
    "file_list_not_a_table": (lambda a: _edit_manifest(a, lambda m: m.update(files=[1, 2])), 2),
    "corrupt_manifest": (lambda a: (a / "edgec.json").write_text("{not json"), 2),
    "missing_manifest": (lambda a: (a / "edgec.json").unlink(), 2),
    "newer_schema": (lambda a: _edit_manifest(a, lambda m: m.update(schema_version=99)), 2),
    "manifest_wrong_types": (lambda a: _edit_manifest(a, lambda m: m.update(inputs="x")), 2),
}


@pytest.mark.parametrize("case", sorted(TAMPERINGS))
def test_tampered_artifacts_run_nothing(case, copy, tmp_path):
    tamper, expected = TAMPERINGS[case]
    tamper(copy)
    code, lines = cli("verify", copy, "--device", "local", cwd=tmp_path)
    assert_outcome(code, lines, {expected}, tmp_path)


def _keys(folder: Path) -> dict[str, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    paths = {}
    for name in ("builder", "stranger"):
        key = ed25519.Ed25519PrivateKey.generate()
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
        paths[name + ".pub"] = folder / f"{name}.pub"
        paths[name + ".pub"].write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
    return paths


SIGNED_CHANGES = ["model.onnx", "run.py", "edgec_harness/rt_onnxruntime.py", "samples/inputs.npz", "edgec.json",
                  "edgec.json.sig"]


@pytest.mark.parametrize("changed", [None, *SIGNED_CHANGES])
def test_a_signed_artifact_verifies_and_one_changed_byte_fails(changed, copy, tmp_path):
    keys = _keys(tmp_path)
    assert cli("sign", copy, "--key", keys["builder"], cwd=tmp_path)[0] == 0
    if changed:
        _flip(copy / changed)
    code, lines = cli("verify", copy, "--device", "local", "--trusted-key", keys["builder.pub"], cwd=tmp_path)
    assert_outcome(code, lines, {4 if changed else 0}, tmp_path)


@pytest.mark.parametrize("case", ["unsigned", "stranger", "private_as_public", "missing_key"])
def test_signatures_from_anyone_else_are_refused(case, copy, tmp_path):
    keys = _keys(tmp_path)
    if case != "unsigned":
        cli("sign", copy, "--key", keys["builder"], cwd=tmp_path)
    key = {"unsigned": keys["builder.pub"], "stranger": keys["stranger.pub"], "private_as_public": keys["builder"],
           "missing_key": tmp_path / "none.pub"}[case]
    code, lines = cli("bench", copy, "--device", "local", "--iters", "1", "--trusted-key", key, cwd=tmp_path)
    assert_outcome(code, lines, {2 if case in ("private_as_public", "missing_key") else 4}, tmp_path)


# ---- the harness on the device -------------------------------------------------------------------


def _harness(art: Path, *args):
    proc = subprocess.run([sys.executable, str(art / "run.py"), *map(str, args)], capture_output=True, text=True,
                          timeout=300, cwd=art.parent)
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.strip()]


def _harness_input(case: str, folder: Path) -> list:
    x = _digits_calibration(4)
    path = folder / f"{case}.npz"
    arrays = {"zero_d": {"input": np.float32(1.0)}, "zero_samples": {"input": x[:0]},
              "nan": {"input": _with(x, 3, np.nan)}, "complex": {"input": x.astype(np.complex64)},
              "wrong_name": {"image": x, "other": x}}
    if case in arrays:
        np.savez(path, **arrays[case])
    elif case == "pickled":
        np.savez(path, input=np.array([{"a": 1}], dtype=object))
    elif case == "garbage":
        path.write_bytes(os.urandom(512))
    elif case == "lying_header":
        _lying_npz(path)
    elif case == "missing":
        path = folder / "nowhere.npz"
    else:
        np.savez(path, input=x)
    outputs = folder / "no-such-folder" / "out.npz" if case == "unwritable_outputs" else folder / "out.npz"
    return ["infer", "--inputs", path, "--outputs", outputs]


HARNESS_CASES = ["zero_d", "zero_samples", "nan", "complex", "wrong_name", "pickled", "garbage", "lying_header",
                 "missing", "unwritable_outputs"]


@pytest.mark.parametrize("case", HARNESS_CASES)
def test_the_harness_refuses_bad_inputs_in_one_line(case, artifact, tmp_path):
    code, lines = _harness(artifact, *_harness_input(case, tmp_path))
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines


@pytest.mark.parametrize("args", [["bench", "--iters", "0"], ["bench", "--warmup", "-1"], ["profile", "--iters", "0"],
                                  ["verify", "--threads", "-1"], ["frobnicate"]])
def test_the_harness_refuses_bad_options(args, artifact):
    code, lines = _harness(artifact, *args)
    assert code == 2 and not any("Traceback" in line for line in lines), lines


@pytest.mark.parametrize("tamper", ["adapter", "commands", "sample_inputs", "planted_module", "planted_pycache",
                                    "no_file_list"])
def test_the_harness_repeats_the_integrity_check_on_the_device(tamper, copy):
    """A changed run.py checks nothing itself: edgec's own check (above) is what catches that."""
    TAMPERINGS[tamper][0](copy)
    code, lines = _harness(copy, "verify")
    assert code == 4 and len(lines) == 1, lines


# ---- device strings ------------------------------------------------------------------------------


@pytest.fixture
def fake_ssh(tmp_path, monkeypatch) -> Path:
    """ssh, scp and rsync on PATH that record their arguments and fail as an unreachable host does."""
    bin_dir, record = tmp_path / "bin", tmp_path / "ssh-calls"
    bin_dir.mkdir()
    for tool in ("ssh", "scp", "rsync"):
        script = bin_dir / tool
        script.write_text(f"#!/bin/sh\necho \"{tool} $*\" >> {record}\necho 'ssh: connect: refused' >&2\nexit 255\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return record


DEVICE_STRINGS = ["ssh://-oProxyCommand=touch MARK@host", "ssh://pi@-oProxyCommand=touch MARK",
                  "ssh://pi@host;touch MARK", "ssh://pi@$(touch MARK)", "ssh://`touch MARK`@host",
                  "ssh://pi@host name", "ssh://", "ssh://pi@", "ftp://pi@host", "local; touch MARK",
                  "-oProxyCommand=touch MARK", "ssh://pi@host:99999", "ssh://pi@host:port",
                  "ssh://-pi@host", "ssh://pi@-host"]


@pytest.mark.parametrize("device", DEVICE_STRINGS)
def test_crafted_device_strings_are_refused_and_run_nothing(device, artifact, fake_ssh, tmp_path):
    code, lines = cli("verify", artifact, "--device", device.replace("MARK", str(tmp_path / "MARK")), cwd=tmp_path)
    assert_outcome(code, lines, {2}, tmp_path)
    assert not (tmp_path / "MARK").exists() and not fake_ssh.exists()


def test_the_destination_always_follows_a_double_dash(artifact, fake_ssh, tmp_path):
    code, lines = cli("verify", artifact, "--device", "ssh://pi@good-host", cwd=tmp_path)
    assert_outcome(code, lines, {2}, tmp_path)
    for call in fake_ssh.read_text().splitlines():
        words = call.split()
        assert "--" in words and words.index("--") < next(i for i, w in enumerate(words) if "good-host" in w), call


def test_an_ssh_device_named_in_a_manifest_is_not_contacted(copy, fake_ssh, tmp_path):
    """A downloaded artifact cannot pick the machine edgec connects to."""
    _edit_manifest(copy, lambda m: m["target"].update(device="ssh://-oProxyCommand=touch MARK@x"))
    code, lines = cli("verify", copy, cwd=tmp_path)
    assert_outcome(code, lines, {2}, tmp_path)
    assert "--device" in lines[-1] and not fake_ssh.exists()


@pytest.mark.parametrize("case", ["cycle", "dim_1e9", "dims_overflow", "huge_initializer_claim"])
def test_resource_bombs_are_refused_before_any_allocation(case, tmp_path):
    """Measured in a fresh process: the peak memory of the refused build (ru_maxrss of its children)."""
    source = CASES[case](tmp_path)
    probe = ("import resource, subprocess, sys; p = subprocess.run([sys.executable, '-m', 'edgec', 'build', "
             f"{str(source)!r}, '-t', 'onnxruntime', '-o', {str(tmp_path / 'out')!r}], capture_output=True); "
             "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code, peak_kib = map(int, subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env,
                                             timeout=300, check=True).stdout.split())
    assert code == 2 and peak_kib < 300 * 1024, (code, peak_kib)


@pytest.mark.parametrize("target, precision, weights_file, share", [
    ("onnxruntime", "fp32", "model.onnx.data", 1.0), ("onnxruntime", "fp16", "model.onnx.data", 0.5),
    ("openvino-cpu", "fp32", "model.bin", 1.0)])
def test_a_model_with_external_data_builds_and_verifies(tmp_path, target, precision, weights_file, share):
    """The trained digits CNN with every weight in a .bin beside it: the reference run, the lowering and the
    artifact all keep reading the weights from the model's own folder, and the artifact holds them once, beside
    its model (fp16: half of them, no stale float copy)."""
    import onnx

    folder = tmp_path / "model"
    folder.mkdir()
    onnx.save(onnx.load(MODEL), folder / "digits.onnx", save_as_external_data=True, location="digits.bin",
              size_threshold=0)
    code, lines = cli("build", folder / "digits.onnx", "-t", target, "--precision", precision, "-o", tmp_path / "out",
                      cwd=tmp_path)
    assert code == 0, lines
    manifest = json.loads((tmp_path / "out" / "edgec.json").read_text())
    assert manifest["verification"]["result"]["passed"] and weights_file in manifest["files"]
    weights = (folder / "digits.bin").stat().st_size
    stored = (tmp_path / "out" / weights_file).stat().st_size
    assert 0.9 * share * weights < stored < 1.1 * share * weights, (stored, weights)
