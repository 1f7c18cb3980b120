"""The connection supervisor: what happens to a session when its connection reports something.

It owns the session's :class:`~cartesia_sync._link.Link` (the current
connection and its replay buffer) and :class:`~cartesia_sync._reconnect.Reconnector`,
and it is the receiver's :class:`~cartesia_sync._receiver.MessageSink`. For
every message it moves the acknowledged point, then hands the event to the
session's result side (in that order: its hooks may read the acknowledged
audio). For the end of every connection, and for a failed write
on the sender thread, it decides between carrying on, reconnecting, ending an
idle session cleanly, and failing the session.

The result side is what differs between kinds of session (transcripts and
``flush_done`` for streaming: :class:`~cartesia_sync._router.EventRouter`);
the supervisor is the same for all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._events import AnyEvent
from ._reconnect import Reconnected, Reconnector, is_transient
from ._wire import WireConnection
from .errors import CartesiaSyncError, ConnectionLostError, ProtocolError

if TYPE_CHECKING:  # pragma: no cover
    from ._audio_queue import AudioQueue
    from ._config import ConnectionSettings, SessionOptions
    from ._error_book import ErrorBook
    from ._headway import Headway
    from ._lifecycle import Lifecycle
    from ._link import Link
    from ._plugin_manager import HookDispatcher
    from ._result_side import ResultSide
    from ._sender import Sender
    from ._stats import StatsCounter

__all__ = ["ConnectionSupervisor"]

logger = logging.getLogger("cartesia_sync.session")


class ConnectionSupervisor:
    """Keeps a session connected, or ends it with the right error. Runs on the receiver (and sender) thread.

    :param link: the session's current connection.
    :param lifecycle: the session's state; read to tell a normal close from a failure.
    :param results: acknowledges audio for each parsed message, then applies it to the results and hooks.
    :param queue: the send queue; read to tell whether the caller stopped sending.
    :param headway: marked for every message that shows the server got further into the audio.
    :param fail: ends the session with an error and reports it.
    :param stop: stops sending and wakes every waiter (the session ends without an error).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        options: SessionOptions,
        link: Link,
        lifecycle: Lifecycle,
        results: ResultSide,
        queue: AudioQueue,
        book: ErrorBook,
        dispatcher: HookDispatcher,
        headway: Headway,
        stats: StatsCounter,
        *,
        fail: Callable[[CartesiaSyncError], None],
        stop: Callable[[str], None],
        scrub: Callable[[str], str],
    ) -> None:
        self._settings = settings
        self._options = options
        self.link = link
        self._lifecycle = lifecycle
        self._results = results
        self._queue = queue
        self._book = book
        self._dispatcher = dispatcher
        self._headway = headway
        self._stats = stats
        self._fail = fail
        self._stop = stop
        self._scrub = scrub
        self._sender: Sender | None = None
        self._reach = 0.0  # seconds into the session's audio the server's messages have spoken of
        self._reconnector: Reconnector | None = None

    def attach(self, sender: Sender) -> None:
        """The session's sender: the reconnector hands it each new connection."""
        self._sender = sender
        self._reconnector = Reconnector(
            self._settings,
            self._options,
            self.link,
            sender,
            self._stats,
            self._results,
            self._lifecycle.stopping,
            self._announce_reconnect,
        )

    # -- failures reported by the sender and the result side -------------------------

    def sender_failed(self, error: ConnectionLostError) -> None:
        """A write failed (sender thread): drop the connection so that its reader reconnects, or fail."""
        if self._lifecycle.close_expected or self.link.ended:
            return  # the reader reached the end of this connection first: it reports why
        if self._options.reconnect:
            self.link.drop(error)  # the receiver sees the connection end and reconnects
        else:
            self._fail(error)

    def server_failed(self, error: CartesiaSyncError) -> None:
        """A fatal ``error`` message (receiver thread): a new connection may get past a 5xx one."""
        if self._options.reconnect and is_transient(error):
            self.link.drop(error)
        else:
            self._fail(error)

    def _announce_reconnect(self, event: Reconnected) -> None:
        self._book.record(event.error, raised=True)  # kept in errors; it was survived, so not raised
        self._dispatcher.emit("on_reconnect", event=event)

    # -- MessageSink: called on the receiver thread -------------------------------------

    def handle_event(self, event: AnyEvent) -> None:
        """Acknowledge audio for one parsed message, then route it to the result side."""
        if self._lifecycle.hooks_closed:
            logger.debug("dropped a %s message that arrived after the session ended", event.type)
            return
        replay = self.link.replay
        acknowledged = replay.acknowledged
        if self._results.acknowledge(event, replay) and replay.acknowledged > acknowledged:
            self.link.count_acknowledged()
            self._headway.mark()
        elif self._reached_further(event):
            self._headway.mark()
        self._results.route(event)

    def _reached_further(self, event: AnyEvent) -> bool:
        """True when ``event`` speaks of audio further in than any message before (never past what was sent).

        Only such messages, acknowledged audio and the socket taking audio are
        headway: a server that repeats itself, or sends interims, errors or
        unknown messages without getting anywhere, cannot hold ``close()`` open.
        """
        reach = self._results.reach(event)
        if reach is None:
            return False
        bytes_per_second = self._settings.bytes_per_second
        link = self.link
        reach = (link.base + min(reach * bytes_per_second, link.replay.written)) / bytes_per_second
        if reach <= self._reach:
            return False
        self._reach = reach
        return True

    def handle_junk(self, error: ProtocolError) -> None:
        """Report a frame that could not be understood; the stream goes on."""
        if self._lifecycle.hooks_closed:
            return
        raw = error.raw if error.raw is None else self._scrub(str(error.raw))
        error = ProtocolError(self._scrub(str(error)), raw=raw)  # a binary frame may echo the key
        logger.warning("%s", error)
        self._book.keep(error)
        self._dispatcher.report(error)

    def connection_ended(self) -> None:
        """The reader reached the end of the current connection; its socket is about to be shut."""
        self.link.peer_ended()

    def handle_close(self, code: int | None, reason: str) -> WireConnection | None:
        """The server closed the connection: normal after ``done``, an idle close, or a failure."""
        lifecycle = self._lifecycle
        end_command = lifecycle.end_command
        ended_normally = (
            lifecycle.done.is_set()
            or lifecycle.close_expected
            or (end_command is not None and end_command.sent.is_set() and code in (None, 1000))
        )
        detail = f"code {code}" + (f", reason {reason!r}" if reason else "") if code is not None else "no code"
        if not ended_normally and code in (None, 1000, 1001) and self._caller_idle():
            self._end_idle(detail)
        elif not ended_normally:
            closed = ConnectionLostError(
                f"the server closed the connection ({detail}) before the session ended",
                close_code=code,
                close_reason=reason,
            )
            # A close code that forbids retrying wins over this side's own reason to drop the connection.
            return self._connection_failed(self.link.error if self.link.error and is_transient(closed) else closed)
        lifecycle.stream_ended.set()
        return None

    def handle_lost(self, detail: str, *, retry: bool = True) -> WireConnection | None:
        """The connection broke without a close frame."""
        if self._lifecycle.close_expected or self._lifecycle.done.is_set():
            self._lifecycle.stream_ended.set()
            return None
        return self._connection_failed(
            self.link.error
            or ConnectionLostError(f"the connection to {self._settings.display_url} was lost ({self._scrub(detail)})"),
            retry,
        )

    def _connection_failed(self, error: CartesiaSyncError, retry: bool = True) -> WireConnection | None:
        """Reconnect after a transient failure, or end the session with the error."""
        stopping = self._lifecycle.stopping
        if (
            retry
            and self._options.reconnect
            and is_transient(error)
            and not stopping.is_set()
            and self._reconnector is not None
        ):
            try:
                return self._reconnector.replace(error)
            except CartesiaSyncError as final:
                error = final
        elif isinstance(error, ConnectionLostError):
            error = ConnectionLostError(
                f"{error}; results for audio after the last final are lost: open a new session and resend it",
                close_code=error.close_code,
                close_reason=error.close_reason,
            )
        if not stopping.is_set():
            self._fail(error)
        self._lifecycle.stream_ended.set()
        return None

    def _caller_idle(self) -> bool:
        """True when the caller has stopped sending: nothing queued or awaited, no audio for a while.

        A live source writes a frame every ``frame_duration``; three missed frames (half a second
        at least) tell an idle caller from one that is still streaming.
        """
        sender = self._sender
        return (
            self._queue.is_empty()
            and not self._results.awaiting_answers()
            and self._lifecycle.end_command is None
            and sender is not None
            and sender.idle_for() >= max(0.5, 3 * self._options.frame_duration)
        )

    def _end_idle(self, detail: str) -> None:
        """The server closed a connection the caller had stopped using: the session ends without an error."""
        sender = self._sender
        idle = sender.idle_for() if sender is not None else 0.0
        reason = (
            f"the server closed the idle session ({detail}) after {idle:.1f} s without audio; "
            "open a new session to go on"
        )
        if not self._lifecycle.end_by_server(reason):
            return
        bytes_per_second = self._settings.bytes_per_second
        unacknowledged = (self.link.replay.written - self.link.replay.acknowledged) / bytes_per_second
        logger.info("%s", reason)
        if unacknowledged > 0:
            logger.warning(
                "%.2f s of audio before the idle close was never transcribed: call finalize() before pausing a session",
                unacknowledged,
            )
        self._stop(reason)
