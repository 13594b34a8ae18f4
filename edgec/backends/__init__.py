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


REGISTRY = {
    "onnxruntime": BackendEntry("edgec.backends.onnxruntime:OnnxRuntimeBackend"),
    "openvino": BackendEntry("edgec.backends.openvino:OpenVINOBackend", (
        Option("quantizer", str, "edgec", "int8 engine: edgec's own QDQ graph or NNCF", choices=("edgec", "nncf")),
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
}


def get_backend(name: str):
    if name not in REGISTRY:
        raise InputError(f"unknown backend '{name}': edgec has {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].code.split(":")
    return getattr(importlib.import_module(module), cls)()


def __getattr__(name: str):
    """The base types (Backend, BuildContext, Lowered, UnsupportedOp) without importing onnx_ir for --help."""
    base = importlib.import_module("edgec.backends.base")
    try:
        return getattr(base, name)
    except AttributeError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
