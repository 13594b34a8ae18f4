"""Run an artifact's harness on a real board over ssh: `--device ssh://pi@raspberrypi.local`.

URL form: `ssh://user@host[:port][/remote/dir]`. For each call the runner

1. makes a fresh folder on the device (`mktemp -d` under /remote/dir, or under the device's
   temp folder when no dir is given),
2. copies the artifact there (rsync when both ends have it, else `scp -r`), and any input
   files named by `--inputs`,
3. runs `python3 run.py ARGS --json REPORT` in the artifact's copy,
4. copies the JSON report and any `--outputs` files back to where the caller asked, and
5. removes the remote folder.

The device needs Python 3 with the artifact's requirements installed (`pip install -r
requirements.txt` in the artifact's README); pass `python=` to use a venv's interpreter.
ssh runs with `BatchMode=yes` (key-based login only, never a password prompt),
`ConnectTimeout=10`, and `StrictHostKeyChecking=accept-new` (a new board's key is recorded,
a changed one is refused).
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from edgec.errors import DeviceError
from edgec.runners import HarnessResult, Runner

SSH_OPTIONS = [
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=10",
    "-o", "StrictHostKeyChecking=accept-new",
]
# Options of `run.py` whose value is a file the harness reads (copied in) or writes (copied back).
INPUT_OPTIONS = ("--inputs",)
OUTPUT_OPTIONS = ("--outputs",)


def parse_ssh_url(url: str) -> tuple[str, int | None, str | None]:
    """`ssh://user@host[:port][/dir]` -> (`user@host`, port or None, dir or None)."""
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise DeviceError(f"'{url}' is not an ssh device: write ssh://user@host[:port][/remote/dir]")
    try:
        port = parts.port
    except ValueError:
        raise DeviceError(f"'{url}' has a bad port: write ssh://user@host[:port][/remote/dir]") from None
    host = parts.hostname
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    target = f"{parts.username}@{host}" if parts.username else host
    remote_dir = parts.path if parts.path not in ("", "/") else None
    return target, port, remote_dir


class SshRunner(Runner):
    """Runs `python3 run.py ARGS` in a copy of the artifact on a device reached over ssh."""

    emulated = False

    def __init__(self, url: str, python: str = "python3"):
        self.url = url
        self.target, self.port, self.remote_dir = parse_ssh_url(url)
        self.name = url
        self.python = python

    # -- plumbing -------------------------------------------------------------------------

    def _ssh_cmd(self, remote_command: str) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", *SSH_OPTIONS, *port, self.target, remote_command]

    def _remote(self, path: str) -> str:
        return f"{self.target}:{path}"

    def _unreachable(self, stderr: str) -> DeviceError:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        why = lines[-1] if lines else "no answer"
        return DeviceError(
            f"cannot reach {self.target}{f' port {self.port}' if self.port else ''} over ssh: {why}; "
            "check the address, that sshd runs and key-based login works"
        )

    def _ssh(self, remote_command: str, timeout: float = 120, what: str = "") -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(
                self._ssh_cmd(remote_command), capture_output=True, text=True, timeout=timeout
            )
        except FileNotFoundError:
            raise DeviceError("ssh is not installed: install the OpenSSH client (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{what or 'ssh'} on {self.target} did not finish within {timeout:.0f} s") from None
        if proc.returncode == 255:  # ssh's own failure: connection, authentication, host key
            raise self._unreachable(proc.stderr)
        return proc

    def _copy(self, sources: list[str], dest: str, recursive: bool = False, timeout: float = 600) -> None:
        """scp (or rsync) between this machine and the device; `host:` prefixes mark remote paths."""
        port = ["-P", str(self.port)] if self.port else []
        cmd = ["scp", "-q", *SSH_OPTIONS, *port, *(["-r"] if recursive else []), *sources, dest]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"copying to or from {self.target} took over {timeout:.0f} s") from None
        if proc.returncode != 0:
            if "Connection" in proc.stderr or "connect" in proc.stderr:
                raise self._unreachable(proc.stderr)
            last = (proc.stderr.strip().splitlines() or ["scp failed"])[-1]
            raise DeviceError(f"copying {' '.join(sources)} to {dest} failed: {last}")

    def _push_artifact(self, artifact: Path, remote_artifact: str) -> None:
        if shutil.which("rsync"):
            port = f" -p {self.port}" if self.port else ""
            rsh = "ssh " + " ".join(SSH_OPTIONS) + port
            proc = subprocess.run(
                ["rsync", "-a", "-e", rsh, f"{artifact}/", self._remote(remote_artifact + "/")],
                capture_output=True, text=True, timeout=600,
            )
            if proc.returncode == 0:
                return  # otherwise (no rsync on the device, ...) fall back to scp
        self._copy([str(artifact)], self._remote(remote_artifact), recursive=True)

    # -- the runner -----------------------------------------------------------------------

    def run_harness(self, artifact: Path, args: list[str], timeout: float = 1800) -> HarnessResult:
        artifact = Path(artifact).resolve()
        if not (artifact / "run.py").exists():
            raise DeviceError(f"{artifact} is not an artifact: it has no run.py")
        base = shlex.quote(self.remote_dir) + "/" if self.remote_dir else ""
        mk = f"mkdir -p {shlex.quote(self.remote_dir)} && " if self.remote_dir else ""
        proc = self._ssh(
            f"{mk}mktemp -d {base}edgec-run.XXXXXX" if base else "mktemp -d -t edgec-run.XXXXXX",
            timeout=60, what="making a work folder",
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            last = (proc.stderr.strip().splitlines() or ["mktemp failed"])[-1]
            raise DeviceError(f"cannot make a work folder on {self.target}: {last}")
        work = proc.stdout.strip().splitlines()[-1]
        try:
            return self._run_in(work, artifact, list(args), timeout)
        finally:
            try:
                self._ssh(f"rm -rf {shlex.quote(work)}", timeout=60)
            except DeviceError:
                pass  # best effort: the device's temp folder is cleaned at boot anyway

    def _run_in(self, work: str, artifact: Path, args: list[str], timeout: float) -> HarnessResult:
        remote_artifact = f"{work}/artifact"
        self._push_artifact(artifact, remote_artifact)
        remote_args, inputs, outputs = [], [], []  # inputs/outputs: (local, remote)
        pending = None
        for arg in args:
            if pending:
                local = Path(arg).resolve()
                remote = f"{work}/{len(inputs) + len(outputs)}-{local.name}"
                (inputs if pending in INPUT_OPTIONS else outputs).append((local, remote))
                remote_args.append(remote)
                pending = None
            elif arg in INPUT_OPTIONS + OUTPUT_OPTIONS:
                remote_args.append(arg)
                pending = arg
            elif "=" in arg and arg.split("=", 1)[0] in INPUT_OPTIONS + OUTPUT_OPTIONS:
                opt, value = arg.split("=", 1)
                local = Path(value).resolve()
                remote = f"{work}/{len(inputs) + len(outputs)}-{local.name}"
                (inputs if opt in INPUT_OPTIONS else outputs).append((local, remote))
                remote_args.append(f"{opt}={remote}")
            else:
                remote_args.append(arg)
        for local, remote in inputs:
            if not local.exists():
                raise DeviceError(f"input file {local} does not exist")
            self._copy([str(local)], self._remote(remote))
        remote_json = f"{work}/report.json"
        command = " ".join(
            shlex.quote(a) for a in [self.python, "run.py", *remote_args, "--json", remote_json]
        )
        proc = self._ssh(f"cd {shlex.quote(remote_artifact)} && {command}", timeout=timeout, what="the harness")
        with tempfile.TemporaryDirectory(prefix="edgec-ssh-") as tmp:
            json_path = Path(tmp) / "report.json"
            try:
                self._copy([self._remote(remote_json)], str(json_path))
            except DeviceError:
                json_path = None  # the harness wrote no report (it failed early): keep its stderr
            for local, remote in outputs:
                if proc.returncode == 0:
                    local.parent.mkdir(parents=True, exist_ok=True)
                    self._copy([self._remote(remote)], str(local))
            result = self._finish(proc, json_path)
        result.report.setdefault("device", self.url)
        return result
