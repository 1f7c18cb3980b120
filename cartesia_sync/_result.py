"""TranscriptionResult: what a transcription produced, whole or, after a failure, as far as it got."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._events import Word
from ._stats import SessionStats

__all__ = ["TranscriptionResult"]


@dataclass(frozen=True)
class TranscriptionResult:
    """What :func:`~cartesia_sync.transcribe` returns, and what a failed one carries as ``error.partial_result``.

    :ivar text: every final text, concatenated verbatim.
    :ivar words: every final word, times in seconds from the start of the audio.
    :ivar audio_seconds: how much audio was sent.
    :ivar wall_seconds: how long the whole call took, connection included.
    :ivar realtime_factor: ``wall_seconds / audio_seconds`` (below 1 is faster than real time).
    :ivar stats: the session's full accounting.
    :ivar request_id: the server's id for the connection (or the batch request), if it sent one.
    :ivar complete: True when the server confirmed the end of the stream (its
        ``done``) and nothing failed; False for what a failed or interrupted
        transcription had recognised until then (``stats.audio_acknowledged``
        says how far into the audio that is).
    :ivar language: the language the server reported, else the one asked for.
    :ivar mode: ``"batch"`` (uploaded with ``POST /stt``) or ``"stream"``
        (the WebSocket): which path produced it.
    """

    text: str
    words: tuple[Word, ...]
    audio_seconds: float
    wall_seconds: float
    realtime_factor: float | None
    stats: SessionStats = field(repr=False)
    request_id: str | None = None
    complete: bool = True
    language: str | None = None
    mode: str = "stream"
