"""The portable reference target: an ONNX model pre-optimized by onnxruntime itself.

Graph optimizations are saved at ORT_ENABLE_EXTENDED: ORT_ENABLE_ALL adds layout
transformations specific to the build machine's CPU, which the device applies at load time.
int8 arrives as a QDQ graph (onnxruntime runs it with integer kernels); fp16 stores the
weights in half precision, since onnxruntime's x86 CPU kernels compute in fp32.
"""
from __future__ import annotations

import functools
from pathlib import Path

import onnx_ir as ir

from edgec import ir as eir
from edgec import system
from edgec.backends.base import Backend, BuildContext, Lowered
from edgec.package.harness.manifest import OnnxRuntimeConfig

MODEL_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"  # weights of a model that had external data


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    runtime = "onnxruntime"
    session = "rt_onnxruntime:OnnxRuntimeSession"

    def extra_domains(self) -> tuple[str, ...]:
        return ("com.microsoft", "ai.onnx.ml")

    def int8_opener(self, model: ir.Model):
        from edgec.quantize.choose import onnxruntime_runner

        serialized = eir.Snapshot.of(model) or model  # serialized once for every compilation
        return functools.partial(onnxruntime_runner, serialized, optimize=True, threads=1)

    def lower(self, model: ir.Model, ctx: BuildContext) -> Lowered:
        import onnx
        import onnxruntime as ort

        out = ctx.out_dir / MODEL_FILE
        with system.scratch("ort") as tmp:
            plain = eir.save(model, Path(tmp) / "plain.onnx")
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            options.optimized_model_filepath = str(out)
            external = plain.with_name(plain.name + ".data").exists()
            if external:  # the weights go beside the artifact's model, not beside this temporary copy
                options.add_session_config_entry("session.optimized_model_external_initializers_file_name",
                                                 EXTERNAL_DATA_FILE)
            ort.InferenceSession(str(plain), options, providers=["CPUExecutionProvider"])
        fp16_weights = _store_weights_fp16(out, external) if ctx.precision == "fp16" else 0
        # Protobuf's own parser, without the weights: the interface and node count are all that is read
        # back (an IR of the whole model cost seconds at 16,000 nodes)
        graph = onnx.load(str(out), load_external_data=False).graph
        interface = [[ir.serde.deserialize_value_info_proto(info, None) for info in infos]
                     for infos in (graph.input, graph.output)]
        config = OnnxRuntimeConfig(self.name, "ORT_ENABLE_EXTENDED", len(graph.node), fp16_weights)
        model_files = [MODEL_FILE, EXTERNAL_DATA_FILE] if external else [MODEL_FILE]
        return Lowered(model_files, eir.io_specs(interface[0]), eir.io_specs(interface[1]), config)


def _store_weights_fp16(path: Path, external: bool) -> int:
    """The saved model's float weights stored in half precision, in place; returns how many."""
    from edgec.quantize.fp16 import store_weights_fp16

    saved = ir.load(path)
    count = store_weights_fp16(saved)
    if external:  # the half weights replace the float ones in the .data file, which is read before it is rewritten
        ir.external_data.load_to_model(saved)
        ir.save(saved, path, external_data=EXTERNAL_DATA_FILE)
    else:
        eir.save(saved, path)
    return count
