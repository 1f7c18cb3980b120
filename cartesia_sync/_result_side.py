"""What differs between kinds of session: what the server's messages mean for the results.

The shared machinery (:mod:`cartesia_sync._session_core`) reads, reconnects,
waits and ends the same way for every kind of session; it hands each parsed
message to a result side, which keeps the results and calls the hooks. The
streaming endpoint's result side is :class:`~cartesia_sync._router.EventRouter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from ._events import AnyEvent
    from ._replay import ReplayBuffer

__all__ = ["ResultSide"]


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
