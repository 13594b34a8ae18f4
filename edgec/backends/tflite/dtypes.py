"""Element types: which ONNX dtypes a .tflite tensor can hold, and which each TFLite kernel computes in.

Every tensor keeps its ONNX dtype. An integer op runs on the TFLite kernel for that dtype; where
LiteRT has no kernel for a narrow integer (int8/uint8/int16 without quantization), it runs on the
int32 kernel between two CASTs, which wraps exactly as ONNX does (bool max/min run there as 0/1);
otherwise the node is refused by name. KERNELS was measured on ai-edge-litert 2.3.0 by running each
kernel on each dtype and comparing with numpy (a kernel that ran but returned wrong numbers, such as
a quantized int8 kernel fed plain integers, counts as absent).
"""
from __future__ import annotations

import onnx_ir as ir

FLOAT = frozenset({"float32"})
INTEGERS = ("int8", "uint8", "int16", "int32", "int64")
NARROW = frozenset({"int8", "uint8", "int16"})
ORDERED_ON_BOOL = frozenset({"REDUCE_MAX", "REDUCE_MIN", "MAXIMUM", "MINIMUM"})  # false < true, as 0 < 1
VALUE_DTYPES = frozenset({"float32", "bool", *INTEGERS})  # float16 appears only as stored weights

_ALL = VALUE_DTYPES
KERNELS: dict[str, frozenset[str]] = {
    "ADD": frozenset({"float32", "int32", "int64"}),
    "SUB": frozenset({"float32", "int32", "int64"}),
    "MUL": frozenset({"float32", "int32", "int64"}),
    "DIV": frozenset({"float32", "int32"}),
    "FLOOR_DIV": frozenset({"float32", "int32", "int16", "int8"}),
    "FLOOR_MOD": frozenset({"float32", "int32", "int64", "int16", "int8"}),
    "POW": frozenset({"float32", "int32"}),
    "MAXIMUM": frozenset({"float32", *INTEGERS}),
    "MINIMUM": frozenset({"float32", *INTEGERS}),
    "EQUAL": frozenset({"float32", "int32", "int64", "int16", "bool"}),
    "NOT_EQUAL": frozenset({"float32", "int32", "int64", "int16", "bool"}),
    "LESS": frozenset({"float32", "int32", "int64", "int16"}),
    "LESS_EQUAL": frozenset({"float32", "int32", "int64", "int16"}),
    "GREATER": frozenset({"float32", "int32", "int64", "int16"}),
    "GREATER_EQUAL": frozenset({"float32", "int32", "int64", "int16"}),
    "ABS": frozenset({"float32", "int32", "int16"}),
    "NEG": frozenset({"float32", "int32", "int64", "int16", "int8"}),
    "SIGN": frozenset({"float32", "int32"}),
    "SUM": frozenset({"float32", *INTEGERS}),
    "REDUCE_MAX": frozenset({"float32", *INTEGERS}),
    "REDUCE_MIN": frozenset({"float32", *INTEGERS}),
    "REDUCE_PROD": frozenset({"float32", "int32", "int64"}),
    "CUMSUM": frozenset({"float32", "int32", "int64"}),
    "RANGE": frozenset({"float32", "int32", "int64"}),
    "ARG_MAX": frozenset({"float32", "int32", "int8", "uint8", "bool"}),
    "ARG_MIN": frozenset({"float32", "int32", "int8", "uint8", "bool"}),
    "TOPK_V2": frozenset({"float32", *INTEGERS}),
    "MAX_POOL_2D": frozenset({"float32", "int16", "int8", "uint8"}),
    "RESIZE_NEAREST_NEIGHBOR": frozenset({"float32", "int32", "int16", "int8", "uint8", "bool"}),
    "LOGICAL_AND": frozenset({"bool"}),
    "LOGICAL_OR": frozenset({"bool"}),
    "LOGICAL_NOT": frozenset({"bool"}),
    "SCATTER_ND": frozenset(VALUE_DTYPES - {"int16"}),
    "ONE_HOT": frozenset(VALUE_DTYPES - {"int16"}),
    # data movement works on every dtype
    **{op: _ALL for op in ("RESHAPE", "TRANSPOSE", "PAD", "PADV2", "MIRROR_PAD", "STRIDED_SLICE", "SLICE", "GATHER",
                           "GATHER_ND", "TILE", "CONCATENATION", "SPLIT_V", "CAST", "REVERSE_V2", "SELECT_V2",
                           "BROADCAST_TO", "PACK", "UNPACK", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH")},
}


def of(value: ir.Value | None) -> str:
    """The numpy name of a value's element type ('float32' when ONNX does not say)."""
    if value is None or value.dtype is None:
        return "float32"
    try:
        return value.dtype.numpy().name
    except (TypeError, ValueError):  # float8, int4 and other types numpy does not know
        return value.dtype.name.lower()


def unrepresentable(values) -> str:
    """Why one of these values cannot be a .tflite tensor, or ''."""
    for value in values:
        if value is not None and value.type is not None and not isinstance(value.type, ir.TensorType):
            return f"'{value.name}' is not a tensor ({type(value.type).__name__}); TFLite graphs hold tensors only"
        if value is not None and of(value) not in VALUE_DTYPES:
            return (f"'{value.name}' is {of(value)}; TFLite kernels compute float32 and int8 to int64 "
                    f"(export the model in float32; --precision fp16 stores half weights)")
    return ""


def compute_dtype(op: str, dtype: str) -> str | None:
    """The dtype TFLite's `op` computes a `dtype` tensor in: itself, int32 for a narrow integer, or None."""
    kernels = KERNELS.get(op, FLOAT)
    if dtype in kernels:
        return dtype
    if (dtype in NARROW or dtype == "bool" and op in ORDERED_ON_BOOL) and "int32" in kernels:
        return "int32"
    return None


def refusal(op: str, dtype: str) -> str:
    """'' when `op` computes `dtype`, else the one-line reason."""
    if compute_dtype(op, dtype) is not None:
        return ""
    have = ", ".join(sorted(KERNELS.get(op, FLOAT)))
    return f"TFLite's {op} has no {dtype} kernel (it computes {have})"
