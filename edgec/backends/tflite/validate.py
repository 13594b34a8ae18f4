"""Valid flatbuffers or no file: LiteRT opens the written model and allocates its tensors inside the build.

Every kernel's Prepare runs there (types, shapes, options), as it will on the device. A failure is
reported with the ONNX node whose lowering produced the operator or tensor LiteRT names, and the
build stops with exit 2 before anything is written. LiteRT's own log lines go to stderr at the C
level; they are captured here and only the line that names the error is kept.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager

import onnx_ir as ir

from edgec.errors import UnsupportedError, error_line


@contextmanager
def captured_stderr():
    """Collect what C libraries write to file descriptor 2 while the block runs."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        text = []
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            text.append(sink.read().decode(errors="replace"))


def describe(node: ir.Node | None) -> str:
    return f"{node.op_type} (node '{node.name}')" if node is not None else "a graph input or output"


def blame(message: str, operators: list, origins: list) -> str:
    """The ONNX node behind the operator ('Node number N') or tensor ('Tensor N') a LiteRT error names."""
    found = re.search(r"Node number (\d+)", message)
    if found and int(found.group(1)) < len(origins):
        return describe(origins[int(found.group(1))])
    found = re.search(r"[Tt]ensor (\d+)", message)
    if found:
        tensor = int(found.group(1))
        for operator, origin in zip(operators, origins):
            if tensor in operator.outputs:
                return describe(origin)
        for operator, origin in zip(operators, origins):
            if tensor in operator.inputs:
                return describe(origin)
    return "an unknown operator"


def validate(content: bytes, operators: list, origins: list) -> None:
    """Raise UnsupportedError naming the node, when LiteRT cannot open or allocate this model."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with captured_stderr() as log:
        try:
            interpreter = Interpreter(model_content=content, num_threads=1,
                                      experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            interpreter.allocate_tensors()
            return
        except (RuntimeError, ValueError) as exc:
            failure = exc
    text = f"{failure}\n{log[0]}"
    raise UnsupportedError(f"LiteRT rejects the .tflite written for {blame(text, operators, origins)}: "
                           f"{error_line(text)}")
