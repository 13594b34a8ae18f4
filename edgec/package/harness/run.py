"""edgec artifact harness: verify, infer, bench and profile this model on this device.

    python run.py verify | infer --inputs in.npz --outputs out.npz | bench | profile   (--help)

It needs only numpy and the runtime named in requirements.txt. Every file the manifest hashes
is checked before anything from this folder is imported; the commands live in edgec_harness/.
Exit codes: 0 ok, 1 a bug in edgec, 2 bad usage or input, 3 the outputs disagree with the
expected ones, 4 a file does not match the manifest, 5 the runtime is missing.
"""
import hashlib
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
INTEGRITY_FAILURE = 4  # edgec_harness.errors.ExitCode.INTEGRITY: nothing is imported before this check


def check_files():
    """Refuse files that are not the ones the manifest describes (its typed reading comes later)."""
    try:
        with open(os.path.join(HERE, "edgec.json")) as f:
            files = json.load(f).get("model", {}).get("files", {})
    except (OSError, ValueError, AttributeError):
        return  # edgec_harness refuses an unreadable manifest in one line
    for name, entry in sorted(files.items()):
        path = os.path.join(HERE, name)
        if not os.path.isfile(path):
            fail(f"{name} is missing from the artifact")
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != entry.get("sha256"):
            fail(f"{name} does not match the manifest's sha256: rebuild the artifact")


def fail(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(INTEGRITY_FAILURE)


if __name__ == "__main__":
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
