"""Backend registry: where each backend's code lives and the options it takes.

Both are data here, so `edgec --help`, `edgec targets` and option checks never import a
backend; its module is imported only when a build uses it. A new backend adds one entry (and a
runtime configuration in package/harness/manifest.py, and a Session in package/harness/rt_*.py).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from edgec.errors import InputError
from edgec.options import Option


@dataclass(frozen=True)
class BackendEntry:
    code: str  # "module:Class"
    options: tuple[Option, ...] = ()


# The engine settings the device's TensorRT builder gets (trtexec's flags of the same meaning).
TENSORRT_OPTIONS = (
    Option("workspace_mb", int, 1024, "the TensorRT builder's workspace memory limit, MiB", minimum=1),
    Option("builder_optimization_level", int, 3, "TensorRT builder optimization level, 0 (fast build) to 5",
           choices=(0, 1, 2, 3, 4, 5)),
    Option("min_shapes", str, None, "optimization profile, smallest shapes: NAME:1x3x224x224[,NAME:...]"),
    Option("opt_shapes", str, None, "optimization profile, the shapes to tune for (same form)"),
    Option("max_shapes", str, None, "optimization profile, largest shapes (same form)"),
)

REGISTRY = {
    "onnxruntime": BackendEntry("edgec.backends.onnxruntime:OnnxRuntimeBackend"),
    "openvino": BackendEntry("edgec.backends.openvino:OpenVINOBackend", (
        Option("quantizer", str, "auto", "int8 engine: edgec's own QDQ graph, NNCF, or auto: measure both "
               "(fidelity and speed) and keep the more faithful unless the other is 10 % faster at equal fidelity",
               choices=("auto", "edgec", "nncf")),
        Option("nncf_float_layers", str, None, "with NNCF: keep these nodes float (NAME[,NAME]); the build's "
               "fallback sets it where NNCF's int8 fails verification"),
        Option("float_precision", str, "auto", "what an int8 artifact's layers without an int8 kernel (LSTM, "
               "GRU, RNN, matmuls of two float activations) compute in: f32, bf16, or auto: measure both on the build "
               "host and keep bf16 only where it is 10 % faster at equal fidelity and verifies; layers kept float "
               "for fidelity stay f32", choices=("auto", "f32", "bf16")),
    )),
    "tflite": BackendEntry("edgec.backends.tflite:TFLiteBackend", (
        Option("io_layout", str, "nchw", "the artifact's image layout", choices=("nchw", "nhwc")),
        Option("io_dtype", str, "float32", "float or integer I/O for int8 builds", choices=("float32", "int8")),
        Option("recurrent", str, "kernel", "how LSTMs are written: LiteRT's sequence kernel where it computes "
               "exactly what the node does, else unrolled steps; 'unrolled' forces the steps",
               choices=("kernel", "unrolled")),
    )),
    "tvm": BackendEntry("edgec.backends.tvm:TVMBackend", (
        Option("tune_trials", int, 0, "MetaSchedule tuning trials (0: untuned)", minimum=0),
        Option("tuning_db", str, None, "tuning database folder to reuse and extend"),
    )),
    "tensorrt": BackendEntry("edgec.backends.tensorrt:TensorRTBackend", TENSORRT_OPTIONS),
    # TensorRT on a device with DLA cores (Jetson Orin): the same backend, and the core to run on
    "tensorrt-dla": BackendEntry("edgec.backends.tensorrt:TensorRTBackend", TENSORRT_OPTIONS + (
        Option("dla_core", int, None, "run on this DLA core, layers it cannot take falling back to the GPU",
               minimum=0),
    )),
}


def get_backend(name: str, target=None):
    """The backend `name`, made for `target` (whose TOML may list the runtime's operators and release)."""
    if name not in REGISTRY:
        raise InputError(f"unknown backend '{name}': edgec has {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].code.split(":")
    return getattr(importlib.import_module(module), cls)(target)


def __getattr__(name: str):
    """The base types (Backend, BuildContext, Lowered, UnsupportedOp) without importing onnx_ir for --help."""
    base = importlib.import_module("edgec.backends.base")
    try:
        return getattr(base, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
