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


_LOG_PREFIXES = ("INFO", "WARNING", "WARN", "DEBUG", "I0", "W0")
_ERROR_WORDS = ("error", "exception", "failed", "fail:", "invalid", "cannot", "can't", "unsupported",
                "not supported", "didn't find", "segmentation fault", "abort")


def error_line(text: str) -> str:
    """The line of a library's or process's output that reports its error: the first line naming an
    error, else the last line that is not a log line (never 'INFO: Created ... delegate')."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    for line in lines:
        lowered = line.lower()
        if not line.startswith(_LOG_PREFIXES) and any(word in lowered for word in _ERROR_WORDS):
            return line
    plain = [line for line in lines if not line.startswith(_LOG_PREFIXES)]
    return (plain or lines or ["no output"])[-1]
