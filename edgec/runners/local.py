"""Run the harness on this machine with the current Python (-P: nothing in the artifact's folder shadows a
module the harness imports before it has checked the files)."""
from __future__ import annotations

import subprocess
import sys

from edgec.runners import Placement, Runner


class LocalRunner(Runner):
    name = "local"

    def _execute(self, placement: Placement, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-P", "run.py", *args], capture_output=True, text=True, timeout=timeout,
                              cwd=placement.artifact)

    def _run_python_source(self, source: str, timeout: float) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-"], input=source, capture_output=True, text=True, timeout=timeout)
