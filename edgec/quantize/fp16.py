"""fp16 weight storage for runtimes that compute in fp32: half the file, the same kernels.

Each large float32 initializer becomes a float16 initializer followed by a Cast to float32,
which the runtime folds back into a constant when it loads the model.
"""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

MIN_ELEMENTS = 16  # tiny tensors (shapes, scales) are not worth a Cast


def store_weights_fp16(model: ir.Model) -> int:
    """Convert float32 initializers in place; return how many were converted."""
    graph = model.graph
    converted = 0
    for name, value in list(graph.initializers.items()):
        tensor = value.const_value
        if tensor is None or value.dtype != ir.DataType.FLOAT or tensor.size < MIN_ELEMENTS:
            continue
        if value in graph.inputs or value in graph.outputs:
            continue
        half = ir.Value(name=f"{name}_fp16", shape=value.shape, type=ir.TensorType(ir.DataType.FLOAT16),
                        const_value=ir.tensor(tensor.numpy().astype(np.float16), name=f"{name}_fp16"))
        graph.initializers.add(half)
        cast = ir.node("Cast", [half], {"to": ir.DataType.FLOAT}, name=f"{name}_to_fp32")
        graph.insert_before(graph[0], cast) if len(graph) else graph.append(cast)
        cast.outputs[0].name = f"{name}_fp32"
        value.replace_all_uses_with(cast.outputs[0])
        graph.initializers.pop(name)
        converted += 1
    return converted
