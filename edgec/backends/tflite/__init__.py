"""The tflite backend: a TensorFlow-free .tflite writer (fp32, fp16, int8) for LiteRT and XNNPACK.

The graph is lowered op by op from the common IR (ops/, one module per operator family) into a
flatbuffer written with the schema that ships in ai-edge-litert (flatbuffer.py). Layout: image ops run NHWC and the
layout propagates, so the model keeps its NCHW interface with one TRANSPOSE at each end, or
none with `--io-layout nhwc`. int8 reads the QDQ graph of the shared quantization engine:
per-channel int8 weights, int32 biases and int8 activations become TFLite quantization
parameters, with float I/O by default and integer I/O with `--io-dtype int8`. Ops TFLite has no
int8 kernel for stay float inside an int8 graph, and the build says which. A scheme with activation
ranges taken at run time becomes TFLite's hybrid kernels: float activations, int8 weights (hybrid.py).
Every model is opened and allocated by LiteRT before it is written (validate.py); the build measures
int8 candidates with LiteRT itself (`int8_opener`).
"""
from __future__ import annotations

import functools
import logging

import onnx_ir as ir

from edgec.backends.base import Backend, BuildContext, Lowered
from edgec.backends.tflite import ops
from edgec.backends.tflite.validate import litert_failure, validate
from edgec.errors import InputError, UnsupportedError
from edgec.package.harness.manifest import TFLiteConfig

logger = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"
# How LSTMs are written: LiteRT's UNIDIRECTIONAL_SEQUENCE_LSTM where it computes exactly what the node does
# (on a 3-layer speaker encoder, about twice as fast as the unrolled steps in XNNPACK, and it loads in
# milliseconds where those take up to a second: benchmarks/results/tflite_lstm.md), else unrolled time
# steps; "unrolled" forces the steps (the `recurrent` option, edgec/backends/__init__.py).


class TFLiteBackend(Backend):
    name = "tflite"
    runtime = "ai-edge-litert"
    session = "rt_tflite:LiteRTSession"
    supported_ops = frozenset(ops.TABLE)

    def claimed_operators(self) -> list[str]:
        """Its kernels, and the shape queries that its static shapes always fold into constants."""
        return sorted(self.supported_ops | {"Shape", "Size"})

    def check_node(self, node: ir.Node) -> str:
        return ops.check(node)

    def int8_opener(self, model: ir.Model):
        """The QDQ graph written once as the artifact's .tflite, each compilation a LiteRT interpreter of it
        (XNNPACK, one thread); None where it cannot be written or LiteRT cannot open it (a candidate's
        graph: the build measures the others)."""
        from edgec import ir as eir

        try:  # the ONNX interface (NCHW, float I/O), which the build's feeds have
            content = _written(eir.clone(model), "int8", "nchw", "float32", "kernel").writer.to_bytes()
        except UnsupportedError:
            return None
        if litert_failure(content) is not None:
            return None
        return functools.partial(_interpreter_runner, content)

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        io_layout, io_dtype = ctx.options.io_layout, ctx.options.io_dtype
        if io_dtype == "int8" and ctx.precision != "int8":
            raise InputError(f"--io-dtype int8 needs --precision int8 (this build is {ctx.precision})")
        lowering = _written(model, ctx.precision, io_layout, io_dtype, ctx.options.recurrent)
        content = lowering.writer.to_bytes()
        validate(content, lowering.writer.operators, lowering.origins)
        (ctx.out_dir / MODEL_FILE).write_bytes(content)
        operators = lowering.writer.op_counts()
        logger.info(f"wrote {MODEL_FILE}: {sum(operators.values())} operators")
        for note in lowering.notes:
            logger.info(f"note: {note}")
        return Lowered([MODEL_FILE], lowering.interface(model.graph.inputs), lowering.interface(model.graph.outputs),
                       TFLiteConfig(self.name, operators, io_layout, io_dtype, notes=lowering.notes))


def _written(model: ir.Model, precision: str, io_layout: str, io_dtype: str, recurrent: str):
    """The lowering of `model` (edited in place), every operator written."""
    import onnx_ir.passes.common as common

    from edgec.backends.tflite.hybrid import as_weights_only
    from edgec.backends.tflite.lowering import Lowering

    if precision == "int8":
        as_weights_only(model)
    common.ShapeInferencePass()(model)
    common.TopologicalSortPass()(model)
    lowering = Lowering(model, precision, io_layout, io_dtype, recurrent)
    lowering.add_inputs()
    for node in model.graph:
        if node not in lowering.consumed:
            lowering.node = node
            ops.TABLE[node.op_type](lowering, node)
            if precision == "int8":
                _note_float(lowering, node)
    lowering.node = None
    lowering.add_outputs()
    return lowering


SHAPE_ONLY = {"QuantizeLinear", "DequantizeLinear", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose",
              "Identity", "Concat", "Split", "Slice"}
HYBRID = {"MatMul", "LSTM"}  # with int8 weights on a float input, a hybrid kernel (its own note), not a float one


def _note_float(lowering, node: ir.Node) -> None:
    """In an int8 build, say which computing ops stayed float (TFLite has no int8 kernel for them)."""
    if node.op_type in SHAPE_ONLY or node.op_type in HYBRID and lowering.qconst(node.inputs[1]) is not None:
        return
    outputs = [v for v in node.outputs if v is not None and v in lowering.refs]
    if any(lowering.refs[v].quant is None and lowering.dtype(lowering.refs[v]) == "float32" for v in outputs):
        lowering.note(f"{node.op_type} runs in float inside the int8 graph")


def _interpreter_runner(content: bytes):
    """A LiteRT interpreter of `content` on one thread, as a runner (feed -> outputs)."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()

    def run(feed: dict) -> list:
        for detail in inputs:
            value = np.ascontiguousarray(feed[detail["name"]])
            if value.size == np.prod(detail["shape"]):  # a scalar input's run arrives as one element
                value = value.reshape(detail["shape"])
            interpreter.set_tensor(detail["index"], value)
        interpreter.reset_all_variables()  # an LSTM kernel's state starts from zero, as in the harness
        interpreter.invoke()
        return [interpreter.get_tensor(detail["index"]) for detail in outputs]
    return run
