"""Real devices over ssh, on a loopback board: Debian's sshd on a free port with throwaway keys.

The aarch64 device's Python is the emulated Raspberry Pi 4's CPython (a qemu wrapper script on
the board), so the whole ssh path runs an aarch64 harness with a folder of aarch64 wheels; a
second device uses the host's own Python and a venv made on the device by pip. The server is
stopped at the end of the module. Slow: the first run fetches wheels and makes a venv.
"""
from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import edgec
from edgec import api
from edgec.errors import DeviceError, InputError, UnsupportedError
from edgec.runners import DeviceSpec, HarnessCall, SshOptions, discovery, get_runner
from edgec.runners.ssh import parse_ssh_url
from edgec.targets import load_target
from ssh_board import LoopbackBoard, free_port, sshd_binary
from test_cli import assert_one_line_error

HOST_PYTHON = "/usr/bin/python3"  # a system Python that has venv and ensurepip (Debian's python3-venv)
needs_board = pytest.mark.skipif(platform.system() != "Linux" or not shutil.which("ssh")
                                 or not shutil.which("qemu-aarch64-static") and not shutil.which("apt-get"),
                                 reason="needs Linux, the OpenSSH client and qemu-user-static (or apt-get)")


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    sshd = sshd_binary()
    if sshd is None:
        pytest.skip("sshd is missing and cannot be installed: apt-get install openssh-server")
    board = LoopbackBoard(tmp_path_factory.mktemp("board")).start(sshd)
    try:
        yield board
    finally:
        board.stop()


def ssh_options(board, **overrides) -> SshOptions:
    return SshOptions(**{"identity": board.user_key, "known_hosts": board.known_hosts, **overrides})


@pytest.fixture(scope="module")
def aarch64(board) -> DeviceSpec:
    return DeviceSpec(board.url("pi4"), "pi4-over-ssh",
                      ssh_options(board, python=str(board.emulated_python("rpi4-emulated"))))


@pytest.fixture(scope="module")
def host_device(board) -> DeviceSpec:
    if not Path(HOST_PYTHON).exists():
        pytest.skip(f"{HOST_PYTHON} is missing")
    return DeviceSpec(board.url("host"), "host-python-over-ssh", ssh_options(board, python=HOST_PYTHON))


@pytest.fixture(scope="module")
def digits_int8(tmp_path_factory, digits_model, digits_files) -> Path:
    out = tmp_path_factory.mktemp("ssh-artifacts") / "digits-int8"
    edgec("build", digits_model, "--target", "tflite-arm", "--precision", "int8", "--calibration",
          digits_files["calib"], "-o", out, check=True)
    return out


# ------------------------------------------------------------------ no server needed


def test_device_urls_are_plain_names_or_refused():
    address = parse_ssh_url("ssh://pi@10.0.0.5:2222/home/pi/edgec")
    assert (address.destination, address.port, address.remote_dir) == ("pi@10.0.0.5", 2222, "/home/pi/edgec")
    assert parse_ssh_url("ssh://raspberrypi.local").remote_dir == ".edgec"
    for bad in ("ssh://", "ssh://-oProxyCommand=x@host", "ssh://pi@host;reboot", "ssh://pi@host/$(reboot)",
                "ssh://pi@-host", "ssh://pi@host:99999", "ssh://pi@host/a b", "ssh://pi@host/~/x"):
        with pytest.raises(InputError, match="is not an ssh device"):
            parse_ssh_url(bad)


def test_injection_in_the_device_string_runs_nothing(tmp_path, digits_int8):
    marker = tmp_path / "ran"
    devices = [f"ssh://-oProxyCommand=touch {marker}@x", f"ssh://root@host;touch {marker}",
               f"ssh://root@127.0.0.1/$(touch {marker})"]
    for device in devices:
        assert_one_line_error(edgec("device", "probe", device), "is not an ssh device")
    assert_one_line_error(edgec("verify", digits_int8, "--device", devices[0]), "is not an ssh device")
    assert not marker.exists()


def test_fleet_file_names_devices_and_refuses_unknown_keys(tmp_path):
    from edgec.runners.fleet import device_specs, load_fleet

    fleet = tmp_path / "fleet.toml"
    fleet.write_text('[[device]]\nname = "pi"\nurl = "ssh://pi@10.0.0.7"\nidentity = "~/.ssh/id_pi"\n\n'
                     '[[device]]\nurl = "rpi5-emulated"\n')
    defaults = SshOptions(python="/opt/py/bin/python3", keep_remote=True)
    pi, emulated = load_fleet(fleet, defaults)
    assert (pi.label, pi.ssh.identity, pi.ssh.python, pi.ssh.keep_remote) == (
        "pi", Path("~/.ssh/id_pi").expanduser(), "/opt/py/bin/python3", True)
    assert emulated.label == "rpi5-emulated" and emulated.ssh == defaults
    assert [d.url for d in device_specs(("local",), str(fleet), defaults)] == ["local", pi.url, emulated.url]
    fleet.write_text('[[device]]\nurl = "ssh://pi@x"\npasword = "x"\n')
    with pytest.raises(InputError, match="unknown keys pasword"):
        load_fleet(fleet)
    fleet.write_text('[[device]]\nname = "no url"\n')
    with pytest.raises(InputError, match="has no url"):
        load_fleet(fleet)


@pytest.mark.slow
def test_probe_reads_the_emulated_cpus_features():
    """HWCAP from qemu's emulated CPU: the Cortex-A76 has fp16 and dotprod, the Cortex-A72 neither."""
    pi4, pi5, local = (api.probe(d) for d in ("rpi4-emulated", "rpi5-emulated", "local"))
    assert pi4["arch"] == pi5["arch"] == "aarch64" and pi4["cores"] == pi5["cores"] == 4
    assert "neon" in pi4["features"] and {"fp16", "dotprod"}.isdisjoint(pi4["features"])
    assert {"neon", "fp16", "dotprod"} <= set(pi5["features"]) and "i8mm" not in pi5["features"]
    assert "Cortex-A72" in pi4["cpu"] and "Cortex-A76" in pi5["cpu"]
    assert pi4["suggested_target"] == pi5["suggested_target"] == "tflite-arm"
    assert local["arch"] == platform.machine() and local["python"] == platform.python_version()
    assert "numpy" in local["runtimes"] and local["venv"]
    # what the features decide: a Cortex-A76 build is refused on the A72, int8 LiteRT runs there with a warning
    pi4_profile = get_runner("rpi4-emulated").probe()
    with pytest.raises(UnsupportedError, match="fp16, dotprod, which rpi4-emulated .* build for tvm-rpi4$"):
        discovery.check_artifact(pi4_profile, load_target("tvm-rpi5"), "fp32")
    assert discovery.check_artifact(pi4_profile, load_target("tvm-rpi4"), "fp32") == []
    [warning] = discovery.check_artifact(pi4_profile, load_target("tflite-arm"), "int8")
    assert "lacks dotprod, i8mm" in warning


# ------------------------------------------------------------------ over ssh (slow)


@pytest.mark.slow
@needs_board
def test_verify_infer_bench_and_a_fleet_over_ssh(tmp_path, board, aarch64, host_device, digits_int8):
    host = np.load(digits_int8 / "samples/host.npz")

    report = api.verify(digits_int8, aarch64)
    assert report["passed"] and report["device"] == aarch64.url
    assert "set up the wheels folder" in report["note"] or "reused the wheels folder" in report["note"]

    call = HarnessCall("infer", inputs={"--inputs": digits_int8 / "samples/inputs.npz"},
                       outputs={"--outputs": tmp_path / "pi4.npz"})
    result, _ = api.run_harness(digits_int8, call, aarch64)
    assert result.returncode == 0 and "reused the wheels folder" in result.note and "no install" in result.note
    with np.load(tmp_path / "pi4.npz") as outputs:
        assert sorted(outputs.files) == sorted(host.files)
        for name in host.files:  # int8 arithmetic: the board computes exactly what the build host did
            np.testing.assert_array_equal(outputs[name], host[name])

    bench = api.bench(digits_int8, aarch64, warmup=1, iters=3)
    assert bench["run"]["machine"] == "aarch64" and bench["iters"] == 3 and bench["p50_ms"] > 0

    fleet = tmp_path / "fleet.toml"
    fleet.write_text("".join(
        f'[[device]]\nname = "{d.name}"\nurl = "{d.url}"\nidentity = "{d.ssh.identity}"\n'
        f'known_hosts = "{d.ssh.known_hosts}"\npython = "{d.ssh.python}"\n\n' for d in (aarch64, host_device)))
    proc = edgec("bench", digits_int8, "--fleet", fleet, "--warmup", "1", "--iters", "3", "--json", tmp_path / "f.json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "f.json").read_text())["devices"]
    assert [r["device"] for r in rows] == ["pi4-over-ssh", "host-python-over-ssh"]
    assert [r["report"]["run"]["machine"] for r in rows] == ["aarch64", platform.machine()]
    assert "venv" in rows[1]["report"]["note"]
    assert "host-python-over-ssh" in proc.stdout and "pi4-over-ssh" in proc.stdout

    again = api.verify(digits_int8, host_device)  # the second run on the host-Python device: the venv is reused
    assert again["passed"] and "reused the venv" in again["note"] and "no install" in again["note"]
    for folder in ("pi4", "host"):  # only the cached environments stay on the board
        assert {path.split("/")[0] for path in board.files(folder)} == {"envs"}


@pytest.mark.slow
@needs_board
def test_probe_over_ssh(board, aarch64):
    proc = edgec("device", "probe", aarch64.url, "--identity", board.user_key, "--known-hosts", board.known_hosts,
                 "--remote-python", aarch64.ssh.python, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    profile = json.loads(proc.stdout)
    assert profile["arch"] == "aarch64" and "Cortex-A72" in profile["cpu"] and not profile["emulated"]
    assert "neon" in profile["features"] and {"fp16", "dotprod"} <= set(profile["missing_features"])
    assert profile["suggested_target"] == "tflite-arm" and not profile["venv"]


@pytest.mark.slow
@needs_board
def test_ssh_failures_are_one_line_and_leave_nothing(tmp_path, board, digits_int8):
    empty_wheels = tmp_path / "no-wheels"
    empty_wheels.mkdir()
    keys = ["--identity", board.user_key, "--known-hosts", board.known_hosts]
    cases = {
        "unknown host key": (board.url("f1"), ["--identity", board.user_key, "--known-hosts",
                                               board.empty_known_hosts], "--accept-new-host-key"),
        "wrong key": (board.url("f2"), ["--identity", board.other_key, "--known-hosts", board.known_hosts],
                      "--identity KEY"),
        "refused port": (board.url("f3").replace(f":{board.port}/", f":{free_port()}/"), keys, "port is closed"),
        "no python": (board.url("f4"), [*keys, "--remote-python", "/nonexistent/python3"], "has no Python"),
        "install fails": (board.url("f5"), [*keys, "--remote-python", HOST_PYTHON, "--offline-wheels",
                                            empty_wheels], "installing the runtime"),
    }
    for case, (url, options, words) in cases.items():
        proc = edgec("verify", digits_int8, "--device", url, *options)
        assert_one_line_error(proc, words)
    for folder in ("f1", "f2", "f3", "f4", "f5"):
        assert board.files(folder) == [], folder
    assert board.empty_known_hosts.read_text() == ""  # strict: nothing was recorded without the flag
    with pytest.raises(DeviceError):
        api.probe(DeviceSpec(board.url("f6"), ssh=ssh_options(board, known_hosts=board.empty_known_hosts)))
    accepted = api.probe(DeviceSpec(board.url("f6"), ssh=ssh_options(board, known_hosts=board.empty_known_hosts,
                                                                      accept_new_host_key=True,
                                                                      python=HOST_PYTHON)))
    host_key = Path(f"{board.host_key}.pub").read_text().split()[1]
    assert accepted["arch"] == platform.machine() and host_key in board.empty_known_hosts.read_text()
