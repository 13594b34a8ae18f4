"""Run an artifact's harness on a real board over ssh: `--device ssh://pi@raspberrypi.local`.

URL form: `ssh://user@host[:port][/remote/dir]`. For each call the runner

1. makes a fresh folder on the device (`mktemp -d` under /remote/dir, or under the device's
   temp folder when no dir is given),
2. copies the artifact there (rsync when both ends have it, else `scp -r`), and the call's
   input files,
3. runs `python3 run.py ARGS --json REPORT` in the artifact's copy,
4. copies the JSON report and the call's output files back to where the caller asked, and
5. removes the remote folder.

The device needs Python 3 with the artifact's requirements installed (`pip install -r
requirements.txt` in the artifact's README); pass `python=` to use a venv's interpreter.
ssh runs with `BatchMode=yes` (key-based login only, never a password prompt),
`ConnectTimeout=10`, and `StrictHostKeyChecking=accept-new` (a new board's key is recorded,
a changed one is refused).
"""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from edgec import system
from edgec.errors import DeviceError
from edgec.runners import HarnessCall, Placement, Runner

SSH_OPTIONS = [
    "-o", "BatchMode=yes",
    "-o", "ConnectTimeout=10",
    "-o", "StrictHostKeyChecking=accept-new",
]


# A device string is data, never an option: names follow the hostname and POSIX user-name grammars, so
# none starts with '-' (ssh would read `-oProxyCommand=...` as an option) or holds shell characters.
HOST_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*\.?")
IPV6 = re.compile(r"[0-9A-Fa-f:.]+(?:%[A-Za-z0-9]+)?")
USER_NAME = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}")


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
    ipv6 = ":" in host
    if not (IPV6 if ipv6 else HOST_NAME).fullmatch(host):
        raise DeviceError(f"'{url}': '{host}' is not a host name or address")
    if parts.username is not None and not USER_NAME.fullmatch(parts.username):
        raise DeviceError(f"'{url}': '{parts.username}' is not a user name (letters, digits, '_', '.', '-', "
                          "not first)")
    if ipv6:
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
        return ["ssh", *SSH_OPTIONS, *port, "--", self.target, remote_command]

    def _remote(self, path: str) -> str:
        return f"{self.target}:{path}"

    def _unreachable(self, stderr: str) -> DeviceError:
        why = system.last_line(stderr, "no answer")
        return DeviceError(
            f"cannot reach {self.target}{f' port {self.port}' if self.port else ''} over ssh: {why}; "
            "check the address, that sshd runs and key-based login works"
        )

    def _ssh(self, remote_command: str, timeout: float = 120, what: str = "",
             raise_timeout: bool = False) -> subprocess.CompletedProcess:
        """Run a shell command on the device; `raise_timeout` leaves a timeout to the caller's policy."""
        try:
            proc = subprocess.run(
                self._ssh_cmd(remote_command), capture_output=True, text=True, timeout=timeout
            )
        except FileNotFoundError:
            raise DeviceError("ssh is not installed: install the OpenSSH client (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            if raise_timeout:
                raise
            raise DeviceError(f"{what or 'ssh'} on {self.target} did not finish within {timeout:.0f} s") from None
        if proc.returncode == 255:  # ssh's own failure: connection, authentication, host key
            raise self._unreachable(proc.stderr)
        return proc

    def _copy(self, sources: list[str], dest: str, recursive: bool = False, timeout: float = 600) -> None:
        """scp (or rsync) between this machine and the device; `host:` prefixes mark remote paths."""
        port = ["-P", str(self.port)] if self.port else []
        cmd = ["scp", "-q", *SSH_OPTIONS, *port, *(["-r"] if recursive else []), "--", *sources, dest]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise DeviceError(f"copying to or from {self.target} took over {timeout:.0f} s") from None
        if proc.returncode != 0:
            if "Connection" in proc.stderr or "connect" in proc.stderr:
                raise self._unreachable(proc.stderr)
            raise DeviceError(f"copying {' '.join(sources)} to {dest} failed: {system.last_line(proc.stderr, 'scp failed')}")

    def _push_artifact(self, artifact: Path, remote_artifact: str) -> None:
        if shutil.which("rsync"):
            port = f" -p {self.port}" if self.port else ""
            rsh = "ssh " + " ".join(SSH_OPTIONS) + port
            proc = subprocess.run(
                ["rsync", "-a", "-e", rsh, "--", f"{artifact}/", self._remote(remote_artifact + "/")],
                capture_output=True, text=True, timeout=600,
            )
            if proc.returncode == 0:
                return  # otherwise (no rsync on the device, ...) fall back to scp
        self._copy([str(artifact)], self._remote(remote_artifact), recursive=True)

    # -- the steps ------------------------------------------------------------------------

    def _stage_in(self, artifact: Path, call: HarnessCall, scratch: Path) -> Placement:
        """A fresh work folder on the device, with a copy of the artifact and of each input file."""
        base = shlex.quote(self.remote_dir) + "/" if self.remote_dir else ""
        mk = f"mkdir -p {shlex.quote(self.remote_dir)} && " if self.remote_dir else ""
        proc = self._ssh(
            f"{mk}mktemp -d {base}edgec-run.XXXXXX" if base else "mktemp -d -t edgec-run.XXXXXX",
            timeout=60, what="making a work folder",
        )
        if proc.returncode != 0 or not proc.stdout.strip():
            raise DeviceError(f"cannot make a work folder on {self.target}: {system.output_reason(proc)}")
        work = proc.stdout.strip().splitlines()[-1]
        placement = Placement(f"{work}/artifact", {}, f"{work}/report.json", scratch / "report.json", work)
        self._push_artifact(artifact, placement.artifact)
        for index, (option, local) in enumerate({**call.inputs, **call.outputs}.items()):
            placement.files[option] = f"{work}/{index}-{Path(local).name}"
            if option in call.inputs:
                self._copy([str(local)], self._remote(placement.files[option]))
        return placement

    def _execute(self, placement: Placement, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        command = " ".join(shlex.quote(a) for a in [self.python, "run.py", *args])
        return self._ssh(f"cd {shlex.quote(placement.artifact)} && {command}", timeout=timeout, what="the harness",
                         raise_timeout=True)

    def _stage_out(self, placement: Placement, call: HarnessCall, returncode: int) -> None:
        try:
            self._copy([self._remote(placement.report)], str(placement.local_report))
        except DeviceError:
            return  # the harness wrote no report (it failed early): its stderr says why
        if returncode == 0:
            for option, local in call.outputs.items():
                self._copy([self._remote(placement.files[option])], str(local))

    def _cleanup(self, placement: Placement) -> None:
        try:
            self._ssh(f"rm -rf {shlex.quote(placement.workdir)}", timeout=60)
        except DeviceError:
            pass  # best effort: the device's temp folder is cleaned at boot anyway
