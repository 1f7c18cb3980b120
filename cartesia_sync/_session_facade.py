"""What every kind of session offers its caller, over the shared :class:`~._session_core.SessionCore`.

:class:`~cartesia_sync.Session` (streaming) and
:class:`~cartesia_sync.TurnSession` (turns) differ in their results and in
how they end; their life (start, ``with``, state), accounting, errors,
sending and abort are the same, and are written here once. A kind of session
subclasses :class:`SessionFacade`, builds its core with :meth:`_open_core`,
and adds its results, its commands and its ``close()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from ._audio_files import AudioFileInfo
from ._config import ConnectionSettings, SessionOptions
from ._lifecycle import SessionState
from ._result_side import ResultSide
from ._session_core import SessionCore, SessionKind
from ._stats import SessionStats
from ._wire import WireConnection
from .errors import CartesiaSyncError

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

__all__ = ["SessionFacade"]

_Facade = TypeVar("_Facade", bound="SessionFacade")


class SessionFacade:
    """The caller's side of one connection: life, accounting, errors, sending and abort."""

    settings: ConnectionSettings
    """The connection's settings (URL, encoding, sample rate...)."""
    options: SessionOptions
    """The session's options (timeouts, buffer, reconnects...)."""
    speed: float | None
    """The pacing: 1.0 for real time, ``None`` for as fast as the socket takes audio."""
    number: int
    """The session's number in this process (in thread names and logs)."""
    started_at: float
    """When the session was created (``time.time()``)."""
    _core: SessionCore

    def _open_core(
        self,
        ws: WireConnection,
        settings: ConnectionSettings,
        options: SessionOptions,
        plugin_manager: pluggy.PluginManager,
        speed: float | None,
        kind: SessionKind,
        make_results: Callable[[SessionCore], ResultSide],
        connect_seconds: float,
    ) -> None:
        """Build the session's core: its threads, queue, connection and hooks, with this kind's result side."""
        self.settings = settings
        self.options = options
        self.speed = speed
        self._core = SessionCore(
            ws,
            settings,
            options,
            plugin_manager,
            speed,
            owner=self,
            make_results=make_results,
            kind=kind,
            connect_seconds=connect_seconds,
        )
        self.number = self._core.number
        self.started_at = self._core.started_at

    # -- lifecycle ----------------------------------------------------------

    def start(self: _Facade) -> _Facade:
        """Announce the session to plugins and start its threads. Called by the ``Client`` that connected it."""
        self._core.start()
        return self

    def __enter__(self: _Facade) -> _Facade:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def close(self, timeout: float | None = None) -> None:  # pragma: no cover - every kind has its own
        raise NotImplementedError

    @property
    def state(self) -> SessionState:
        """Where the session is in its life (see :class:`SessionState`)."""
        return self._core.lifecycle.state

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``abort()`` has finished."""
        return self._core.lifecycle.state is SessionState.CLOSED

    # -- accounting and errors ------------------------------------------------

    @property
    def stats(self) -> SessionStats:
        """A snapshot of the session's accounting."""
        return self._core.stats.snapshot()

    @property
    def errors(self) -> tuple[CartesiaSyncError, ...]:
        """The errors reported during the session, in order: the first 100, the one that ended it, and the latest.

        A server that floods junk cannot grow this without bound;
        ``stats.errors_reported`` counts every error.
        """
        return self._core.book.errors

    @property
    def error(self) -> CartesiaSyncError | None:
        """The error that ended the session, if one did."""
        return self._core.book.failure

    @property
    def ended_by_server(self) -> str | None:
        """Why the server closed the session while the caller was idle, or ``None``.

        Such a session ends without an error: sending raises
        :class:`SessionClosedError`, ``close()`` just releases it.
        """
        return self._core.lifecycle.ended_by_server

    @property
    def request_id(self) -> str | None:
        """The server's id for the connection, once a message carried it."""
        return self._core.results.request_id

    @property
    def audio_sent(self) -> float:
        """Seconds of audio written to the socket so far (keepalive silence excluded)."""
        return self._core.stats.get("audio_sent") / self._core.bytes_per_second

    # -- sending and ending ---------------------------------------------------

    def send(self, audio: Any, *, sample_rate: int | None = None, channels: int | None = None) -> None:
        """Queue audio for sending. Thread-safe; returns once the audio is queued.

        :param audio: ``bytes`` of audio in the session's encoding (s16le by
            default), or a numpy array of int16/int32/uint8/float32/float64
            samples shaped ``(frames,)`` or ``(frames, channels)``.
        :param sample_rate: the rate of ``audio`` when it differs from the
            session's; it is then resampled (s16le sessions only).
        :param channels: channels interleaved in ``bytes`` input (downmixed to mono).
        :raises AudioFormatError: the audio cannot be converted; nothing was queued.
        :raises StreamTimeout: the buffer stayed full for ``send_timeout`` seconds;
            the part of this call's audio that was not queued is dropped and counted.
        :raises SessionClosedError: the session is closing or closed.
        :raises CartesiaSyncError: the error that ended the session in the background.
        """
        self._core.send(audio, sample_rate, channels)

    def send_file(self, path: str | os.PathLike[str]) -> AudioFileInfo:
        """Decode an audio file, convert it to the session's format, and queue all of it.

        WAV files are parsed directly (PCM 8/16/24/32-bit, float 32/64-bit,
        any rate and channel count); FLAC, OGG, MP3 and AIFF go through
        libsndfile. The file is read in blocks, so memory stays small; with
        pacing on, this returns when the last block is queued.

        :returns: what the file held (format, rate, channels, duration).
        :raises AudioFormatError: the file is empty, not audio, or in an
            unsupported format; nothing was queued.
        :raises FileNotFoundError: there is no such file.
        """
        return self._core.send_file(path)

    def abort(self) -> None:
        """Close at once: unsent audio and results in flight are discarded.

        Idempotent and callable from any thread except the session's own; it
        also cuts short a ``close()`` that another thread is running. Never
        raises for background errors (they stay in :attr:`errors`).
        """
        self._core.refuse_from_session_threads("abort")
        self._core.abort()
