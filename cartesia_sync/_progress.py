"""A progress line for terminals: how much of a file the server has recognised."""

from __future__ import annotations

import threading
from typing import Any, TextIO

from ._events import Event
from .hookspecs import hookimpl

__all__ = ["ProgressLine"]

_WIDTH = 30


class ProgressLine:
    """A plugin that redraws ``label [#####.....]  45%`` on a terminal as the server recognises audio.

    Progress is the audio the server has acknowledged (up to its latest final
    word, ``flush_done`` or ``done``) over the file's duration, not the audio
    sent: with a fast link the whole file is sent long before it is
    recognised. It draws nothing when the stream is not a terminal, so
    piping the command's output stays clean.

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
        self._shown = -1
        self.total: float | None = None

    @hookimpl
    def on_event(self, session: Any, event: Event) -> None:
        done = session.audio_acknowledged
        if done > self._done:
            self._done = done
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
                self._drawn = False

    def clear(self) -> None:
        """Wipe the line, so that an error message starts at the left margin of an empty line."""
        with self._lock:
            if self._drawn:
                self._stream.write("\r" + " " * (len(self._label) + _WIDTH + 9) + "\r")
                self._stream.flush()
                self._drawn = False
            self._enabled = False

    def _draw(self) -> None:
        if not self._enabled or not self.total:
            return
        fraction = min(1.0, self._done / self.total)
        percent = int(fraction * 100)
        filled = int(fraction * _WIDTH)
        with self._lock:
            if percent == self._shown or not self._enabled:
                return
            self._shown = percent
            self._stream.write(f"\r{self._label} [{'#' * filled}{'.' * (_WIDTH - filled)}] {percent:3d}%")
            self._stream.flush()
            self._drawn = True
