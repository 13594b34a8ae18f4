"""Measure a built artifact against the original model, as a user would: the artifact's own harness
(`run.py infer`) on the model's real inputs, then the output error and the task fidelity."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.corpus.registry import CorpusModel

Outputs = dict[str, np.ndarray]


@dataclass(frozen=True)
class Comparison:
    error_over_range: float  # worst output's max |artifact - original| / the original's range
    worst_output: str
    task: float  # the model's fidelity score at the build's precision, in [0, 1]
    task_without_ties: float  # the same score with no tie at the precision's error (as in fp32)


class HarnessError(RuntimeError):
    """`run.py infer` failed: the message is its last stderr line."""


def _infer(artifact: Path, arrays: dict[str, np.ndarray], tmp: Path, timeout: float, device: str) -> Outputs:
    from edgec.runners import HarnessCall, get_runner

    src, dst = tmp / "in.npz", tmp / "out.npz"
    np.savez(src, **arrays)
    call = HarnessCall("infer", inputs={"--inputs": src}, outputs={"--outputs": dst})
    result = get_runner(device).run_harness(artifact, call, timeout)
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()] or [f"exit {result.returncode}"]
        raise HarnessError(f"run.py infer on {device} exited {result.returncode}: {lines[-1].strip()}")
    with np.load(dst) as data:
        return {k: data[k] for k in data.files}


def artifact_outputs(model: CorpusModel, artifact: Path, timeout: float = 600, device: str = "local") -> Outputs:
    """The artifact's outputs on the model's real inputs, computed on `device` (edgec's runners): all
    samples in one `run.py infer` call where every input and output is batched on axis 0, else one call
    per sample (the harness splits and joins batches along axis 0 only)."""
    arrays = model.load_inputs()
    with tempfile.TemporaryDirectory(prefix="corpus-infer-") as tmp:
        if not model.batch_axes:
            return _infer(artifact, arrays, Path(tmp), timeout, device)
        return model.stack([_infer(artifact, feed, Path(tmp), timeout, device) for feed in model.samples(arrays)])


def compare(model: CorpusModel, reference: Outputs, outputs: Outputs, precision: str = "fp32") -> Comparison:
    worst, name = 0.0, ""
    for key, ref in reference.items():
        out = np.asarray(outputs[key], dtype=np.float64)
        ref = np.asarray(ref, dtype=np.float64)
        if out.shape != ref.shape:
            return Comparison(float("inf"), f"{key} (shape {list(out.shape)}, expected {list(ref.shape)})", 0.0, 0.0)
        span = float(ref.max() - ref.min()) or 1.0
        error = float(np.abs(out - ref).max()) / span
        if error > worst or not name:
            worst, name = error, key
    return Comparison(worst, name, model.fidelity.score(reference, outputs, precision),
                      model.fidelity.score(reference, outputs, "fp32"))
