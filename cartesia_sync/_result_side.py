"""What differs between kinds of session: what the server's messages mean for the results.

The shared machinery (:mod:`cartesia_sync._session_core`) reads, reconnects,
waits and ends the same way for every kind of session; it hands each parsed
message to a result side, which keeps the results and calls the hooks. The
streaming endpoint's result side is :class:`~cartesia_sync._router.EventRouter`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ._events import ServerErrorEvent, UnknownMessage

if TYPE_CHECKING:  # pragma: no cover
    from ._events import AnyEvent
    from ._plugin_manager import HookDispatcher
    from ._replay import ReplayBuffer
    from ._stats import StatsCounter
    from .errors import CartesiaSyncError

__all__ = ["ResultSide", "route_error_or_unknown"]

logger = logging.getLogger("cartesia_sync.router")


class ResultSide(Protocol):
    """What one kind of session does with its server's messages. Called on the receiver thread.

    The supervisor calls :meth:`acknowledge` and then :meth:`route` for every
    parsed message, in that order, so a hook that reads the acknowledged audio
    sees it already moved.
    """

    @property
    def request_id(self) -> str | None:
        """The server's id for the connection, once a message carried it."""

    def acknowledge(self, event: AnyEvent, replay: ReplayBuffer) -> bool:
        """Move ``replay``'s acknowledged point for ``event``; True when it moved."""

    def reach(self, event: AnyEvent) -> float | None:
        """Seconds into the connection's audio that ``event`` shows the server has heard, or ``None``.

        Used to tell a server working through audio from one that only talks.
        """

    def route(self, event: AnyEvent) -> None:
        """Apply ``event`` to the results and dispatch its hooks."""

    def start_connection(self, base_seconds: float) -> None:
        """A reconnect installed a new connection whose audio starts ``base_seconds`` into the session."""

    def awaiting_answers(self) -> bool:
        """True while a caller waits for an answer from the server (a ``finalize()``, say)."""

    def wake_waiters(self) -> None:
        """Release every caller waiting for an answer: the session ended."""


def route_error_or_unknown(
    event: AnyEvent,
    stats: StatsCounter,
    dispatcher: HookDispatcher,
    fail: Callable[[CartesiaSyncError], None],
    record: Callable[[CartesiaSyncError], None],
) -> None:
    """An ``error`` message (fatal: ``fail``; else kept and reported) or an unknown one, for every result side."""
    if isinstance(event, ServerErrorEvent):
        stats.add("server_errors")
        error = event.to_exception()
        if event.fatal:
            fail(error)
        else:
            record(error)
            dispatcher.report(error)
    elif isinstance(event, UnknownMessage):
        logger.info("server sent a message of unknown type %r; passed to on_event only", event.message_type)
