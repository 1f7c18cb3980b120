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

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ._audio_files import AudioFileInfo
from ._audio_queue import AudioQueue, Command
from ._config import ENCODINGS, ConnectionSettings, SessionOptions
from ._error_book import ErrorBook
from ._events import FlushDone, Transcript, Word
from ._headway import Headway
from ._intake import AudioIntake
from ._lifecycle import Lifecycle, SessionState
from ._link import Link
from ._liveness import Liveness
from ._plugin_manager import HookDispatcher
from ._receiver import Receiver
from ._result import TranscriptionResult
from ._router import EventRouter, FlushTicket
from ._secrets import redact
from ._sender import Sender
from ._stats import SessionStats, StatsCounter
from ._supervisor import ConnectionSupervisor
from ._transcript import TranscriptAccumulator
from ._wire import WireConnection
from .errors import (
    CartesiaSyncError,
    SessionClosedError,
    StreamTimeout,
)

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

__all__ = ["Session", "SessionState"]

logger = logging.getLogger("cartesia_sync.session")

_session_numbers = itertools.count(1)

#: Silence byte patterns per encoding, for keepalive frames.
_SILENCE_BYTE = {"pcm_mulaw": b"\xff", "pcm_alaw": b"\xd5"}


class Session:
    """One open streaming connection. Create it with :meth:`Client.connect`.

    ``send()`` and ``send_file()`` may be called from any thread. Hooks run on
    the session's receiver thread. Every blocking method has a timeout.
    """

    def __init__(
        self,
        ws: WireConnection,
        settings: ConnectionSettings,
        options: SessionOptions,
        plugin_manager: pluggy.PluginManager,
        speed: float | None,
        connect_seconds: float = 0.0,
    ) -> None:
        self.settings = settings
        self.options = options
        self.speed = speed
        self.number = next(_session_numbers)
        self.started_at = time.time()
        self._bytes_per_second = settings.bytes_per_second
        self._stats = StatsCounter(self._bytes_per_second)
        self._stats.set("connect_seconds", connect_seconds)
        self._transcript = TranscriptAccumulator()
        self._queue = AudioQueue(round(options.max_buffer_seconds * self._bytes_per_second), options.buffer_policy)
        self._intake = AudioIntake(settings, options, self._queue, self._stats, self._audio_dropped)
        self._book = ErrorBook(self._stats, options.raise_errors)
        self._lifecycle = Lifecycle()
        self._dispatcher = HookDispatcher(plugin_manager, self, self._book.keep, self._scrub)
        self._router = EventRouter(
            self._transcript,
            self._stats,
            self._dispatcher,
            self._server_error,
            self._book.keep,
            done=self._lifecycle.done,
        )
        self._link = Link(
            ws,
            round(options.replay_seconds * self._bytes_per_second),
            ENCODINGS[settings.encoding],
            self._bytes_per_second,
            self._stats,
        )
        self._liveness = Liveness(options.ping_interval, options.ping_timeout)
        self._headway = Headway()
        ws.write_patience = self._liveness.dead_after or options.join_timeout
        self._ending_deadline = 0.0  # when the closing thread will have finished, unless the session moves on
        self._ending_patience = 0.0  # how long the closing thread may go without headway

        self._supervisor = ConnectionSupervisor(
            settings,
            options,
            self._link,
            self._lifecycle,
            self._router,
            self._queue,
            self._book,
            self._dispatcher,
            self._headway,
            self._stats,
            self._transcript,
            fail=self._fail_and_report,
            stop=self._stop_everything,
            scrub=self._scrub,
        )
        keepalive = _SILENCE_BYTE.get(settings.encoding, b"\x00") * self._intake.frame_bytes
        self._sender = Sender(
            ws,
            self._queue,
            self._stats,
            bytes_per_second=self._bytes_per_second,
            speed=speed,
            keepalive_interval=options.keepalive_interval,
            keepalive_frame=keepalive,
            liveness=self._liveness,
            headway=self._headway,
            replay=self._link.replay,
            on_failure=self._supervisor.sender_failed,
            name=f"cartesia-sync-sender-{self.number}",
        )
        self._supervisor.attach(self._sender)
        self._receiver = Receiver(
            ws, self._supervisor, self._stats, self._liveness, name=f"cartesia-sync-receiver-{self.number}"
        )

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> Session:
        """Announce the session to plugins and start its threads. Called by ``Client.connect``."""
        self._dispatcher.emit("on_session_start")
        self._receiver.start()
        self._sender.start()
        return self

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def state(self) -> SessionState:
        """Where the session is in its life (see :class:`SessionState`)."""
        return self._lifecycle.state

    @property
    def closed(self) -> bool:
        """True once ``close()`` or ``abort()`` has finished."""
        return self._lifecycle.state is SessionState.CLOSED

    # -- results ------------------------------------------------------------

    @property
    def text(self) -> str:
        """All final transcript text so far, concatenated verbatim."""
        return self._transcript.text

    @property
    def words(self) -> tuple[Word, ...]:
        """All final words so far; times in seconds from the start of the session's audio."""
        return self._transcript.words

    @property
    def interim(self) -> Transcript | None:
        """The latest interim chunk that no final chunk has replaced yet."""
        return self._transcript.interim

    @property
    def stats(self) -> SessionStats:
        """A snapshot of the session's accounting."""
        return self._stats.snapshot()

    @property
    def errors(self) -> tuple[CartesiaSyncError, ...]:
        """Every error reported during the session, in order."""
        return self._book.errors

    @property
    def error(self) -> CartesiaSyncError | None:
        """The error that ended the session, if one did."""
        return self._book.failure

    @property
    def ended_by_server(self) -> str | None:
        """Why the server closed the session while the caller was idle, or ``None``.

        Such a session ends without an error: sending raises
        :class:`SessionClosedError`, ``close()`` just releases it.
        """
        return self._lifecycle.ended_by_server

    def result(self) -> TranscriptionResult:
        """What the session has produced so far, as a :class:`TranscriptionResult`.

        ``complete`` is True once the server confirmed the end of the stream
        (``done``) and nothing failed; at any other moment, and after a failure
        or an abort, it is what was recognised until then.
        """
        stats = self._stats.snapshot()
        wall = stats.wall_seconds + stats.connect_seconds
        return TranscriptionResult(
            text=self.text,
            words=self.words,
            audio_seconds=stats.audio_sent,
            wall_seconds=wall,
            realtime_factor=(wall / stats.audio_sent) if stats.audio_sent else None,
            stats=stats,
            request_id=self.request_id,
            complete=self._lifecycle.done.is_set() and self._book.failure is None,
        )

    @property
    def request_id(self) -> str | None:
        """The server's id for the connection, once a message carried it."""
        return self._router.request_id

    @property
    def audio_sent(self) -> float:
        """Seconds of audio written to the socket so far (keepalive silence excluded)."""
        return self._stats.get("audio_sent") / self._bytes_per_second

    @property
    def audio_acknowledged(self) -> float:
        """Seconds of audio the server has recognised so far: to its latest final word, ``flush_done`` or ``done``."""
        return self._stats.get("audio_acknowledged") / self._bytes_per_second

    # -- sending ------------------------------------------------------------

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
        self._book.raise_next(fatal_only=True)  # the guard checks that the session is open, under the lock
        try:
            self._intake.add(audio, sample_rate, channels, guard=self._check_open)
        except SessionClosedError:
            raise self._closed_error() from None

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
        self._check_sendable()
        try:
            return self._intake.add_file(path, guard=self._check_open)
        except SessionClosedError:
            raise self._closed_error() from None

    def finalize(self, timeout: float | None = None) -> FlushDone:
        """Ask the server to transcribe everything sent so far, and wait for it.

        Returns when ``flush_done`` arrives, by which time every final
        transcript before it has been dispatched to the hooks and added to
        :attr:`text`. Audio still queued is sent first.

        The wait has no fixed length: it goes on while the session makes
        headway (the server sends messages, the socket takes audio), so a
        slow server working through a long backlog is waited for, and it ends
        when nothing moved for ``timeout`` seconds.

        :param timeout: seconds the server may stay silent before giving up;
            default ``finalize_timeout`` of the client.
        :raises StreamTimeout: nothing moved for ``timeout`` seconds; the
            error's ``partial_result`` holds what was recognised.
        :raises RuntimeError: called from a hook (it would wait for itself).
        :raises SessionClosedError: the session closed meanwhile.
        :raises CartesiaSyncError: a background error (see the module docs).
        """
        self._refuse_from_session_threads("finalize")
        with self._carrying_result():
            return self._finalize(self.options.finalize_timeout if timeout is None else timeout)

    def _finalize(self, timeout: float) -> FlushDone:
        self._check_sendable()
        self._book.raise_next()
        ticket = FlushTicket()
        command = Command("finalize")

        try:  # the guard runs under the intake's lock: no close() can slip in before the command
            self._intake.add_command(
                command, on_queued=lambda: self._router.tickets.append(ticket), guard=self._check_open
            )
        except SessionClosedError:
            raise self._closed_error() from None
        if not self._wait_sent(command, timeout):
            self._book.raise_next()
            self._raise_if_ended()
            raise self._not_sent_error("finalize", timeout)
        self._wait_any(ticket.answered, timeout, patience=timeout)
        self._book.raise_next()
        if ticket.event is not None:
            return ticket.event
        self._raise_if_ended()
        raise StreamTimeout(
            f"no flush_done from {self.settings.display_url}: the server sent nothing for {timeout:g} s after "
            f"finalize ({self._recognised_so_far()}); it is stuck or overloaded: raise finalize_timeout "
            "if it is slow but working, or close the session"
        )

    def close(self, timeout: float | None = None) -> None:
        """End the session without losing results, then release everything.

        Sends the end command after the queued audio, keeps receiving until
        ``done`` (or the server's close), closes the socket and joins both
        threads. Idempotent and callable from any thread except the session's
        own (that is, not from a hook). A second call made while another
        thread is closing waits for it to finish.

        Like :meth:`finalize`, the wait for ``done`` lasts as long as the
        server makes headway, however long the audio, and ends after
        ``timeout`` seconds in which nothing moved.

        :param timeout: seconds the server may stay silent before giving up;
            default ``close_timeout`` of the client.
        :raises StreamTimeout: nothing moved for ``timeout`` seconds before
            ``done``, or the audio could not be sent; the session is closed
            anyway, and the error's ``partial_result`` holds what was recognised.
        :raises RuntimeError: called from a hook.
        :raises CartesiaSyncError: the first background error not raised yet.
        """
        self._refuse_from_session_threads("close")
        with self._carrying_result():
            self._close(self.options.close_timeout if timeout is None else timeout)

    def _close(self, timeout: float) -> None:
        if not self._begin_ending(timeout):
            self._book.raise_next()
            return
        own_error: StreamTimeout | None = None
        try:
            if self._book.failure is None and not self._lifecycle.stopping.is_set():
                own_error = self._drain(timeout)
        except StreamTimeout as exc:
            own_error = exc
            self._book.record(exc, raised=True)
            self._dispatcher.report(exc)
        finally:
            self._teardown()
        if own_error is not None:
            raise own_error
        self._book.raise_next()

    def abort(self) -> None:
        """Close at once: unsent audio and results in flight are discarded.

        Idempotent and callable from any thread except the session's own; it
        also cuts short a ``close()`` that another thread is running. Never
        raises for background errors (they stay in :attr:`errors`).
        """
        self._refuse_from_session_threads("abort")
        if self._begin_ending(0.0, aborting=True):
            self._teardown()

    # -- internals: results ---------------------------------------------------

    @contextlib.contextmanager
    def _carrying_result(self) -> Iterator[None]:
        """Give an error raised to the caller what was recognised before it (``error.partial_result``)."""
        try:
            yield
        except CartesiaSyncError as error:
            if error.partial_result is None:
                error.partial_result = self.result()
            raise

    # -- internals: input ---------------------------------------------------

    def _audio_dropped(self, nbytes: int) -> None:
        logger.warning("send buffer full: dropped %.3f s of audio", nbytes / self._bytes_per_second)

    def _check_sendable(self) -> None:
        self._book.raise_next(fatal_only=True)
        self._check_open()

    def _check_open(self) -> None:
        if not self._lifecycle.is_open or self._book.failure is not None:
            raise self._closed_error()

    def _closed_error(self) -> CartesiaSyncError:
        ended_by_server = self._lifecycle.ended_by_server
        if ended_by_server is not None and self._book.failure is None:
            return SessionClosedError(ended_by_server)
        return self._book.closed_error(self._lifecycle.state.value)

    def _raise_if_ended(self) -> None:
        if self._book.failure is not None or self._lifecycle.stopping.is_set() or not self._lifecycle.is_open:
            raise self._closed_error()

    @property
    def _end_command(self) -> Command | None:
        """The end command, once ``close()`` queued it."""
        return self._lifecycle.end_command

    # -- internals: ending ----------------------------------------------------

    def _refuse_from_session_threads(self, what: str) -> None:
        current = threading.current_thread()
        if current is self._receiver or current is self._sender:
            raise RuntimeError(
                f"{what}() called from a hook, on the session's own thread, would wait for itself; "
                "set a flag or use your own thread, and call it from there"
            )

    def _begin_ending(self, timeout: float, aborting: bool = False) -> bool:
        """Become the closing thread; False when another call already is (then wait for it).

        An abort made while another thread is closing cuts that close short.
        """
        lifecycle = self._lifecycle
        queued = self._queue.audio_bytes / self._bytes_per_second
        patience = self._budget(timeout, queued) + self._teardown_budget()
        if lifecycle.begin_close(drain=not aborting):
            self._ending_patience = patience
            self._ending_deadline = time.monotonic() + patience
            return True
        if aborting:
            self._stop_everything("the session was aborted")
        if threading.current_thread() is lifecycle.closer:  # a hook running on the closing thread: it is closing
            return False
        # The closing thread waits as long as the session makes headway; so does this one, a little longer.
        slack = self._teardown_budget()
        while not lifecycle.closed.wait(0.05):
            if time.monotonic() > self._headway.deadline(self._ending_patience, self._ending_deadline) + slack:
                raise StreamTimeout("another thread is still closing this session; it did not finish in time")
        return False

    def _budget(self, timeout: float, queued_seconds: float) -> float:
        """How long sending a command may take: queued audio at the pacing speed, plus slack."""
        return timeout + (queued_seconds / self.speed if self.speed else 0.0) + self.options.send_timeout

    def _teardown_budget(self) -> float:
        return self.options.close_grace + 2 * self.options.join_timeout + 1.0

    def _drain(self, timeout: float) -> StreamTimeout | None:
        """Send the end command after the queued audio and receive until ``done``.

        :returns: a :class:`StreamTimeout` to raise when ``done`` never came.
        """
        lifecycle = self._lifecycle
        command = Command(self.settings.end_command)
        lifecycle.end_command = command
        try:
            self._intake.add_command(command)
        except SessionClosedError:
            return None  # the session failed or was aborted meanwhile
        if not self._wait_sent(command, timeout):
            if self._book.failure is not None or lifecycle.stopping.is_set():
                return None
            raise self._not_sent_error(command.text, timeout)
        if not self._wait_any(lifecycle.done, timeout, lifecycle.stream_ended, patience=timeout):
            if self._book.failure is not None or lifecycle.stopping.is_set():
                return None
            error = StreamTimeout(
                f"no 'done' from {self.settings.display_url}: the server sent nothing for {timeout:g} s after "
                f"{self.settings.end_command!r} ({self._recognised_so_far()}); the session was closed with what "
                "was recognised so far: raise close_timeout if the server is slow but working"
            )
            self._book.record(error, raised=True)
            self._dispatcher.report(error)
            return error
        lifecycle.expect_close()
        if not lifecycle.done.is_set():
            logger.warning("the server closed the connection after %r without sending done", command.text)
        elif not self._wait_any(lifecycle.stream_ended, self.options.close_grace):
            logger.debug("server did not close %.1f s after done; closing from this side", self.options.close_grace)
        return None

    def _wait_sent(self, command: Command, timeout: float) -> bool:
        """Wait until the sender wrote ``command``: queued audio first, at the pacing speed."""
        queued = self._queue.audio_bytes / self._bytes_per_second
        return self._wait_any(command.sent, self._budget(timeout, queued), patience=self._budget(timeout, 0))

    def _not_sent_error(self, what: str, timeout: float) -> StreamTimeout:
        return StreamTimeout(
            f"{what!r} could not be sent: for {self._budget(timeout, 0):g} s the connection took no audio "
            "and the server sent nothing"
        )

    def _recognised_so_far(self) -> str:
        sent = self._stats.get("audio_sent") / self._bytes_per_second
        acknowledged = self._stats.get("audio_acknowledged") / self._bytes_per_second
        return f"{acknowledged:.1f} s of the {sent:.1f} s of audio sent were recognised"

    def _wait_any(
        self, event: threading.Event, timeout: float, *others: threading.Event, patience: float | None = None
    ) -> bool:
        """Wait for ``event``; stop early when the session fails or ends, or one of ``others`` is set.

        :param patience: when given, the wait also goes on past ``timeout`` for as
            long as the session makes headway (see :mod:`.headway`), and ends
            only after ``patience`` seconds without any.
        """
        deadline = time.monotonic() + timeout
        stopping = self._lifecycle.stopping
        while not event.is_set():
            if stopping.is_set() or any(other.is_set() for other in others):
                break
            if patience is not None:
                deadline = self._headway.deadline(patience, deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            event.wait(min(remaining, 0.05))
        return event.is_set()

    def _stop_everything(self, reason: str) -> None:
        """Stop sending at once and wake every waiter; what was not sent is counted as unsent."""
        self._lifecycle.stop()
        self._link.stop_switching()  # a reconnect under way installs nothing now
        self._sender.stop()
        unsent = self._queue.close(reason) + self._intake.discard()
        if unsent:
            self._stats.add("audio_unsent", unsent)
            logger.warning("%.3f s of audio was never sent", unsent / self._bytes_per_second)
        self._router.wake_waiters()

    def _teardown(self) -> None:
        lifecycle = self._lifecycle
        try:
            lifecycle.tear_down()
            self._stop_everything("the session is closed")
            self._sender.join(min(0.2, self.options.join_timeout))
            if not self._sender.is_alive() and not lifecycle.stream_ended.is_set():
                # A sender still alive is stuck in a write: a close frame would wait behind it.
                self._link.send_close_frame()
                lifecycle.stream_ended.wait(min(0.5, self.options.close_grace))
            self._link.close()
            for thread in (self._sender, self._receiver):
                if thread.is_alive() and thread is not threading.current_thread():
                    thread.join(self.options.join_timeout)
                    if thread.is_alive():
                        logger.error("thread %s did not stop within %.1f s", thread.name, self.options.join_timeout)
            lifecycle.close_hooks()
            self._stats.mark_ended()
            self._dispatcher.emit_last("on_session_end")
        finally:
            self._link.close()
            self._stats.mark_ended()
            lifecycle.finish()

    # -- internals: errors ----------------------------------------------------

    def _scrub(self, text: str) -> str:
        return redact(text, self.settings.api_key)

    def _fail(self, error: CartesiaSyncError) -> bool:
        """Record the error that ends the session, stop sending, and wake every waiter.

        :returns: False when the session had already failed (nothing was done).
        """
        if not self._book.record(error, fatal=True):
            return False
        self._lifecycle.fail()
        self._stop_everything(f"the session ended because of an error: {error}")
        return True

    def _fail_and_report(self, error: CartesiaSyncError) -> None:
        if self._fail(error) and not self._lifecycle.hooks_closed:
            self._dispatcher.report(error)

    def _server_error(self, error: CartesiaSyncError) -> None:
        """A fatal ``error`` message, found by the router: the supervisor decides between reconnecting and failing."""
        self._supervisor.server_failed(error)

    def __repr__(self) -> str:
        return (
            f"<Session #{self.number} {self._lifecycle.state.value} url={self.settings.display_url!r} "
            f"sent={self.audio_sent:.1f}s finals={self._stats.get('final_transcripts'):.0f}>"
        )
