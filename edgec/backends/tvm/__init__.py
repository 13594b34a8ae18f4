"""Apache TVM (Relax) for any CPU LLVM knows: x86 here, aarch64 boards by cross-compiling.

The model becomes a Relax module, compiled with the best MetaSchedule records the tuning
database holds for the target, and exported as one shared library that the TVM runtime's
Relax VM runs. Untuned TVM code is tens of times slower than onnxruntime, so the build says
plainly when a model is untuned. A cross-compiled artifact also carries a build-host twin of
its library, so the build machine can record the reference outputs the device must match.
"""
from __future__ import annotations

import logging
from pathlib import Path

import onnx_ir as ir

from edgec import ir as eir
from edgec.backends.base import Backend, BuildContext, Lowered
from edgec.backends.tvm.operators import CONVERTED
from edgec.errors import UnsupportedError
from edgec.passes.stable import LONG_SUM, sums_long_axis
from edgec.package.policy import FP16_RANGE, range_policy
from edgec.package.harness.manifest import TVMConfig

logger = logging.getLogger(__name__)

TVM_REQUIREMENTS = ["apache-tvm==0.27.0.post1", "apache-tvm-ffi==0.1.14.post1"]
# TVM's ONNX import runs these as float arithmetic: refused, so that nobody mistakes them for int8.
QUANTIZED_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul"})
UNTUNED_NOTE = ("untuned: TVM's default CPU schedules, typically tens of times slower than onnxruntime; "
                "build with --tune-trials N (e.g. 256) to tune once into the tuning database")


def library_name(arch: str) -> str:
    return f"model.{arch}.so"


def _graph_outputs(node: ir.Node) -> list[ir.Value]:
    return list(node.graph.outputs) if node.graph is not None else []


class TVMBackend(Backend):
    name = "tvm"
    runtime = "apache-tvm"
    session = "rt_tvm:TVMSession"
    supported_ops = CONVERTED
    min_opset = 13  # TVM's Relax importer picks its newest converter for older opsets (Slice-1 then fails)

    def requirements(self, target) -> list[str]:
        return ["numpy>=1.24", *TVM_REQUIREMENTS]

    def claimed_operators(self) -> list[str]:
        """TVM's converters, and the recurrent ops the shared passes unroll for it."""
        from edgec.passes.recurrent import RECURRENT_OPS

        return sorted((CONVERTED | set(RECURRENT_OPS)) - QUANTIZED_OPS)

    def check_node(self, node: ir.Node) -> str:
        if node.op_type in QUANTIZED_OPS:
            return "TVM's ONNX import runs quantized ops as float arithmetic: build the float model"
        if node.op_type == "Resize":
            return _resize_fault(node)
        if node.op_type == "BatchNormalization" and node.attributes.get_int("training_mode", 0):
            return "TVM 0.27 normalises a training-mode BatchNormalization with the running statistics"
        if node.op_type == "ConvTranspose" and "output_shape" in node.attributes:
            return "TVM 0.27 ignores ConvTranspose's output_shape: give the pads instead"
        if node.op_type == "SpaceToDepth" and node.attributes.get_string("mode", "DCR") != "DCR":
            return "TVM 0.27 reads a mode attribute that ONNX's SpaceToDepth does not have (it is always DCR)"
        if node.op_type == "Expand" and node.inputs[1].const_value is None:
            return "TVM 0.27 broadcasts a computed Expand shape wrongly; fix the shapes with --input-shape"
        if node.op_type == "Mish":  # the shared passes rewrite these two (passes/stable.py)
            return "TVM 0.27 computes Mish through log(1 + exp(x)), which rounds to 0 for x below -16"
        if node.op_type in ("Softmax", "LogSoftmax") and sums_long_axis(node):
            return (f"TVM 0.27 adds a {node.op_type}'s terms one by one in float32, which loses 1e-4 of a "
                    f"peaked output's range over {LONG_SUM}+ terms")
        if node.op_type == "LayerNormalization" and any(v is not None and v.uses() or v in _graph_outputs(node)
                                                        for v in node.outputs[1:]):
            return "TVM 0.27 gives LayerNormalization's Mean and InvStdDev outputs the wrong shape"
        return ""

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        from edgec.backends.tvm import target as tvm_target
        from edgec.backends.tvm import tuning

        llvm = tvm_target.resolve(ctx.target)
        if ctx.precision not in ("fp32", "fp16"):
            raise UnsupportedError(f"the tvm backend builds fp32 and fp16, not {ctx.precision}")
        if ctx.precision == "fp16" and not llvm.has_native_fp16():
            raise UnsupportedError(
                f"target {ctx.target.name}: CPU {llvm.cpu} has no native fp16 arithmetic "
                f"({tvm_target.FP16_FEATURES[llvm.arch]}), so fp16 would be slower than fp32: build fp32")
        trials = ctx.options.tune_trials
        if trials > 0 and llvm.cross:
            raise UnsupportedError(
                f"target {ctx.target.name}: tuning measures candidates on the target CPU, and this "
                f"{tvm_target.host_arch()} machine cannot run {llvm.arch} code at speed: build without "
                "--tune-trials, or pass a --tuning-db tuned on the device")
        mod = self._relax(model, ctx.precision)
        db_dir = Path(ctx.options.tuning_db or tuning.default_db_dir(llvm.key)).expanduser().resolve()
        report = tuning.tune(mod, llvm.tvm(), db_dir, trials)
        if report.seconds:
            logger.info(f"tuned {len(report.tuned_now)} kernels in {report.seconds:.1f} s "
                        f"({report.trials_run} trials); database {db_dir}")
        elif report.from_db:
            logger.info(f"reusing {len(report.from_db)} tuned kernels from {db_dir}: no tuning time spent")
        logger.info(f"compiling for {llvm.config}")
        files = [library_name(llvm.arch)]
        self._export(mod, llvm, db_dir, ctx.out_dir / files[0])
        libraries = {llvm.arch: files[0]}
        if llvm.cross:
            host = tvm_target.resolve(_host_target(ctx.target))
            files.append(library_name(host.arch))
            self._export(mod, host, None, ctx.out_dir / files[1])
            libraries[host.arch] = files[1]
        records = tuning.export_records(mod, llvm.tvm(), db_dir, ctx.out_dir / "tuning") if report.tuned else 0
        if not report.tuned:
            logger.warning(UNTUNED_NOTE)
        tuning_record = {**report.as_dict(), "records_in_artifact": records,
                         "records_folder": "tuning" if records else None,
                         **({} if report.tuned else {"note": UNTUNED_NOTE})}
        config = TVMConfig(self.name, llvm.config, llvm.cpu, llvm.cpu_detected, llvm.cross, libraries, tuning_record)
        host_policy = None
        if llvm.cross:
            config.host_twin = (f"{files[1]} is the same model compiled untuned for the build host, "
                                "only to record the reference outputs (samples/host.npz)")
            if ctx.precision == "fp16":  # the host emulates fp16 through fp32, the device rounds in fp16
                host_policy = range_policy(FP16_RANGE)
        return Lowered(files, eir.io_specs(model.graph.inputs), eir.io_specs(model.graph.outputs), config, host_policy)

    @staticmethod
    def _relax(model: ir.Model, precision: str):
        """ONNX -> Relax with static shapes and the weights as constants, fp16 if asked, and the
        rewrites around the kernels TVM computes wrong."""
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx

        from edgec.backends.tvm import rewrites
        from edgec.passes import RulesPass

        shapes = {v.name: [int(d) for d in v.shape] for v in model.graph.inputs}
        # TVM reads every weight into its constants: external data is loaded here (into a copy), since TVM's
        # importer resolves the .data file against the current folder, not the model's
        in_memory = ir.external_data.load_to_model(model.clone())
        RulesPass(rewrites.RULES)(in_memory)
        mod = from_onnx(ir.serde.serialize_model(in_memory), shape_dict=shapes, keep_params_in_input=False)
        mod = relax.transform.DecomposeOpsForInference()(mod)
        if precision == "fp16":
            mod = relax.transform.ToMixedPrecision(out_dtype="float16")(mod)
        return mod

    @staticmethod
    def _export(mod, llvm, db_dir, path: Path) -> None:
        from edgec.backends.tvm import tuning

        executable = tuning.compile_with_db(mod, llvm.tvm(), db_dir)
        if llvm.cross:
            import tvm.support.cc

            executable.export_library(str(path), fcompile=tvm.support.cc.cross_compiler(llvm.compiler))
        else:
            executable.export_library(str(path))


def _resize_fault(node: ir.Node) -> str:
    """Why TVM 0.27 would compute this Resize differently from ONNX, or ""."""
    mode = node.attributes.get_string("mode", "nearest")
    if mode == "cubic":
        return "TVM 0.27's cubic Resize differs from ONNX's"
    if node.attributes.get_int("antialias", 0):
        return "TVM 0.27 ignores Resize's antialias"
    scales = node.inputs[2] if len(node.inputs) > 2 else None
    shape = node.inputs[0].shape
    # nearest rounds both mappings to the same pixels on every node test; linear interpolates between them
    known = scales is not None and scales.const_value is not None and scales.const_value.size > 0
    if mode == "nearest" or not known or shape is None or not shape.is_static():
        return ""
    if any(abs(int(d) * s - round(int(d) * s)) > 1e-6 for d, s in zip(shape, scales.const_value.numpy().tolist())):
        return ("TVM 0.27 maps a Resize's coordinates by the ratio of the sizes, and ONNX by the given scales: "
                "they differ where a size times its scale is not whole (give the output sizes instead)")
    return ""


def _host_target(target):
    """The build machine's own CPU, for a cross-compiled artifact's host twin."""
    from dataclasses import replace

    return replace(target, arch="any", cpu="detect")
