"""Where edgec may write: output folders and files that cannot destroy the user's data.

Every folder edgec writes carries `MARKER`. `--force` replaces a folder only when it carries the
marker or is empty, and never the current folder, one of its ancestors, or a folder that holds the
source or an input file. Paths are resolved (symlinks followed) before any rule is applied, and
every output path is checked writable before any work starts. `output_lock` keeps two builds from
writing one folder at once.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from pathlib import Path

from edgec.errors import InputError

MARKER = ".edgec-output"


def mark(folder: Path, kind: str) -> None:
    """Record that edgec wrote `folder` (an artifact, a comparison, a tuning run), so --force may replace it."""
    (Path(folder) / MARKER).write_text(kind + "\n")


def is_marked(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def _resolve(path: str | Path, flag: str) -> Path:
    if not str(path).strip():
        raise InputError(f"{flag} is empty: name a new folder or file to write")
    return Path(path).expanduser().resolve()


def _refuse_over_inputs(path: Path, inputs: tuple[str | Path, ...], flag: str) -> None:
    """The output may not be an input file, the folder (or an ancestor of the folder) holding one, nor lie inside
    an input folder (an artifact, a SavedModel, an image folder)."""
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise InputError(f"{flag} {path} is the current folder or one of its ancestors: name a new folder")
    for given in inputs:
        if given is None or not str(given).strip():
            continue
        source = Path(given).expanduser().resolve()
        if path == source or path in source.parents or source in path.parents:
            what = "is" if path == source else "holds" if path in source.parents else "is inside"
            raise InputError(f"{flag} {path} {what} the input {given}: write the output somewhere else")


def _check_writable(path: Path, flag: str) -> None:
    """The nearest existing folder at or above `path` must be writable by us."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{flag} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {path} cannot be written ({existing} is not writable): choose another path")


def check_folder(output: str | Path, force: bool, inputs: tuple[str | Path, ...] = (), flag: str = "-o") -> Path:
    """The resolved output folder, once it is safe to write (or, with --force, to replace)."""
    path = _resolve(output, flag)
    _refuse_over_inputs(path, inputs, flag)
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{flag} {path} is a file, not a folder: name a folder to write")
        if not force:
            raise InputError(f"output folder {path} already exists: choose another {flag} or pass --force")
        if not is_marked(path) and any(path.iterdir()):
            raise InputError(f"{flag} {path} holds files edgec did not write: --force replaces only edgec's own "
                             "output folders; empty it yourself or choose another folder")
    _check_writable(path.parent, flag)
    return path


def check_file(output: str | Path | None, force: bool = True, inputs: tuple[str | Path, ...] = (),
               flag: str = "--json") -> Path | None:
    """A single-file output (`--json FILE`, a report): never an input, replaced only with `force`."""
    if output is None or str(output) == "-":
        return None
    path = _resolve(output, flag)
    _refuse_over_inputs(path, inputs, flag)
    if path.is_dir():
        raise InputError(f"{flag} {path} is a folder: name a file")
    if path.exists() and not force:
        raise InputError(f"{flag} {path} already exists: choose another file or pass --force")
    _check_writable(path.parent, flag)
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"{flag} {path} cannot be written: choose another file")
    return path


@contextlib.contextmanager
def output_lock(*folders: Path):
    """Hold an exclusive lock on each output folder for the block, or refuse at once (exit 2) when another
    edgec process holds one. The lock files live in edgec's cache, not beside the user's files."""
    from edgec.system import cache_root

    with contextlib.ExitStack() as stack:
        for folder in folders:
            key = hashlib.sha256(str(Path(folder).resolve()).encode()).hexdigest()[:32]
            lock = cache_root() / "locks" / f"{key}.lock"
            lock.parent.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(lock, "a+"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise InputError(f"another edgec process is writing {folder}: wait for it or choose another -o") \
                    from None
        yield
