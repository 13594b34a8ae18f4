"""Run IR models in onnxruntime: the reference that samples, the error report and the fallback use."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx_ir as ir

from edgec import ir as eir
from edgec import system


def session(model: ir.Model | eir.Snapshot, optimize: bool = False, threads: int = 0):
    """An onnxruntime CPU session for `model`; unoptimized unless asked (integer kernels need it);
    `threads` 0 lets onnxruntime choose, 1 times steadily on a shared machine. A snapshot's proto is
    read from memory where its weights are all in it (a model serializes once for the reference
    run and the pass pipeline's snapshot)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if isinstance(model, eir.Snapshot):
        if model.folder is None:
            return ort.InferenceSession(model.proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        model = model.restore()
    with system.scratch("ort") as tmp:  # the session reads it all at creation
        path = eir.save(model, Path(tmp) / "model.onnx")
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_all(sess, runs, outputs: list) -> dict[str, np.ndarray]:
    """The outputs of every run (package.harness.interface.Runs), put together as the runs were split."""
    names = [spec.name for spec in outputs]
    return runs.merge([dict(zip(names, sess.run(names, feed))) for feed in runs], outputs)
