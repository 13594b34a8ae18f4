"""TensorRT targets: a TensorRT-ready ONNX model whose engine the device builds on first use.

An engine is tied to the GPU model and the TensorRT release (TensorRT issues #2176, #574, #2900),
so the artifact ships the ONNX model, the engine settings and an empty `engines/` folder; the
harness builds the engine there and keeps it under a key (GPU, compute capability, TensorRT
version, model sha256). int8 is TensorRT's explicit quantization: the shared engine's QDQ graph
in the target's scheme (symmetric, Q/DQ on layer inputs only). fp16 is a builder flag on the
fp32 model.

TensorRT does not run on the build host, so the build verifies onnxruntime's CPU simulation of
the same arithmetic (`run.py --simulate`): the QDQ graph for int8, an fp16 copy for fp16.
"""
from __future__ import annotations

import re

import onnx_ir as ir

from edgec import ir as eir
from edgec.backends.base import Backend, BuildContext, Lowered
from edgec.errors import InputError, UnsupportedError
from edgec.package.harness.manifest import EngineSettings, HostSimulation, ShapeProfile, TensorRTConfig

MODEL_FILE = "model.onnx"
FP16_SIMULATION_FILE = "host/model.fp16.onnx"
ENGINES = "engines"
PRECISION_FLAGS = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"]}
INT8_LAYER_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
SIMULATION_NOTE = ("verified on the build host in onnxruntime (CPU), which simulates TensorRT's arithmetic "
                   "({what}); it is not a TensorRT engine run: the engine is built and verified on the device")
SIMULATED = {"fp32": "the fp32 model", "fp16": "an fp16 copy of the model, weights and activations",
             "int8": "the QDQ graph TensorRT quantizes explicitly"}


class TensorRTBackend(Backend):
    name = "tensorrt"
    runtime = "tensorrt"
    session = "rt_tensorrt:TensorRTSession"

    def requirement(self) -> str:
        """Any TensorRT 10 from the target's release on: the device builds its own engine."""
        return f"tensorrt>={self.runtime_version()},<11"

    def requirements(self, target) -> list[str]:
        return ["numpy>=1.24", self.requirement(), "cuda-python>=12.6",
                "# or, instead of the two lines above: onnxruntime's TensorRT execution provider",
                "# onnxruntime-gpu>=1.31   (it needs TensorRT's libraries on the device too)"]

    def static_shapes(self, model: ir.Model, options) -> list[str]:
        """With an optimization profile (--min/--opt/--max-shapes) the covered dimensions stay dynamic."""
        profiles = parse_profiles(options)
        if not profiles:
            return super().static_shapes(model, options)
        covered = {p.input: p for p in profiles}
        for value in model.graph.inputs:
            dims = list(value.shape) if value.shape is not None else None
            profile = covered.pop(value.name, None)
            if profile is None:
                if dims is None or not all(isinstance(d, int) for d in dims):
                    raise UnsupportedError(f"input '{value.name}' has dynamic dimensions and no optimization "
                                           f"profile: add {value.name}:... to --min-shapes, --opt-shapes and "
                                           "--max-shapes, or fix it with --input-shape")
                continue
            if dims is not None and (len(dims) != len(profile.min) or any(
                    isinstance(d, int) and not (lo == d == hi) for d, lo, hi in zip(dims, profile.min, profile.max))):
                raise InputError(f"the optimization profile of '{value.name}' ({profile.min} to {profile.max}) "
                                 f"does not fit its shape {eir.format_shape(value.shape)}")
        if covered:
            raise InputError(f"--min-shapes names '{next(iter(covered))}', which is not an input of the model")
        return [f"optimization profile: {p.input} {p.min} .. {p.opt} .. {p.max}" for p in profiles]

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        for index, node in enumerate(model.graph):
            node.name = node.name or f"{node.op_type}_{index}"  # TensorRT names its layers after the nodes
        eir.save(model, ctx.out_dir / MODEL_FILE)
        (ctx.out_dir / ENGINES).mkdir()
        files = [MODEL_FILE]
        simulated = MODEL_FILE
        if ctx.precision == "fp16":
            simulated = FP16_SIMULATION_FILE
            (ctx.out_dir / simulated).parent.mkdir()
            eir.save(fp16_copy(model), ctx.out_dir / simulated)
            files.append(simulated)
        settings = EngineSettings(PRECISION_FLAGS[ctx.precision], ctx.options.workspace_mb,
                                  ctx.options.builder_optimization_level, parse_profiles(ctx.options),
                                  getattr(ctx.options, "dla_core", None))
        config = TensorRTConfig(self.name, settings,
                                HostSimulation(simulated, SIMULATION_NOTE.format(what=SIMULATED[ctx.precision])),
                                int8_layers(model) if ctx.precision == "int8" else [])
        from edgec.package import policy

        # The engine's tactics are not onnxruntime's kernels: a device matches the host to the precision's bound.
        host = policy.reference_policy(ctx.float_model, ctx.precision, ctx.target, ctx.options.output_kind,
                                       ctx.options.tolerance)
        return Lowered(files, eir.io_specs(model.graph.inputs), eir.io_specs(model.graph.outputs), config,
                       host_policy=host, host_simulated=True)


def int8_layers(model: ir.Model) -> list[str]:
    """The layers TensorRT is to run in int8: those whose data input comes from a DequantizeLinear."""
    return [node.name for node in model.graph if node.op_type in INT8_LAYER_OPS
            and node.inputs[0].producer() is not None and node.inputs[0].producer().op_type == "DequantizeLinear"]


def fp16_copy(model: ir.Model) -> ir.Model:
    """The model with fp16 weights and activations (float32 inputs and outputs), as TensorRT's FP16 flag runs
    it, made by onnxruntime's own converter (onnxruntime.transformers.float16)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return ir.from_proto(convert_float_to_float16(ir.to_proto(model), keep_io_types=True))


def parse_profiles(options) -> list[ShapeProfile]:
    """--min-shapes/--opt-shapes/--max-shapes (trtexec's NAME:1x3x224x224,NAME2:...) as one profile per input."""
    given = {kind: getattr(options, f"{kind}_shapes", None) for kind in ("min", "opt", "max")}
    if not any(given.values()):
        return []
    if not all(given.values()):
        raise InputError("an optimization profile needs all three of --min-shapes, --opt-shapes and --max-shapes")
    shapes = {kind: _shapes(text, f"--{kind}-shapes") for kind, text in given.items()}
    if not set(shapes["min"]) == set(shapes["opt"]) == set(shapes["max"]):
        raise InputError("--min-shapes, --opt-shapes and --max-shapes must name the same inputs")
    profiles = []
    for name, low in shapes["min"].items():
        opt, high = shapes["opt"][name], shapes["max"][name]
        if not len(low) == len(opt) == len(high) or any(not a <= b <= c for a, b, c in zip(low, opt, high)):
            raise InputError(f"optimization profile of '{name}': need min <= opt <= max in every dimension, "
                             f"got {low}, {opt}, {high}")
        profiles.append(ShapeProfile(name, low, opt, high))
    return profiles


def _shapes(text: str, flag: str) -> dict[str, list[int]]:
    shapes = {}
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\S.*?)\s*:\s*(\d+(?:x\d+)*)\s*", part)
        if not match:
            raise InputError(f"malformed {flag} '{part}': write NAME:1x3x224x224[,NAME:...]")
        shapes[match.group(1)] = [int(d) for d in match.group(2).split("x")]
    return shapes
