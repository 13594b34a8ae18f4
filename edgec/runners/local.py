"""Run the harness on this machine with the current Python."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from edgec.runners import HarnessResult, Runner


class LocalRunner(Runner):
    name = "local"

    def run_harness(self, artifact: Path, args: list[str], timeout: float = 1800) -> HarnessResult:
        with tempfile.TemporaryDirectory(prefix="edgec-run-") as tmp:
            json_path = Path(tmp) / "report.json"
            cmd = [sys.executable, str(Path(artifact) / "run.py"), *args, "--json", str(json_path)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
            return self._finish(proc, json_path)
