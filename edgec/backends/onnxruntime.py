"""The portable reference target: an ONNX model pre-optimized by onnxruntime itself.

Graph optimizations are saved at ORT_ENABLE_EXTENDED: ORT_ENABLE_ALL adds layout
transformations specific to the build machine's CPU, which the device applies at load time.
int8 arrives as a QDQ graph (onnxruntime runs it with integer kernels); fp16 stores the
weights in half precision, since onnxruntime's x86 CPU kernels compute in fp32.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import onnx_ir as ir

from edgec import ir as eir
from edgec.backends.base import Backend, BuildContext, Lowered

MODEL_FILE = "model.onnx"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    runtime = "onnxruntime"
    harness = "rt_onnxruntime.py"

    def extra_domains(self) -> tuple[str, ...]:
        return ("com.microsoft", "ai.onnx.ml")

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        import onnxruntime as ort

        out = ctx.out_dir / MODEL_FILE
        with tempfile.TemporaryDirectory(prefix="edgec-ort-") as tmp:
            plain = eir.save(model, Path(tmp) / "plain.onnx")
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            options.optimized_model_filepath = str(out)
            ort.InferenceSession(str(plain), options, providers=["CPUExecutionProvider"])
        saved = ir.load(out)
        meta = {"graph_optimization_level": "ORT_ENABLE_EXTENDED"}
        if ctx.precision == "fp16":
            from edgec.quantize.fp16 import store_weights_fp16

            meta["fp16_weights"] = store_weights_fp16(saved)
            eir.save(saved, out)
            meta["compute"] = "fp32 (weights stored as fp16)"
        meta["nodes"] = len(saved.graph)
        return Lowered(
            model_files=[MODEL_FILE],
            inputs=eir.io_specs(saved.graph.inputs),
            outputs=eir.io_specs(saved.graph.outputs),
            meta=meta,
        )
