"""Session: one streaming connection, its two threads, and its transcript.

A session is opened by :meth:`cartesia_sync.Client.connect` (the handshake has
happened by then) and ends with :meth:`Session.close` (drain: send the end
command and keep receiving until ``done``) or :meth:`Session.abort` (no drain).
Leaving a ``with`` block closes it, or aborts it when the block raised.

Errors that happen on the background threads are reported through the
``on_error`` hook, kept in :attr:`Session.errors`, and re-raised to the caller:
an error that ended the session at the next ``send()``, ``send_file()``,
``finalize()`` or ``close()``; any other error (a plugin that raised, a server
message that could not be parsed) at the next ``finalize()`` or ``close()``.
Each error is raised once. ``Client(raise_errors=False)`` turns re-raising off.
"""

from __future__ import annotations

import enum
import itertools
import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Deque, List, Optional, Tuple, Union

import websocket

from .audio_files import AudioFileInfo
from .audio_queue import AudioQueue, Command
from .config import ConnectionSettings, SessionOptions
from .errors import (
    CartesiaSyncError,
    ConnectionLostError,
    PluginError,
    ProtocolError,
    SessionClosedError,
    StreamTimeout,
)
from .intake import AudioIntake
from .events import Done, Event, FlushDone, ServerErrorEvent, Transcript, UnknownMessage, Word
from .plugin_manager import HookDispatcher
from .receiver import Receiver
from .secrets import redact
from .sender import Sender
from .stats import SessionStats, StatsCounter
from .transcript import TranscriptAccumulator
from .transport import shutdown_socket

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

__all__ = ["Session", "SessionState"]

logger = logging.getLogger(__name__)

_session_numbers = itertools.count(1)

#: Silence byte patterns per encoding, for keepalive frames.
_SILENCE_BYTE = {"pcm_mulaw": b"\xff", "pcm_alaw": b"\xd5"}


class SessionState(enum.Enum):
    """Where a session is in its life."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class _FlushTicket:
    """One ``finalize()`` waiting for its ``flush_done``."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.event: Optional[FlushDone] = None


class Session:
    """One open streaming connection. Create it with :meth:`Client.connect`.

    ``send()`` and ``send_file()`` may be called from any thread. Hooks run on
    the session's receiver thread. Every blocking method has a timeout.
    """

    def __init__(
        self,
        ws: websocket.WebSocket,
        settings: ConnectionSettings,
        options: SessionOptions,
        plugin_manager: "pluggy.PluginManager",
        speed: Optional[float],
        connect_seconds: float = 0.0,
    ) -> None:
        self.settings = settings
        self.options = options
        self.speed = speed
        self.number = next(_session_numbers)
        self.started_at = time.time()
        self._ws = ws
        self._bytes_per_second = settings.bytes_per_second
        self._stats = StatsCounter(self._bytes_per_second)
        self._stats.set("connect_seconds", connect_seconds)
        self._transcript = TranscriptAccumulator()
        self._queue = AudioQueue(round(options.max_buffer_seconds * self._bytes_per_second), options.buffer_policy)
        self._intake = AudioIntake(settings, options, self._queue, self._stats, self._audio_dropped)
        self._dispatcher = HookDispatcher(plugin_manager, self, self._record_error, self._scrub)

        self._state = SessionState.OPEN
        self._state_lock = threading.Lock()
        self._closed_event = threading.Event()
        self._errors: List[CartesiaSyncError] = []
        self._pending_error: Optional[CartesiaSyncError] = None
        self._failure: Optional[CartesiaSyncError] = None
        self._failed_event = threading.Event()
        self._tickets: Deque[_FlushTicket] = deque()
        self._end_command: Optional[Command] = None
        self._done_event = threading.Event()
        self._done: Optional[Done] = None
        self._stream_ended = threading.Event()
        self._expect_close = False
        self.request_id: Optional[str] = None

        keepalive = _SILENCE_BYTE.get(settings.encoding, b"\x00") * self._intake.frame_bytes
        self._sender = Sender(
            ws, self._queue, self._stats,
            bytes_per_second=self._bytes_per_second, speed=speed,
            keepalive_interval=options.keepalive_interval, keepalive_frame=keepalive,
            on_failure=self._sender_failed, name=f"cartesia-sync-sender-{self.number}",
        )
        self._receiver = Receiver(ws, self, self._stats, name=f"cartesia-sync-receiver-{self.number}")

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> "Session":
        """Announce the session to plugins and start its threads. Called by ``Client.connect``."""
        self._dispatcher.emit("on_session_start")
        self._receiver.start()
        self._sender.start()
        return self

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def state(self) -> SessionState:
        """``OPEN``, ``CLOSING`` or ``CLOSED``."""
        return self._state

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``abort()`` has finished."""
        return self._state is SessionState.CLOSED

    # -- results ------------------------------------------------------------

    @property
    def text(self) -> str:
        """All final transcript text so far, concatenated verbatim."""
        return self._transcript.text

    @property
    def words(self) -> Tuple[Word, ...]:
        """All final words so far; times in seconds from the start of the session's audio."""
        return self._transcript.words

    @property
    def interim(self) -> Optional[Transcript]:
        """The latest interim chunk that no final chunk has replaced yet."""
        return self._transcript.interim

    @property
    def stats(self) -> SessionStats:
        """A snapshot of the session's accounting."""
        return self._stats.snapshot()

    @property
    def errors(self) -> Tuple[CartesiaSyncError, ...]:
        """Every error reported during the session, in order."""
        with self._state_lock:
            return tuple(self._errors)

    @property
    def error(self) -> Optional[CartesiaSyncError]:
        """The error that ended the session, if one did."""
        return self._failure

    @property
    def audio_sent(self) -> float:
        """Seconds of audio written to the socket so far (keepalive silence excluded)."""
        return self._stats.get("audio_sent") / self._bytes_per_second

    # -- sending ------------------------------------------------------------

    def send(self, audio: Any, *, sample_rate: Optional[int] = None, channels: Optional[int] = None) -> None:
        """Queue audio for sending. Thread-safe; returns once the audio is queued.

        :param audio: ``bytes`` of audio in the session's encoding (s16le by
            default), or a numpy array of int16/int32/uint8/float32/float64
            samples shaped ``(frames,)`` or ``(frames, channels)``.
        :param sample_rate: the rate of ``audio`` when it differs from the
            session's; it is then resampled (s16le sessions only).
        :param channels: channels interleaved in ``bytes`` input (downmixed to mono).
        :raises AudioFormatError: the audio cannot be converted; nothing was queued.
        :raises StreamTimeout: the buffer stayed full for ``send_timeout`` seconds.
        :raises SessionClosedError: the session is closing or closed.
        :raises CartesiaSyncError: the error that ended the session in the background.
        """
        self._check_sendable()
        try:
            self._intake.add(audio, sample_rate, channels)
        except SessionClosedError:
            raise self._closed_error() from None

    def send_file(self, path: Union[str, "os.PathLike[str]"]) -> AudioFileInfo:
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
        self._check_sendable()
        try:
            return self._intake.add_file(path, self._check_sendable)
        except SessionClosedError:
            raise self._closed_error() from None

    def finalize(self, timeout: Optional[float] = None) -> FlushDone:
        """Ask the server to transcribe everything sent so far, and wait for it.

        Returns when ``flush_done`` arrives, by which time every final
        transcript before it has been dispatched to the hooks and added to
        :attr:`text`. With pacing on, audio still queued is sent first; the
        wait for it is added to ``timeout``.

        :param timeout: seconds to wait for ``flush_done`` once the command is
            on the wire; default ``finalize_timeout`` of the client.
        :raises StreamTimeout: no ``flush_done`` in time.
        :raises RuntimeError: called from a hook (it would wait for itself).
        :raises CartesiaSyncError: a background error (see the class docs).
        """
        self._refuse_from_session_threads("finalize")
        timeout = self.options.finalize_timeout if timeout is None else timeout
        self._check_sendable()
        self._raise_pending(fatal_only=False)
        ticket = _FlushTicket()
        command = Command("finalize")
        try:
            self._intake.add_command(command, on_queued=lambda: self._tickets.append(ticket))
        except SessionClosedError:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
            raise self._closed_error() from None
        self._wait_sent(command, timeout, "finalize")
        self._wait_any(ticket.answered, timeout)
        self._raise_pending(fatal_only=False)
        if ticket.event is not None:
            return ticket.event
        if self._failure is not None or self._state is not SessionState.OPEN:
            raise self._closed_error()
        raise StreamTimeout(
            f"no flush_done within {timeout:g} s of sending finalize to {self.settings.display_url}; "
            "the server may be overloaded: raise the timeout or close the session"
        )

    def close(self, timeout: Optional[float] = None) -> None:
        """End the session without losing results, then release everything.

        Sends the end command after the queued audio, keeps receiving until
        ``done`` (or the server's close), closes the socket and joins both
        threads. Idempotent and callable from any thread except the session's
        own (that is, not from a hook).

        :param timeout: seconds to wait for ``done`` once the end command is on
            the wire; default ``close_timeout`` of the client.
        :raises StreamTimeout: ``done`` did not come; the session is aborted.
        :raises RuntimeError: called from a hook.
        :raises CartesiaSyncError: the first background error not raised yet.
        """
        self._refuse_from_session_threads("close")
        timeout = self.options.close_timeout if timeout is None else timeout
        if not self._begin_ending():
            self._raise_pending(fatal_only=False)
            return
        try:
            if self._failure is None:
                self._drain(timeout)
        finally:
            self._teardown()
        self._raise_pending(fatal_only=False)

    def abort(self) -> None:
        """Close at once: unsent audio and results in flight are discarded.

        Idempotent, callable from any thread except the session's own; never
        raises for background errors (they stay in :attr:`errors`).
        """
        self._refuse_from_session_threads("abort")
        if self._begin_ending():
            self._teardown()

    # -- internals: input ---------------------------------------------------

    def _audio_dropped(self, nbytes: int) -> None:
        logger.warning("send buffer full: dropped %.3f s of the oldest audio", nbytes / self._bytes_per_second)

    def _check_sendable(self) -> None:
        self._raise_pending(fatal_only=True)
        if self._state is not SessionState.OPEN or self._failure is not None:
            raise self._closed_error()

    def _closed_error(self) -> CartesiaSyncError:
        if self._failure is not None:
            error = SessionClosedError(f"the session ended because of an error: {self._failure}")
            error.__cause__ = self._failure
            return error
        return SessionClosedError(f"the session is {self._state.value}; open a new one with client.connect()")

    # -- internals: ending ----------------------------------------------------

    def _refuse_from_session_threads(self, what: str) -> None:
        current = threading.current_thread()
        if current is self._receiver or current is self._sender:
            raise RuntimeError(
                f"{what}() called from a hook, on the session's own thread, would wait for itself; "
                "set a flag or use your own thread, and call it from there"
            )

    def _begin_ending(self) -> bool:
        """Move to CLOSING; False when another call already did (then wait for it)."""
        with self._state_lock:
            if self._state is SessionState.OPEN:
                self._state = SessionState.CLOSING
                return True
        self._closed_event.wait(self.options.close_timeout + self.options.close_grace + 2 * self.options.join_timeout)
        return False

    def _drain(self, timeout: float) -> None:
        command = Command(self.settings.end_command)
        self._end_command = command
        try:
            self._intake.add_command(command)
        except SessionClosedError:
            return  # the session failed meanwhile; the failure is raised by close()
        self._wait_sent(command, timeout, self.settings.end_command)
        if not self._wait_any(self._done_event, timeout, self._stream_ended):
            if self._failure is not None:
                return
            error = StreamTimeout(
                f"no 'done' within {timeout:g} s of sending {self.settings.end_command!r} to "
                f"{self.settings.display_url}; the session was aborted and results after the last final may be missing"
            )
            self._fail(error)
            self._dispatcher.report(error)
            return
        self._expect_close = True
        if not self._stream_ended.wait(self.options.close_grace):
            logger.debug("server did not close %.1f s after done; closing from this side", self.options.close_grace)

    def _wait_sent(self, command: Command, timeout: float, what: str) -> None:
        """Wait until the sender wrote ``command``: queued audio first, at the pacing speed."""
        queued = self._queue.audio_bytes / self._bytes_per_second
        budget = timeout + (queued / self.speed if self.speed else 0.0) + self.options.send_timeout
        if not self._wait_any(command.sent, budget):
            self._raise_pending(fatal_only=False)
            if self._failure is not None:
                raise self._closed_error()
            raise StreamTimeout(
                f"{what!r} could not be sent within {budget:g} s: the connection is not taking data"
            )

    def _wait_any(self, event: threading.Event, timeout: float, *others: threading.Event) -> bool:
        """Wait for ``event``; stop early when the session fails or one of ``others`` is set."""
        deadline = time.monotonic() + timeout
        while True:
            if event.is_set():
                return True
            if self._failed_event.is_set() or any(other.is_set() for other in others):
                return event.is_set() or self._failure is None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            event.wait(min(remaining, 0.05))

    def _teardown(self) -> None:
        self._expect_close = True
        self._sender.stop()
        unsent = self._queue.close("the session is closed")
        if unsent:
            self._stats.add("audio_unsent", unsent)
            logger.warning("%.3f s of queued audio was never sent", unsent / self._bytes_per_second)
        if not self._stream_ended.is_set():
            self._send_close_frame()
            self._stream_ended.wait(min(0.5, self.options.close_grace))
        shutdown_socket(self._ws)
        for thread in (self._sender, self._receiver):
            if thread.is_alive() and thread is not threading.current_thread():
                thread.join(self.options.join_timeout)
                if thread.is_alive():
                    logger.error("thread %s did not stop within %.1f s", thread.name, self.options.join_timeout)
        self._wake_tickets()
        self._stats.mark_ended()
        self._dispatcher.emit("on_session_end")
        with self._state_lock:
            self._state = SessionState.CLOSED
        self._closed_event.set()

    def _send_close_frame(self) -> None:
        sock = self._ws.sock
        try:
            if sock is not None:
                sock.settimeout(1.0)
            self._ws.send_close(1000, b"")
        except Exception:
            logger.debug("could not send the close frame", exc_info=True)

    # -- internals: errors ----------------------------------------------------

    def _scrub(self, text: str) -> str:
        return redact(text, self.settings.api_key)

    def _record_error(self, error: CartesiaSyncError, fatal: bool = False) -> None:
        with self._state_lock:
            self._errors.append(error)
            if fatal or self._pending_error is None:
                self._pending_error = error
        if isinstance(error, ProtocolError):
            self._stats.add("protocol_errors")
        elif isinstance(error, PluginError):
            self._stats.add("plugin_errors")

    def _raise_pending(self, fatal_only: bool) -> None:
        if not self.options.raise_errors:
            return
        with self._state_lock:
            error = self._pending_error
            if error is None or (fatal_only and error is not self._failure):
                return
            self._pending_error = None
        raise error

    def _fail(self, error: CartesiaSyncError) -> None:
        """Record the error that ends the session, stop sending, and wake every waiter."""
        with self._state_lock:
            if self._failure is not None:
                return
            self._failure = error
        self._record_error(error, fatal=True)
        self._failed_event.set()
        self._sender.stop()
        unsent = self._queue.close(f"the session ended because of an error: {error}")
        if unsent:
            self._stats.add("audio_unsent", unsent)
        self._wake_tickets()

    def _wake_tickets(self) -> None:
        while self._tickets:
            self._tickets.popleft().answered.set()

    def _sender_failed(self, error: ConnectionLostError) -> None:
        if self._expect_close:
            return
        self._fail(error)
        self._dispatcher.report(error)

    # -- MessageSink: called on the receiver thread ---------------------------

    def handle_event(self, event: Event) -> None:
        """Update the transcript, dispatch the hooks, and answer waiters, in that order."""
        if self.request_id is None and getattr(event, "request_id", None):
            self.request_id = event.request_id  # type: ignore[union-attr]
        if isinstance(event, Transcript):
            event = self._transcript.add(event)
            self._stats.add("final_transcripts" if event.is_final else "interim_transcripts")
        self._stats.add("events_dispatched")
        self._dispatcher.emit("on_event", event=event)
        if isinstance(event, Transcript):
            self._dispatcher.emit("on_transcript", transcript=event)
        elif isinstance(event, FlushDone):
            self._dispatcher.emit("on_flush_done", event=event)
            if self._tickets:
                ticket = self._tickets.popleft()
                ticket.event = event
                ticket.answered.set()
        elif isinstance(event, Done):
            self._done = event
            self._dispatcher.emit("on_done", event=event)
            self._done_event.set()
        elif isinstance(event, ServerErrorEvent):
            self._stats.add("server_errors")
            error = event.to_exception()
            if event.fatal:
                self._fail(error)
            else:
                self._record_error(error)
            self._dispatcher.report(error)
        elif isinstance(event, UnknownMessage):
            logger.info("server sent a message of unknown type %r; passed to on_event only", event.message_type)

    def handle_junk(self, error: ProtocolError) -> None:
        """Report a frame that could not be understood; the stream goes on."""
        logger.warning("%s", error)
        self._record_error(error)
        self._dispatcher.report(error)

    def handle_close(self, code: Optional[int], reason: str) -> None:
        """The server closed the connection: normal after ``done``, a failure before."""
        ended_normally = self._done_event.is_set() or self._expect_close or (
            self._end_command is not None and self._end_command.sent.is_set() and code in (None, 1000)
        )
        if not ended_normally and self._failure is None:
            detail = f"code {code}" + (f", reason {reason!r}" if reason else "") if code is not None else "no code"
            error = ConnectionLostError(
                f"the server closed the connection ({detail}) before the session ended; "
                "results for audio after the last final are lost: open a new session and resend it",
                close_code=code, close_reason=reason,
            )
            self._fail(error)
            self._dispatcher.report(error)
        self._stream_ended.set()

    def handle_lost(self, detail: str) -> None:
        """The connection broke without a close frame."""
        if not self._expect_close and not self._done_event.is_set() and self._failure is None:
            error = ConnectionLostError(
                f"the connection to {self.settings.display_url} was lost ({self._scrub(detail)}); "
                "results for audio after the last final are lost: open a new session and resend it"
            )
            self._fail(error)
            self._dispatcher.report(error)
        self._stream_ended.set()

    def __repr__(self) -> str:
        return (
            f"<Session #{self.number} {self._state.value} url={self.settings.display_url!r} "
            f"sent={self.audio_sent:.1f}s finals={self._stats.get('final_transcripts'):.0f}>"
        )
