"""Helpers every operator family uses: attributes, static shapes, and elementwise operands."""
from __future__ import annotations

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import layout
from edgec.backends.tflite.lowering import Lowering
from edgec.backends.tflite.quant import QConst, constant
from edgec.errors import UnsupportedError


def attr_ints(node: ir.Node, name: str, default) -> list[int]:
    attr = node.attributes.get(name)
    return list(attr.as_ints()) if attr is not None else list(default)


def static_shape(value: ir.Value | None) -> list | None:
    """The value's shape as a list (dimensions may be symbolic), or None when unknown."""
    return list(value.shape) if value is not None and value.shape is not None else None


def all_static(*dims) -> bool:
    return all(isinstance(d, int) for d in dims)


def optional_input(node: ir.Node, index: int) -> ir.Value | None:
    return node.inputs[index] if len(node.inputs) > index else None


def constant_inputs(description: str, then=None):
    """A pre-check: every present input after the first is a constant (`description` names them), then `then`."""
    def check(node: ir.Node) -> str:
        if any(v is not None and constant(v) is None for v in node.inputs[1:]):
            return f"{description} must be constant"
        return then(node) if then else ""
    return check


def check_output_shape(node: ir.Node, produced, expected) -> None:
    """Refuse a lowering whose TFLite output shape differs from the (stored) shape ONNX gives."""
    if list(produced) != list(expected):
        raise UnsupportedError(f"{node.op_type} (node '{node.name}'): TFLite would produce shape {list(produced)}, "
                               f"ONNX expects {list(expected)}")


def per_output_channel(weights: QConst | None, axis: int) -> QConst | None:
    """Quantized weights TFLite can take: per-tensor, or per-channel along the output channels."""
    if weights is None or weights.params.per_tensor or weights.params.axis == axis:
        return weights
    return None


def common_perm(lowering: Lowering, node: ir.Node, rank: int) -> tuple[int, ...]:
    """The storage order of the first full-rank computed input: elementwise ops follow it."""
    for value in node.inputs:
        if value is not None and not lowering.is_const(value) and len(lowering.shape(value)) == rank:
            return lowering.ref(value).perm
    return layout.identity(rank)


def operand(lowering: Lowering, value: ir.Value, perm, rank: int, int8: bool = False, dtype: str | None = None) -> int:
    """An elementwise input: the tensor in `perm`, or a constant broadcast to `rank` and stored in `perm`.

    `int8` keeps quantized data quantized; `dtype` converts a computed input (CAST) or a constant.
    """
    if lowering.is_const(value):
        quantized = lowering.qconst(value) if int8 else None
        data = quantized.data if quantized is not None else np.asarray(lowering.const(value))
        data = np.transpose(data.reshape((1,) * (rank - data.ndim) + data.shape), perm)
        if quantized is not None:
            return lowering.writer.tensor(value.name, data.shape, data.dtype.name, data, quant=quantized.params)
        return lowering.constant(value.name, data.astype(dtype) if dtype else data)
    ref = lowering.lifted(value, rank, perm, float_=not int8)
    return lowering.cast(ref, dtype, value.name).index if dtype else ref.index
