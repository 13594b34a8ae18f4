"""Runners execute an artifact's own harness somewhere: here, under emulation, or over ssh.

Every runner takes the same `HarnessCall`, so `edgec verify` and `edgec bench` test exactly
what runs on the device. `Runner.run_harness` is the one procedure (validate, stage in, run
under one timeout policy, stage out, read the JSON report); a runner implements only the
steps where its device differs.
"""
from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from edgec import system
from edgec.errors import DeviceError, InputError

DEFAULT_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class SshOptions:
    """How to reach an ssh device and set it up; None/False means ssh's and the device's defaults."""

    identity: Path | None = None  # the private key (ssh -i), else ssh's own choice
    known_hosts: Path | None = None  # the known_hosts file, else the user's
    python: str = "python3"  # the device's Python (a path or a command on its PATH)
    accept_new_host_key: bool = False  # record an unknown host's key on first contact
    keep_remote: bool = False  # leave the artifact's copy on the device (the next run sends only changes)
    offline_wheels: Path | None = None  # a folder of wheels sent to boards without internet


@dataclass(frozen=True)
class DeviceSpec:
    """One device to run on: `local`, `rpi4-emulated`, `ssh://user@host...`, with its ssh options."""

    url: str = "local"
    name: str = ""  # its label in a fleet's table (default: the url)
    ssh: SshOptions = field(default_factory=SshOptions)

    @property
    def label(self) -> str:
        return self.name or self.url


@dataclass(frozen=True)
class HarnessCall:
    """`python run.py COMMAND ARGS`, with the files the harness reads and writes.

    `inputs` and `outputs` map a run.py option (`--inputs`, `--outputs`) to a file on this
    machine; the runner puts them where the harness reaches them and brings outputs back.
    `args` holds every other option, none of them a path.
    """

    command: str
    args: tuple[str, ...] = ()
    inputs: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)


@dataclass
class HarnessResult:
    """What one harness command returned: its exit code, its text and its JSON report."""

    returncode: int
    stdout: str
    stderr: str
    report: dict = field(default_factory=dict)
    device: str = "local"
    emulated: bool = False
    note: str = ""  # what to know about results from this device


@dataclass
class Placement:
    """Where one call's files are, as the device sees them."""

    artifact: str  # the artifact folder
    files: dict[str, str]  # run.py option -> path of its file
    report: str  # where the harness writes its JSON report
    local_report: Path  # where that report is on this machine once staged out
    workdir: str | None = None  # a folder staging made on the device, removed by `_cleanup`


class Runner:
    """Runs an artifact's harness on some device. Subclasses implement `_execute`, and the
    staging steps when the device does not see this machine's files."""

    name = "local"
    emulated = False
    note = ""  # what the caller should know about results from this device
    timeout_hint = ""  # why this device may be slow
    _profile = None  # what `probe` found, asked once

    def probe(self):
        """The device as its own Python sees it (architecture, ISA features, runtimes): a DeviceProfile."""
        from edgec.runners import discovery

        if self._profile is None:
            proc = self._run_python_source(discovery.PROBE_SOURCE, timeout=300)
            self._profile = discovery.read_profile(self.name, proc, self.emulated)
        return self._profile

    def close(self) -> None:
        """Release what the runner holds open (an ssh connection); the runner may not be used after."""

    def run_harness(self, artifact: Path, call: HarnessCall, timeout: float = DEFAULT_TIMEOUT_S) -> HarnessResult:
        artifact = self._validate(Path(artifact), call)
        with system.scratch("run") as scratch:
            placement = self._stage_in(artifact, call, Path(scratch))
            try:
                files = [part for option, path in placement.files.items() for part in (option, path)]
                args = [call.command, *call.args, *files, "--json", placement.report]
                try:
                    proc = self._execute(placement, args, timeout)
                except subprocess.TimeoutExpired:
                    raise DeviceError(
                        f"the harness did not finish within {timeout:.0f} s on {self.name}{self.timeout_hint}: "
                        "use a smaller model, fewer iterations, or a longer timeout") from None
                self._stage_out(placement, call, proc.returncode)
            finally:
                self._cleanup(placement)
            report = _read_report(placement.local_report)
        return HarnessResult(proc.returncode, proc.stdout, proc.stderr, report, self.name, self.emulated, self.note)

    # -- the steps -------------------------------------------------------------------------

    def _validate(self, artifact: Path, call: HarnessCall) -> Path:
        artifact = artifact.resolve()
        if not (artifact / "run.py").exists():
            raise DeviceError(f"{artifact} is not an artifact: it has no run.py")
        for option, path in call.inputs.items():
            if not Path(path).is_file():
                raise InputError(f"{option} file {path} does not exist")
        for path in call.outputs.values():
            Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)
        return artifact

    def _stage_in(self, artifact: Path, call: HarnessCall, scratch: Path) -> Placement:
        """Default: the device sees this machine's files, so everything stays where it is."""
        files = {option: str(Path(path).resolve()) for option, path in {**call.inputs, **call.outputs}.items()}
        report = scratch / "report.json"
        return Placement(str(artifact), files, str(report), report)

    def _execute(self, placement: Placement, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run `python run.py ARGS` on the device; may raise subprocess.TimeoutExpired."""
        raise NotImplementedError

    def _run_python_source(self, source: str, timeout: float) -> subprocess.CompletedProcess:
        """Run Python source text (given on stdin) with the device's Python."""
        raise NotImplementedError

    def _stage_out(self, placement: Placement, call: HarnessCall, returncode: int) -> None:
        """Bring the report and the output files back (nothing to do when they are here already)."""

    def _cleanup(self, placement: Placement) -> None:
        """Remove what staging left on the device."""


def _read_report(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # the harness failed before writing one: its stderr says why


def get_runner(device: str | DeviceSpec | None) -> Runner:
    """Map a --device value to its runner: `local`, `rpi4-emulated`, `ssh://user@host`."""
    spec = device if isinstance(device, DeviceSpec) else DeviceSpec(device or "local")
    device = spec.url
    if device == "local":
        from edgec.runners.local import LocalRunner

        return LocalRunner()
    if device.startswith("ssh://"):
        from edgec.runners.ssh import SshRunner

        return SshRunner(device, spec.ssh)
    if device.endswith("-emulated"):
        from edgec.runners.emulated import EmulatedRunner

        return EmulatedRunner(device)
    raise DeviceError(
        f"unknown device '{device}': use local, rpi4-emulated, rpi5-emulated or ssh://user@host"
    )
