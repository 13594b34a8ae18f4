"""ONNX operators lowered to TFLite builtins, one module per operator family.

`TABLE` maps each ONNX op type to its lowering and is tflite-arm's claimed-operator list;
`check(node)` says why a node of a claimed type still cannot be lowered, or ''.
"""
from edgec.backends.tflite.ops import (activations, arithmetic, constants, conv, dense, indexing, logic,  # noqa: F401
                                       normalization, pooling, qdq, reductions, resize, sequence, shape, softmax)
from edgec.backends.tflite.ops.registry import TABLE, check

__all__ = ["TABLE", "check"]
