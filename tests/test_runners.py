"""Runners: emulated Raspberry Pi (qemu + aarch64 sysroot), device names (ssh: tests/test_ssh.py).

The emulated tests are `slow`: the first run builds the sysroot and fetches aarch64 wheels
(cached under $EDGEC_CACHE or ~/.cache/edgec, about 15 s for the sysroot plus the wheel
downloads); warm, each emulated harness run costs a few seconds of qemu time.
"""
from __future__ import annotations

import platform
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgec.errors import DeviceError, InputError
from edgec.runners import HarnessCall, get_runner
from edgec.runners.devices import DEVICES
from edgec.runners.emulated import EMULATION_NOTE, EmulatedRunner
from edgec.runners.wheels import requirement_lines

can_emulate = pytest.mark.skipif(
    platform.system() != "Linux"
    or not (shutil.which("qemu-aarch64-static") or shutil.which("apt-get")),
    reason="emulation needs Linux with qemu-user-static (or apt-get to install it)",
)

NUMPY_HARNESS = textwrap.dedent(
    '''
    import argparse, json, platform
    import numpy as np

    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("--inputs")
    p.add_argument("--outputs")
    p.add_argument("--json")
    a = p.parse_args()
    x = np.load(a.inputs)["x"] if a.inputs else np.arange(96, dtype=np.float64).reshape(8, 12) / 4.0
    y = x @ x.T
    cpu_part = [l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("CPU part")]
    if a.outputs:
        np.savez(a.outputs, y=y)
    with open(a.json, "w") as f:
        json.dump({"machine": platform.machine(), "sum": float(y.sum()),
                   "cpu_part": cpu_part[0] if cpu_part else None, "cpus": len(cpu_part),
                   "numpy": np.__version__}, f)
    '''
)

LITERT_HARNESS = textwrap.dedent(
    '''
    import argparse, json, platform
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    p = argparse.ArgumentParser()
    p.add_argument("cmd")
    p.add_argument("--json")
    a = p.parse_args()
    it = Interpreter(model_path="add.tflite", num_threads=2)
    it.allocate_tensors()
    ins = it.get_input_details()
    it.set_tensor(ins[0]["index"], np.array([[1, 2, 3, 4]], np.float32))
    it.set_tensor(ins[1]["index"], np.array([[10, 20, 30, 40]], np.float32))
    it.invoke()
    out = it.get_tensor(it.get_output_details()[0]["index"])
    with open(a.json, "w") as f:
        json.dump({"machine": platform.machine(), "out": out.ravel().tolist()}, f)
    '''
)


def make_artifact(folder: Path, harness: str, requirements: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.py").write_text(harness)
    (folder / "requirements.txt").write_text("\n".join(requirements) + "\n")
    return folder


def add_tflite(path: Path) -> None:
    """A one-op .tflite (ADD of two float32 [1,4] tensors) written with the flatbuffer schema."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    model = s.ModelT()
    model.version = 3
    model.buffers = [s.BufferT() for _ in range(4)]
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    code.version = 1
    model.operatorCodes = [code]
    tensors = []
    for i, name in enumerate(["a", "b", "out"]):
        t = s.TensorT()
        t.shape = [1, 4]
        t.type = s.TensorType.FLOAT32
        t.buffer = i + 1
        t.name = name
        tensors.append(t)
    op = s.OperatorT()
    op.opcodeIndex = 0
    op.inputs, op.outputs = [0, 1], [2]
    op.builtinOptionsType = s.BuiltinOptions.AddOptions
    op.builtinOptions = s.AddOptionsT()
    sub = s.SubGraphT()
    sub.tensors, sub.inputs, sub.outputs, sub.operators = tensors, [0, 1], [2], [op]
    model.subgraphs = [sub]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))


# ------------------------------------------------------------------ fast tests


def test_unknown_device_lists_known_ones():
    with pytest.raises(DeviceError) as err:
        EmulatedRunner("rpi3-emulated")
    assert "rpi4-emulated" in str(err.value) and "rpi5-emulated" in str(err.value)
    with pytest.raises(DeviceError):
        get_runner("rpi9-emulated")
    with pytest.raises(DeviceError, match="unknown device"):
        get_runner("jetson")


def test_device_table_matches_the_boards():
    pi4, pi5 = DEVICES["rpi4-emulated"], DEVICES["rpi5-emulated"]
    assert (pi4.qemu_cpu, pi5.qemu_cpu) == ("cortex-a72", "cortex-a76")
    info4 = pi4.cpuinfo()
    assert info4.count("processor\t:") == 4
    assert "CPU implementer\t: 0x41" in info4 and "CPU part\t: 0xd08" in info4
    assert "Features\t: fp asimd evtstrm crc32 cpuid\n" in info4
    assert "CPU part\t: 0xd0b" in pi5.cpuinfo() and "asimddp" in pi5.features
    assert (pi4.midr_el1, pi5.midr_el1) == ("0x00000000410fd083", "0x00000000414fd0b1")


def test_local_runner_places_files_and_refuses_missing_inputs(tmp_path, monkeypatch):
    """Relative paths are the caller's, the harness runs in the artifact folder, outputs' folders are made."""
    artifact = make_artifact(tmp_path / "artifact", NUMPY_HARNESS, ["numpy>=1.24"])
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "in.npz", x=np.eye(4))
    call = HarnessCall("infer", inputs={"--inputs": Path("in.npz")}, outputs={"--outputs": Path("out/y.npz")})
    result = get_runner("local").run_harness(artifact, call, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.report["sum"] == 4.0 and not result.emulated and result.device == "local"
    np.testing.assert_array_equal(np.load(tmp_path / "out/y.npz")["y"], np.eye(4))
    with pytest.raises(InputError, match="does not exist"):
        get_runner("local").run_harness(artifact, HarnessCall("infer", inputs={"--inputs": Path("nope.npz")}))
    with pytest.raises(DeviceError, match="no run.py"):
        get_runner("local").run_harness(tmp_path, HarnessCall("verify"))


def test_a_harness_past_its_time_is_a_one_line_device_error(tmp_path):
    artifact = make_artifact(tmp_path / "artifact", "import time; time.sleep(30)\n", [])
    with pytest.raises(DeviceError, match="did not finish within 1 s on local"):
        get_runner("local").run_harness(artifact, HarnessCall("verify"), timeout=1)


def test_requirement_lines_are_normalised(tmp_path):
    (tmp_path / "requirements.txt").write_text("# runtime\nonnxruntime==1.32.0  # pinned\n\nnumpy>=1.24\nnumpy>=1.24\n")
    assert requirement_lines(tmp_path) == ["numpy>=1.24", "onnxruntime==1.32.0"]


# ------------------------------------------------------------------ emulated (slow)


@pytest.mark.slow
@can_emulate
@pytest.mark.parametrize("device,part", [("rpi4-emulated", "0xd08"), ("rpi5-emulated", "0xd0b")])
def test_numpy_runs_on_emulated_pi(tmp_path, monkeypatch, device, part):
    artifact = make_artifact(tmp_path / "artifact", NUMPY_HARNESS, ["numpy>=1.24"])
    monkeypatch.chdir(tmp_path)  # relative --inputs/--outputs paths are the caller's, not the artifact's
    x = np.arange(96, dtype=np.float64).reshape(8, 12) / 4.0
    np.savez(tmp_path / "in.npz", x=x)
    call = HarnessCall("infer", inputs={"--inputs": Path("in.npz")}, outputs={"--outputs": Path("out/y.npz")})
    result = get_runner(device).run_harness(artifact, call, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.emulated and result.device == device
    report = result.report
    assert report["machine"] == "aarch64" != platform.machine()
    assert (report["cpu_part"], report["cpus"]) == (part, 4)
    assert report["sum"] == pytest.approx(float((x @ x.T).sum()), rel=1e-12)
    np.testing.assert_allclose(np.load(tmp_path / "out/y.npz")["y"], x @ x.T, rtol=1e-12)
    assert result.note == EMULATION_NOTE and "not how fast" in result.note


@pytest.mark.slow
@can_emulate
def test_litert_interpreter_starts_under_emulation(tmp_path):
    """LiteRT segfaults at interpreter creation on the host's x86 cpuinfo: the Pi's must be served."""
    pytest.importorskip("ai_edge_litert")
    artifact = make_artifact(tmp_path / "artifact", LITERT_HARNESS, ["ai-edge-litert==2.3.0", "numpy>=1.24"])
    add_tflite(artifact / "add.tflite")
    result = EmulatedRunner("rpi4-emulated").run_harness(artifact, HarnessCall("verify"), timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.report["machine"] == "aarch64"
    assert result.report["out"] == [11.0, 22.0, 33.0, 44.0]


def test_missing_qemu_without_apt_says_what_to_install(monkeypatch):
    from edgec import system
    from edgec.runners import sysroot

    monkeypatch.setattr(system.shutil, "which", lambda name: None)
    with pytest.raises(DeviceError, match="apt-get install -y qemu-user-static"):
        sysroot.qemu_binary()
