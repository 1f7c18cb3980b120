"""What happens to a session when its connection reports something: the receiving half of :class:`Session`.

The receiver thread calls these methods (the :class:`~cartesia_sync.receiver.MessageSink`
protocol) for every message and for the end of every connection; the sender
thread calls :meth:`ConnectionEvents._sender_failed`. They decide between
carrying on, reconnecting, ending an idle session cleanly, and failing.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Optional

from .errors import CartesiaSyncError, ConnectionLostError, ProtocolError
from .events import Event
from .frames import StreamSocket
from .reconnect import Reconnected, is_transient

if TYPE_CHECKING:  # pragma: no cover
    from .headway import Headway
    from .audio_queue import AudioQueue, Command
    from .config import ConnectionSettings, SessionOptions
    from .error_book import ErrorBook
    from .link import Link
    from .plugin_manager import HookDispatcher
    from .reconnect import Reconnector
    from .router import EventRouter
    from .sender import Sender

__all__ = ["ConnectionEvents"]

logger = logging.getLogger("cartesia_sync.session")


class ConnectionEvents:
    """The part of :class:`~cartesia_sync.Session` its threads call; it shares the session's state."""

    settings: "ConnectionSettings"
    options: "SessionOptions"
    _book: "ErrorBook"
    _dispatcher: "HookDispatcher"
    _router: "EventRouter"
    _link: "Link"
    _reconnector: "Reconnector"
    _sender: "Sender"
    _queue: "AudioQueue"
    _bytes_per_second: int
    _headway: "Headway"
    _done_event: threading.Event
    _stream_ended: threading.Event
    _ending: threading.Event
    _expect_close: bool
    _dispatch_closed: bool
    _end_command: Optional["Command"]
    _ended_by_server: Optional[str]

    def _fail_and_report(self, error: CartesiaSyncError) -> None:  # pragma: no cover - Session's
        raise NotImplementedError

    def _stop_everything(self, reason: str) -> None:  # pragma: no cover - Session's
        raise NotImplementedError

    def _scrub(self, text: str) -> str:  # pragma: no cover - Session's
        raise NotImplementedError

    def _sender_failed(self, error: ConnectionLostError) -> None:
        if self._expect_close:
            return
        if self.options.reconnect:
            self._link.drop(error)  # the receiver sees the connection end and reconnects
        else:
            self._fail_and_report(error)

    def _server_failed(self, error: CartesiaSyncError) -> None:
        """A fatal ``error`` message: a new connection may get past a 5xx one."""
        if self.options.reconnect and is_transient(error):
            self._link.drop(error)
        else:
            self._fail_and_report(error)

    def _announce_reconnect(self, event: Reconnected) -> None:
        self._book.record(event.error, raised=True)  # kept in errors; it was survived, so not raised
        self._dispatcher.emit("on_reconnect", event=event)

    # -- MessageSink: called on the receiver thread ---------------------------

    def handle_event(self, event: Event) -> None:
        """Apply one parsed message (see :class:`~cartesia_sync.router.EventRouter`)."""
        if self._dispatch_closed:
            logger.debug("dropped a %s message that arrived after the session ended", event.type)
            return
        self._headway.mark()
        self._link.acknowledge(event)
        self._router.route(event)

    def handle_junk(self, error: ProtocolError) -> None:
        """Report a frame that could not be understood; the stream goes on."""
        if self._dispatch_closed:
            return
        logger.warning("%s", error)
        self._book.keep(error)
        self._dispatcher.report(error)

    def handle_close(self, code: Optional[int], reason: str) -> Optional[StreamSocket]:
        """The server closed the connection: normal after ``done``, an idle close, or a failure."""
        ended_normally = self._done_event.is_set() or self._expect_close or (
            self._end_command is not None and self._end_command.sent.is_set() and code in (None, 1000)
        )
        detail = f"code {code}" + (f", reason {reason!r}" if reason else "") if code is not None else "no code"
        if not ended_normally and code in (None, 1000, 1001) and self._caller_idle():
            self._end_idle(detail)
        elif not ended_normally:
            closed = ConnectionLostError(f"the server closed the connection ({detail}) before the session ended",
                                         close_code=code, close_reason=reason)
            # A close code that forbids retrying wins over this side's own reason to drop the connection.
            return self._connection_failed(self._link.error if self._link.error and is_transient(closed) else closed)
        self._stream_ended.set()
        return None

    def handle_lost(self, detail: str, *, retry: bool = True) -> Optional[StreamSocket]:
        """The connection broke without a close frame."""
        if self._expect_close or self._done_event.is_set():
            self._stream_ended.set()
            return None
        return self._connection_failed(self._link.error or ConnectionLostError(
            f"the connection to {self.settings.display_url} was lost ({self._scrub(detail)})"
        ), retry)

    def _connection_failed(self, error: CartesiaSyncError, retry: bool = True) -> Optional[StreamSocket]:
        """Reconnect after a transient failure, or end the session with the error."""
        if retry and self.options.reconnect and is_transient(error) and not self._ending.is_set():
            try:
                return self._reconnector.replace(error)
            except CartesiaSyncError as final:
                error = final
        elif isinstance(error, ConnectionLostError):
            error = ConnectionLostError(
                f"{error}; results for audio after the last final are lost: open a new session and resend it",
                close_code=error.close_code, close_reason=error.close_reason,
            )
        if not self._ending.is_set():
            self._fail_and_report(error)
        self._stream_ended.set()
        return None

    def _caller_idle(self) -> bool:
        """True when the caller has stopped sending: nothing queued or awaited, no audio for a while.

        A live source writes a frame every ``frame_duration``; three missed frames (half a second
        at least) tell an idle caller from one that is still streaming.
        """
        return (self._queue.is_empty() and not self._router.tickets and self._end_command is None
                and self._sender.idle_for() >= max(0.5, 3 * self.options.frame_duration))

    def _end_idle(self, detail: str) -> None:
        """The server closed a connection the caller had stopped using: the session ends without an error."""
        self._expect_close = True
        unacknowledged = (self._link.replay.written - self._link.replay.acknowledged) / self._bytes_per_second
        self._ended_by_server = (
            f"the server closed the idle session ({detail}) after {self._sender.idle_for():.1f} s without audio; "
            "open a new session to go on"
        )
        logger.info("%s", self._ended_by_server)
        if unacknowledged > 0:
            logger.warning("%.2f s of audio before the idle close was never transcribed: "
                           "call finalize() before pausing a session", unacknowledged)
        self._stop_everything(self._ended_by_server)
