"""The machinery every kind of session shares: its parts, its threads, its waits and its endings.

A :class:`SessionCore` is one connection's worth of everything that does not
depend on what the server's messages mean: the lifecycle, the send queue and
the intake, the sender and receiver threads, the connection supervisor (link,
reconnects), the error book, the counters, the hook dispatcher, and the rules
for waiting, draining, failing and tearing down.

What the messages mean is the :class:`~cartesia_sync._result_side.ResultSide` given to it: the streaming
endpoint's :class:`~cartesia_sync._router.EventRouter` (transcripts,
``flush_done``, ``done``), or another router for another endpoint. The public
session classes are facades over a core and their result side.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._audio_files import AudioFileInfo
from ._audio_queue import AudioQueue, Command
from ._config import ENCODINGS, ConnectionSettings, SessionOptions
from ._error_book import ErrorBook
from ._events import AnyEvent
from ._headway import Headway
from ._intake import AudioIntake
from ._lifecycle import Lifecycle
from ._link import Link
from ._liveness import Liveness
from ._plugin_manager import HookDispatcher
from ._receiver import Receiver
from ._result import TranscriptionResult
from ._result_side import ResultSide
from ._secrets import redact
from ._sender import Sender
from ._stats import StatsCounter
from ._supervisor import ConnectionSupervisor
from ._wire import WireConnection
from .errors import CartesiaSyncError, SessionClosedError, StreamTimeout

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

__all__ = ["SessionCore", "SessionKind"]

logger = logging.getLogger("cartesia_sync.session")

_session_numbers = itertools.count(1)

#: The shortest key masked inside server messages (see ``SessionCore._parse``).
_MIN_MASKED_KEY = 8

#: Silence byte patterns per encoding, for keepalive frames.
_SILENCE_BYTE = {"pcm_mulaw": b"\xff", "pcm_alaw": b"\xd5"}


@dataclass(frozen=True)
class SessionKind:
    """How one kind of session ends and reads its messages.

    :ivar end_command: the text frame that asks the server to finish (after the queued audio).
    :ivar end_reply: the message type that says the server has finished (``"done"``), or ``None``
        when the server says it by closing the connection. The result side sets the
        lifecycle's ``done`` event when that message arrives.
    :ivar parse: turns a text frame into an event; raises ``ProtocolError`` for junk.
    """

    end_command: str
    end_reply: str | None
    parse: Callable[[str | bytes], AnyEvent]


class SessionCore:
    """The shared machinery of one session. Built by a public session class, which it calls ``owner``.

    :param ws: the open connection (the handshake happened in ``Client``).
    :param owner: the public session object; hooks receive it as ``session``.
    :param make_results: builds the result side once the parts it needs exist
        (counters, dispatcher, lifecycle, error book: read them from the core).
    :param kind: the end command and message parser of this kind of session.
    """

    def __init__(
        self,
        ws: WireConnection,
        settings: ConnectionSettings,
        options: SessionOptions,
        plugin_manager: pluggy.PluginManager,
        speed: float | None,
        *,
        owner: object,
        make_results: Callable[[SessionCore], ResultSide],
        kind: SessionKind,
        connect_seconds: float = 0.0,
    ) -> None:
        self.settings = settings
        self.options = options
        self.speed = speed
        self.kind = kind
        self.number = next(_session_numbers)
        self.started_at = time.time()
        self.bytes_per_second = settings.bytes_per_second
        self.stats = StatsCounter(self.bytes_per_second)
        self.stats.set("connect_seconds", connect_seconds)
        self.queue = AudioQueue(round(options.max_buffer_seconds * self.bytes_per_second), options.buffer_policy)
        self.intake = AudioIntake(settings, options, self.queue, self.stats, self._audio_dropped)
        self.book = ErrorBook(self.stats, options.raise_errors)
        self.lifecycle = Lifecycle()
        self.dispatcher = HookDispatcher(plugin_manager, owner, self.book.keep, self.scrub)
        self.headway = Headway()
        self.results = make_results(self)
        self.link = Link(
            ws,
            round(options.replay_seconds * self.bytes_per_second),
            ENCODINGS[settings.encoding],
            self.bytes_per_second,
            self.stats,
        )
        self.liveness = Liveness(options.ping_interval, options.ping_timeout)
        ws.write_patience = self.liveness.dead_after or options.join_timeout
        self._ending_deadline = 0.0  # when the closing thread will have finished, unless the session moves on
        self._ending_patience = 0.0  # how long the closing thread may go without headway

        self.supervisor = ConnectionSupervisor(
            settings,
            options,
            self.link,
            self.lifecycle,
            self.results,
            self.queue,
            self.book,
            self.dispatcher,
            self.headway,
            self.stats,
            fail=self.fail_and_report,
            stop=self.stop_everything,
            scrub=self.scrub_peer_text,
        )
        keepalive = _SILENCE_BYTE.get(settings.encoding, b"\x00") * self.intake.frame_bytes
        self.sender = Sender(
            ws,
            self.queue,
            self.stats,
            bytes_per_second=self.bytes_per_second,
            speed=speed,
            keepalive_interval=options.keepalive_interval,
            keepalive_frame=keepalive,
            liveness=self.liveness,
            headway=self.headway,
            replay=self.link.replay,
            on_failure=self.supervisor.sender_failed,
            name=f"cartesia-sync-sender-{self.number}",
        )
        self.supervisor.attach(self.sender)
        self.receiver = Receiver(
            ws,
            self.supervisor,
            self.stats,
            self.liveness,
            parse=self._parse,
            name=f"cartesia-sync-receiver-{self.number}",
        )

    def start(self) -> None:
        """Announce the session to plugins and start its threads."""
        self.dispatcher.emit("on_session_start")
        if self.lifecycle.stopping.is_set():  # aborted from another thread while on_session_start ran
            return
        self.receiver.start()
        self.sender.start()

    # -- sending ------------------------------------------------------------------------

    def send(self, audio: Any, sample_rate: int | None, channels: int | None) -> None:
        """Queue audio (see ``Session.send``)."""
        self.book.raise_next(fatal_only=True)  # the guard checks that the session is open, under the lock
        try:
            self.intake.add(audio, sample_rate, channels, guard=self.check_open)
        except SessionClosedError:
            raise self.closed_error() from None

    def send_file(self, path: str | os.PathLike[str]) -> AudioFileInfo:
        """Decode a file and queue all of it (see ``Session.send_file``)."""
        self.check_sendable()
        try:
            return self.intake.add_file(path, guard=self.check_open)
        except SessionClosedError:
            raise self.closed_error() from None

    def queue_command(self, command: Command, on_queued: Callable[[], None]) -> None:
        """Queue ``command`` behind the audio; ``on_queued`` runs under the intake's lock once it is queued.

        Under that lock no ``close()`` can slip in between the check that the
        session is open and the command.
        """
        self.check_sendable()
        self.book.raise_next()
        try:
            self.intake.add_command(command, on_queued=on_queued, guard=self.check_open)
        except SessionClosedError:
            raise self.closed_error() from None

    def wait_sent(self, command: Command, timeout: float) -> bool:
        """Wait until the sender wrote ``command``: queued audio first, at the pacing speed."""
        queued = self.queue.audio_bytes / self.bytes_per_second
        return self.wait_any(command.sent, self._budget(timeout, queued), patience=self._budget(timeout, 0))

    def not_sent_error(self, what: str, timeout: float) -> StreamTimeout:
        """The error for a command that the connection never took."""
        return StreamTimeout(
            f"{what!r} could not be sent: for {self._budget(timeout, 0):g} s the connection took no audio "
            "and the server sent nothing"
        )

    def recognised_so_far(self) -> str:
        """How much of the audio sent the server has acknowledged, for error messages."""
        sent = self.stats.get("audio_sent") / self.bytes_per_second
        acknowledged = self.stats.get("audio_acknowledged") / self.bytes_per_second
        return f"{acknowledged:.1f} s of the {sent:.1f} s of audio sent were recognised"

    def wait_any(
        self, event: threading.Event, timeout: float, *others: threading.Event, patience: float | None = None
    ) -> bool:
        """Wait for ``event``; stop early when the session fails or ends, or one of ``others`` is set.

        :param patience: when given, the wait also goes on past ``timeout`` for as
            long as the session makes headway (see :mod:`._headway`), and ends
            only after ``patience`` seconds without any.
        """
        deadline = time.monotonic() + timeout
        stopping = self.lifecycle.stopping
        while not event.is_set():
            if stopping.is_set() or any(other.is_set() for other in others):
                break
            if patience is not None:
                deadline = self.headway.deadline(patience, deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            event.wait(min(remaining, 0.05))
        return event.is_set()

    # -- the state the caller sees ----------------------------------------------------------

    def check_sendable(self) -> None:
        """Raise the error that ended the session, or :class:`SessionClosedError` when it is not open."""
        self.book.raise_next(fatal_only=True)
        self.check_open()

    def check_open(self) -> None:
        """Raise when the session no longer takes audio or commands."""
        if not self.lifecycle.is_open or self.book.failure is not None:
            raise self.closed_error()

    def closed_error(self) -> CartesiaSyncError:
        """What to raise at a caller who uses a session that no longer takes audio."""
        ended_by_server = self.lifecycle.ended_by_server
        if ended_by_server is not None and self.book.failure is None:
            return SessionClosedError(ended_by_server)
        return self.book.closed_error(self.lifecycle.state.value)

    def raise_if_ended(self) -> None:
        """Raise when the session failed, stopped or left ``OPEN``."""
        if self.book.failure is not None or self.lifecycle.stopping.is_set() or not self.lifecycle.is_open:
            raise self.closed_error()

    @contextlib.contextmanager
    def carrying(self, result: Callable[[], TranscriptionResult]) -> Iterator[None]:
        """Give an error raised to the caller what was recognised before it (``error.partial_result``)."""
        try:
            yield
        except CartesiaSyncError as error:
            if error.partial_result is None:
                error.partial_result = result()
            raise

    def refuse_from_session_threads(self, what: str) -> None:
        """A blocking call from a hook would wait for its own thread: refuse it."""
        current = threading.current_thread()
        if current is self.receiver or current is self.sender:
            raise RuntimeError(
                f"{what}() called from a hook, on the session's own thread, would wait for itself; "
                "set a flag or use your own thread, and call it from there"
            )

    # -- ending -------------------------------------------------------------------------------

    def close(self, timeout: float) -> None:
        """Drain (end command, wait for the server to finish), then tear down. See ``Session.close``."""
        if not self._begin_ending(timeout):
            self.book.raise_next()
            return
        own_error: StreamTimeout | None = None
        try:
            if self.book.failure is None and not self.lifecycle.stopping.is_set():
                own_error = self._drain(timeout)
        except StreamTimeout as exc:
            own_error = exc
            self.book.record(exc, raised=True)
            self.dispatcher.report(exc)
        finally:
            self._teardown()
        if own_error is not None:
            raise own_error
        self.book.raise_next()

    def abort(self) -> None:
        """Tear down at once, or cut short another thread's ``close()``. See ``Session.abort``."""
        if self._begin_ending(0.0, aborting=True):
            self._teardown()

    def _begin_ending(self, timeout: float, aborting: bool = False) -> bool:
        """Become the closing thread; False when another call already is (then wait for it).

        An abort made while another thread is closing cuts that close short.
        """
        lifecycle = self.lifecycle
        queued = self.queue.audio_bytes / self.bytes_per_second
        patience = self._budget(timeout, queued) + self._teardown_budget()
        if lifecycle.begin_close(drain=not aborting):
            self._ending_patience = patience
            self._ending_deadline = time.monotonic() + patience
            return True
        if aborting:
            lifecycle.cut_short()
            self.stop_everything("the session was aborted")
        if threading.current_thread() is lifecycle.closer:  # a hook running on the closing thread: it is closing
            return False
        # The closing thread waits as long as the session makes headway; so does this one, a little longer.
        slack = self._teardown_budget()
        while not lifecycle.closed.wait(0.05):
            if time.monotonic() > self.headway.deadline(self._ending_patience, self._ending_deadline) + slack:
                raise StreamTimeout("another thread is still closing this session; it did not finish in time")
        return False

    def _budget(self, timeout: float, queued_seconds: float) -> float:
        """How long sending a command may take: queued audio at the pacing speed, plus slack."""
        return timeout + (queued_seconds / self.speed if self.speed else 0.0) + self.options.send_timeout

    def _teardown_budget(self) -> float:
        return self.options.close_grace + 2 * self.options.join_timeout + 1.0

    def _drain(self, timeout: float) -> StreamTimeout | None:
        """Send the end command after the queued audio and receive until the server has finished.

        :returns: a :class:`StreamTimeout` to raise when the server never finished.
        """
        lifecycle = self.lifecycle
        end = self.kind.end_command
        command = Command(end, ends_stream=True)
        lifecycle.end_command = command
        try:
            self.intake.add_command(command)
        except SessionClosedError:
            return None  # the session failed or was aborted meanwhile
        if not self.wait_sent(command, timeout):
            if self.book.failure is not None or lifecycle.stopping.is_set():
                return None
            raise self.not_sent_error(end, timeout)
        self.wait_any(lifecycle.done, timeout, lifecycle.stream_ended, patience=timeout)
        finished = lifecycle.done.is_set() or (lifecycle.stream_ended.is_set() and self.kind.end_reply is None)
        if not finished:
            if self.book.failure is not None or lifecycle.stopping.is_set():
                return None
            if lifecycle.stream_ended.is_set():
                problem = f"the server closed the connection after {end!r} without sending {self.kind.end_reply!r}"
            else:
                problem = f"the server sent nothing for {timeout:g} s after {end!r}"
            error = StreamTimeout(
                f"no {self.kind.end_reply or 'close'!r} from {self.settings.display_url}: {problem} "
                f"({self.recognised_so_far()}); the session was closed with what was recognised so far: "
                "raise close_timeout if the server is slow but working"
            )
            self.book.record(error, raised=True)
            self.dispatcher.report(error)
            return error
        lifecycle.expect_close()
        if not self.wait_any(lifecycle.stream_ended, self.options.close_grace):
            logger.debug(
                "server did not close %.1f s after it finished; closing from this side", self.options.close_grace
            )
        return None

    def stop_everything(self, reason: str) -> None:
        """Stop sending at once and wake every waiter; what was not sent is counted as unsent."""
        self.lifecycle.stop()
        self.link.stop_switching()  # a reconnect under way installs nothing now
        self.sender.stop()
        unsent = self.queue.close(reason) + self.intake.discard()
        if unsent:
            self.stats.add("audio_unsent", unsent)
            logger.warning("%.3f s of audio was never sent", unsent / self.bytes_per_second)
        self.results.wake_waiters()

    def _teardown(self) -> None:
        lifecycle = self.lifecycle
        try:
            lifecycle.tear_down()
            self.stop_everything("the session is closed")
            if self.sender.ident is not None:  # an abort from on_session_start comes before the threads start
                self.sender.join(min(0.2, self.options.join_timeout))
            if not self.sender.is_alive() and not lifecycle.stream_ended.is_set():
                # A sender still alive is stuck in a write: a close frame would wait behind it.
                self.link.send_close_frame()
                lifecycle.stream_ended.wait(min(0.5, self.options.close_grace))
            self.link.close()
            for thread in (self.sender, self.receiver):
                if thread.is_alive() and thread is not threading.current_thread():
                    thread.join(self.options.join_timeout)
                    if thread.is_alive():
                        logger.error("thread %s did not stop within %.1f s", thread.name, self.options.join_timeout)
            lifecycle.close_hooks()
            self.stats.mark_ended()
            self.dispatcher.emit_last("on_session_end")
        finally:
            self.link.close()
            self.stats.mark_ended()
            lifecycle.finish()

    # -- errors -------------------------------------------------------------------------------

    def scrub(self, text: str) -> str:
        """``text`` with the session's key replaced."""
        return redact(text, self.settings.api_key)

    def scrub_peer_text(self, text: str) -> str:
        """Server text (a junk frame, say) with the key masked, if the key is long enough (see :meth:`_parse`)."""
        key = self.settings.api_key
        return redact(text, key) if key is not None and len(key.reveal()) >= _MIN_MASKED_KEY else text

    def _parse(self, frame: str | bytes) -> AnyEvent:
        """Parse a frame with the session's key masked first: a server that echoes it cannot put it in an error.

        Only a key of 8 characters or more is masked here: a shorter one (a test key such as ``"k"``)
        would turn up inside ordinary words and corrupt the transcripts.
        """
        key = self.settings.api_key
        if key is not None and len(key.reveal()) >= _MIN_MASKED_KEY:
            if isinstance(frame, str):
                frame = redact(frame, key)
            else:
                frame = bytes(frame).replace(key.reveal().encode(), b"***")
        return self.kind.parse(frame)

    def fail(self, error: CartesiaSyncError) -> bool:
        """Record the error that ends the session, stop sending, and wake every waiter.

        :returns: False when the session had already failed (nothing was done).
        """
        if not self.book.record(error, fatal=True):
            return False
        self.lifecycle.fail()
        self.stop_everything(f"the session ended because of an error: {error}")
        return True

    def fail_and_report(self, error: CartesiaSyncError) -> None:
        """:meth:`fail`, then ``on_error`` (unless hooks are closed)."""
        if self.fail(error) and not self.lifecycle.hooks_closed:
            self.dispatcher.report(error)

    def server_failed(self, error: CartesiaSyncError) -> None:
        """A fatal ``error`` message, found by the result side: the supervisor reconnects or fails."""
        self.supervisor.server_failed(error)

    def _audio_dropped(self, nbytes: int) -> None:
        logger.warning("send buffer full: dropped %.3f s of audio", nbytes / self.bytes_per_second)
