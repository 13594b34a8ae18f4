"""Runners execute an artifact's own harness somewhere: here, under emulation, or over ssh.

Every runner takes the same call, so `edgec verify` and `edgec bench` test exactly what
runs on the device.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgec.errors import DeviceError


@dataclass
class HarnessResult:
    """What one harness command returned: its exit code, its text and its JSON report."""

    returncode: int
    stdout: str
    stderr: str
    report: dict = field(default_factory=dict)
    device: str = "local"
    emulated: bool = False


class Runner:
    """Runs `python run.py ARGS` inside an artifact folder on some device."""

    name = "local"
    emulated = False

    def run_harness(self, artifact: Path, args: list[str], timeout: float = 1800) -> HarnessResult:
        raise NotImplementedError

    def _finish(self, proc: subprocess.CompletedProcess, json_path: Path | None) -> HarnessResult:
        report = {}
        if json_path is not None and json_path.exists():
            report = json.loads(json_path.read_text())
        return HarnessResult(proc.returncode, proc.stdout, proc.stderr, report, self.name, self.emulated)


def get_runner(device: str | None) -> Runner:
    """Map a --device value to its runner: `local`, `rpi4-emulated`, `ssh://user@host`."""
    device = device or "local"
    if device == "local":
        from edgec.runners.local import LocalRunner

        return LocalRunner()
    if device.startswith("ssh://"):
        from edgec.runners.ssh import SshRunner

        return SshRunner(device)
    if device.endswith("-emulated"):
        from edgec.runners.emulated import EmulatedRunner

        return EmulatedRunner(device)
    raise DeviceError(
        f"unknown device '{device}': use local, rpi4-emulated, rpi5-emulated or ssh://user@host"
    )
