"""A progress line for terminals: how much of a file the server has recognised, drawn by tqdm."""

from __future__ import annotations

import shutil
import threading
from typing import Any, TextIO

from ._events import Event
from .hookspecs import hookimpl

__all__ = ["ProgressLine", "bar_size"]

_WIDTH = 30
_ROWS = 1000
_FORMAT = "{desc} [{bar:" + str(_WIDTH) + "}] {percentage:3.0f}%"


def bar_size() -> dict[str, int]:
    """``ncols`` and ``nrows`` for a tqdm bar on this terminal.

    A terminal that reports no size (a fresh pty: 0 x 0) would make tqdm hide
    the bar; ``shutil`` then answers 80 x 24, and at least two rows are given.
    """
    columns, rows = shutil.get_terminal_size()
    return {"ncols": columns, "nrows": max(rows, 2)}


class ProgressLine:
    """A plugin that draws ``label [#####.....]  45%`` on a terminal as the server recognises audio.

    Progress is the audio the server has acknowledged (up to its latest final
    word, ``flush_done`` or ``done``) over the file's duration, not the audio
    sent: with a fast link the whole file is sent long before it is
    recognised. It draws nothing when the stream is not a terminal, so
    piping the command's output stays clean. The bar is a ``tqdm`` bar,
    redrawn when the whole percentage changes.

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
        self._bar: Any = None
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
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None

    def clear(self) -> None:
        """Wipe the line, so that an error message starts at the left margin of an empty line."""
        with self._lock:
            self._enabled = False
            if self._bar is not None:
                self._bar.leave = False
                self._bar.close()
                self._bar = None

    def _draw(self) -> None:
        if not self._enabled or not self.total:
            return
        total = self.total
        done = min(total, self._done)
        with self._lock:
            percent = int(done / total * 100)
            if percent == self._shown or not self._enabled:
                return
            self._shown = percent
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=total,
                    desc=self._label,
                    file=self._stream,
                    bar_format=_FORMAT,
                    ascii=".#",
                    mininterval=0,
                    # fixed sizes: a terminal that reports no size (a fresh pty: 0 x 0) still shows the bar
                    ncols=len(self._label) + _WIDTH + 8,
                    nrows=_ROWS,
                )
            self._bar.n = done
            self._bar.refresh()
