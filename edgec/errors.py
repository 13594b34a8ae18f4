"""Errors a user can act on, each with its exit code from the table edgec and every harness share.

    0 success · 1 a bug in edgec · 2 refused (the input, an unsupported model or option) ·
    3 built but not faithful · 4 integrity failure · 5 the runtime is missing on the device
"""
from edgec.package.harness.errors import ExitCode


class EdgecError(Exception):
    """A problem with the user's input or environment; the message says what to do."""

    exit_code = ExitCode.REFUSED


class InputError(EdgecError):
    """A model, data file or option that edgec cannot use."""


class UnsupportedError(EdgecError):
    """The target cannot take this model (an operator, a precision, a shape, an option)."""


class DeviceError(EdgecError):
    """A device could not be prepared or reached."""


class IntegrityError(EdgecError):
    """An artifact's files do not match its manifest."""

    exit_code = ExitCode.INTEGRITY


class RuntimeMissingError(EdgecError):
    """The device lacks the runtime an artifact needs; the message names what to install."""

    exit_code = ExitCode.RUNTIME_MISSING


class HarnessCrash(EdgecError):
    """An artifact's harness failed in a way no input explains: a bug in edgec, with the harness's reason."""

    exit_code = ExitCode.BUG


class MissingExtraError(EdgecError):
    """An optional dependency is not installed; the message names the pip extra."""

    def __init__(self, module: str, extra: str):
        super().__init__(
            f"{module} is not installed: run `pip install 'edgec[{extra}]'` to use this feature"
        )


def require(module: str, extra: str):
    """Import an optional dependency, or raise an error that gives the install command."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(module, extra) from exc


class StageError(EdgecError):
    """A library failed inside one stage of the build (import, reference run, quantization, lowering)."""


def _raised_by_edgec(exc: BaseException) -> bool:
    """True when the innermost Python frame of the exception is edgec's own code: a bug of ours."""
    import os

    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    package = os.path.dirname(os.path.abspath(__file__))
    return os.path.abspath(tb.tb_frame.f_code.co_filename).startswith(package + os.sep)


def _node_of(exc: BaseException) -> str:
    """' at OP node NAME' for the innermost graph node a failing library call had in hand."""
    tb, found = exc.__traceback__, ""
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if type(value).__name__ == "Node" and hasattr(value, "op_type") and hasattr(value, "name"):
                found = f" at {value.op_type} node '{value.name}'"
                break
        tb = tb.tb_next
    return found


class stage:
    """`with stage("lowering with openvino", hint)`: a library's exception becomes one StageError line.

    Exceptions raised by edgec's own code pass through unchanged: they are bugs (exit 1).
    """

    def __init__(self, name: str, hint: str = ""):
        self.name, self.hint = name, hint

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, EdgecError) or not isinstance(exc, Exception) or _raised_by_edgec(exc):
            return False
        from edgec.system import error_line  # system imports this module

        message = f"{self.name} failed{_node_of(exc)}: {error_line(str(exc) or type(exc).__name__)}"
        raise StageError(message + (f" ({self.hint})" if self.hint else "")) from exc
