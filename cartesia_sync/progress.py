"""A progress line for terminals: how far recognition has got through a file."""

from __future__ import annotations

import threading
from typing import Optional, TextIO

from .events import Transcript
from .hookspecs import hookimpl

__all__ = ["ProgressLine"]

_WIDTH = 30


class ProgressLine:
    """A plugin that redraws ``label [#####.....]  45%`` on a terminal as finals arrive.

    Progress is the end time of the latest final word over the file's
    duration. It draws nothing when the stream is not a terminal, so piping
    the command's output stays clean.

    :param stream: where to draw (stderr).
    :param label: shown before the bar.
    """

    name = "cartesia-sync-progress"

    def __init__(self, stream: TextIO, label: str = "") -> None:
        self._stream = stream
        self._label = label
        self._enabled = bool(getattr(stream, "isatty", lambda: False)())
        self._lock = threading.Lock()
        self._done = 0.0
        self._drawn = False
        self.total: Optional[float] = None

    @hookimpl
    def on_transcript(self, transcript: Transcript) -> None:
        if transcript.is_final and transcript.words:
            self._done = max(self._done, transcript.words[-1].end)
            self._draw()

    def finish(self) -> None:
        """Draw 100 % and end the line."""
        if self.total:
            self._done = self.total
        self._draw()
        if self._drawn:
            with self._lock:
                self._stream.write("\n")
                self._stream.flush()

    def _draw(self) -> None:
        if not self._enabled or not self.total:
            return
        fraction = min(1.0, self._done / self.total)
        filled = int(fraction * _WIDTH)
        with self._lock:
            self._stream.write(f"\r{self._label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {fraction:4.0%}")
            self._stream.flush()
            self._drawn = True
