"""Backend registry. Modules are imported only when a backend is used, so `edgec --help` stays fast."""
from __future__ import annotations

import importlib

from edgec.backends.base import Backend, BuildContext, Lowered, UnsupportedOp
from edgec.errors import InputError

# backend name -> "module:Class"
REGISTRY = {
    "onnxruntime": "edgec.backends.onnxruntime:OnnxRuntimeBackend",
    "tflite": "edgec.backends.tflite:TFLiteBackend",
    "openvino": "edgec.backends.openvino:OpenVINOBackend",
    "tvm": "edgec.backends.tvm:TVMBackend",
}


def get_backend(name: str) -> Backend:
    if name not in REGISTRY:
        raise InputError(f"unknown backend '{name}': edgec has {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["Backend", "BuildContext", "Lowered", "UnsupportedOp", "get_backend", "REGISTRY"]
