"""What every sub-command shares: exit codes, the lines it prints, and how they reach the terminal.

Everything the commands print that came from elsewhere (a transcript, a
server's error, a request id, a device or plugin name, a file name) goes
through :func:`cartesia_sync.terminal_safe` here, so no peer can send the
terminal an escape sequence; and :func:`tolerant_output` makes a terminal that
cannot encode a character show a replacement instead of ending the command
with a traceback.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator

from .._terminal import terminal_safe

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "one_line",
    "error",
    "note",
    "print_text",
    "SafeFormatter",
    "safe_last_resort",
    "show_plugin_warnings",
    "tolerant_output",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def one_line(exc: BaseException) -> str:
    """An exception as one line of terminal-safe text (an ``OSError`` as ``reason: file``)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(terminal_safe(text, multiline=False).split())


def error(message: str) -> None:
    """``cartesia-sync: error: <message>`` on stderr, as one terminal-safe line."""
    note(f"error: {message}")


def note(message: str) -> None:
    """``cartesia-sync: <message>`` on stderr, as one terminal-safe line."""
    print(f"cartesia-sync: {terminal_safe(message, multiline=False)}", file=sys.stderr, flush=True)


def print_text(text: str) -> None:
    """A result (transcript) on stdout: its lines kept, anything a terminal would act on dropped."""
    print(terminal_safe(text), flush=True)


class SafeFormatter(logging.Formatter):
    """A log formatter whose output, traceback included, is terminal-safe (log messages carry peer text)."""

    def format(self, record: logging.LogRecord) -> str:
        return terminal_safe(super().format(record))


class _SafeStderrHandler(logging.Handler):
    """Like logging's last-resort handler (the message, on whatever ``sys.stderr`` is now), terminal-safe."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def safe_last_resort() -> Iterator[None]:
    """For the block, warnings of loggers nobody configured are printed terminal-safe.

    Python prints a WARNING from a logger with no handler anywhere above it
    through ``logging.lastResort`` (the bundled plugins' loggers, for one: the
    microphone's "stopped forwarding" quotes the server's error). The same
    lines still appear, through :class:`SafeFormatter`.
    """
    handler = _SafeStderrHandler(logging.WARNING)
    handler.setFormatter(SafeFormatter())
    previous, logging.lastResort = logging.lastResort, handler
    try:
        yield
    finally:
        logging.lastResort = previous


def show_plugin_warnings() -> None:
    """A broken installed plugin is skipped with a warning: show it as one line, the command goes on."""
    plugin_logger = logging.getLogger("cartesia_sync.plugin_manager")
    if any(getattr(handler, "cartesia_sync_cli", False) for handler in plugin_logger.handlers):
        return  # main() called again in the same process
    handler = logging.StreamHandler()  # sys.stderr at the time of each message
    handler.setFormatter(SafeFormatter("cartesia-sync: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.cartesia_sync_cli = True  # type: ignore[attr-defined]
    plugin_logger.addHandler(handler)


#: Error handlers that raise ``UnicodeEncodeError`` on an ordinary character the codec lacks.
_RAISING = ("strict", "surrogateescape", "surrogatepass")


@contextlib.contextmanager
def tolerant_output() -> Iterator[None]:
    """Replace what stdout and stderr cannot encode (``?``) instead of raising, for the block.

    With ``PYTHONIOENCODING=ascii``, a C locale or a legacy code page, printing a
    transcript with one accented letter would otherwise end the command with a
    ``UnicodeEncodeError`` (in a C locale stdout is ASCII with ``surrogateescape``,
    which only round-trips undecodable bytes). Streams that already replace
    (stderr's default ``backslashreplace``) and streams that are not text files
    (a test's ``StringIO``) are left alone; the previous setting is restored
    afterwards.
    """
    changed: list[tuple[io.TextIOWrapper, str]] = []
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper) and stream.errors in _RAISING:
            changed.append((stream, stream.errors))
            stream.reconfigure(errors="replace")
    try:
        yield
    finally:
        for stream, errors in changed:
            with contextlib.suppress(ValueError):  # closed meanwhile
                stream.reconfigure(errors=errors)
