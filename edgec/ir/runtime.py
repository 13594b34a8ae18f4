"""Run IR models in onnxruntime: the reference that samples, the error report and the fallback use."""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx_ir as ir

from edgec import ir as eir


def session(model: ir.Model, optimize: bool = False):
    """An onnxruntime CPU session for `model`; unoptimized unless asked (integer kernels need it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with tempfile.TemporaryDirectory(prefix="edgec-ort-") as tmp:  # the session reads it all at creation
        path = eir.save(model, Path(tmp) / "model.onnx")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_batched(sess, model: ir.Model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs for arrays stacked along axis 0, fed in the model's static batch size (or all at once)."""
    first = model.graph.inputs[0]
    batch = first.shape[0] if first.shape is not None and isinstance(first.shape[0], int) else None
    count = len(next(iter(inputs.values())))
    step = batch or count
    names = [o.name for o in sess.get_outputs()]
    parts: dict[str, list] = {n: [] for n in names}
    for i in range(0, count - step + 1, step):
        feed = {k: v[i : i + step] for k, v in inputs.items()}
        for name, value in zip(names, sess.run(names, feed)):
            parts[name].append(value)
    return {n: np.concatenate(p) for n, p in parts.items()}
