"""OpenVINO IR (.xml + .bin) for Intel and other x86 CPUs: fp32, fp16 weights, int8.

int8 comes from edgec's QDQ graph (OpenVINO turns QuantizeLinear/DequantizeLinear pairs into
FakeQuantize and runs u8/i8 kernels) or from NNCF (`--quantizer nncf`). fp16 stores the
weights in half precision and computes in f32. The float layers run in f32, set on purpose:
left to itself OpenVINO picks bf16 on CPUs that have it. One exception, per layer: in an int8
build, the layers OpenVINO has no int8 kernel for (recurrent sequences, matmuls of two float
activations) may compute in bf16 (`--float-precision`), by Convert nodes around them in the
IR. By default (auto) the build measures both and keeps bf16 only where it is 10 % faster at
equal fidelity and verifies; layers kept float for fidelity stay f32 either way. The build
compiles the saved IR once with the artifact's own harness and records, per layer, the
precision the compiled model ran.
"""
from __future__ import annotations

import collections
import contextlib
import functools
import importlib.util
import logging
import re
from pathlib import Path

import onnx_ir as ir

from edgec import ir as eir
from edgec import system
from edgec.backends.base import STANDARD_DOMAINS, Backend, BuildContext, Lowered, UnsupportedOp
from edgec.errors import InputError, UnsupportedError, require
from edgec.package.harness.manifest import OpenVINOConfig, SchemeChoice

logger = logging.getLogger(__name__)

MODEL_FILE = "model.xml"
WEIGHTS_FILE = "model.bin"
INFERENCE_PRECISION = "f32"  # the float layers', set on purpose: OpenVINO's default is bf16 where the CPU has it
F32, BF16 = "f32", "bf16"  # --float-precision: what an int8 model's layers without an int8 kernel compute in
RECURRENT = frozenset({"LSTMSequence", "GRUSequence", "RNNSequence"})
# int8 comes from edgec's QDQ graph or from NNCF (the `quantizer` option, edgec/backends/__init__.py).
# Neither wins everywhere (benchmarks/results/int8_peers.md), so by default (`auto`) the build measures
# both, with OpenVINO's kernels (edgec/quantize/choose.py), and keeps the better.
# The lines of OpenVINO's errors that say where, not why.
BOILERPLATE = re.compile(r"Check '|Exception from |FrontEnd API failed|Model wasn't|Summary:|-- |\[ONNX Frontend\] Conv|While val")
# A name OpenVINO makes up for a node: its type and a process-wide count.
MADE_UP_NAME = re.compile(r"(?<![\w.])([A-Z][A-Za-z0-9]*)_(\d+)(?![\w.])")
# Layers whose data input comes through a FakeQuantize are meant to run int8.
QUANTIZABLE = frozenset({"Convolution", "GroupConvolution", "ConvolutionBackpropData",
                         "GroupConvolutionBackpropData", "MatMul"})
# Shape-only operators that may sit between a FakeQuantize and the layer it feeds.
SHAPE_OPS = frozenset({"Reshape", "Squeeze", "Unsqueeze", "Transpose"})
# Operators between int8 weights and the layer they feed: their dequantization and quantization.
WEIGHT_OPS = frozenset({"Convert", "Subtract", "Multiply", "FakeQuantize"})
# Standard ONNX operators OpenVINO's ONNX frontend converts: a fast path for coverage, and the operators
# the target claims (the ONNX node suite holds it to them). Models with any other operator are asked of
# the frontend itself.
COMMON_OPS = frozenset("""
Abs Acos Add And ArgMax ArgMin AveragePool BatchNormalization Cast Ceil Clip Concat Constant ConstantOfShape
Conv ConvTranspose Cos CumSum DepthToSpace DequantizeLinear Div Dropout Einsum Elu Equal Erf Exp Expand Flatten
Floor Gather GatherElements GatherND Gelu Gemm GlobalAveragePool GlobalMaxPool Greater GreaterOrEqual
GroupNormalization GRU HardSigmoid HardSwish Identity If InstanceNormalization LayerNormalization LeakyRelu Less
LessOrEqual Log LogSoftmax Loop LRN LSTM MatMul Max MaxPool Mean Min Mish Mod Mul Neg NonZero Not OneHot Or Pad
Pow PRelu QuantizeLinear Range Reciprocal ReduceL2 ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum
ReduceSumSquare Relu Reshape Resize RNN Round ScatterND Shape Sigmoid Sign Sin Slice Softmax Softplus
SpaceToDepth Split Sqrt Squeeze Sub Sum Tanh Tile TopK Transpose Trilu Unsqueeze Where Xor
""".split())


def _is_double(value: ir.Value | None) -> bool:
    return value is not None and value.dtype == ir.DataType.DOUBLE


def wrong_in_openvino(node: ir.Node) -> str:
    """Why OpenVINO would compute this node differently from ONNX, or ''."""
    attrs = node.attributes
    if node.op_type == "Cast" and (_is_double(node.inputs[0]) or _is_double(node.outputs[0])):
        return "OpenVINO's CPU plugin has no float64: casts to or from double saturate instead of giving inf"
    if node.op_type == "LSTM" and len(node.inputs) > 7 and node.inputs[7] is not None:
        return "OpenVINO computes LSTM peepholes differently"
    if node.op_type == "Resize":
        if attrs.get_int("antialias", 0):
            return "antialiased Resize differs in OpenVINO"
        if attrs.get_string("mode", "nearest") == "cubic" and attrs.get_int("exclude_outside", 0):
            return "cubic Resize with exclude_outside differs in OpenVINO"
        if attrs.get_string("keep_aspect_ratio_policy", "stretch") != "stretch":
            return "OpenVINO ignores keep_aspect_ratio_policy"
    if node.op_type in ("ReduceMax", "ReduceMin") and _has_empty_dimension(node.inputs[0]):
        return "OpenVINO reduces an empty set to the wrong identity"
    if node.op_type == "SpaceToDepth" and attrs.get_string("mode", "DCR") == "CRD":
        return "OpenVINO ignores SpaceToDepth's CRD mode"
    if node.op_type == "Tile" and node.inputs[1].const_value is None:
        return "OpenVINO's CPU plug-in tiles wrongly with repeats given at run time (bind them with --const-input)"
    if node.op_type == "MaxPool" and attrs.get_int("ceil_mode", 0) and _ceil_window_starts_in_padding(node):
        return "OpenVINO keeps a ceil-mode window that starts in the padding, which ONNX drops"
    return ""


def _has_empty_dimension(value: ir.Value | None) -> bool:
    return value is not None and value.shape is not None and any(d == 0 for d in value.shape)


def _ceil_window_starts_in_padding(node: ir.Node) -> bool:
    """ONNX drops a last ceil-mode window that would start past the input and its leading pad."""
    shape = node.inputs[0].shape
    if shape is None or not all(isinstance(d, int) for d in shape[2:]):
        return True  # cannot tell: refuse rather than risk it
    sizes = list(shape[2:])
    kernel = list(node.attributes.get_ints("kernel_shape", []))
    strides = list(node.attributes.get_ints("strides", [1] * len(sizes)))
    dilations = list(node.attributes.get_ints("dilations", [1] * len(sizes)))
    pads = list(node.attributes.get_ints("pads", [0] * 2 * len(sizes)))
    for axis, size in enumerate(sizes):
        begin, end = pads[axis], pads[axis + len(sizes)]
        span = (kernel[axis] - 1) * dilations[axis] + 1
        count = -(-(size + begin + end - span) // strides[axis]) + 1
        if (count - 1) * strides[axis] >= size + begin:
            return True
    return False


class OpenVINOBackend(Backend):
    name = "openvino"
    runtime = "openvino"
    session = "rt_openvino:OpenVINOSession"

    def quantizes_itself(self, options) -> bool:
        return options.quantizer == "nncf"

    def int8_opener(self, model: ir.Model):
        return functools.partial(_runner, _convert(model))

    def own_int8(self, model: ir.Model, target, calibration, options, candidates: dict) -> list:
        """NNCF's int8 models, one per distinct NNCF setting (overflow fix, model type) among the scheme
        `candidates`, where the `quantizer` option leaves the choice to measurement."""
        if options.quantizer != "auto" or importlib.util.find_spec("nncf") is None:
            return []
        from edgec.backends import openvino_nncf
        from edgec.quantize.qdq import Scheme

        schemes = candidates or {None: Scheme.from_target(target.quantization)}
        by_setting: dict[tuple, str | None] = {}
        for name, scheme in schemes.items():
            by_setting.setdefault(openvino_nncf.setting(scheme), name)
        return [self._engine(model, calibration, options, name, schemes[name]) for name in by_setting.values()]

    def given_int8(self, model: ir.Model, scheme, calibration, options):
        """NNCF's int8 model as `--quantizer nncf` makes it (the engine the build verifies before lowering)."""
        return self._engine(model, calibration, options, None, scheme) if self.quantizes_itself(options) else None

    def _engine(self, model: ir.Model, calibration, options, name: str | None, scheme,
                float_layers: tuple[str, ...] = ()):
        """NNCF's model by `scheme` (the candidate `name`'s), with the nodes `float_layers` (those OpenVINO's
        converter kept) left float; the fallback makes these where the plain one fails verification."""
        from edgec.backends import openvino_nncf
        from edgec.quantize.choose import Engine

        ov_model = _convert(model)
        given = openvino_nncf.float_layers_option(ov_model, options)
        kept = tuple(dict.fromkeys((*given, *(layer for layer in float_layers
                                              if openvino_nncf.converted(ov_model, layer)))))
        quantized, _ = openvino_nncf.quantize(ov_model, calibration, options, scheme, kept)
        chosen = {"quantizer": "nncf", **({"int8_scheme": name} if name else {}),
                  **({"nncf_float_layers": ",".join(kept)} if kept else {})}
        return Engine(f"nncf {name}" if name else "nncf", chosen, functools.partial(_runner, quantized),
                      None if float_layers else functools.partial(self._engine, model, calibration, options, name,
                                                                  scheme))

    def qdq_options(self) -> dict:
        return {"quantizer": "edgec"}

    def claimed_operators(self) -> list[str]:
        return sorted(COMMON_OPS)

    def check_node(self, node: ir.Node) -> str:
        """Forms OpenVINO 2026.4 converts but computes differently from ONNX (found by the ONNX node suite)."""
        return wrong_in_openvino(node)

    def unsupported(self, model: ir.Model) -> list[UnsupportedOp]:
        """Nodes OpenVINO's ONNX frontend cannot convert (by its own answer when a model has rare ops),
        and forms it would compute wrongly."""
        nodes = list(ir.traversal.RecursiveGraphIterator(model.graph))
        wrong = [UnsupportedOp(n.op_type, n.name or "", reason) for n in nodes if (reason := self.check_node(n))]
        if all(n.domain in STANDARD_DOMAINS and n.op_type in COMMON_OPS for n in nodes):
            return wrong
        try:
            from openvino.frontend import FrontEndManager
        except ImportError:
            return super().unsupported(model)
        producers = {out.name: n for n in nodes for out in n.outputs}
        frontend = FrontEndManager().load_by_framework("onnx")
        with system.scratch("ov") as tmp:
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
        return wrong + found

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        ov = require("openvino", "openvino")
        nncf = None
        nncf_int8 = ctx.precision == "int8" and self.quantizes_itself(ctx.options)
        ov_model = _convert(ctx.float_model if nncf_int8 and ctx.float_model is not None else model)
        _stable_top_k(ov_model)
        if nncf_int8:
            from edgec.backends import openvino_nncf

            ov_model, nncf = openvino_nncf.quantize(ov_model, ctx.calibration, ctx.options,
                                                    openvino_nncf.scheme(ctx.target, ctx.options.int8_scheme))
        path = ctx.out_dir / MODEL_FILE
        _numbered_names(ov_model, model)
        ov.save_model(ov_model, path, compress_to_fp16=ctx.precision == "fp16")
        core = ov.Core()
        int8_layers = _int8_layers(core.read_model(path))
        if ctx.precision == "int8" and not int8_layers:
            raise UnsupportedError("int8 build left no convolution or matmul quantized: this model has nothing "
                                   "OpenVINO runs in int8; build it in fp32 or fp16")
        config = OpenVINOConfig(self.name, "CPU", INFERENCE_PRECISION, {"fp32": "f32", "fp16": "f16", "int8": "i8"}[
            ctx.precision], int8_layers, [], ("nncf" if nncf_int8 else "edgec") if ctx.precision == "int8" else None, nncf)
        with _refused("compile"):
            choice = _float_precision(core, path, ctx)
            config.layers = _compiled_layers(core, path, config, ctx.target.threads)
        # OpenVINO keeps the ONNX graph's input and output names, shapes and dtypes.
        return Lowered([MODEL_FILE, WEIGHTS_FILE], eir.io_specs(model.graph.inputs), eir.io_specs(model.graph.outputs),
                       config, choice=choice)


def _convert(model: ir.Model):
    """The OpenVINO model of `model`, by OpenVINO's ONNX frontend."""
    ov = require("openvino", "openvino")
    with system.scratch("ov") as tmp, _refused("convert"):
        return ov.convert_model(str(eir.save(model, Path(tmp) / "model.onnx")))


def _float_precision(core, path: Path, ctx: BuildContext) -> SchemeChoice | None:
    """Whether the layers of the saved int8 model at `path` that OpenVINO has no int8 kernel for compute in
    bf16 (where they do, the model there is saved with them so), and the measured choice where the build made
    one. Layers kept float for fidelity (the fallback's, a mixed-range head) stay f32 whatever is chosen.

    `--float-precision` auto measures f32 and bf16 as the int8 candidates are measured (quantize/choose.py:
    fidelity on the calibration samples, latency over several compilations) and keeps bf16 only where it is
    10 % faster at equal fidelity and passes the verification policy."""
    given = ctx.options.float_precision
    if ctx.precision != "int8":
        if given == BF16:
            raise InputError(f"--float-precision bf16 applies to int8 builds, whose layers without an int8 kernel "
                             f"it sets; a {ctx.precision} build computes in f32: drop the option or build "
                             "--precision int8")
        return None
    if given == F32:
        return None
    marked = core.read_model(path)
    layers = _in_bf16(marked)
    if given == BF16:
        if layers:
            _save_over(marked, path)
        return None
    if not layers:
        return _float_choice(F32, "no layer is float for want of an int8 kernel: bf16 would speed up nothing")
    if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return _float_choice(F32, "this CPU has no bf16 to measure")
    from edgec.quantize import choose, output_kinds

    kinds = output_kinds(ctx.float_model, ctx.judge)
    models = {F32: core.read_model(path), BF16: marked}
    f32, bf16 = choose.measure(ctx.float_model, {p: functools.partial(_runner, m) for p, m in models.items()},
                               {p: {"float_precision": p} for p in models}, ctx.calibration, kinds)
    faster = choose.faster_at_equal_fidelity(bf16, f32)
    failed = ctx.judge.failures_of(_runner(marked), " in bf16") if faster and ctx.judge is not None else {}
    speedup = f"bf16 is {f32.p50_ms / bf16.p50_ms:.2f}x faster"
    if not faster:
        chosen, why = f32, f"bf16 is not 10 % faster at equal fidelity ({bf16.p50_ms} against {f32.p50_ms} ms)"
    elif failed:
        chosen, why = f32, f"{speedup} but does not verify: " + "; ".join(f"{n}: {w}" for n, w in failed.items())
    else:
        chosen, why = bf16, f"{speedup} than f32 at equal fidelity and verifies"
    why += "; without an int8 kernel: " + ", ".join(
        f"{count} {kind}" for kind, count in sorted(collections.Counter(layers).items()))
    logger.info(f"layers without an int8 kernel in {chosen.name}: {why}")
    if chosen is bf16:
        _save_over(marked, path)
    return _float_choice(chosen.name, why, [f32, bf16])


def _float_choice(chosen: str, why: str, measured: list | None = None) -> SchemeChoice:
    """The record of a `--float-precision auto` choice, with the flag that replays it."""
    return SchemeChoice(chosen, why, f"--float-precision {chosen}", measured or [], {"float_precision": chosen})


def _save_over(ov_model, path: Path) -> None:
    """Save `ov_model` in place of the IR at `path`, which models read from it map in memory: the new files
    are written beside it and moved over it, so those maps keep the old ones (writing over a mapped .bin
    kills the process with SIGBUS)."""
    ov = require("openvino", "openvino")
    staged = path.with_name(f"staged-{path.name}")
    ov.save_model(ov_model, staged, compress_to_fp16=False)
    staged.with_suffix(".bin").replace(path.with_suffix(".bin"))
    staged.replace(path)


def _in_bf16(ov_model) -> list[str]:
    """Make the layers OpenVINO's CPU plugin has no int8 kernel for compute in bf16, by Convert nodes around
    them, and return their types: recurrent sequences (an int8 LSTMSequence runs a reference f32 kernel) and
    matmuls of two float activations (attention's, where the quantizer left them float). Layers with constant
    weights that are float were kept float on purpose, for fidelity, and stay f32, and a matmul whose input
    is quantized is the quantizer's. On a CPU without bf16, OpenVINO's CPU plugin turns bf16 into f32 (its
    ConvertPrecision pass), and the Converts do nothing."""
    from openvino import opset13

    ov = require("openvino", "openvino")
    marked = []
    for op in ov_model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in RECURRENT and not (kind == "MatMul" and all(
                _float_activation(op.input_value(i)) for i in range(2))):
            continue
        name = op.get_friendly_name()
        for index in range(op.get_input_size()):
            source = op.input_value(index)
            if source.get_element_type() == ov.Type.f32:
                narrowed = opset13.convert(source, ov.Type.bf16, name=f"{name}/bf16_in{index}")
                op.input(index).replace_source_output(narrowed.output(0))
        for index in range(op.get_output_size()):
            output = op.output(index)
            if output.get_element_type() != ov.Type.f32:
                continue
            users = list(output.get_target_inputs())
            widened = opset13.convert(output, ov.Type.f32, name=f"{name}/f32_out{index}")
            for user in users:
                user.replace_source_output(widened.output(0))
        marked.append(kind)
    if marked:
        ov_model.validate_nodes_and_infer_types()
    return marked


def _float_activation(value) -> bool:
    """Whether `value` is computed from the inputs and not quantized: neither weights nor a FakeQuantize's."""
    return not _constant(value) and _source(value).get_type_name() != "FakeQuantize"


def _constant(value) -> bool:
    """Whether `value` is a constant, perhaps dequantized or reshaped: weights, not an activation."""
    node = _source(value)
    while node.get_type_name() in WEIGHT_OPS:
        node = _source(node.input_value(0))
    return node.get_type_name() == "Constant"


def _runner(ov_model):
    """Run `ov_model` as the artifact's harness compiles it, on one thread: feed -> outputs."""
    from edgec.package.harness import rt_openvino

    ov = require("openvino", "openvino")
    config = OpenVINOConfig("openvino", "CPU", INFERENCE_PRECISION, "i8", [], [], None, None)
    request = rt_openvino.compile_model(ov.Core(), ov_model, config, 1).create_infer_request()
    return lambda feed: [value.copy() for value in request.infer(feed).values()]


def _numbered_names(ov_model, model: ir.Model) -> None:
    """Number the names OpenVINO made up (Constant_60916, and names built on them) in order of their
    place in the model. Its own numbers count every node the process made before, so a build that
    measured candidates first would write other names, and other bytes, than its replay."""
    given = {n.name for n in model.graph} | {v.name for n in model.graph for v in n.outputs}
    numbers: dict[str, str] = {}

    def renumber(match: re.Match) -> str:
        if match[0] in given:
            return match[0]
        return numbers.setdefault(match[0], f"{match[1]}_n{len(numbers)}")

    for op in ov_model.get_ordered_ops():
        op.set_friendly_name(MADE_UP_NAME.sub(renumber, op.get_friendly_name()))


def _stable_top_k(ov_model) -> None:
    """ONNX's TopK puts the lower index first among equal values; OpenVINO's converter leaves its TopK
    unstable (any order among ties: the node suite's top_k_same_values tests). Its `stable` attribute
    asks for ONNX's order."""
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() == "TopK" and "stable" in op.get_attributes():
            op.set_attribute("stable", True)


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
    """Names of the convolutions and matmuls that run int8: data input quantized (FakeQuantize), other input
    quantized weights. A MatMul of two activations quantized u8 (edgec's QDQ attention: query x key, weights x
    values) runs in f32, as the CPU plugin has no u8 x u8 kernel; so does a layer the fallback kept float,
    which reads a quantized tensor where its producer is int8 but has float weights."""
    names = []
    for op in ov_model.get_ordered_ops():
        if op.get_type_name() not in QUANTIZABLE:
            continue
        if _source(op.input_value(0)).get_type_name() == "FakeQuantize" and _quantized_weights(op.input_value(1)):
            names.append(op.get_friendly_name())
    return names


def _source(value):
    """The node that computed `value`, past shape-only operators."""
    node = value.get_node()
    while node.get_type_name() in SHAPE_OPS:
        node = node.input_value(0).get_node()
    return node


def _quantized_weights(value) -> bool:
    """Whether `value` is a constant that is quantized, then perhaps dequantized or reshaped: int8 weights, not
    an activation, and not the float weights of a layer kept float."""
    node = _source(value)
    if node.get_type_name() == "Constant":
        return not node.get_element_type().is_real()
    return _constant(value)


def _compiled_layers(core, path: Path, config: OpenVINOConfig, threads: int) -> list:
    """Compile the saved IR as the artifact's harness does, and read what precision each layer ran."""
    from edgec.package.harness import rt_openvino

    return rt_openvino.compiled_layers(rt_openvino.compile_model(core, core.read_model(path), config, threads))
