"""Run an artifact's harness on an emulated Raspberry Pi: qemu user mode plus an aarch64 sysroot.

The emulated Python sees the host's files wherever the sysroot does not shadow them, so the
artifact and its input and output files stay where they are. `QEMU_CPU` enforces the device's
instruction set (a dot-product kernel gets SIGILL on a Pi 4's cortex-a72, as on the board);
the runtime wheels are the official aarch64 wheels (wheels.py) on PYTHONPATH.

Timings under emulation prove that the artifact runs and computes the same numbers; they
say nothing about speed on the board (SIMD kernels are 100 to 500 times slower).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from edgec.runners import Placement, Runner, devices, sysroot
from edgec.runners.wheels import requirement_lines, wheels_for

EMULATION_NOTE = "emulated: these timings prove the artifact runs, not how fast the device is"


class EmulatedRunner(Runner):
    """Runs `python run.py ARGS` in an artifact folder on an emulated Raspberry Pi."""

    emulated = True
    note = EMULATION_NOTE
    timeout_hint = " (emulation is 100 to 500 times slower than the board)"

    def __init__(self, device: str):
        self.device = devices.device(device)
        self.name = self.device.name

    def _execute(self, placement: Placement, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        wheels = wheels_for(requirement_lines(Path(placement.artifact)))
        return self._python(["-P", "run.py", *args], timeout, wheels, cwd=placement.artifact)  # -P: not its own folder first

    def _run_python_source(self, source: str, timeout: float) -> subprocess.CompletedProcess:
        return self._python(["-"], timeout, input=source)

    def _python(self, args: list[str], timeout: float, wheels: Path | None = None, **run) -> subprocess.CompletedProcess:
        """The emulated board's Python with `args`, the wheels folder on its path."""
        info = sysroot.setup(self.name)
        env = dict(sysroot.python_env(wheels), QEMU_CPU=self.device.qemu_cpu)
        cmd = [*sysroot.python_command(info["qemu_path"], Path(info["sysroot"])), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, **run)


def setup_device(name: str) -> dict:
    """What `edgec device setup NAME` calls: set the device up and say what is there."""
    return sysroot.setup(name)
