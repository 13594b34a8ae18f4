"""A device's wheels for an artifact's requirements: the official PyPI wheels, fetched by the host's pip.

They are installed into a folder that goes on the device Python's PYTHONPATH (the emulated
boards', or an ssh board's whose Python cannot make a venv), one folder per requirement set,
architecture and Python, cached under `system.cache_root()/wheels/<sha256-prefix>/` and reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

from edgec import system

logger = logging.getLogger(__name__)

# glibc in the sysroot is bookworm's 2.36 (Raspberry Pi OS bookworm's too), so any manylinux tag
# up to 2_36 runs there.
GLIBC_MINORS = (17, 24, 27, 28, 31, 34, 35, 36)
PYTHON_VERSION = "3.11"


def wheel_platforms(arch: str) -> list[str]:
    return [f"manylinux2014_{arch}"] + [f"manylinux_2_{minor}_{arch}" for minor in GLIBC_MINORS]
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


def wheels_for(lines: list[str], arch: str = "aarch64", python: str = PYTHON_VERSION,
               find_links: Path | None = None) -> Path:
    """A folder with the `arch` wheels for these requirement lines and this Python (X.Y or X.Y.Z),
    installed once and reused; from the wheel files in `find_links` only, when given."""
    python = ".".join(python.split(".")[:2])
    platforms = wheel_platforms(arch)
    fields = {"recipe": WHEELS_RECIPE, "python": python, "platforms": platforms, "requirements": sorted(lines)}
    if find_links:
        fields["find_links"] = str(Path(find_links).resolve())
    key_text = json.dumps(fields, sort_keys=True)
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
                       "--python-version", python, "--implementation", "cp",
                       "--abi", "cp" + python.replace(".", "")]
                for plat in platforms:
                    cmd += ["--platform", plat]
                if find_links:
                    cmd += ["--no-index", "--find-links", str(find_links)]
                cmd += ["-r", str(reqfile)]
                with system.logged_step(logger, f"fetching {arch} wheels: {', '.join(lines)}"):
                    system.run_tool(cmd, f"getting {arch} wheels for {', '.join(lines)}",
                                    f"; every requirement needs an {arch} (manylinux) wheel for CPython {python}"
                                    f"{' in ' + str(find_links) if find_links else ' on PyPI'}")
            (tmp / ".edgec-ready").write_text(key_text)
            system.publish(tmp, final)
    return final
