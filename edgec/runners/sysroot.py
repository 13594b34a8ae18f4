"""An aarch64 sysroot and qemu: what makes an emulated Raspberry Pi run real aarch64 programs.

The program is a real aarch64 CPython 3.11 (Debian bookworm's, like Raspberry Pi OS
bookworm's) run by `qemu-aarch64-static -L SYSROOT`. qemu's `-L` makes every absolute path
that exists under SYSROOT resolve there first, and everything else to the host: so the
harness sees the Pi's libraries, a Pi's `/proc/cpuinfo` and `midr_el1` registers (devices.py),
and the host's files for everything else (the artifact, its inputs and outputs, temp files).

Cached under `system.cache_root()`:

    devices/<device>/sysroot/    the device's sysroot, complete when `.edgec-ready` exists
    apt-arm64/                   the private APT state (lists, .deb cache) shared by devices
    *.lock                       file locks: two setups never build the same thing at once
"""
from __future__ import annotations

import getpass
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edgec import system
from edgec.errors import DeviceError
from edgec.runners.devices import EmulatedDevice, device

logger = logging.getLogger(__name__)

# Debian packages unpacked into the sysroot. apt resolves their dependencies (libc6,
# libexpat1, libffi8, libssl3, libbz2, liblzma5, ...); these are the roots.
SYSROOT_PACKAGES = [
    "python3.11-minimal",
    "libpython3.11-stdlib",
    "libstdc++6",
    "libgcc-s1",
    "libgomp1",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libssl3",
]
# Bump when the sysroot recipe changes, so old caches are rebuilt rather than trusted.
SYSROOT_RECIPE = 1
MIRROR_HINT = "; check that this machine reaches the Debian mirrors in /etc/apt/sources.list*"


def qemu_binary() -> str:
    """The path of `qemu-aarch64-static`, installed with apt when missing and allowed."""
    return system.apt_install("qemu-user-static", "qemu-aarch64-static")


def qemu_version(qemu: str) -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else "unknown"
    return first.replace("qemu-aarch64 version ", "").strip()


def python_env(wheels: Path | None = None) -> dict:
    """A clean environment for the emulated Python: nothing of the host's Python leaks in."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": tempfile.gettempdir(),
        "PYTHONNOUSERSITE": "1",
        # never write .pyc files: a path missing from the sysroot falls through to the host
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if wheels is not None:
        env["PYTHONPATH"] = str(wheels)
    return env


def python_command(qemu: str, sysroot: Path) -> list[str]:
    """The command line that starts the emulated Python."""
    return [qemu, "-L", str(sysroot), str(sysroot / "usr/bin/python3.11"), "-s"]


def _apt_env(apt_dir: Path) -> dict:
    """A private APT configuration: arm64 only, own state/lists/cache, the host's sources.

    The host's apt.conf.d is not read (it may hold hooks such as docker-clean that act on the
    host's own cache); its `Acquire` settings (proxies, validity checks) are carried over.
    """
    for sub in ("state/lists/partial", "cache/archives/partial", "log", "parts", "prefs.d"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "state/status").touch()
    (apt_dir / "preferences").touch()
    acquire = subprocess.run(["apt-config", "dump", "Acquire"], capture_output=True, text=True).stdout
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry
        user = "root"
    conf = f"""\
APT::Architecture "arm64";
APT::Architectures {{ "arm64"; }};
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT::Get::Assume-Yes "true";
APT::Sandbox::User "{user}";
Dir::State "{apt_dir}/state";
Dir::State::lists "{apt_dir}/state/lists";
Dir::State::status "{apt_dir}/state/status";
Dir::Cache "{apt_dir}/cache";
Dir::Cache::archives "{apt_dir}/cache/archives";
Dir::Log "{apt_dir}/log";
Dir::Etc::sourcelist "/etc/apt/sources.list";
Dir::Etc::sourceparts "/etc/apt/sources.list.d";
Dir::Etc::parts "{apt_dir}/parts";
Dir::Etc::preferences "{apt_dir}/preferences";
Dir::Etc::preferencesparts "{apt_dir}/prefs.d";
Acquire::Languages "none";
"""
    acquire_lines = [
        ln for ln in acquire.splitlines() if ln.startswith("Acquire::") and "DEP-11" not in ln
    ]
    (apt_dir / "apt.conf").write_text(conf + "\n".join(acquire_lines) + "\n")
    return dict(os.environ, APT_CONFIG=str(apt_dir / "apt.conf"), DEBIAN_FRONTEND="noninteractive")


def _download_debs(root: Path) -> list[Path]:
    """Download the sysroot's arm64 .debs (and their dependencies) with the private apt."""
    apt_dir = root / "apt-arm64"
    if shutil.which("apt-get") is None:
        raise DeviceError("building the aarch64 sysroot needs apt-get and dpkg (Debian or Ubuntu host)")
    with system.file_lock(root / "apt-arm64.lock"):
        env = _apt_env(apt_dir)
        if not any((apt_dir / "state/lists").glob("*_Packages*")):
            with system.logged_step(logger, "downloading the arm64 package lists (apt-get update)"):
                system.run_tool(["apt-get", "update"], "apt-get update (arm64)", MIRROR_HINT, env=env)
        with system.logged_step(logger, "downloading aarch64 Python 3.11 and its libraries (.deb)"):
            cmd = ["apt-get", "install", "--download-only", "-y", *SYSROOT_PACKAGES]
            try:
                system.run_tool(cmd, "downloading the arm64 packages", MIRROR_HINT, env=env)
            except DeviceError:  # stale lists: refresh once and retry
                system.run_tool(["apt-get", "update"], "apt-get update (arm64)", MIRROR_HINT, env=env)
                system.run_tool(cmd, "downloading the arm64 packages", MIRROR_HINT, env=env)
        debs = sorted((apt_dir / "cache/archives").glob("*.deb"))
    if not debs:
        raise DeviceError("downloading the arm64 packages gave no .deb files" + MIRROR_HINT)
    return debs


def _newest_debs(debs: list[Path]) -> list[Path]:
    """One .deb per package: the cache may hold older versions from an earlier setup."""
    by_name: dict[str, Path] = {}
    for deb in debs:
        name = deb.name.split("_")[0]
        if name not in by_name or _deb_version_newer(deb, by_name[name]):
            by_name[name] = deb
    return sorted(by_name.values())


def _deb_version_newer(a: Path, b: Path) -> bool:
    va, vb = a.name.split("_")[1], b.name.split("_")[1]
    proc = subprocess.run(["dpkg", "--compare-versions", va.replace("%3a", ":"), "gt", vb.replace("%3a", ":")])
    return proc.returncode == 0


def _precompile_stdlib(qemu: str, sysroot: Path, dev: EmulatedDevice) -> None:
    """Write the stdlib's .pyc files once (Debian leaves that to its postinst scripts).

    Each uncached import costs seconds under emulation, and PYTHONDONTWRITEBYTECODE keeps the
    emulated Python from writing them itself. The host's Python 3.11 writes identical
    bytecode quickly; otherwise the emulated Python does it (slower, once).
    """
    stdlib = sysroot / "usr/lib/python3.11"
    if sys.version_info[:2] == (3, 11):
        cmd = [sys.executable, "-m", "compileall", "-q", "-j0", str(stdlib)]
        env = None
    else:
        cmd = [*python_command(qemu, sysroot), "-m", "compileall", "-q", str(stdlib)]
        env = dict(python_env(), QEMU_CPU=dev.qemu_cpu)
        env.pop("PYTHONDONTWRITEBYTECODE")
    subprocess.run(cmd, capture_output=True, text=True, env=env)  # syntax-error files are fine


def _sysroot_dir(name: str) -> Path:
    return system.cache_root() / "devices" / name / "sysroot"


def _read_ready(sysroot: Path) -> dict | None:
    marker = sysroot / ".edgec-ready"
    if not marker.exists():
        return None
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return None
    return info if info.get("recipe") == SYSROOT_RECIPE else None


def setup(name: str) -> dict:
    """Make the emulated device `name` runnable (idempotent): qemu present, sysroot built.

    Returns what is set up: device, board, qemu_cpu, sysroot, python, qemu, cached (True when
    nothing had to be built) and seconds.
    """
    start = time.perf_counter()
    dev = device(name)
    qemu = qemu_binary()
    sysroot = _sysroot_dir(name)
    info = _read_ready(sysroot)
    cached = info is not None
    if not cached:
        with system.file_lock(sysroot.parent / "setup.lock"):
            info = _read_ready(sysroot)  # another process may have finished it meanwhile
            if info is None:
                info = _build_sysroot(qemu, sysroot, dev)
            else:
                cached = True
    return {
        "device": dev.name,
        "board": dev.board,
        "qemu_cpu": dev.qemu_cpu,
        "sysroot": str(sysroot),
        "python": info["python"],
        "qemu": qemu_version(qemu),
        "qemu_path": qemu,
        "cache": str(system.cache_root()),
        "cached": cached,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _build_sysroot(qemu: str, sysroot: Path, dev: EmulatedDevice) -> dict:
    debs = _newest_debs(_download_debs(system.cache_root()))
    with system.temporary_folder(sysroot) as tmp:
        with system.logged_step(logger, f"unpacking {len(debs)} packages into the {dev.name} sysroot"):
            for deb in debs:
                system.run_tool(["dpkg", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
            dev.write_files(tmp)
            _precompile_stdlib(qemu, tmp, dev)
        python = tmp / "usr/bin/python3.11"
        if not python.exists():
            raise DeviceError(f"the sysroot has no {python.relative_to(tmp)}: delete {system.cache_root()} and retry")
        with system.logged_step(logger, f"checking the emulated Python ({dev.qemu_cpu})"):
            proc = subprocess.run(
                [*python_command(qemu, tmp), "-c",
                 "import platform, ssl, ctypes, json, sys; print(platform.python_version(), platform.machine())"],
                capture_output=True, text=True, env=dict(python_env(), QEMU_CPU=dev.qemu_cpu), timeout=300,
            )
        if proc.returncode != 0 or "aarch64" not in proc.stdout:
            raise DeviceError(f"the emulated Python for {dev.name} does not start: {system.output_reason(proc)}")
        version, machine = proc.stdout.split()
        info = {
            "recipe": SYSROOT_RECIPE,
            "device": dev.name,
            "python": version,
            "machine": machine,
            "packages": [d.name for d in debs],
        }
        (tmp / ".edgec-ready").write_text(json.dumps(info, indent=1, sort_keys=True))
        system.publish(tmp, sysroot)
    return info
