"""edgec artifact harness: verify, infer, bench and profile this model on this device.

    python run.py verify | infer --inputs in.npz --outputs out.npz | bench | profile   (--help)

It needs only numpy and the runtime named in requirements.txt. Every file the manifest hashes
is checked before anything from this folder is imported; the commands live in edgec_harness/.
Exit codes: 0 ok, 1 a bug in edgec, 2 bad usage or input, 3 the outputs disagree with the
expected ones, 4 a file does not match the manifest, 5 the runtime is missing.
"""
import os  # os and sys are loaded before any script runs: a file planted here cannot replace them
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == HERE:
    del sys.path[0]  # as `python -P`: nothing planted in this folder is imported (json.py, hashlib.py, ...)

import hashlib  # noqa: E402 - after this folder left the path
import json  # noqa: E402
INTEGRITY_FAILURE = 4  # edgec_harness.errors.ExitCode.INTEGRITY: nothing is imported before this check
UNHASHED = ("edgec.json", "edgec.json.sig")  # the manifest and its signature
DEVICE_CACHE = "engines/"  # engines this device builds for itself, checked by their own keys


def check_files():
    """Refuse an artifact whose files are not exactly the ones the manifest hashes (its typed reading comes
    later): a file it does not list could be imported, a changed one could run."""
    try:
        with open(os.path.join(HERE, "edgec.json")) as f:
            files = json.load(f).get("files", {})
    except (OSError, ValueError, AttributeError):
        return  # edgec_harness refuses an unreadable manifest in one line
    if not isinstance(files, dict):
        fail("the manifest's file list is not a table: rebuild the artifact")
    for root, _folders, names in os.walk(HERE):
        for name in names:
            relative = os.path.relpath(os.path.join(root, name), HERE).replace(os.sep, "/")
            if relative not in files and relative not in UNHASHED and not relative.startswith(DEVICE_CACHE):
                fail(f"{relative} is not listed in the manifest: remove it, or rebuild the artifact")
    for name, entry in sorted(files.items()):
        path = os.path.join(HERE, name)
        if os.path.islink(path) or not os.path.isfile(path):
            fail(f"{name} is missing from the artifact")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if not isinstance(entry, dict) or digest.hexdigest() != entry.get("sha256"):
            fail(f"{name} does not match the manifest's sha256: rebuild the artifact")


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(INTEGRITY_FAILURE)


if __name__ == "__main__":
    # Nothing is written into this folder, and no bytecode is read from it: check_files refuses any file the
    # manifest does not list, a planted __pycache__ too. (A pycache_prefix that hid every cache made numpy and
    # the runtime compile from source at every start: about a second of CPU on the build host.)
    sys.dont_write_bytecode = True
    check_files()
    sys.path.insert(0, HERE)
    try:
        from edgec_harness.commands import main
    except ModuleNotFoundError as exc:
        if exc.name != "numpy":
            raise
        print("error: numpy is not installed here: pip install -r requirements.txt", file=sys.stderr)
        sys.exit(5)  # edgec_harness.errors.ExitCode.RUNTIME_MISSING
    sys.exit(main(HERE))
