"""One call that does it all: connect, send a file or an array, close, return the result."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple, Union

from .client import Client
from .events import Word
from .stats import SessionStats

__all__ = ["TranscriptionResult", "transcribe"]


@dataclass(frozen=True)
class TranscriptionResult:
    """What :func:`transcribe` returns.

    :ivar text: every final text, concatenated verbatim.
    :ivar words: every final word, times in seconds from the start of the audio.
    :ivar audio_seconds: how much audio was sent.
    :ivar wall_seconds: how long the whole call took, connection included.
    :ivar realtime_factor: ``wall_seconds / audio_seconds`` (below 1 is faster than real time).
    :ivar stats: the session's full accounting.
    :ivar request_id: the server's id for the connection, if it sent one.
    """

    text: str
    words: Tuple[Word, ...]
    audio_seconds: float
    wall_seconds: float
    realtime_factor: Optional[float]
    stats: SessionStats = field(repr=False)
    request_id: Optional[str] = None


def transcribe(
    audio: Union[str, "os.PathLike[str]", Any],
    realtime: Union[None, bool, float] = None,
    *,
    sample_rate: Optional[int] = None,
    timeout: Optional[float] = None,
    **client_kwargs: Any,
) -> TranscriptionResult:
    """Transcribe a whole file or array and return the text and words.

    :param audio: a path to an audio file, raw s16le ``bytes`` at the session
        rate, or a numpy array (then say its ``sample_rate`` if it differs).
    :param realtime: pacing, as for :meth:`Client.connect`.
    :param sample_rate: the rate of an array or bytes passed as ``audio``.
    :param timeout: seconds to wait for the server's ``done``.
    :param client_kwargs: anything :class:`Client` takes (``api_key``, ``url``,
        ``model``, ``plugins``...).
    :raises CartesiaSyncError: any failure, with what went wrong.
    """
    started = time.monotonic()
    client = Client(**client_kwargs)
    with client.connect(realtime=realtime) as session:
        if isinstance(audio, (str, os.PathLike)):
            session.send_file(audio)
        else:
            session.send(audio, sample_rate=sample_rate)
        session.close(timeout)
    stats = session.stats
    wall = time.monotonic() - started
    seconds = stats.audio_sent
    return TranscriptionResult(
        text=session.text,
        words=session.words,
        audio_seconds=seconds,
        wall_seconds=wall,
        realtime_factor=(wall / seconds) if seconds else None,
        stats=stats,
        request_id=session.request_id,
    )
