"""Quantization parameters read from the shared engine's QDQ graph, in TFLite's terms.

TFLite stores int8 tensors with a scale and zero point per tensor or per channel
(`quantized_dimension`); the QDQ graph says the same with DequantizeLinear/QuantizeLinear
nodes. uint8 schemes are shifted to int8 (zero point and data minus 128), which represents
the same real values.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir


@dataclass(frozen=True)
class QParams:
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int = 0

    @property
    def per_tensor(self) -> bool:
        return len(self.scale) == 1

    def close_to(self, other: "QParams | None") -> bool:
        return other is not None and self.zero_point == other.zero_point and np.allclose(
            self.scale, other.scale, rtol=1e-6, atol=0)


@dataclass(frozen=True)
class QConst:
    """A quantized constant: integer data and its parameters (weights, biases)."""

    data: np.ndarray
    params: QParams

    def real(self) -> np.ndarray:
        shape = [1] * self.data.ndim
        if not self.params.per_tensor:
            shape[self.params.axis] = -1
        scale = np.asarray(self.params.scale, np.float64).reshape(shape)
        zero = np.asarray(self.params.zero_point, np.float64).reshape(shape)
        return ((self.data.astype(np.float64) - zero) * scale).astype(np.float32)


def constant(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def is_constant(value: ir.Value | None) -> bool:
    """A value known at build time: an initializer, or the DequantizeLinear of one (int8 weights)."""
    if value is None:
        return False
    if value.const_value is not None:
        return True
    producer = value.producer()
    return (producer is not None and producer.op_type == "DequantizeLinear"
            and producer.inputs[0].const_value is not None)


def zero_bias(channels: int, input_scale: float, weight: QParams) -> QConst:
    """The int32 zero bias a quantized CONV_2D/FULLY_CONNECTED needs when the model has none:
    its scale is the input scale times each weight scale, as TFLite requires."""
    scales = tuple(input_scale * s for s in weight.scale)
    return QConst(np.zeros(channels, np.int32), QParams(scales, (0,) * len(scales), 0))


# TFLite requantizes with a 32-bit fixed-point multiplier and a shift of at most 31 either way: a ratio
# of scales outside this range aborts the interpreter (seen with attention masks of -3.4e38 in int8).
MULTIPLIER_RANGE = (2.0 ** -31, 2.0 ** 31)


def rescalable(*ratios: float) -> bool:
    """True when TFLite's int8 kernels can apply each of these scale ratios."""
    return all(MULTIPLIER_RANGE[0] <= r < MULTIPLIER_RANGE[1] for r in ratios)


def node_params(node: ir.Node) -> QParams | None:
    """The (scale, zero point, axis) of a QuantizeLinear or DequantizeLinear node, if constant."""
    scale = constant(node.inputs[1])
    if scale is None:
        return None
    zero = constant(node.inputs[2]) if len(node.inputs) > 2 else None
    zero_dtype = zero.dtype if zero is not None else np.dtype(np.uint8)
    zero = np.zeros_like(scale, dtype=np.int64) if zero is None else zero.astype(np.int64)
    if zero_dtype == np.uint8:
        zero = zero - 128
    axis = node.attributes.get_int("axis", 1) if scale.size > 1 else 0
    return QParams(tuple(float(s) for s in scale.reshape(-1)), tuple(int(z) for z in zero.reshape(-1)), axis)


def integer_dtype(node: ir.Node) -> str:
    """The integer type a QuantizeLinear produces (or a DequantizeLinear reads), as TFLite stores it."""
    source = node.inputs[0] if node.op_type == "DequantizeLinear" else node.inputs[2] if len(node.inputs) > 2 else None
    if source is None or source.dtype is None:
        return "int8"  # QuantizeLinear without a zero point produces uint8, shifted to int8
    name = source.dtype.numpy().name
    return "int8" if name == "uint8" else name


def dequantized_constant(node: ir.Node) -> QConst | None:
    """A DequantizeLinear of a constant (weights, biases) as integer data plus parameters."""
    data = constant(node.inputs[0])
    params = node_params(node)
    if data is None or params is None:
        return None
    if data.dtype == np.uint8:
        data = (data.astype(np.int16) - 128).astype(np.int8)
    if not params.per_tensor:
        params = QParams(params.scale, params.zero_point, params.axis % data.ndim)
    return QConst(data, params)
