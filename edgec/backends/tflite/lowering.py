"""The lowering context: which TFLite tensor holds each ONNX value, in which layout and type.

Every ONNX value maps to a `Ref`: a tensor index, the permutation it is stored in (see
layout.py) and, for int8 tensors, the quantization that gives its real value. Each tensor has
the ONNX value's own dtype (dtypes.py). Op lowerings (ops/) ask for their inputs in the layout
and type they need; the context inserts the TRANSPOSE, RESHAPE, CAST, QUANTIZE or DEQUANTIZE
that bridges the gap once and reuses it. Every operator remembers the ONNX node it came from,
so a model LiteRT rejects is reported by that node's name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from edgec.backends.tflite import dtypes, layout
from edgec.backends.tflite.flatbuffer import ModelWriter
from edgec.backends.tflite.quant import (QConst, QParams, constant, dequantized_constant, integer_dtype, is_constant,
                                         node_params)
from edgec.errors import UnsupportedError
from edgec.package.harness.manifest import Quantization, TensorSpec

# Operator versions for int8 kernels, as TensorFlow's converter writes them (float ops are version 1).
INT8_VERSIONS = {
    "CONV_2D": 3, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 4, "TRANSPOSE_CONV": 3, "ADD": 2, "SUB": 2,
    "MUL": 2, "MEAN": 2, "AVERAGE_POOL_2D": 2, "MAX_POOL_2D": 2, "SOFTMAX": 2, "LOGISTIC": 2, "TANH": 2,
    "CONCATENATION": 2, "PAD": 2, "PADV2": 2, "STRIDED_SLICE": 2, "SPLIT": 2, "SPLIT_V": 2, "TRANSPOSE": 2,
    "RESIZE_BILINEAR": 2, "RESIZE_NEAREST_NEIGHBOR": 2, "DEQUANTIZE": 2, "QUANTIZE": 2, "LEAKY_RELU": 2,
    "RELU": 2, "RELU6": 2, "RELU_N1_TO_1": 2, "MAXIMUM": 2, "MINIMUM": 2, "SLICE": 2, "GATHER": 2,
    "DEPTH_TO_SPACE": 2, "SPACE_TO_DEPTH": 2, "REDUCE_MAX": 2, "REDUCE_MIN": 2, "ARG_MAX": 2, "ARG_MIN": 2,
    "TOPK_V2": 2,
}
# Ops whose first version LiteRT 2.3's resolver registers is above 1.
FIRST_VERSIONS = {"BROADCAST_TO": 2}
# Options tables of ops that take some (defaults: no fused activation).
DEFAULT_OPTIONS = {"ADD": "AddOptions", "SUB": "SubOptions", "MUL": "MulOptions", "DIV": "DivOptions",
                   "BATCH_MATMUL": "BatchMatMulOptions"}
# Ops LiteRT 2.3's XNNPACK delegate takes in float but not in int8 (measured with the delegation report on a
# MiniLM block): in an int8 graph they run in float between a DEQUANTIZE and a QUANTIZE, inside XNNPACK.
FLOAT_IN_XNNPACK = {"SOFTMAX", "BATCH_MATMUL"}
# Ops whose int8 output has fixed parameters in TFLite: (scale, zero point).
FIXED_OUTPUT = {"LOGISTIC": (1.0 / 256, -128), "TANH": (1.0 / 128, 0)}


@dataclass(frozen=True)
class Ref:
    """A TFLite tensor holding an ONNX value: `index`, storage permutation, int8 quantization or None."""

    index: int
    perm: tuple[int, ...]
    quant: QParams | None = None


class Lowering:
    def __init__(self, model: ir.Model, precision: str, io_layout: str, io_dtype: str, recurrent: str = "kernel"):
        self.model = model
        self.precision = precision
        self.io_layout = io_layout
        self.io_dtype = io_dtype
        self.recurrent = recurrent  # LSTM: LiteRT's "kernel" where it is exact, or "unrolled" steps
        self.writer = ModelWriter()
        self.refs: dict[ir.Value, Ref] = {}
        self.cache: dict[tuple, Ref] = {}
        self.consumed: set[ir.Node] = set()  # nodes lowered with their producer (fused activations, bias Adds)
        self.opset = model.opset_imports.get("", 17)
        self.node: ir.Node | None = None  # the node being lowered: the origin of the operators it emits
        self.origins: list[ir.Node | None] = []  # per TFLite operator
        self.notes: list[str] = []  # what a build should tell its user (float ops kept in an int8 graph)

    # ---- shapes and constants -------------------------------------------------------------

    def shape(self, value: ir.Value) -> list[int]:
        if value.shape is None or not all(isinstance(d, int) for d in value.shape):
            raise UnsupportedError(
                f"value '{value.name}' has no static shape; tflite-arm needs static shapes (use --input-shape)")
        return list(value.shape)

    def qconst(self, value: ir.Value | None) -> QConst | None:
        """A constant behind a DequantizeLinear (the QDQ engine's weights and biases)."""
        node = value.producer() if value is not None else None
        if node is not None and node.op_type == "DequantizeLinear":
            return dequantized_constant(node)
        return None

    def const(self, value: ir.Value | None) -> np.ndarray | None:
        """A constant's real value, dequantized if it sits behind a DequantizeLinear."""
        if value is None:
            return None
        data = constant(value)
        if data is not None:
            return data
        q = self.qconst(value)
        return q.real() if q is not None else None

    def is_const(self, value: ir.Value | None) -> bool:
        return is_constant(value)

    # ---- tensors ---------------------------------------------------------------------------

    def new(self, value: ir.Value, perm, quant: QParams | None = None, dtype: str | None = None) -> Ref:
        """A fresh output tensor for `value`, stored in `perm`, of the value's own dtype unless told."""
        perm = tuple(perm)
        dtype = dtype or ("int8" if quant is not None else dtypes.of(value))
        index = self.writer.tensor(value.name, layout.apply(self.shape(value), perm), dtype, quant=quant)
        ref = Ref(index, perm, quant)
        self.refs[value] = ref
        return ref

    def scratch(self, name: str, shape, quant: QParams | None = None, dtype: str | None = None) -> int:
        """A tensor no ONNX value maps to (an intermediate of a decomposition): float32 unless told."""
        return self.writer.tensor(name, shape, dtype or ("int8" if quant is not None else "float32"), quant=quant)

    def dtype(self, ref: Ref | int) -> str:
        return self.writer.dtype(ref.index if isinstance(ref, Ref) else ref)

    def weight(self, name: str, data: np.ndarray) -> int:
        """A float constant operand; in fp16 builds it is stored as float16 with a DEQUANTIZE (a scalar
        saves nothing in half precision and stays float32)."""
        data = np.asarray(data, np.float32)
        if self.precision != "fp16" or data.size == 1:
            return self.writer.tensor(name, data.shape, "float32", data)
        half = self.writer.tensor(name + "/fp16", data.shape, "float16", data.astype(np.float16))
        full = self.writer.tensor(name, data.shape, "float32")
        self.emit("DEQUANTIZE", [half], [full], version=3)
        return full

    def constant(self, name: str, data: np.ndarray) -> int:
        """A constant operand of its own dtype (float ones through `weight`)."""
        data = np.asarray(data)
        if data.dtype.kind == "f":
            return self.weight(name, data)
        return self.writer.tensor(name, data.shape, data.dtype.name, data)

    def qweight(self, name: str, q: QConst, dtype: str | None = None) -> int:
        return self.writer.tensor(name, q.data.shape, dtype or q.data.dtype.name, q.data, quant=q.params)

    def param(self, name: str, data, dtype: str = "int32") -> int:
        data = np.asarray(data, dtype)
        return self.writer.tensor(name, data.shape, dtype, data)

    def scalar(self, name: str, value, dtype: str = "float32") -> int:
        return self.writer.tensor(name, [], dtype, np.asarray(value, dtype))

    def compute(self, op: str, inputs: list[int], name: str, shape=None, dtype: str | None = None,
                options=None, quant: QParams | None = None, version: int | None = None) -> int:
        """One operator writing a fresh tensor; its shape is the numpy broadcast of the inputs unless given,
        its dtype the first input's unless given."""
        if shape is None:
            shape = np.broadcast_shapes(*(tuple(self.writer.shape(i)) for i in inputs))
        out = self.scratch(name, list(shape), quant, dtype=dtype or self.dtype(inputs[0]))
        self.emit(op, inputs, [out], options, version)
        return out

    def emit(self, op: str, inputs: list[int], outputs: list[int], options=None, version: int | None = None) -> None:
        """Append an operator; ops whose kernels read options get their defaults when none are given."""
        if options is None and op in DEFAULT_OPTIONS:
            options = self.writer.options(DEFAULT_OPTIONS[op])
        if version is None:
            quantized = any(self.writer.tensors[i].quantization is not None
                            for i in list(inputs) + list(outputs) if i >= 0)
            version = max(INT8_VERSIONS.get(op, 1) if quantized else 1, FIRST_VERSIONS.get(op, 1))
        self.writer.operator(op, inputs, outputs, options, version)
        self.origins.append(self.node)

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    # ---- getting inputs in the layout and type an op needs ---------------------------------

    def ref(self, value: ir.Value) -> Ref:
        """The tensor holding `value`; a constant read as data (Gather's table, a Transpose's input) becomes
        a constant tensor here, int8 when it is per-tensor quantized."""
        if value not in self.refs:
            if not self.is_const(value):
                raise UnsupportedError(f"value '{value.name}' is used before it is computed (the graph is not sorted)")
            quantized = self.qconst(value)
            if quantized is not None and quantized.params.per_tensor:
                index = self.qweight(value.name, quantized)
            else:
                quantized, index = None, self.constant(value.name, self.const(value))
            self.refs[value] = Ref(index, layout.identity(self.const(value).ndim), quantized and quantized.params)
        return self.refs[value]

    def get(self, value: ir.Value, perm=None, float_: bool = False, memory: bool = False) -> Ref:
        """The value's tensor, stored in `perm` (None: as it is), dequantized to float if asked.

        `memory=True` only needs the bytes in `perm`'s order (for RESHAPE): moving size-1 axes is free.
        """
        ref = self.ref(value)
        if perm is not None and tuple(perm) != ref.perm:
            shape = self.shape(value)
            if memory and layout.same_memory(shape, ref.perm, perm):
                ref = Ref(ref.index, tuple(perm), ref.quant)
            else:
                ref = self._convert(value, ref, ("transpose", tuple(perm)), lambda r: self._transpose(value, r, perm))
        if float_ and ref.quant is not None:
            ref = self._convert(value, ref, ("float",), lambda r: self._dequantize(value, r))
        return ref

    def _convert(self, value, ref, key, make) -> Ref:
        full = (ref.index,) + key
        if full not in self.cache:
            self.cache[full] = make(ref)
        return self.cache[full]

    def _transpose(self, value, ref: Ref, perm) -> Ref:
        return self.transposed(ref, self.shape(value), perm, value.name)

    def transposed(self, ref: Ref, onnx_shape, perm, name: str) -> Ref:
        """`ref` (holding a value of ONNX shape `onnx_shape`) stored in `perm` instead, by a TRANSPOSE."""
        move = layout.between(ref.perm, perm)
        name = name + "/" + "".join(str(p) for p in perm)
        out = self._like(ref, name, layout.apply(onnx_shape, perm))
        self.emit("TRANSPOSE", [ref.index, self.param(name + "/perm", move)], [out])
        return Ref(out, tuple(perm), ref.quant)

    def reshaped(self, ref: Ref, shape, name: str) -> Ref:
        """`ref`'s data in ONNX order under a new shape (stored in identity order)."""
        return self.restored(ref, shape, layout.identity(len(shape)), name)

    def restored(self, ref: Ref, stored_shape, perm, name: str) -> Ref:
        """`ref`'s bytes under another stored shape, read as a value stored in `perm` (a RESHAPE)."""
        out = self._like(ref, name, stored_shape)
        self.emit("RESHAPE", [ref.index, self.param(name + "/shape", stored_shape)], [out],
                  self.writer.options("ReshapeOptions", newShape=list(stored_shape)))
        return Ref(out, tuple(perm), ref.quant)

    def lifted(self, value: ir.Value, rank: int, perm, float_: bool = False) -> Ref:
        """`value` with size-1 axes prepended up to `rank` (numpy's broadcast alignment), stored in `perm`."""
        shape = self.shape(value)
        if len(shape) == rank:
            return self.get(value, perm, float_=float_)
        full = [1] * (rank - len(shape)) + shape

        def make(ref: Ref) -> Ref:
            lifted = self.reshaped(ref, full, f"{value.name}/rank{rank}")
            if layout.same_memory(full, lifted.perm, perm):
                return Ref(lifted.index, tuple(perm), lifted.quant)
            return self.transposed(lifted, full, perm, value.name)

        ref = self.get(value, layout.identity(len(shape)), float_=float_, memory=True)
        return self._convert(value, ref, ("rank", rank, tuple(perm)), make)

    def _like(self, ref: Ref, name: str, shape) -> int:
        return self.writer.tensor(name, shape, self.dtype(ref), quant=ref.quant)

    def cast(self, ref: Ref, dtype: str, name: str) -> Ref:
        """The same values as another dtype (a CAST), or `ref` itself when it already is one."""
        if self.dtype(ref) == dtype:
            return ref
        out = self.scratch(f"{name}/{dtype}", self.writer.shape(ref.index), dtype=dtype)
        self.emit("CAST", [ref.index], [out])
        return Ref(out, ref.perm)

    def _dequantize(self, value, ref: Ref) -> Ref:
        out = self.scratch(value.name + "/float", self.writer.shape(ref.index))
        self.emit("DEQUANTIZE", [ref.index], [out])
        return Ref(out, ref.perm, None)

    def requantize(self, ref: Ref, params: QParams, name: str) -> Ref:
        """The same real value with other int8 parameters (or quantized from float)."""
        if ref.quant is not None and params.close_to(ref.quant):
            return ref
        out = self.scratch(name, self.writer.shape(ref.index), params)
        self.emit("QUANTIZE", [ref.index], [out])
        return Ref(out, ref.perm, params)

    # ---- int8 decisions -----------------------------------------------------------------

    def output_params(self, value: ir.Value) -> QParams | None:
        """The int8 parameters every consumer of `value` quantizes it with, if all of them do."""
        uses = [u.node for u in value.uses()]
        if not uses or value in self.model.graph.outputs:
            return None
        params = [node_params(n) if n.op_type == "QuantizeLinear" and integer_dtype(n) == "int8" else None
                  for n in uses]
        if any(p is None for p in params) or any(not p.close_to(params[0]) for p in params[1:]):
            return None
        return params[0] if params[0].per_tensor else None

    def quantized(self, value: ir.Value) -> bool:
        return self.ref(value).quant is not None

    def int8_mode(self, inputs: list[ir.Value], output: ir.Value) -> QParams | None:
        """Output parameters when an op can run in int8: every activation input is int8 and the output is
        quantized by all its consumers; None means run it in float."""
        if self.precision != "int8":
            return None
        if any(v is not None and not self.is_const(v) and not self.quantized(v) for v in inputs):
            return None
        return self.output_params(output)

    def fused_activation(self, node: ir.Node) -> tuple[int, ir.Value]:
        """(TFLite fused activation, the value the fused op produces) for a Conv/Gemm/Add node."""
        from edgec.passes.fusion import MARK, activation_name

        fb = self.writer.fb.ActivationFunctionType
        output = node.outputs[0]
        name = node.metadata_props.get(MARK)
        uses = output.uses()
        if not name or len(uses) != 1 or output in self.model.graph.outputs:
            return fb.NONE, output
        act = uses[0].node
        code = {"Relu": fb.RELU, "Relu6": fb.RELU6, "ReluN1To1": fb.RELU_N1_TO_1}.get(activation_name(act) or "")
        if code is None:
            return fb.NONE, output
        self.consumed.add(act)
        return code, act.outputs[0]

    # ---- graph inputs and outputs ---------------------------------------------------------

    def interface_perm(self, value: ir.Value) -> tuple[int, ...]:
        rank = len(self.shape(value))
        return layout.NHWC if self.io_layout == "nhwc" and rank == 4 else layout.identity(rank)

    def add_inputs(self) -> None:
        for value in self.model.graph.inputs:
            quant = self.output_params(value) if self.io_dtype == "int8" and self.precision == "int8" else None
            ref = self.new(value, self.interface_perm(value), quant)
            self.writer.inputs.append(ref.index)

    def add_outputs(self) -> None:
        inputs = set(self.writer.inputs)
        for value in self.model.graph.outputs:
            want_int = self.io_dtype == "int8" and self.precision == "int8" or dtypes.of(value) != "float32"
            ref = self.get(value, self.interface_perm(value), float_=not want_int)
            index = ref.index
            if index in inputs or index in self.writer.outputs or self.writer.tensors[index].buffer:
                index = self._like(ref, value.name, self.writer.shape(ref.index))
                shape = self.param(value.name + "/shape", self.writer.shape(ref.index))
                self.emit("RESHAPE", [ref.index, shape], [index])
            self.writer.tensors[index].name = value.name
            self.refs[value] = Ref(index, ref.perm, ref.quant)
            self.writer.outputs.append(index)

    def interface(self, values) -> list[TensorSpec]:
        specs = []
        for value in values:
            ref = self.refs[value]
            tensor = self.writer.tensors[ref.index]
            rank = len(tensor.shape)
            specs.append(TensorSpec(
                value.name, [int(d) for d in tensor.shape], self.dtype(ref),
                layout=("NHWC" if ref.perm == layout.NHWC else "NCHW") if rank == 4 else None,
                source_perm=list(ref.perm) if ref.perm != layout.identity(rank) else None,
                quantization=Quantization(ref.quant.scale[0], ref.quant.zero_point[0]) if ref.quant else None))
        return specs

