"""OpenVINO IR (.xml + .bin) for Intel and other x86 CPUs: fp32, fp16 weights, int8.

int8 comes from edgec's QDQ graph (OpenVINO turns QuantizeLinear/DequantizeLinear pairs into
FakeQuantize and runs u8/i8 kernels) or from NNCF (`--quantizer nncf`). fp16 stores the
weights in half precision and computes in f32. The float layers always run in f32: left to
itself OpenVINO picks bf16 on CPUs that have it. The build compiles the saved IR once with
the artifact's own harness and records, per layer, the precision the compiled model ran.
"""
from __future__ import annotations

import contextlib
import logging
import re
import tempfile
from pathlib import Path

import onnx_ir as ir

from edgec import ir as eir
from edgec.backends.base import STANDARD_DOMAINS, Backend, BuildContext, Lowered, UnsupportedOp
from edgec.errors import UnsupportedError, require
from edgec.package.harness.manifest import OpenVINOConfig

logger = logging.getLogger(__name__)

MODEL_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
INFERENCE_PRECISION = "f32"
# edgec's QDQ graph is the default quantizer (the `quantizer` option, edgec/backends/__init__.py): on a
# quiet machine it ran MobileNetV2 10 % faster than NNCF's MIXED-preset model (and faster than the
# plain ov+nncf pipeline), with the better digits accuracy; NNCF kept one more photo's top-1
# (benchmarks/results/openvino_mobilenet.md).
# The lines of OpenVINO's errors that say where, not why.
BOILERPLATE = re.compile(r"Check '|Exception from |FrontEnd API failed|Model wasn't|Summary:|-- |\[ONNX Frontend\] Conv|While val")
# Layers whose data input comes through a FakeQuantize are meant to run int8.
QUANTIZABLE = frozenset({"Convolution", "GroupConvolution", "ConvolutionBackpropData",
                         "GroupConvolutionBackpropData", "MatMul"})
# Shape-only operators that may sit between a FakeQuantize and the layer it feeds.
SHAPE_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Transpose"})
# Standard ONNX operators OpenVINO's ONNX frontend converts: a fast path for coverage. Models with
# any other operator are asked of the frontend itself.
COMMON_OPS = frozenset("""
Abs Acos Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat Constant ConstantOfShape
Conv ConvTranspose Cos CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand Flatten
Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual GRU
HardSigmoid HardSwish Identity If InstanceNormalization LayerNormalization LeakyRelu Less LessOrEqual Log
LogSoftmax Loop LRN LSTM MatMul Max MaxPool Mean Min Mod Mul Neg NonZero Not Or Pad Pow PRelu QuantizeLinear
Range Reciprocal ReduceL2 ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum Relu Reshape Resize ScatterND Shape
Sigmoid Sign Sin Slice Softmax Softplus SpaceToDepth Split Sqrt Squeeze Sub Sum Tanh Tile TopK Transpose
Unsqueeze Where Xor
""".split())


class OpenVINOBackend(Backend):
    name = "openvino"
    runtime = "openvino"
    session = "rt_openvino:OpenVINOSession"

    def quantizes_itself(self, options) -> bool:
        return options.quantizer == "nncf"

    def unsupported(self, model: ir.Model) -> list[UnsupportedOp]:
        """Nodes OpenVINO's ONNX frontend cannot convert, by its own answer when a model has rare ops."""
        nodes = list(ir.traversal.RecursiveGraphIterator(model.graph))
        if all(n.domain in STANDARD_DOMAINS and n.op_type in COMMON_OPS for n in nodes):
            return []
        try:
            from openvino.frontend import FrontEndManager
        except ImportError:
            return super().unsupported(model)
        producers = {out.name: n for n in nodes for out in n.outputs}
        frontend = FrontEndManager().load_by_framework("onnx")
        with tempfile.TemporaryDirectory(prefix="edgec-ov-") as tmp:
            converted = frontend.convert_partially(frontend.load(str(eir.save(model, Path(tmp) / "m.onnx"))))
        found = []
        for op in converted.get_ordered_ops():
            if "FrameworkNode" not in op.get_type_name():
                continue
            node = next((producers[o.get_any_name()] for o in op.outputs() if o.get_names()
                         and o.get_any_name() in producers), None)
            domain = node.domain if node is not None else ""
            reason = f"custom domain '{domain}'" if domain not in STANDARD_DOMAINS else "OpenVINO has no converter for it"
            found.append(UnsupportedOp(node.op_type if node is not None else op.get_type_name(),
                                       (node.name if node is not None else "") or op.get_friendly_name(), reason))
        return found

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        ov = require("openvino", "openvino")
        nncf = None
        with tempfile.TemporaryDirectory(prefix="edgec-ov-") as tmp, _refused("convert"):
            nncf_int8 = ctx.precision == "int8" and self.quantizes_itself(ctx.options)
            source = ctx.float_model if nncf_int8 and ctx.float_model is not None else model
            ov_model = ov.convert_model(str(eir.save(source, Path(tmp) / "model.onnx")))
        if nncf_int8:
            from edgec.backends import openvino_nncf

            ov_model, nncf = openvino_nncf.quantize(ov_model, ctx)
        path = ctx.out_dir / MODEL_FILE
        ov.save_model(ov_model, path, compress_to_fp16=ctx.precision == "fp16")
        core = ov.Core()
        int8_layers = _int8_layers(core.read_model(path))
        if ctx.precision == "int8" and not int8_layers:
            raise UnsupportedError("int8 build left no convolution or matmul quantized: this model has nothing "
                                   "OpenVINO runs in int8; build it in fp32 or fp16")
        config = OpenVINOConfig(self.name, "CPU", INFERENCE_PRECISION, {"fp32": "f32", "fp16": "f16", "int8": "i8"}[
            ctx.precision], int8_layers, [], ctx.options.quantizer if ctx.precision == "int8" else None, nncf)
        with _refused("compile"):
            config.layers = _compiled_layers(core, path, config, ctx.target.threads)
        # OpenVINO keeps the ONNX graph's input and output names, shapes and dtypes.
        return Lowered([MODEL_FILE, WEIGHTS_FILE], eir.io_specs(model.graph.inputs), eir.io_specs(model.graph.outputs),
                       config)


@contextlib.contextmanager
def _refused(stage: str):
    """OpenVINO failing to convert or compile a model is a refusal that quotes its reason, not a crash."""
    from openvino.frontend import GeneralFailure, OpConversionFailure

    try:
        yield
    except (RuntimeError, OpConversionFailure, GeneralFailure) as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not BOILERPLATE.match(line)]
        raise UnsupportedError(f"OpenVINO cannot {stage} this model: {lines[-1] if lines else type(exc).__name__}; "
                               "build it for another target (edgec inspect lists which can take it)") from None


def _int8_layers(ov_model) -> list[str]:
    """Names of the convolutions and matmuls whose data input is quantized (FakeQuantize)."""
    names = []
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() not in QUANTIZABLE:
            continue
        source = op.input_value(0).get_node()
        while source.get_type_name() in SHAPE_OPS:
            source = source.input_value(0).get_node()
        if source.get_type_name() == "FakeQuantize":
            names.append(op.get_friendly_name())
    return names


def _compiled_layers(core, path: Path, config: OpenVINOConfig, threads: int) -> list:
    """Compile the saved IR as the artifact's harness does, and read what precision each layer ran."""
    from edgec.package.harness import rt_openvino

    return rt_openvino.compiled_layers(rt_openvino.compile_model(core, core.read_model(path), config, threads))
