"""The original model's outputs on its real inputs: onnxruntime, fp32, one sample at a time."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.corpus.registry import CorpusModel


def run_onnx(path: Path, feeds: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # shipped models declare output shapes they do not produce
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return [dict(zip(names, session.run(names, feed))) for feed in feeds]


def reference_outputs(model: CorpusModel) -> dict[str, np.ndarray]:
    """Outputs keyed by name, samples along each output's batch axis."""
    return model.stack(run_onnx(model.onnx_path, model.samples(model.load_inputs())))
