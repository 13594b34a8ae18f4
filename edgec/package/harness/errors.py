"""The exit codes edgec and every artifact's harness share, and the harness's one-line errors."""
import enum


class ExitCode(enum.IntEnum):
    OK = 0
    BUG = 1  # a bug in edgec, and only that
    REFUSED = 2  # the user's input, or an unsupported model or option
    NOT_FAITHFUL = 3  # it ran, but the outputs disagree with the reference
    INTEGRITY = 4  # a file does not match its hash or signature
    RUNTIME_MISSING = 5  # the runtime is not installed on this device


class HarnessError(Exception):
    """A problem the user can act on: one line on stderr, then `code`."""

    def __init__(self, message: str, code: ExitCode = ExitCode.REFUSED):
        super().__init__(message)
        self.code = code


def first_line(exc: BaseException) -> str:
    """An exception's message in one line (its first), or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
