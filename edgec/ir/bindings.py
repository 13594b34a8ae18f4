"""Inputs bound to constants: `--const-input NAME=VALUE`.

Streaming and multi-rate models take configuration as inputs (a sample rate, a flag, a length).
A deployment fixes them; once bound, folding removes what depends on them: an If on a sample
rate keeps one branch, a Loop over a fixed length unrolls. `config_like_inputs` is how
`edgec inspect` suggests the flag.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from edgec.errors import InputError

BOOL_WORDS = {"true": 1, "false": 0}
MAX_ELEMENTS = 64  # configuration is small; larger constants belong in the model


@dataclass(frozen=True)
class ConstInput:
    """One `--const-input NAME=VALUE`: a scalar or a comma-separated list of numbers."""

    name: str
    values: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> "ConstInput":
        match = re.fullmatch(r"\s*([^=\s]+)\s*=\s*(.+?)\s*", text)
        example = "e.g. sr=16000 or mask=1,0,1"
        if not match:
            raise InputError(f"malformed --const-input '{text}': write NAME=VALUE, {example}")
        try:
            values = tuple(float(BOOL_WORDS.get(v.strip().lower(), v)) for v in match.group(2).split(","))
        except ValueError:
            raise InputError(f"--const-input '{text}': values must be numbers or true/false, {example}") from None
        if len(values) > MAX_ELEMENTS:
            raise InputError(f"--const-input {match.group(1)}: {len(values)} values; at most {MAX_ELEMENTS}")
        return cls(match.group(1), values)

    def array(self, value: ir.Value) -> np.ndarray:
        """The bound value in the input's dtype and shape (a lone value fills a shape of one element)."""
        dtype = value.dtype.numpy() if value.dtype is not None else np.dtype(np.float32)
        data = np.array(self.values)
        if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
            if not np.all(data == np.round(data)):
                raise InputError(f"--const-input {self.name}: input '{self.name}' is {dtype.name}, got {self.values}")
        data = data.astype(dtype)
        if value.shape is None:
            return data.reshape(()) if data.size == 1 else data
        dims = list(value.shape)
        if all(isinstance(d, int) for d in dims):
            if int(np.prod(dims, dtype=np.int64)) != data.size:
                raise InputError(f"--const-input {self.name}: input '{self.name}' has shape {dims}, which holds "
                                 f"{int(np.prod(dims, dtype=np.int64))} values; got {data.size}")
            return data.reshape(dims)
        if data.size == 1 or len(dims) == 1:
            return data.reshape([1] * len(dims) if data.size == 1 else [data.size])
        raise InputError(f"--const-input {self.name}: input '{self.name}' has the symbolic shape {dims}: "
                         f"fix it with --input-shape first")


def bind_inputs(model: ir.Model, bindings: list[ConstInput]) -> list[str]:
    """Turn the named inputs into initializers; return one note per bound input."""
    inputs = {value.name: value for value in model.graph.inputs}
    notes = []
    for binding in bindings:
        value = inputs.get(binding.name)
        if value is None:
            raise InputError(f"--const-input names '{binding.name}', but the model's inputs are: {', '.join(inputs)}")
        array = binding.array(value)
        model.graph.inputs.remove(value)
        value.const_value = ir.tensor(array, name=value.name)
        value.shape = ir.Shape(array.shape)
        model.graph.register_initializer(value)
        notes.append(f"input '{binding.name}' bound to {array.tolist()}")
    return notes


def config_like_inputs(model: ir.Model) -> list[dict]:
    """Inputs that look like configuration (scalars, flags, rates): candidates for --const-input."""
    found = []
    for value in model.graph.inputs:
        shape = value.shape
        static = shape is not None and all(isinstance(d, int) for d in shape)
        size = int(np.prod(list(shape), dtype=np.int64)) if static else None
        if size is None or size > 4:
            continue
        dtype = value.dtype.numpy() if value.dtype is not None else None
        controls_flow = any(use.node.op_type in ("If", "Loop") for use in value.uses())
        if len(shape) == 0 or controls_flow or (dtype is not None and (np.issubdtype(dtype, np.integer)
                                                                        or dtype == np.bool_)):
            found.append({"name": value.name, "shape": list(shape), "dtype": dtype.name if dtype else "?",
                          "suggest": f"--const-input {value.name}=VALUE"})
    return found
