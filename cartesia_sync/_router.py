"""The event router: what each parsed server message does to a session, in arrival order.

A transcript updates the accumulated text and words before the hooks see it;
``flush_done`` answers the oldest waiting ``finalize()`` after its hooks ran;
``done`` marks the end; an ``error`` is recorded (fatal ones end the session)
and reported through ``on_error``.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from ._events import AnyEvent, Done, FlushDone, Transcript
from ._plugin_manager import HookDispatcher
from ._replay import ReplayBuffer
from ._result_side import route_error_or_unknown
from ._stats import StatsCounter
from ._transcript import TranscriptAccumulator
from .errors import CartesiaSyncError

__all__ = ["FlushTicket", "EventRouter"]

logger = logging.getLogger("cartesia_sync.router")


class FlushTicket:
    """One ``finalize()`` waiting for its ``flush_done``."""

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.event: FlushDone | None = None


class EventRouter:
    """Applies server messages to one session's state and hooks; runs on the receiver thread.

    :param transcript: the session's accumulator.
    :param stats: the session's counters.
    :param dispatcher: calls the hooks.
    :param fail: ends the session with a fatal error and reports it.
    :param record: keeps a non-fatal error.
    :param done: set when ``done`` arrives (the session's lifecycle event; a new one by default).
    """

    def __init__(
        self,
        transcript: TranscriptAccumulator,
        stats: StatsCounter,
        dispatcher: HookDispatcher,
        fail: Callable[[CartesiaSyncError], None],
        record: Callable[[CartesiaSyncError], None],
        done: threading.Event | None = None,
    ) -> None:
        self._transcript = transcript
        self._stats = stats
        self._dispatcher = dispatcher
        self._fail = fail
        self._record = record
        self.tickets: deque[FlushTicket] = deque()
        self.done = done if done is not None else threading.Event()
        self.request_id: str | None = None

    def acknowledge(self, event: AnyEvent, replay: ReplayBuffer) -> bool:
        """Move the acknowledged point: to a final's last word, to the ``finalize`` a ``flush_done``
        answers, or to the end at ``done``.

        Times are those of the current connection (not yet shifted). True when it moved.
        """
        if isinstance(event, Transcript):
            if not event.is_final or not event.words:
                return False
            replay.word_end(max(word.end for word in event.words))
        elif isinstance(event, FlushDone):
            replay.flush_done()
        elif isinstance(event, Done):
            replay.done()
        else:
            return False
        return True

    def reach(self, event: AnyEvent) -> float | None:
        """How far into the audio a transcript (final or interim) shows the server has listened.

        Its last word's end; without words, its ``duration``, a lower bound (the
        audio that produced it ends at least that far in).
        """
        if not isinstance(event, Transcript):
            return None
        if event.words:
            return max(word.end for word in event.words)
        return event.duration

    def start_connection(self, base_seconds: float) -> None:
        """A reconnect: the new connection's word times start ``base_seconds`` into the session."""
        self._transcript.start_connection(base_seconds)

    def awaiting_answers(self) -> bool:
        """True while a ``finalize()`` waits for its ``flush_done``."""
        return bool(self.tickets)

    def route(self, event: AnyEvent) -> None:
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
            if self.tickets:
                ticket = self.tickets.popleft()
                ticket.event = event
                ticket.answered.set()
        elif isinstance(event, Done):
            self._dispatcher.emit("on_done", event=event)
            self.done.set()
        else:
            route_error_or_unknown(event, self._stats, self._dispatcher, self._fail, self._record)

    def wake_waiters(self) -> None:
        """Release every waiting ``finalize()`` without an answer (the session ended)."""
        while self.tickets:
            self.tickets.popleft().answered.set()
