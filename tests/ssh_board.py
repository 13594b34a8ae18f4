"""A virtual board over ssh for the tests: Debian's OpenSSH server on a free loopback port.

`LoopbackBoard` makes a throwaway host key and user key, an authorized_keys and a known_hosts
that trusts only that host key, starts `sshd -D` as a child process and stops it on exit. The
device's own folder (its "home") is a temporary folder; each device's URL points there. The
aarch64 device's Python is a wrapper script, written into that folder, that runs the emulated
Raspberry Pi's CPython under qemu (binfmt_misc is not available here).

sshd comes from Debian's `openssh-server` package (`apt-get install openssh-server`, done by
`edgec.system.apt_install` when root or password-less sudo allows, as for qemu).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sshd_binary() -> str | None:
    from edgec import system
    from edgec.errors import DeviceError

    found = shutil.which("sshd") or (Path("/usr/sbin/sshd").exists() and "/usr/sbin/sshd")
    if found:
        return found
    try:
        return system.apt_install("openssh-server", "sshd")
    except DeviceError:
        return None


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class LoopbackBoard:
    """An sshd on 127.0.0.1 that logs in this machine's user with a throwaway key."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / "device"
        self.home.mkdir(parents=True)
        keys = root / "keys"
        keys.mkdir()
        self.host_key = keygen(keys / "host_ed25519")
        self.user_key = keygen(keys / "user_ed25519")
        self.other_key = keygen(keys / "stranger_ed25519")  # a key the board does not accept
        (keys / "authorized_keys").write_text((keys / "user_ed25519.pub").read_text())
        self.port = free_port()
        self.known_hosts = keys / "known_hosts"
        host_pub = (keys / "host_ed25519.pub").read_text().split()
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.empty_known_hosts = keys / "known_hosts.empty"
        self.empty_known_hosts.write_text("")
        self.config = root / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\nPidFile {root}/sshd.pid\n"
            f"AuthorizedKeysFile {keys}/authorized_keys\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\n"
            "MaxSessions 50\nMaxStartups 50\nSubsystem sftp internal-sftp\n"
        )
        self.process: subprocess.Popen | None = None

    def url(self, folder: str = "edgec") -> str:
        return f"ssh://{os.environ.get('USER') or 'root'}@127.0.0.1:{self.port}{self.home}/{folder}"

    def start(self, sshd: str) -> "LoopbackBoard":
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
        self.process = subprocess.Popen([sshd, "-D", "-e", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=open(self.root / "sshd.log", "w"))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"sshd stopped: {(self.root / 'sshd.log').read_text()}")
                time.sleep(0.1)
        raise RuntimeError("sshd did not listen within 20 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def emulated_python(self, device: str) -> Path:
        """A script on the board that runs `device`'s aarch64 CPython under qemu, as `python3` would."""
        from edgec.runners import devices, sysroot

        info = sysroot.setup(device)
        command = " ".join(sysroot.python_command(info["qemu_path"], Path(info["sysroot"])))
        script = self.home / f"python3-{device}"
        script.write_text(f"#!/bin/sh\nexport QEMU_CPU={devices.device(device).qemu_cpu} PYTHONDONTWRITEBYTECODE=1 "
                          f"PYTHONNOUSERSITE=1\nexec {command} \"$@\"\n")
        script.chmod(0o755)
        return script

    def files(self, folder: str = "edgec") -> list[str]:
        """Every file left in a device folder."""
        base = self.home / folder
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file()) if base.exists() else []
