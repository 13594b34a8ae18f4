"""Run an artifact's harness on a real board over ssh: `--device ssh://pi@raspberrypi.local`.

URL form: `ssh://user@host[:port][/remote/dir]` (the dir defaults to `~/.edgec` on the device).
For each call the runner

1. asks the device's Python what the device is (`discovery`), which also proves Python is there;
2. sends the artifact into the run's folder `DIR/runs/<id>/`, or with `--keep-remote` to
   `DIR/artifacts/<key>/`, where it stays and the next run sends only the files whose sha256
   differ (one tar stream over the ssh connection);
3. makes or reuses the runtime's environment in `DIR/envs/<key>/`, keyed by the requirements and
   the device's Python: a venv where `pip install -r requirements.txt` runs on the device (from
   `--offline-wheels DIR` sent from here for boards without internet), or, where the device's
   Python cannot make a venv, a folder of the device's wheels installed here by pip for the
   device's platform and sent over, put on PYTHONPATH;
4. runs `python run.py ARGS --json REPORT` in the artifact's copy, brings the report and output
   files back, and removes the run folder.

The system OpenSSH client does the transport, one multiplexed connection per runner
(ControlMaster): it follows the user's ~/.ssh/config, agent and known_hosts. Host keys are
checked strictly; `--accept-new-host-key` records an unknown host's key on first contact.
Every user string reaches the remote shell through `shlex.quote`, and the URL is refused
unless its user, host and dir are plain names (no option or shell syntax).
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import secrets
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgec import system
from edgec.errors import DeviceError, InputError
from edgec.runners import HarnessCall, Placement, Runner, SshOptions
from edgec.runners.wheels import requirement_lines, wheels_for

URL = re.compile(
    r"ssh://(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?"
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<dir>/[A-Za-z0-9._/+-]*)?\Z"
)
DEFAULT_DIR = ".edgec"  # relative to the device user's home
ENV_RECIPE = 1  # bump when the environment layout changes, so old ones are not trusted
# ssh's last stderr line for its own failures, and what the user should do about each.
SSH_FAILURES = [
    ("Host key verification failed", "its host key is not in your known_hosts (or has changed): check the key "
     "and add it with ssh-keyscan, or pass --accept-new-host-key on first contact"),
    ("Permission denied", "login refused: the key is not accepted (pass --identity KEY, or add your public key "
     "to the device's ~/.ssh/authorized_keys)"),
    ("Connection refused", "the port is closed: check that sshd runs and the port"),
]


@dataclass(frozen=True)
class SshAddress:
    """A parsed `ssh://` device: every part a plain name, safe on a command line."""

    user: str | None
    host: str
    port: int | None
    remote_dir: str

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host


@dataclass(frozen=True)
class RemoteEnvironment:
    """The runtime's environment on the device: a venv, or a wheels folder on PYTHONPATH."""

    kind: str  # "venv" or "wheels folder"
    path: str
    reused: bool
    setup_seconds: float  # what making it took (on first use, read back when reused)

    def command(self, python: str) -> str:
        if self.kind == "venv":
            return shlex.quote(f"{self.path}/bin/python")
        return f"env PYTHONPATH={shlex.quote(self.path)} {shlex.quote(python)}"

    def describe(self) -> str:
        if self.reused:
            return (f"reused the {self.kind} {self.path}: no install, saving the {self.setup_seconds:.1f} s that "
                    "setting it up took on first use")
        return f"set up the {self.kind} {self.path} in {self.setup_seconds:.1f} s"


def parse_ssh_url(url: str) -> SshAddress:
    """`ssh://user@host[:port][/dir]`, refused unless each part is a plain name."""
    match = URL.match(url)
    port = int(match["port"]) if match and match["port"] else None
    if not match or (port is not None and not 0 < port < 65536):
        raise InputError(f"'{url}' is not an ssh device: write ssh://user@host[:port][/remote/dir] with a plain "
                         "user name, host name and folder (letters, digits, . _ - /)")
    remote_dir = match["dir"].rstrip("/") if match["dir"] and match["dir"] != "/" else DEFAULT_DIR
    return SshAddress(match["user"], match["host"], port, remote_dir)


def _sha256s(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _tar(files: dict[str, Path]) -> bytes:
    """An uncompressed tar of `files` (name in the archive -> file here)."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for name, path in files.items():
            tar.add(str(path), arcname=name, recursive=True)
    return stream.getvalue()


class SshRunner(Runner):
    """Runs `python run.py ARGS` in a copy of the artifact on a device reached over ssh."""

    emulated = False

    def __init__(self, url: str, options: SshOptions = SshOptions()):
        self.address = parse_ssh_url(url)
        self.options = options
        self.name = url
        self._control: str | None = None  # the folder of the multiplexed connection's socket
        self._base: str | None = None
        self.environment: RemoteEnvironment | None = None  # found or made by `_stage_in`

    # -- the connection ---------------------------------------------------------------------

    def _ssh_argv(self) -> list[str]:
        if self._control is None:
            self._control = tempfile.mkdtemp(prefix="edgec-ssh-")
        options = {
            "BatchMode": "yes",
            "ConnectTimeout": "10",
            "StrictHostKeyChecking": "accept-new" if self.options.accept_new_host_key else "yes",
            "ControlMaster": "auto",
            "ControlPath": f"{self._control}/%C",
            "ControlPersist": "60",
        }
        if self.options.known_hosts:
            options["UserKnownHostsFile"] = str(Path(self.options.known_hosts).expanduser().resolve())
        if self.options.identity:
            options |= {"IdentityFile": str(Path(self.options.identity).expanduser().resolve()),
                        "IdentitiesOnly": "yes"}
        argv = ["ssh"] + [part for key, value in options.items() for part in ("-o", f"{key}={value}")]
        if self.address.port:
            argv += ["-p", str(self.address.port)]
        return argv + ["--", self.address.destination]

    def _ssh(self, command: str, timeout: float = 300, what: str = "ssh", stdin: bytes | str | None = None,
             raise_timeout: bool = False) -> subprocess.CompletedProcess:
        """Run a shell command on the device. ssh's own failures (exit 255) become one line."""
        text = not isinstance(stdin, bytes)
        try:
            proc = subprocess.run([*self._ssh_argv(), command], input=stdin, capture_output=True, text=text,
                                  timeout=timeout)
        except FileNotFoundError:
            raise DeviceError("ssh is not installed: install the OpenSSH client (apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            if raise_timeout:
                raise
            raise DeviceError(f"{what} on {self.address.destination} did not finish within {timeout:.0f} s") from None
        if proc.returncode == 255:
            stderr = proc.stderr if text else proc.stderr.decode(errors="replace")
            raise self._unreachable(stderr)
        return proc

    def _unreachable(self, stderr: str) -> DeviceError:
        why = next((advice for marker, advice in SSH_FAILURES if marker in stderr), None)
        where = f"{self.address.destination}{f' port {self.address.port}' if self.address.port else ''}"
        return DeviceError(f"cannot use {where} over ssh: {why or system.last_line(stderr, 'no answer')}")

    def _checked(self, command: str, what: str, **kwargs) -> subprocess.CompletedProcess:
        proc = self._ssh(command, what=what, **kwargs)
        if proc.returncode != 0:
            raise DeviceError(f"{what} on {self.address.destination} failed: {system.output_reason(proc)}")
        return proc

    def close(self) -> None:
        if self._control is not None:
            subprocess.run([*self._ssh_argv()[:-2], "-O", "exit", "--", self.address.destination],
                           capture_output=True, timeout=30)
            shutil.rmtree(self._control, ignore_errors=True)
            self._control = None

    # -- the device's folders ---------------------------------------------------------------

    def _run_python_source(self, source: str, timeout: float) -> subprocess.CompletedProcess:
        proc = self._ssh(f"{shlex.quote(self.options.python)} -", timeout=timeout, what="the device's Python",
                         stdin=source)
        if proc.returncode == 127:
            raise DeviceError(f"{self.address.destination} has no Python at '{self.options.python}': install "
                              "Python 3 there, or pass --remote-python PATH")
        return proc

    def base(self) -> str:
        """The absolute path of edgec's folder on the device (made if needed)."""
        if self._base is None:
            folder = shlex.quote(self.address.remote_dir)
            proc = self._checked(f"mkdir -p {folder} && cd {folder} && pwd", "making edgec's folder")
            self._base = proc.stdout.strip().splitlines()[-1]
        return self._base

    def _remove(self, *paths: str) -> None:
        """Remove paths on the device, then edgec's folders that are left empty."""
        base = self.base()
        empty = " ".join(shlex.quote(f"{base}/{sub}") for sub in ("runs", "artifacts", "envs"))
        quoted = " ".join(shlex.quote(p) for p in paths)
        self._ssh(f"rm -rf {quoted}; rmdir {empty} 2>/dev/null; rmdir {shlex.quote(base)} 2>/dev/null; true",
                  what="cleaning up")

    # -- the steps --------------------------------------------------------------------------

    def _stage_in(self, artifact: Path, call: HarnessCall, scratch: Path) -> Placement:
        base = self.base()
        work = f"{base}/runs/{secrets.token_hex(6)}"
        # a kept copy has a fixed place, so the next run sends only what changed; otherwise it is the run's own
        key = hashlib.sha256(f"{artifact}".encode()).hexdigest()[:16]
        copy = f"{base}/artifacts/{key}" if self.options.keep_remote else f"{work}/artifact"
        placement = Placement(copy, {}, f"{work}/out/report.json", scratch / "report.json", work)
        try:
            sent, total = self._push_artifact(artifact, placement.artifact)
            inputs = {}
            for index, (option, local) in enumerate({**call.inputs, **call.outputs}.items()):
                name = f"{index}-{Path(local).name}"
                placement.files[option] = f"{work}/{'in' if option in call.inputs else 'out'}/{name}"
                if option in call.inputs:
                    inputs[f"in/{name}"] = Path(local)
            self._checked(f"mkdir -p {shlex.quote(work)}/in {shlex.quote(work)}/out && "
                          f"tar -C {shlex.quote(work)} -xf -", "sending the input files", stdin=_tar(inputs))
            self.environment = self._environment(artifact, placement.artifact)
            self.note = f"ssh: sent {sent} of the artifact's {total} files; {self.environment.describe()}"
        except BaseException:
            self._cleanup(placement)
            raise
        return placement

    def _push_artifact(self, artifact: Path, remote: str) -> tuple[int, int]:
        """Send the files whose sha256 differ from the device's copy; remove files the artifact no longer has.
        Returns how many files were sent, of how many."""
        quoted = shlex.quote(remote)
        proc = self._ssh(f"cd {quoted} 2>/dev/null && find . -type f -exec sha256sum {{}} +", what="reading the copy")
        there = {name.removeprefix("./"): digest for digest, name in
                 (line.split(maxsplit=1) for line in proc.stdout.splitlines() if line.strip())}
        here = _sha256s(artifact)
        changed = {name: artifact / name for name, digest in here.items() if there.get(name) != digest}
        stale = " ".join(shlex.quote(f"{remote}/{name}") for name in set(there) - set(here))
        self._checked(f"mkdir -p {quoted} && {f'rm -f {stale} && ' if stale else ''}tar -C {quoted} -xf -",
                      "sending the artifact", stdin=_tar(changed), timeout=900)
        return len(changed), len(here)

    def _environment(self, artifact: Path, remote_artifact: str) -> RemoteEnvironment:
        """The venv (or wheels folder) for the artifact's requirements: reused when it is there."""
        profile = self.probe()
        lines = requirement_lines(artifact)
        kind = "venv" if profile.venv else "wheels folder"
        key_text = json.dumps({"recipe": ENV_RECIPE, "requirements": lines, "python": profile.python,
                               "arch": profile.arch, "kind": kind, "interpreter": self.options.python})
        path = f"{self.base()}/envs/{hashlib.sha256(key_text.encode()).hexdigest()[:16]}"
        ready = self._ssh(f"cat {shlex.quote(path)}/.edgec-ready", what="looking for the environment")
        if ready.returncode == 0:
            try:
                return RemoteEnvironment(kind, path, True, float(json.loads(ready.stdout)["seconds"]))
            except (ValueError, KeyError):
                pass  # a stale or broken one: made again below
        start = time.perf_counter()
        partial = f"{path}.partial-{secrets.token_hex(4)}"
        try:
            if kind == "venv":
                self._make_venv(partial, f"{remote_artifact}/requirements.txt")
            else:
                self._send_wheels_folder(partial, lines, profile)
            seconds = time.perf_counter() - start
            marker = shlex.quote(json.dumps({"seconds": round(seconds, 2), "key": json.loads(key_text)}))
            self._checked(f"printf %s {marker} > {shlex.quote(partial)}/.edgec-ready && rm -rf {shlex.quote(path)} "
                          f"&& mv {shlex.quote(partial)} {shlex.quote(path)}", "publishing the environment")
        except BaseException:
            self._remove(partial)
            raise
        return RemoteEnvironment(kind, path, False, seconds)

    def _make_venv(self, folder: str, requirements: str) -> None:
        venv, python = shlex.quote(folder), shlex.quote(self.options.python)
        index = ""
        if self.options.offline_wheels:
            self._checked(f"mkdir -p {venv}/wheels && tar -C {venv}/wheels -xf -", "sending the offline wheels",
                          stdin=_tar({p.name: p for p in Path(self.options.offline_wheels).glob("*.whl")}), timeout=900)
            index = f" --no-index --find-links {venv}/wheels"
        proc = self._ssh(f"{python} -m venv {venv} && {venv}/bin/python -m pip install -q --disable-pip-version-check "
                         f"--no-input{index} -r {shlex.quote(requirements)} && rm -rf {venv}/wheels", timeout=1800,
                         what="installing the runtime")
        if proc.returncode != 0:
            raise DeviceError(f"installing the runtime on {self.address.destination} failed: "
                              f"{system.output_reason(proc)}")

    def _send_wheels_folder(self, folder: str, lines: list[str], profile) -> None:
        """The device's Python cannot make a venv: pip here installs the device's wheels into a folder."""
        wheels = wheels_for(lines, profile.arch, profile.python, self.options.offline_wheels)
        contents = {p.name: p for p in wheels.iterdir() if p.name != ".edgec-ready"}
        self._checked(f"mkdir -p {shlex.quote(folder)} && tar -C {shlex.quote(folder)} -xf -",
                      "sending the wheels folder", stdin=_tar(contents), timeout=1800)

    def _execute(self, placement: Placement, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        command = " ".join([self.environment.command(self.options.python), "run.py", *map(shlex.quote, args)])
        return self._ssh(f"cd {shlex.quote(placement.artifact)} && {command}", timeout=timeout, what="the harness",
                         raise_timeout=True)

    def _stage_out(self, placement: Placement, call: HarnessCall, returncode: int) -> None:
        """The run's out/ folder comes back as one tar: the report, and the output files on success."""
        proc = self._ssh(f"tar -C {shlex.quote(placement.workdir)}/out -cf - .", what="bringing results back",
                         stdin=b"")
        if proc.returncode != 0:
            return  # nothing came back: the harness's stderr says why
        with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
            tar.extractall(placement.local_report.parent / "out", filter="data")
        back = placement.local_report.parent / "out"
        if (back / "report.json").exists():
            shutil.move(back / "report.json", placement.local_report)
        if returncode == 0:
            for option, local in call.outputs.items():
                shutil.move(back / Path(placement.files[option]).name, local)

    def _cleanup(self, placement: Placement) -> None:
        try:
            self._remove(placement.workdir)
        except DeviceError:
            pass  # the device went away: nothing more can be done there
        if self.options.keep_remote:
            self.note += f"; the artifact's copy stays at {placement.artifact}"
