"""The tflite backend: a TensorFlow-free .tflite writer (fp32, fp16, int8) for LiteRT and XNNPACK.

The graph is lowered op by op from the common IR (ops.py) into a flatbuffer written with the
schema that ships in ai-edge-litert (flatbuffer.py). Layout: image ops run NHWC and the
layout propagates, so the model keeps its NCHW interface with one TRANSPOSE at each end, or
none with `--io-layout nhwc`. int8 reads the QDQ graph of the shared quantization engine:
per-channel int8 weights, int32 biases and int8 activations become TFLite quantization
parameters, with float I/O by default and integer I/O with `--io-dtype int8`.
"""
from __future__ import annotations

import logging

import onnx_ir as ir

from edgec.backends.base import Backend, BuildContext, Lowered
from edgec.backends.tflite import ops
from edgec.errors import InputError
from edgec.package.harness.manifest import TFLiteConfig

logger = logging.getLogger(__name__)

MODEL_FILE = "model.tflite"


class TFLiteBackend(Backend):
    name = "tflite"
    runtime = "ai-edge-litert"
    session = "rt_tflite:LiteRTSession"
    supported_ops = frozenset(ops.TABLE)

    def check_node(self, node: ir.Node) -> str:
        return ops.check(node)

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        import onnx_ir.passes.common as common

        from edgec.backends.tflite.lowering import Lowering

        common.ShapeInferencePass()(model)
        common.TopologicalSortPass()(model)
        io_layout, io_dtype = ctx.options.io_layout, ctx.options.io_dtype
        if io_dtype == "int8" and ctx.precision != "int8":
            raise InputError(f"--io-dtype int8 needs --precision int8 (this build is {ctx.precision})")
        lowering = Lowering(model, ctx.precision, io_layout, io_dtype)
        lowering.add_inputs()
        for node in model.graph:
            if node not in lowering.consumed:
                ops.TABLE[node.op_type](lowering, node)
        lowering.add_outputs()
        (ctx.out_dir / MODEL_FILE).write_bytes(lowering.w.to_bytes())
        operators = lowering.w.op_counts()
        logger.info(f"wrote {MODEL_FILE}: {sum(operators.values())} operators")
        return Lowered([MODEL_FILE], lowering.interface(model.graph.inputs), lowering.interface(model.graph.outputs),
                       TFLiteConfig(self.name, operators, io_layout, io_dtype))
