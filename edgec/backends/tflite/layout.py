"""Axis permutations: how a TFLite tensor's axes relate to the ONNX value it holds.

A value lowered with permutation `perm` is stored as `np.transpose(value, perm)`: TFLite axis
i holds ONNX axis perm[i]. Image ops produce NHWC tensors (perm NHWC) and every other op
either follows its inputs' permutation (elementwise ops, axis ops, Transpose itself) or asks
for the ONNX order, so a CNN converts to NHWC once and has no TRANSPOSE inside.
"""
from __future__ import annotations

NHWC = (0, 2, 3, 1)


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def inverse(perm) -> tuple[int, ...]:
    result = [0] * len(perm)
    for i, p in enumerate(perm):
        result[p] = i
    return tuple(result)


def apply(shape, perm) -> list[int]:
    """The stored shape of a value of ONNX shape `shape`."""
    return [shape[p] for p in perm]


def axis(onnx_axis: int, perm) -> int:
    """Where ONNX axis `onnx_axis` lives in the stored tensor."""
    return list(perm).index(onnx_axis)


def between(have, want) -> tuple[int, ...]:
    """The TRANSPOSE permutation that turns a tensor stored with `have` into one stored with `want`."""
    position = inverse(have)
    return tuple(position[w] for w in want)


def after_transpose(have, onnx_perm) -> tuple[int, ...]:
    """The storage permutation of Transpose(value, onnx_perm)'s output, if no data moves."""
    inv = inverse(onnx_perm)
    return tuple(inv[p] for p in have)


def same_memory(shape, have, want) -> bool:
    """True when two storage orders of `shape` lay out the same bytes (only size-1 axes move)."""
    a = [p for p in have if shape[p] != 1]
    b = [p for p in want if shape[p] != 1]
    return a == b
