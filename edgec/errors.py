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
