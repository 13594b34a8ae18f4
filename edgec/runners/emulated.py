"""Run an artifact's harness on an emulated Raspberry Pi: qemu user mode plus an aarch64 sysroot.

What "emulated" means here:

* The program is a real aarch64 CPython 3.11 (Debian bookworm's, like Raspberry Pi OS
  bookworm's) run by `qemu-aarch64-static -L SYSROOT`. qemu's `-L` makes every absolute path
  that exists under SYSROOT resolve there first, and everything else to the host: so the
  harness sees the Pi's libraries, a Pi's `/proc/cpuinfo` and `midr_el1` registers (the
  runtimes' CPU detection segfaults on the host's x86 cpuinfo), and the host's files for
  everything else (the artifact, its inputs and outputs, temp files).
* `QEMU_CPU` enforces the device's instruction set (a dot-product kernel gets SIGILL on a
  Pi 4's cortex-a72, as it would on the board).
* The runtime wheels are the official aarch64 wheels from PyPI, installed with the host's pip
  into a folder on PYTHONPATH, one folder per requirement set, reused across runs.

Timings under emulation prove that the artifact runs and computes the same numbers; they
say nothing about speed on the board (SIMD kernels are 100 to 500 times slower).

Everything is cached under `$EDGEC_CACHE` (default `~/.cache/edgec`):

    devices/<device>/sysroot/    the device's sysroot, complete when `.edgec-ready` exists
    apt-arm64/                   the private APT state (lists, .deb cache) shared by devices
    wheels/<sha256-prefix>/      aarch64 wheels for one requirement set
    *.lock                       file locks: two setups never build the same thing at once

Every build goes into a temporary sibling folder that is renamed into place only when
complete, so an interrupted setup is redone, never taken as done.
"""
from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from edgec.errors import DeviceError
from edgec.runners import HarnessResult, Runner

EMULATION_NOTE = "emulated timings prove it runs, not how fast"

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

# glibc in the sysroot is bookworm's 2.36, so any manylinux tag up to 2_36 runs there.
WHEEL_PLATFORMS = ["manylinux2014_aarch64"] + [
    f"manylinux_2_{minor}_aarch64" for minor in (17, 24, 27, 28, 31, 34, 35, 36)
]
PYTHON_VERSION = "3.11"
# Bump when the sysroot recipe changes, so old caches are rebuilt rather than trusted.
SYSROOT_RECIPE = 1
WHEELS_RECIPE = 1

# Options of `run.py` whose value is a file path. Relative paths are made absolute against
# the caller's working folder, since the harness runs with the artifact as its cwd.
PATH_OPTIONS = ("--inputs", "--outputs", "--json")
OUTPUT_OPTIONS = ("--outputs",)


@dataclass(frozen=True)
class EmulatedDevice:
    """The facts an emulated board shows to software: data, not code."""

    name: str
    board: str
    qemu_cpu: str
    cpus: int
    implementer: int
    variant: int
    part: int
    revision: int
    features: str
    midr_el1: str
    revision_code: str
    hardware: str | None = None
    bogomips: str = "108.00"

    def cpuinfo(self) -> str:
        """A `/proc/cpuinfo` as the board's Linux kernel prints it (one block per CPU)."""
        blocks = []
        for cpu in range(self.cpus):
            blocks.append(
                f"processor\t: {cpu}\n"
                f"BogoMIPS\t: {self.bogomips}\n"
                f"Features\t: {self.features}\n"
                f"CPU implementer\t: 0x{self.implementer:02x}\n"
                "CPU architecture: 8\n"
                f"CPU variant\t: 0x{self.variant:x}\n"
                f"CPU part\t: 0x{self.part:03x}\n"
                f"CPU revision\t: {self.revision}\n"
            )
        tail = ""
        if self.hardware:
            tail += f"Hardware\t: {self.hardware}\n"
        tail += f"Revision\t: {self.revision_code}\nSerial\t\t: 00000000edgec000\nModel\t\t: {self.board}\n"
        return "\n".join(blocks) + "\n" + tail


DEVICES: dict[str, EmulatedDevice] = {
    "rpi4-emulated": EmulatedDevice(
        name="rpi4-emulated",
        board="Raspberry Pi 4 Model B Rev 1.4",
        qemu_cpu="cortex-a72",
        cpus=4,
        implementer=0x41,
        variant=0x0,
        part=0xD08,
        revision=3,
        features="fp asimd evtstrm crc32 cpuid",
        midr_el1="0x00000000410fd083",
        revision_code="d03114",
        hardware="BCM2835",
    ),
    "rpi5-emulated": EmulatedDevice(
        name="rpi5-emulated",
        board="Raspberry Pi 5 Model B Rev 1.0",
        qemu_cpu="cortex-a76",
        cpus=4,
        implementer=0x41,
        variant=0x4,
        part=0xD0B,
        revision=1,
        features=(
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
            "asimdrdm lrcpc dcpop asimddp"
        ),
        midr_el1="0x00000000414fd0b1",
        revision_code="d04170",
    ),
}


# --------------------------------------------------------------------------- small helpers


def _device(name: str) -> EmulatedDevice:
    try:
        return DEVICES[name]
    except KeyError:
        raise DeviceError(
            f"unknown emulated device '{name}': known ones are {', '.join(sorted(DEVICES))}"
        ) from None


def cache_root() -> Path:
    """`$EDGEC_CACHE`, else `~/.cache/edgec`."""
    env = os.environ.get("EDGEC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgec"


def _console():
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def _status(message: str):
    """A rich spinner on stderr for a slow step (plain when stderr is not a terminal)."""
    console = _console()
    start = time.perf_counter()
    with console.status(message):
        yield
    console.print(f"[dim]{message.rstrip('.')}: done in {time.perf_counter() - start:.1f} s[/dim]")


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive advisory lock on `path` (created if needed) for the block's duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, hint: str = "", **kw) -> subprocess.CompletedProcess:
    """Run a setup command; on failure raise a DeviceError naming the step and pip/apt's last line."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    except FileNotFoundError as exc:
        raise DeviceError(f"{what} failed: {exc.filename} is not installed{hint}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("E:", "ERROR:", "error:"))]
        last = (errors or lines or ["(no output)"])[-1].strip()
        raise DeviceError(f"{what} failed: {last}{hint}")
    return proc


def _fresh_dir(final: Path) -> Path:
    """An empty temporary sibling of `final`, to be renamed onto it once complete.

    Called with `final`'s lock held, so any older temporary sibling is a killed setup's.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{final.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))


def _publish(tmp: Path, final: Path) -> None:
    """Atomically put a completed build in place (replacing a stale one)."""
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)


# --------------------------------------------------------------------------- qemu


def qemu_binary() -> str:
    """The path of `qemu-aarch64-static`, installing `qemu-user-static` with apt if missing."""
    found = shutil.which("qemu-aarch64-static")
    if found:
        return found
    hint = (
        "qemu-aarch64-static is missing and could not be installed: "
        "run `sudo apt-get update && sudo apt-get install -y qemu-user-static`"
    )
    apt = shutil.which("apt-get")
    if apt is None:
        raise DeviceError(hint + " (or your distribution's qemu user-mode package)")
    prefix = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if prefix is None:
        raise DeviceError(hint)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*prefix, apt, "install", "-y", "--no-install-recommends", "qemu-user-static"]
    with _status("Installing qemu-user-static (apt-get)..."):
        proc = subprocess.run(install, capture_output=True, text=True, env=env)
        if proc.returncode != 0:  # a fresh machine has no package lists yet
            subprocess.run([*prefix, apt, "update"], capture_output=True, text=True, env=env)
            proc = subprocess.run(install, capture_output=True, text=True, env=env)
    found = shutil.which("qemu-aarch64-static")
    if proc.returncode != 0 or not found:
        raise DeviceError(hint)
    return found


def qemu_version(qemu: str) -> str:
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout
    first = out.splitlines()[0] if out else "unknown"
    return first.replace("qemu-aarch64 version ", "").strip()


# --------------------------------------------------------------------------- sysroot


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
    hint = "; check that this machine reaches the Debian mirrors in /etc/apt/sources.list*"
    if shutil.which("apt-get") is None:
        raise DeviceError(
            "building the aarch64 sysroot needs apt-get and dpkg (Debian or Ubuntu host)"
        )
    with _locked(root / "apt-arm64.lock"):
        env = _apt_env(apt_dir)
        lists = apt_dir / "state/lists"
        if not any(lists.glob("*_Packages*")):
            with _status("Downloading the arm64 package lists (apt-get update)..."):
                _run(["apt-get", "update"], "apt-get update (arm64)", hint, env=env)
        with _status("Downloading aarch64 Python 3.11 and its libraries (.deb)..."):
            cmd = ["apt-get", "install", "--download-only", "-y", *SYSROOT_PACKAGES]
            try:
                _run(cmd, "downloading the arm64 packages", hint, env=env)
            except DeviceError:  # stale lists: refresh once and retry
                _run(["apt-get", "update"], "apt-get update (arm64)", hint, env=env)
                _run(cmd, "downloading the arm64 packages", hint, env=env)
        debs = sorted((apt_dir / "cache/archives").glob("*.deb"))
    if not debs:
        raise DeviceError("downloading the arm64 packages gave no .deb files" + hint)
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


def _write_device_files(sysroot: Path, dev: EmulatedDevice) -> None:
    """The files a Pi's kernel shows and runtimes read to detect the CPU and the board."""
    (sysroot / "proc").mkdir(exist_ok=True)
    (sysroot / "proc/cpuinfo").write_text(dev.cpuinfo())
    cpu_dir = sysroot / "sys/devices/system/cpu"
    span = f"0-{dev.cpus - 1}\n"
    for f in ("possible", "present", "online"):
        (cpu_dir / f).parent.mkdir(parents=True, exist_ok=True)
        (cpu_dir / f).write_text(span)
    for cpu in range(dev.cpus):
        regs = cpu_dir / f"cpu{cpu}/regs/identification"
        regs.mkdir(parents=True, exist_ok=True)
        (regs / "midr_el1").write_text(dev.midr_el1 + "\n")
        (regs / "revidr_el1").write_text("0x0000000000000000\n")
    for model in ("proc/device-tree/model", "sys/firmware/devicetree/base/model"):
        (sysroot / model).parent.mkdir(parents=True, exist_ok=True)
        (sysroot / model).write_bytes(dev.board.encode() + b"\0")


def _python_env(wheels: Path | None = None) -> dict:
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


def _emulated_python_cmd(qemu: str, sysroot: Path) -> list[str]:
    return [qemu, "-L", str(sysroot), str(sysroot / "usr/bin/python3.11"), "-s"]


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
        cmd = [*_emulated_python_cmd(qemu, sysroot), "-m", "compileall", "-q", str(stdlib)]
        env = dict(_python_env(), QEMU_CPU=dev.qemu_cpu)
        env.pop("PYTHONDONTWRITEBYTECODE")
    subprocess.run(cmd, capture_output=True, text=True, env=env)  # syntax-error files are fine


def _sysroot_dir(device: str) -> Path:
    return cache_root() / "devices" / device / "sysroot"


def _read_ready(sysroot: Path) -> dict | None:
    marker = sysroot / ".edgec-ready"
    if not marker.exists():
        return None
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return None
    return info if info.get("recipe") == SYSROOT_RECIPE else None


def setup(device: str) -> dict:
    """Make `device` runnable (idempotent): qemu present, sysroot built, device files written.

    Returns what is set up: device, board, qemu_cpu, sysroot, python, qemu, cached (True when
    nothing had to be built) and seconds.
    """
    start = time.perf_counter()
    dev = _device(device)
    qemu = qemu_binary()
    sysroot = _sysroot_dir(device)
    info = _read_ready(sysroot)
    cached = info is not None
    if not cached:
        with _locked(sysroot.parent / "setup.lock"):
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
        "cache": str(cache_root()),
        "cached": cached,
        "seconds": round(time.perf_counter() - start, 2),
    }


def _build_sysroot(qemu: str, sysroot: Path, dev: EmulatedDevice) -> dict:
    root = cache_root()
    debs = _newest_debs(_download_debs(root))
    tmp = _fresh_dir(sysroot)
    try:
        with _status(f"Unpacking {len(debs)} packages into the {dev.name} sysroot..."):
            for deb in debs:
                _run(["dpkg", "-x", str(deb), str(tmp)], f"unpacking {deb.name}")
            _write_device_files(tmp, dev)
            _precompile_stdlib(qemu, tmp, dev)
        python = tmp / "usr/bin/python3.11"
        if not python.exists():
            raise DeviceError(f"the sysroot has no {python.relative_to(tmp)}: delete {root} and retry")
        with _status(f"Checking the emulated Python ({dev.qemu_cpu})..."):
            proc = subprocess.run(
                [*_emulated_python_cmd(qemu, tmp), "-c",
                 "import platform, ssl, ctypes, json, sys; print(platform.python_version(), platform.machine())"],
                capture_output=True, text=True, env=dict(_python_env(), QEMU_CPU=dev.qemu_cpu), timeout=300,
            )
        if proc.returncode != 0 or "aarch64" not in proc.stdout:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise DeviceError(f"the emulated Python for {dev.name} does not start: {tail}")
        version, machine = proc.stdout.split()
        info = {
            "recipe": SYSROOT_RECIPE,
            "device": dev.name,
            "python": version,
            "machine": machine,
            "packages": [d.name for d in debs],
        }
        (tmp / ".edgec-ready").write_text(json.dumps(info, indent=1, sort_keys=True))
        _publish(tmp, sysroot)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def setup_device(device: str) -> dict:
    """What `edgec device setup DEVICE` calls: set the device up and say what is there."""
    return setup(device)


# --------------------------------------------------------------------------- wheels


def requirement_lines(artifact: Path) -> list[str]:
    """The artifact's pip requirement lines, without comments and blank lines, sorted."""
    req = Path(artifact) / "requirements.txt"
    if not req.exists():
        return []
    lines = []
    for line in req.read_text().splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return sorted(set(lines))


def wheels_for(lines: list[str]) -> Path:
    """A folder with the aarch64 wheels for these requirement lines, installed once and reused."""
    key_text = json.dumps(
        {"recipe": WHEELS_RECIPE, "python": PYTHON_VERSION, "platforms": WHEEL_PLATFORMS,
         "requirements": sorted(lines)},
        sort_keys=True,
    )
    key = hashlib.sha256(key_text.encode()).hexdigest()[:20]
    final = cache_root() / "wheels" / key
    if (final / ".edgec-ready").exists():
        return final
    with _locked(final.parent / f"{key}.lock"):
        if (final / ".edgec-ready").exists():
            return final
        tmp = _fresh_dir(final)
        try:
            if lines:
                reqfile = tmp / ".requirements.txt"
                reqfile.write_text("\n".join(lines) + "\n")
                cmd = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                       "--no-input", "--target", str(tmp), "--only-binary=:all:",
                       "--python-version", PYTHON_VERSION, "--implementation", "cp",
                       "--abi", "cp311"]
                for plat in WHEEL_PLATFORMS:
                    cmd += ["--platform", plat]
                cmd += ["-r", str(reqfile)]
                with _status(f"Fetching aarch64 wheels: {', '.join(lines)}..."):
                    _run(cmd, f"getting aarch64 wheels for {', '.join(lines)}",
                         "; every requirement needs an aarch64 (manylinux) wheel for CPython 3.11 on PyPI")
            (tmp / ".edgec-ready").write_text(key_text)
            _publish(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


# --------------------------------------------------------------------------- the runner


def absolute_path_args(args: list[str], cwd: Path | None = None) -> list[str]:
    """Make the values of path options (`--inputs x.npz`, `--outputs=y.npz`) absolute.

    The emulated Python sees the host's files (paths not shadowed by the sysroot), so the
    artifact can run in place: only relative paths need fixing, because its cwd is the
    artifact folder rather than the caller's.
    """
    cwd = Path(cwd or os.getcwd())
    out, expect_path = [], False
    for arg in args:
        if expect_path:
            out.append(str((cwd / arg).resolve()))
            expect_path = False
        elif arg in PATH_OPTIONS:
            out.append(arg)
            expect_path = True
        elif arg.startswith(tuple(o + "=" for o in PATH_OPTIONS)):
            opt, value = arg.split("=", 1)
            out.append(f"{opt}={(cwd / value).resolve()}")
        else:
            out.append(arg)
    return out


def _option_values(args: list[str], options: tuple[str, ...]):
    """(option, value) for each of `options` in args, either as `--opt v` or `--opt=v`."""
    for i, arg in enumerate(args):
        if arg in options and i + 1 < len(args):
            yield arg, args[i + 1]
        elif "=" in arg and arg.split("=", 1)[0] in options:
            yield tuple(arg.split("=", 1))


class EmulatedRunner(Runner):
    """Runs `python run.py ARGS` in an artifact folder on an emulated Raspberry Pi."""

    emulated = True

    def __init__(self, device: str):
        self.device = _device(device)
        self.name = self.device.name

    def run_harness(self, artifact: Path, args: list[str], timeout: float = 1800) -> HarnessResult:
        artifact = Path(artifact).resolve()
        if not (artifact / "run.py").exists():
            raise DeviceError(f"{artifact} is not an artifact: it has no run.py")
        info = setup(self.name)
        wheels = wheels_for(requirement_lines(artifact))
        env = dict(_python_env(wheels), QEMU_CPU=self.device.qemu_cpu)
        harness_args = absolute_path_args(list(args))
        for opt, value in _option_values(harness_args, OUTPUT_OPTIONS):
            Path(value).parent.mkdir(parents=True, exist_ok=True)  # as the ssh runner does
        with tempfile.TemporaryDirectory(prefix="edgec-emu-") as tmp:
            json_path = Path(tmp) / "report.json"
            cmd = [
                *_emulated_python_cmd(info["qemu_path"], Path(info["sysroot"])),
                str(artifact / "run.py"),
                *harness_args,
                "--json",
                str(json_path),
            ]
            try:
                proc = subprocess.run(
                    cmd, capture_output=True, text=True, timeout=timeout, cwd=artifact, env=env
                )
            except subprocess.TimeoutExpired:
                raise DeviceError(
                    f"the harness did not finish within {timeout:.0f} s on {self.name} "
                    "(emulation is 100 to 500 times slower than the board): "
                    "use a smaller model, fewer iterations, or a longer timeout"
                ) from None
            result = self._finish(proc, json_path)
        result.report.update({"device": self.name, "emulated": True, "note": EMULATION_NOTE})
        return result
