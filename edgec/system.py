"""The operating-system chores every part of edgec shares: one rule each.

* `cache_root`: where downloads and builds are kept between runs.
* `temporary_folder` / `publish`: a folder is built beside its destination and renamed into
  place only when complete, so nothing is ever half-written.
* `file_lock`: two processes never build the same thing at once.
* `run_tool` / `apt_install`: run a helper program; install a Debian package under one policy.
* `last_line` / `error_line`: the line of a process's output, or of a library's message, that
  says why it failed.
"""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from edgec.errors import DeviceError
from edgec.package.harness.errors import first_line  # noqa: F401 - one definition, shipped in the harness too

logger = logging.getLogger(__name__)

# Lines that are progress or diagnostics, never the reason a process failed: "INFO: Created
# TensorFlow Lite XNNPACK delegate for CPU.", glog/absl prefixes (I0101 12:00:00.000 ...),
# onnxruntime's "[W:onnxruntime:...]" warnings, and a Python traceback's frames.
LOG_LINE = re.compile(r"^(INFO|WARNING|WARN|DEBUG|NOTE|Note)\b|^[IWD]\d{4} \d\d:\d\d|^\S*\s*\[[IWV]:"
                      r"|^\d{4}-\d\d-\d\d .*\[[IWV]:|^Traceback\b|^File \"")
# Lines that report an error: by their prefix (apt's "E:", a Python exception) or by their words.
ERROR_LINE = re.compile(r"^(E:|ERROR\b|[Ee]rror\b|FATAL\b|[Ff]atal\b)|^[\w.]*(Error|Exception)\b"
                        r"|(?i:error|exception|failed|fail:|invalid|cannot|can't|unsupported|not supported"
                        r"|didn't find|segmentation fault|abort)")


def cache_root() -> Path:
    """`$EDGEC_CACHE`, else `~/.cache/edgec`."""
    env = os.environ.get("EDGEC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "edgec"


def last_line(text: str, default: str = "no output") -> str:
    """The line that says why a process failed: its last error line, else its last line that is
    not a log message, else its last line."""
    return _reason(text, default, first=False)


def error_line(text: str) -> str:
    """The line of a library's message, or of a crashed child's output, that reports the error: the
    first error line (what follows restates it or names its consequences), else as `last_line`."""
    return _reason(text, "no output", first=True)


def _reason(text: str, default: str, first: bool) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    meaningful = [line for line in lines if not LOG_LINE.search(line)]
    errors = [line for line in meaningful if ERROR_LINE.search(line)]
    if errors:
        return errors[0] if first else errors[-1]
    return (meaningful or lines or [default])[-1]


def output_reason(proc: subprocess.CompletedProcess) -> str:
    """Why a finished process failed, from its error output first, then its normal output."""
    return last_line((proc.stderr or "") + "\n" + (proc.stdout or ""))


@contextlib.contextmanager
def logged_step(log: logging.Logger, message: str):
    """Log a slow step when it starts and how long it took when it ends."""
    log.info("%s...", message)
    start = time.perf_counter()
    yield
    log.info("%s: done in %.1f s", message, time.perf_counter() - start)


def _owner_is_gone(name: str, prefix: str) -> bool:
    """True for a temporary folder `PREFIX<pid>-...` whose process no longer runs."""
    pid = name[len(prefix):].split("-", 1)[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # another user's live process
    return False


def _sweep(parent: Path, prefix: str) -> None:
    """Remove the temporary folders that killed runs left under `parent` (their owner's pid is gone)."""
    for stale in parent.glob(prefix + "*"):
        if _owner_is_gone(stale.name, prefix):
            shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def temporary_folder(final: Path):
    """Yield an empty folder beside `final`; it is removed unless `publish` moved it into place.

    Its name carries this process's id, so the folders that killed runs left beside `final` are
    removed first, and a live run's folder never is.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.edgec-"
    _sweep(final.parent, prefix)
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=final.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def scratch(name: str):
    """A temporary folder `edgec-<pid>-NAME-*` in the system's temp folder, removed at the end; those
    that killed runs left are removed first."""
    _sweep(Path(tempfile.gettempdir()), "edgec-")
    folder = tempfile.mkdtemp(prefix=f"edgec-{os.getpid()}-{name}-")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def publish(folder: Path, final: Path) -> None:
    """Put a completed folder in place, replacing what was there."""
    final = Path(final)
    if final.is_dir() and not final.is_symlink():
        shutil.rmtree(final)
    elif final.exists() or final.is_symlink():
        final.unlink()
    folder.chmod(0o755)
    os.rename(folder, final)


@contextlib.contextmanager
def file_lock(path: Path):
    """An exclusive advisory lock on `path` (created if needed) for the block's duration."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_tool(cmd: list[str], what: str, hint: str = "", **kwargs) -> subprocess.CompletedProcess:
    """Run a helper program; on failure raise a DeviceError naming the step and the tool's reason."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    except FileNotFoundError as exc:
        raise DeviceError(f"{what} failed: {exc.filename} is not installed{hint}") from None
    if proc.returncode != 0:
        raise DeviceError(f"{what} failed: {output_reason(proc)}{hint}")
    return proc


def apt_install(package: str, provides: str) -> str:
    """Install a Debian package that provides the program `provides`; return the program's path.

    The one policy: as root, or with password-less sudo, install (refreshing the package lists
    once if the first try fails); otherwise say the command to run.
    """
    found = shutil.which(provides)
    if found:
        return found
    command = f"sudo apt-get update && sudo apt-get install -y {package}"
    apt = shutil.which("apt-get")
    if apt is None:
        raise DeviceError(f"{provides} is missing: install {package} (`{command}`) or your distribution's package")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"] if shutil.which("sudo") else None
    if prefix is None:
        raise DeviceError(f"{provides} is missing and edgec may not install it: run `{command}`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = [*prefix, apt, "install", "-y", "--no-install-recommends", package]
    logger.info("installing %s with apt-get", package)
    proc = subprocess.run(install, capture_output=True, text=True, env=env)
    if proc.returncode != 0:  # a fresh machine has no package lists yet
        subprocess.run([*prefix, apt, "update"], capture_output=True, text=True, env=env)
        proc = subprocess.run(install, capture_output=True, text=True, env=env)
    found = shutil.which(provides)
    if proc.returncode != 0 or not found:
        raise DeviceError(f"{provides} is missing and could not be installed ({output_reason(proc)}): run `{command}`")
    return found
