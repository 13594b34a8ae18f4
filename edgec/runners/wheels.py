"""aarch64 wheels for an artifact's requirements: the official PyPI wheels, fetched by the host's pip.

They are installed into a folder that goes on the emulated Python's PYTHONPATH, one folder
per requirement set, cached under `system.cache_root()/wheels/<sha256-prefix>/` and reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

from edgec import system

logger = logging.getLogger(__name__)

# glibc in the sysroot is bookworm's 2.36, so any manylinux tag up to 2_36 runs there.
WHEEL_PLATFORMS = ["manylinux2014_aarch64"] + [
    f"manylinux_2_{minor}_aarch64" for minor in (17, 24, 27, 28, 31, 34, 35, 36)
]
PYTHON_VERSION = "3.11"
# Bump when the recipe changes, so old caches are rebuilt rather than trusted.
WHEELS_RECIPE = 1


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
    final = system.cache_root() / "wheels" / key
    if (final / ".edgec-ready").exists():
        return final
    with system.file_lock(final.parent / f"{key}.lock"):
        if (final / ".edgec-ready").exists():
            return final
        with system.temporary_folder(final) as tmp:
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
                with system.logged_step(logger, f"fetching aarch64 wheels: {', '.join(lines)}"):
                    system.run_tool(cmd, f"getting aarch64 wheels for {', '.join(lines)}",
                                    "; every requirement needs an aarch64 (manylinux) wheel for CPython 3.11 on PyPI")
            (tmp / ".edgec-ready").write_text(key_text)
            system.publish(tmp, final)
    return final
