"""Sample inputs for an artifact and the reference outputs of the original model."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec import ir as eir
from edgec.ir import runtime

SAMPLE_COUNT = 8


def sample_inputs(model: ir.Model, data: dict[str, np.ndarray] | None, count: int = SAMPLE_COUNT) -> dict:
    """The first `count` rows of the user's data, or seeded noise shaped like the inputs.

    Arrays are stacked along axis 0 in multiples of the model's batch size.
    """
    inputs = {}
    rng = np.random.default_rng(0)
    for value in model.graph.inputs:
        dtype = eir.numpy_dtype(value)
        shape = [d if isinstance(d, int) else 1 for d in value.shape]
        batch = shape[0] if shape else 1
        if data is not None and value.name in data:
            rows = data[value.name][: count * batch]
            inputs[value.name] = rows.astype(dtype, copy=False)
            continue
        full = [count * batch, *shape[1:]] if shape else [count]
        if np.issubdtype(np.dtype(dtype), np.floating):
            inputs[value.name] = rng.standard_normal(full).astype(dtype)
        else:
            inputs[value.name] = rng.integers(0, 2, full).astype(dtype)
    return inputs


def reference_outputs(model: ir.Model, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run the model in onnxruntime, batch by batch, without graph optimizations."""
    return runtime.run_batched(runtime.session(model), model, inputs)
