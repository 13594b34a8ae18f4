"""What a user sees while a command runs: edgec's log on stderr, the libraries' noise held back.

Library code only logs (logging.getLogger(__name__), names under "edgec"); this is the one
place that decides how records reach the terminal. Everything else that libraries emit - their
log records, Python warnings, tracebacks they print, native code writing to the terminal - is
captured for the command's duration and shown only with --verbose (or --debug), as it happens.
Results and errors go to the real terminal through `Terminal.stdout` and `Terminal.stderr`.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile

from rich.console import Console


# Tables written to a file or a pipe: rich would wrap them at 80 columns, splitting layer names.
PIPED_WIDTH = 160


def console_for(stream) -> Console:
    """A rich console on `stream`: the terminal's width, or PIPED_WIDTH when it is not a terminal."""
    return Console(file=stream, width=None if stream.isatty() else PIPED_WIDTH)


class _LogHandler(logging.Handler):
    """edgec's records, one line each, above the spinner."""

    def __init__(self, console: Console):
        super().__init__()
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.console.print(f"  [yellow]warning:[/] {text}", highlight=False, soft_wrap=True)
        else:
            self.console.print(f"  {text}", markup=False, highlight=False, soft_wrap=True)


class Terminal:
    """The real stdout and stderr of one command, and the capture of everything else."""

    def __init__(self, verbose: bool):
        self.verbose = verbose
        self.stdout, self.stderr = sys.stdout, sys.stderr
        self.console = console_for(self.stderr)

    def print(self, text: str, err: bool = True) -> None:
        stream = self.stderr if err else self.stdout
        stream.write(text + "\n")
        stream.flush()

    def status(self, message: str):
        """A spinner while a long step runs (plain when stderr is not a terminal)."""
        return self.console.status(message)

    @contextlib.contextmanager
    def session(self):
        """For the command's duration: edgec's log shown, library output captured unless verbose."""
        with self._captured():
            self.console = console_for(self.stderr)
            handler = _LogHandler(self.console)
            edgec = logging.getLogger("edgec")
            edgec.addHandler(handler)
            edgec.setLevel(logging.DEBUG if self.verbose else logging.INFO)
            edgec.propagate = False
            logging.captureWarnings(True)
            root = logging.getLogger()
            noise = logging.StreamHandler(self.stderr) if self.verbose else None
            if noise:
                root.addHandler(noise)
            try:
                yield self
            finally:
                edgec.removeHandler(handler)
                if noise:
                    root.removeHandler(noise)
                logging.captureWarnings(False)

    @contextlib.contextmanager
    def _captured(self):
        """Point file descriptors 1 and 2 at a scratch file; keep duplicates of the real ones for us."""
        if self.verbose or not _backed_by_fds():
            yield
            return
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}
        self.stdout = os.fdopen(os.dup(saved[1]), "w", buffering=1)
        self.stderr = os.fdopen(os.dup(saved[2]), "w", buffering=1)
        with tempfile.TemporaryFile() as sink:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            try:
                yield
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                for fd in (1, 2):
                    os.dup2(saved[fd], fd)
                    os.close(saved[fd])
                self.stdout.close()
                self.stderr.close()
                self.stdout, self.stderr = sys.stdout, sys.stderr


def _backed_by_fds() -> bool:
    """Whether sys.stdout and sys.stderr write to descriptors 1 and 2 (not, say, a test's buffers)."""
    try:
        return sys.stdout.fileno() == 1 and sys.stderr.fileno() == 2
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False
