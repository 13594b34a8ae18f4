"""Valid flatbuffers or no file: LiteRT opens the written model and allocates its tensors inside the build.

Every kernel's Prepare runs there (types, shapes, options), as it will on the device. A failure is
reported with the ONNX node whose lowering produced the operator or tensor LiteRT names, and the
build stops with exit 2 before anything is written. LiteRT runs in a forked child: a kernel that
aborts the process fails the check instead of the build, and LiteRT's own log lines (C-level stderr)
are captured there; only the line that names the error is kept.
"""
from __future__ import annotations

import os
import re
import signal
import tempfile

import onnx_ir as ir

from edgec.errors import UnsupportedError
from edgec.system import error_line


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
    return "an operator LiteRT does not name"


def _open_and_allocate(content: bytes) -> None:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=content, num_threads=1,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()


def litert_failure(content: bytes) -> str | None:
    """What LiteRT says when it cannot open and allocate `content` (None when it can), run in a child."""
    with tempfile.TemporaryFile(mode="w+b") as log:
        pid = os.fork()
        if pid == 0:  # the child: stderr to the log, the exception text after it, exit 0 only on success
            code = 0
            try:
                os.dup2(log.fileno(), 2)
                _open_and_allocate(content)
            except BaseException as exc:  # noqa: BLE001 (everything is reported to the parent)
                os.write(2, f"\n{exc}\n".encode(errors="replace"))
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        log.seek(0)
        text = log.read().decode(errors="replace")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
        return None
    if os.WIFSIGNALED(status):
        text += f"\nLiteRT crashed ({signal.Signals(os.WTERMSIG(status)).name}) opening the model"
    return text


def validate(content: bytes, operators: list, origins: list) -> None:
    """Raise UnsupportedError naming the node, when LiteRT cannot open or allocate this model."""
    failure = litert_failure(content)
    if failure is not None:
        raise UnsupportedError(f"LiteRT rejects the .tflite written for {blame(failure, operators, origins)}: "
                               f"{error_line(failure)}")
