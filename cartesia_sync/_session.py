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

import logging
from typing import TYPE_CHECKING

from ._audio_queue import Command
from ._config import ConnectionSettings, SessionOptions
from ._events import FlushDone, Transcript, Word, parse_message
from ._lifecycle import SessionState
from ._result import TranscriptionResult
from ._router import EventRouter, FlushTicket
from ._session_core import SessionCore, SessionKind
from ._session_facade import SessionFacade
from ._transcript import TranscriptAccumulator
from ._wire import WireConnection
from .errors import StreamTimeout

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

__all__ = ["Session", "SessionState"]

logger = logging.getLogger("cartesia_sync.session")


class Session(SessionFacade):
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
        self._transcript = TranscriptAccumulator()
        self._open_core(
            ws,
            settings,
            options,
            plugin_manager,
            speed,
            SessionKind(end_command=settings.end_command, end_reply="done", parse=parse_message),
            self._make_router,
            connect_seconds,
        )
        self._router: EventRouter = self._core.results  # type: ignore[assignment]

    def _make_router(self, core: SessionCore) -> EventRouter:
        return EventRouter(
            self._transcript,
            core.stats,
            core.dispatcher,
            core.server_failed,
            core.book.keep,
            done=core.lifecycle.done,
        )

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

    def result(self) -> TranscriptionResult:
        """What the session has produced so far, as a :class:`TranscriptionResult`.

        ``complete`` is True once the server confirmed the end of the stream
        (``done``) and nothing failed; at any other moment, and after a failure
        or an abort, it is what was recognised until then.
        """
        stats = self._core.stats.snapshot()
        wall = stats.wall_seconds + stats.connect_seconds
        return TranscriptionResult(
            text=self.text,
            words=self.words,
            audio_seconds=stats.audio_sent,
            wall_seconds=wall,
            realtime_factor=(wall / stats.audio_sent) if stats.audio_sent else None,
            stats=stats,
            request_id=self.request_id,
            complete=self._core.lifecycle.done.is_set() and self._core.book.failure is None,
        )

    @property
    def audio_acknowledged(self) -> float:
        """Seconds of audio the server has recognised so far: to its latest final word, ``flush_done`` or ``done``."""
        return self._core.stats.get("audio_acknowledged") / self._core.bytes_per_second

    # -- sending ------------------------------------------------------------

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
        core = self._core
        core.refuse_from_session_threads("finalize")
        with core.carrying(self.result):
            return self._finalize(self.options.finalize_timeout if timeout is None else timeout)

    def _finalize(self, timeout: float) -> FlushDone:
        core = self._core
        ticket = FlushTicket()
        command = Command("finalize", expects_answer=True)
        core.queue_command(command, on_queued=lambda: self._router.tickets.append(ticket))
        if not core.wait_sent(command, timeout):
            core.book.raise_next()
            core.raise_if_ended()
            raise core.not_sent_error("finalize", timeout)
        core.wait_any(ticket.answered, timeout, patience=timeout)
        core.book.raise_next()
        if ticket.event is not None:
            return ticket.event
        core.raise_if_ended()
        raise StreamTimeout(
            f"no flush_done from {self.settings.display_url}: the server sent nothing for {timeout:g} s after "
            f"finalize ({core.recognised_so_far()}); it is stuck or overloaded: raise finalize_timeout "
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
        core = self._core
        core.refuse_from_session_threads("close")
        with core.carrying(self.result):
            core.close(self.options.close_timeout if timeout is None else timeout)

    def __repr__(self) -> str:
        return (
            f"<Session #{self.number} {self._core.lifecycle.state.value} url={self.settings.display_url!r} "
            f"sent={self.audio_sent:.1f}s finals={self._core.stats.get('final_transcripts'):.0f}>"
        )
