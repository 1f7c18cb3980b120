"""Write SRT and/or WebVTT subtitles of a session as it runs.

::

    import cartesia_sync
    from cartesia_sync_plugins.subtitles import SubtitleWriter

    client = cartesia_sync.Client(plugins=[SubtitleWriter(srt="talk.srt", vtt="talk.vtt")])

Only final words are used (``transcript.is_final``); cues are segmented by
:mod:`cartesia_sync_plugins.subtitle_cues` (:class:`CueRules`). Each cue is
written and flushed as soon as it is closed (when the next word starts
another cue, or at ``flush_done``), so a crash loses at most the open cue. The
open cue is written at ``done`` and, if the server never sent ``done``, at
the end of the session, exactly once.

Files: paths are opened (truncated, UTF-8, LF, no BOM) at session start,
or at the first cue when the writer is used without a session, and closed at
session end; the WebVTT header goes in as soon as the file is opened, so an
empty session still leaves valid files. Already-open text files are written
and flushed but never closed. One writer serves one session.

Words without word times (a model that sends none) produce no cues.

Whatever the words hold, both files parse with strict SRT and WebVTT readers:
text is cleaned (white space to spaces, no control characters or bidi
overrides, lone surrogates as U+FFFD, ``-->`` as ``→``, ``& < >`` escaped in
WebVTT), words whose times are not finite numbers up to 99:59:59.999 are left
out and counted in :attr:`SubtitleWriter.dropped_words`, and cues only go
forward, never overlap and never last 0 ms (the rules: ``docs/plugins.md``,
"What a transcript may hold").
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterable
from typing import IO, Any, Union

from cartesia_sync import Transcript, TurnEnd, Word, hookimpl

from .subtitle_cues import (
    VTT_HEADER,
    Cue,
    CueBuilder,
    CueRules,
    format_srt_cue,
    format_timestamp,
    format_vtt_cue,
    segment_words,
)

__all__ = [
    "SubtitleWriter",
    "write_subtitles",
    "CueRules",
    "Cue",
    "CueBuilder",
    "segment_words",
    "format_srt_cue",
    "format_vtt_cue",
    "format_timestamp",
    "VTT_HEADER",
]

Target = Union[str, "os.PathLike[str]", IO[str]]


class _Output:
    """One subtitle file: a path we open and close, or a caller's open text file."""

    def __init__(self, target: Target, header: str) -> None:
        if isinstance(target, (str, os.PathLike)):
            self.path: str | None = os.fspath(target)
            self.file: IO[str] | None = None
        elif hasattr(target, "write"):
            if isinstance(target, (io.RawIOBase, io.BufferedIOBase)):
                raise TypeError("subtitle files must be opened in text mode")
            self.path = None
            self.file = target
        else:
            raise TypeError(f"expected a path or an open text file, got {type(target).__name__}")
        self.header = header
        self.opened = False

    def open(self) -> None:
        if self.opened:
            return
        if self.path is not None:
            self.file = open(self.path, "w", encoding="utf-8", newline="")  # noqa: SIM115 - open for the session
        self.opened = True
        if self.header:
            self.write(self.header)

    def write(self, text: str) -> None:
        assert self.file is not None
        self.file.write(text)
        self.file.flush()

    def close(self) -> None:
        if self.file is None:
            return
        if self.path is not None:
            self.file.close()
        else:
            self.file.flush()


class SubtitleWriter:
    """A plugin writing a session's final words as SRT and/or WebVTT cues.

    :param srt: path or open text file for SubRip output.
    :param vtt: path or open text file for WebVTT output.
    :param rules: segmentation limits (:class:`CueRules`).

    At least one of ``srt`` and ``vtt`` is required. ``cues`` lists every cue
    written so far.
    """

    name = "subtitles"

    def __init__(self, srt: Target | None = None, vtt: Target | None = None, rules: CueRules | None = None):
        if srt is None and vtt is None:
            raise ValueError("SubtitleWriter needs srt= or vtt= (a path or an open text file)")
        self.rules = rules if rules is not None else CueRules()
        self._srt = _Output(srt, "") if srt is not None else None
        self._vtt = _Output(vtt, VTT_HEADER) if vtt is not None else None
        self._builder = CueBuilder(self.rules)
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self.cues: list[Cue] = []

    @property
    def dropped_words(self) -> int:
        """Final words left out of the files: no text once cleaned, a time that is not a usable
        number (see :func:`~cartesia_sync_plugins.subtitle_cues.word_ms`), a repeat, or no room
        left before 99:59:59.999."""
        return self._builder.dropped_words

    # -- hooks

    @hookimpl
    def on_session_start(self) -> None:
        with self._lock:
            if self._started:
                raise RuntimeError("a SubtitleWriter writes one session; make a new one per session")
            self._started = True
            self._open()

    @hookimpl
    def on_transcript(self, transcript: Transcript) -> None:
        if not transcript.is_final or not transcript.words:
            return
        self.add_words(transcript.words)

    @hookimpl
    def on_turn_end(self, session: Any, event: TurnEnd) -> None:
        """A turn session's turn: one cue group over the turn's time, its text spread evenly over it.

        Turn messages carry no word times; the turn's ``start`` and ``end`` are
        the audio the session had sent when the turn started and ended.
        """
        turns = getattr(session, "turns", ())
        if not turns or not event.transcript.strip():
            return
        turn = turns[-1]
        self.add_words(_spread(event.transcript, turn.start, turn.end))
        self.on_flush_done()

    @hookimpl
    def on_flush_done(self) -> None:
        with self._lock:
            if not self._closed:
                self._write(self._builder.flush())

    @hookimpl
    def on_done(self) -> None:
        with self._lock:
            if not self._closed:
                self._write(self._builder.finish())

    @hookimpl
    def on_session_end(self) -> None:
        self.close()

    # -- plain API

    def add_words(self, words: Iterable[Word]) -> None:
        """Add final words; write the cues they close."""
        with self._lock:
            if self._closed or self._builder.finished:
                return
            self._write(self._builder.add_words(words))

    def close(self) -> None:
        """Write the open cue, if any, and close the files opened from paths. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._write(self._builder.finish())
                self._open()  # an empty session still leaves valid (empty) files
            finally:
                for out in (self._srt, self._vtt):
                    if out is not None:
                        out.close()

    # -- internals

    def _open(self) -> None:
        for out in (self._srt, self._vtt):
            if out is not None:
                out.open()

    def _write(self, cues: list[Cue]) -> None:
        if not cues:
            return
        self._open()
        for cue in cues:
            index = len(self.cues) + 1
            if self._srt is not None:
                self._srt.write(format_srt_cue(index, cue))
            if self._vtt is not None:
                self._vtt.write(format_vtt_cue(cue))
            self.cues.append(cue)


def write_subtitles(
    words: Iterable[Word],
    srt: Target | None = None,
    vtt: Target | None = None,
    rules: CueRules | None = None,
) -> list[Cue]:
    """Write subtitles for a complete list of final words; return the cues."""
    writer = SubtitleWriter(srt=srt, vtt=vtt, rules=rules)
    try:
        writer.add_words(words)
    finally:
        writer.close()
    return writer.cues


def _spread(text: str, start: float, end: float) -> list[Word]:
    """``text``'s words with times spread evenly over ``[start, end]`` (at least 0.1 s each)."""
    words = text.split()
    step = max(0.1, (end - start) / max(1, len(words)))
    return [Word(word, start + i * step, start + (i + 1) * step) for i, word in enumerate(words)]
