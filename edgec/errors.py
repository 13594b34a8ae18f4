"""Errors a user can act on (exit 2) versus bugs in edgec (exit 1)."""


class EdgecError(Exception):
    """A problem with the user's input or environment; the message says what to do."""

    exit_code = 2


class InputError(EdgecError):
    """A model, data file or option that edgec cannot use."""


class UnsupportedError(EdgecError):
    """The target cannot take this model (an operator, a precision, a shape)."""


class DeviceError(EdgecError):
    """A device could not be prepared or reached."""


class VerificationError(EdgecError):
    """An artifact's outputs disagree with the reference."""


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
