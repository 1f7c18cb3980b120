"""What every sub-command shares: exit codes, one-line errors, the plugin-warning handler."""

from __future__ import annotations

import logging

__all__ = [
    "EXIT_OK",
    "EXIT_FAILURE",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "one_line",
    "show_plugin_warnings",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def one_line(exc: BaseException) -> str:
    """An exception as one line of text (an ``OSError`` as ``reason: file``)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(text.split())


def show_plugin_warnings() -> None:
    """A broken installed plugin is skipped with a warning: show it as one line, the command goes on."""
    plugin_logger = logging.getLogger("cartesia_sync.plugin_manager")
    if any(getattr(handler, "cartesia_sync_cli", False) for handler in plugin_logger.handlers):
        return  # main() called again in the same process
    handler = logging.StreamHandler()  # sys.stderr at the time of each message
    handler.setFormatter(logging.Formatter("cartesia-sync: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    handler.cartesia_sync_cli = True  # type: ignore[attr-defined]
    plugin_logger.addHandler(handler)
