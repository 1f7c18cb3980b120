"""Live captions in a terminal: the committed text and the current interim, rewritten in place.

::

    client = cartesia_sync.Client(plugins=[LiveCaptions()])   # draws on stderr

On a terminal (``stream.isatty()``) two lines are kept up to date with ANSI
codes: the tail of the final text that fits the width, and under it the
latest interim hypothesis (replaced, never appended; cleared when its final
arrives). On anything else each final chunk is printed on its own line and
interims print nothing, so logs and pipes get clean text. The server's text
goes through :func:`cartesia_sync.terminal_safe` first: escape sequences,
control characters and bidi overrides in it never reach the terminal, lone
surrogates show as U+FFFD, and line breaks become spaces. Lines are fitted
to the width in terminal columns (wide characters count two, combining marks
none), so they never wrap. Only the tail that fits the view is kept in
memory, so a megabyte of text costs one pass over it. Hooks run on the
receiver thread; a lock keeps writes whole.
"""

from __future__ import annotations

import shutil
import sys
import threading
import unicodedata
from typing import IO

from cartesia_sync import Transcript, TurnEagerEnd, TurnEnd, TurnUpdate, hookimpl, terminal_safe

__all__ = ["LiveCaptions"]

CLEAR_LINE = "\x1b[2K"
CURSOR_UP = "\x1b[1A"


def _columns(ch: str) -> int:
    """Terminal columns of one character: 0 for combining marks and format characters, 2 for wide
    (East Asian wide and fullwidth, most emoji), else 1."""
    if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def _tail(text: str, width: int) -> str:
    """The end of ``text`` that fits ``width`` terminal columns, cut at a word boundary when there is one.

    Columns, not characters: a line of wide characters that overflowed the terminal would wrap, and
    the redraw (one line up) would leave the wrapped part behind.
    """
    used = 0
    start = len(text)
    while start > 0:
        columns = _columns(text[start - 1])
        if used + columns > width:
            break
        used += columns
        start -= 1
    if start == 0:
        return text
    cut = text[start:]
    space = cut.find(" ")
    if 0 <= space < len(cut) - 1:
        cut = cut[space + 1 :]
    return cut


class LiveCaptions:
    """A plugin drawing roll-up captions on a terminal (or printing finals elsewhere).

    :param stream: where to write (default ``sys.stderr`` at construction).
    :param width: columns to use; default: the terminal's width minus one (80 when unknown).
    """

    name = "live-captions"

    def __init__(self, stream: IO[str] | None = None, width: int | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if width is not None and (isinstance(width, bool) or not isinstance(width, int) or width < 1):
            raise ValueError(f"width must be a positive integer, got {width!r}")
        self._width = width
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self._lock = threading.Lock()
        self._committed = ""
        self._interim = ""
        self._drawn = False
        self._ended = False

    @property
    def width(self) -> int:
        if self._width is not None:
            return self._width
        return max(10, shutil.get_terminal_size((81, 24)).columns - 1)

    @property
    def committed(self) -> str:
        """The final text so far (its tail, as much as the view can show)."""
        return self._committed

    @hookimpl
    def on_transcript(self, transcript: Transcript) -> None:
        self._show(transcript.text, transcript.is_final)

    @hookimpl
    def on_turn_update(self, event: TurnUpdate) -> None:
        """A turn session: the open turn's text so far (cumulative) is the interim line."""
        self._show(event.transcript, False)

    @hookimpl
    def on_turn_eager_end(self, event: TurnEagerEnd) -> None:
        self._show(event.transcript, False)

    @hookimpl
    def on_turn_end(self, event: TurnEnd) -> None:
        """The turn's definitive text is committed."""
        self._show(event.transcript, True)

    def _show(self, raw: object, final: bool) -> None:
        raw = raw if isinstance(raw, str) else ""  # a hand-made event may hold anything
        text = terminal_safe(raw, multiline=False)  # deltas: concatenated verbatim
        with self._lock:
            if self._ended:
                return
            if final:
                self._interim = ""
                if self.tty:
                    self._committed = (self._committed + text)[-4 * self.width :]
                    self._draw()
                elif text.strip():
                    self._committed = (self._committed + text)[-4 * self.width :]
                    self.stream.write(text.strip() + "\n")
                    self.stream.flush()
            elif self.tty:
                self._interim = text[-4 * self.width :]
                self._draw()

    @hookimpl
    def on_session_end(self) -> None:
        with self._lock:
            if self._ended:
                return
            self._ended = True
            if self.tty and self._drawn:
                self.stream.write("\n")
                self.stream.flush()

    def _draw(self) -> None:
        width = self.width
        top, bottom = _tail(self._committed.strip(), width), _tail(self._interim.strip(), width)
        prefix = f"\r{CLEAR_LINE}{CURSOR_UP}\r" if self._drawn else ""
        self.stream.write(f"{prefix}{CLEAR_LINE}{top}\n{CLEAR_LINE}{bottom}")
        self.stream.flush()
        self._drawn = True
