"""Write a .tflite flatbuffer with the schema that ships in ai-edge-litert (no TensorFlow).

`ModelWriter` collects tensors, constant buffers and operators in the order they are added,
so the same graph always gives the same bytes. Buffers are aligned to 16 bytes, as the
schema asks (`force_align: 16`) and as the generated Python object API does not do itself.
"""
from __future__ import annotations

import numpy as np

from edgec.errors import MissingExtraError

TFLITE_FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
BUFFER_ALIGNMENT = 16


def schema():
    """The generated flatbuffer schema module (imported lazily: it is 1 MB of Python)."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:
        raise MissingExtraError("ai_edge_litert", "tflite") from exc
    return schema_py_generated


_TENSOR_TYPES = {
    "float32": "FLOAT32", "float16": "FLOAT16", "int32": "INT32", "uint8": "UINT8", "int64": "INT64",
    "bool": "BOOL", "int16": "INT16", "int8": "INT8",
}


_DTYPES_BY_CODE: dict[int, str] = {}


class ModelWriter:
    """One subgraph: tensors (with their constant data), operators, inputs, outputs."""

    def __init__(self, description: str = "edgec"):
        self.fb = schema()
        if not _DTYPES_BY_CODE:
            _DTYPES_BY_CODE.update({getattr(self.fb.TensorType, code): name for name, code in _TENSOR_TYPES.items()})
        self.description = description
        self.tensors: list = []
        self.buffers: list[bytes] = [b""]  # buffer 0 is the empty sentinel by convention
        self.operators: list = []
        self.opcodes: dict[tuple[int, int], int] = {}
        self.inputs: list[int] = []
        self.outputs: list[int] = []

    def tensor(self, name: str, shape, dtype: str, data: np.ndarray | None = None, quant=None,
               variable: bool = False) -> int:
        """Add a tensor; `data` makes it a constant, `variable` a state kept across invocations. Returns its index."""
        buffer = 0
        if data is not None:
            array = np.ascontiguousarray(np.asarray(data, dtype=dtype))
            self.buffers.append(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
            buffer = len(self.buffers) - 1
        t = self.fb.TensorT()
        t.name = name
        t.shape = [int(d) for d in shape]
        t.type = getattr(self.fb.TensorType, _TENSOR_TYPES[np.dtype(dtype).name])
        t.buffer = buffer
        t.isVariable = variable
        if quant is not None:
            q = self.fb.QuantizationParametersT()
            q.scale = [float(s) for s in np.atleast_1d(quant.scale)]
            q.zeroPoint = [int(z) for z in np.atleast_1d(quant.zero_point)]
            q.quantizedDimension = int(quant.axis)
            t.quantization = q
        self.tensors.append(t)
        return len(self.tensors) - 1

    def shape(self, index: int) -> list[int]:
        return list(self.tensors[index].shape)

    def dtype(self, index: int) -> str:
        """A tensor's numpy dtype name."""
        return _DTYPES_BY_CODE[self.tensors[index].type]

    def operator(self, op: str, inputs: list[int], outputs: list[int], options=None, version: int = 1) -> None:
        """Add an operator by its BuiltinOperator name; `options` is a schema `...OptionsT` object."""
        code = getattr(self.fb.BuiltinOperator, op)
        key = (code, version)
        if key not in self.opcodes:
            self.opcodes[key] = len(self.opcodes)
        o = self.fb.OperatorT()
        o.opcodeIndex = self.opcodes[key]
        o.inputs = [int(i) for i in inputs]
        o.outputs = [int(i) for i in outputs]
        if options is not None:
            o.builtinOptionsType = getattr(self.fb.BuiltinOptions, type(options).__name__[:-1])
            o.builtinOptions = options
        self.operators.append(o)

    def options(self, name: str, **fields):
        """A schema options object, e.g. options("Conv2DOptions", strideW=2)."""
        obj = getattr(self.fb, name + "T")()
        for key, value in fields.items():
            if not hasattr(obj, key):
                raise AttributeError(f"{name} has no field {key}")
            setattr(obj, key, value)
        return obj

    def op_counts(self) -> dict[str, int]:
        names = {v: k for k, v in vars(self.fb.BuiltinOperator).items() if not k.startswith("_")}
        codes = {index: code for (code, _), index in self.opcodes.items()}
        counts: dict[str, int] = {}
        for o in self.operators:
            name = names[codes[o.opcodeIndex]]
            counts[name] = counts.get(name, 0) + 1
        return dict(sorted(counts.items()))

    def to_bytes(self) -> bytes:
        import flatbuffers

        fb = self.fb
        graph = fb.SubGraphT()
        graph.tensors, graph.operators = self.tensors, self.operators
        graph.inputs, graph.outputs = list(self.inputs), list(self.outputs)
        graph.name = "main"
        signature = fb.SignatureDefT()
        signature.signatureKey = "serving_default"
        signature.subgraphIndex = 0
        signature.inputs = [self._tensor_map(i) for i in self.inputs]
        signature.outputs = [self._tensor_map(i) for i in self.outputs]
        model = fb.ModelT()
        model.version = SCHEMA_VERSION
        model.description = self.description
        model.subgraphs = [graph]
        model.signatureDefs = [signature]
        model.operatorCodes = []
        for (code, version), _ in sorted(self.opcodes.items(), key=lambda kv: kv[1]):
            oc = fb.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, fb.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
            oc.version = version
            model.operatorCodes.append(oc)
        model.buffers = [_AlignedBuffer(fb, data) for data in self.buffers]
        builder = flatbuffers.Builder(1 << 20)
        builder.Finish(model.Pack(builder), file_identifier=TFLITE_FILE_IDENTIFIER)
        return bytes(builder.Output())

    def _tensor_map(self, index: int):
        m = self.fb.TensorMapT()
        m.name = self.tensors[index].name
        m.tensorIndex = index
        return m


class _AlignedBuffer:
    """A Buffer whose data vector starts on a 16-byte boundary (what `force_align: 16` means)."""

    def __init__(self, fb, data: bytes):
        self.fb, self.data = fb, data

    def Pack(self, builder):  # noqa: N802 (the object API's name)
        offset = None
        if self.data:
            builder.StartVector(1, len(self.data), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(self.data)
            builder.Bytes[builder.head:builder.head + len(self.data)] = self.data
            offset = builder.EndVector()
        self.fb.BufferStart(builder)
        if offset is not None:
            self.fb.BufferAddData(builder, offset)
        return self.fb.BufferEnd(builder)
