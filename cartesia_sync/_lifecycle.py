"""The lifecycle of a session: every state it can be in, and every move between them, in one place.

::

            close()           done, timeout, abort()
    OPEN ───────────► DRAINING ───────────────► CLOSING ──► CLOSED
     │ │ │                │ failure              ▲
     │ │ └─ failure ──► FAILED ───── close()/abort() ┤
     │ └─ idle close ─► ENDED_BY_SERVER ─ close()/abort() ┤
     └──────────────────── abort() ────────────────────┘

A session is ``OPEN`` while it takes audio. ``close()`` moves it to
``DRAINING`` (the end command goes out behind the queued audio, and the
session waits for ``done``), then ``CLOSING`` (threads stop, the socket
closes) and ``CLOSED``. An error in the background makes it ``FAILED``; the
server closing a session the caller had stopped using makes it
``ENDED_BY_SERVER``; both wait for ``close()`` or ``abort()`` to release
them. An ``abort()`` from another thread while one drains cuts the drain
short: ``DRAINING`` moves to ``CLOSING`` at once, and the draining thread
tears down. Exactly one thread, the *closer*, runs the moves after ``OPEN``;
another thread that asks to close waits for it.

Besides the state, the lifecycle holds the events the session's waits watch
(``stopping``: stop every wait now; ``done``; ``stream_ended``; ``closed``)
and the facts the connection supervisor asks about (is a connection close
expected now, has the end command been queued, may hooks still run).
"""

from __future__ import annotations

import enum
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ._audio_queue import Command

__all__ = ["SessionState", "Lifecycle", "TRANSITIONS"]


class SessionState(enum.Enum):
    """Where a session is in its life (see :mod:`cartesia_sync._lifecycle` for the moves)."""

    OPEN = "open"
    DRAINING = "draining"
    FAILED = "failed"
    ENDED_BY_SERVER = "ended by the server"
    CLOSING = "closing"
    CLOSED = "closed"


_S = SessionState

#: Every allowed move: from a state, to the states it may go to.
TRANSITIONS: dict[SessionState, frozenset[SessionState]] = {
    _S.OPEN: frozenset({_S.DRAINING, _S.FAILED, _S.ENDED_BY_SERVER, _S.CLOSING}),
    _S.DRAINING: frozenset({_S.FAILED, _S.CLOSING}),
    _S.FAILED: frozenset({_S.CLOSING}),
    _S.ENDED_BY_SERVER: frozenset({_S.CLOSING}),
    _S.CLOSING: frozenset({_S.CLOSED}),
    _S.CLOSED: frozenset(),
}


class Lifecycle:
    """The state of one session and the events its waits watch. Thread-safe.

    :ivar stopping: set when every wait must stop now: the session failed,
        was ended by the server, was aborted, or is tearing down.
    :ivar done: the server's ``done`` arrived.
    :ivar stream_ended: the last connection's reader finished (close frame or end of stream).
    :ivar closed: the session is ``CLOSED``.
    :ivar closer: the thread running ``close()`` or ``abort()``, once there is one.
    :ivar end_command: the end command, once ``close()`` queued it.
    :ivar ended_by_server: why the server ended an idle session, when it did.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = SessionState.OPEN
        self.stopping = threading.Event()
        self.done = threading.Event()
        self.stream_ended = threading.Event()
        self.closed = threading.Event()
        self.closer: threading.Thread | None = None
        self.end_command: Command | None = None
        self.ended_by_server: str | None = None
        self._close_expected = False
        self._hooks_closed = False

    @property
    def state(self) -> SessionState:
        """The current state."""
        return self._state

    @property
    def is_open(self) -> bool:
        """True while the session takes audio and commands."""
        return self._state is SessionState.OPEN

    @property
    def close_expected(self) -> bool:
        """True when the connection closing now is normal (the session is ending, or the server ended it)."""
        return self._close_expected

    @property
    def hooks_closed(self) -> bool:
        """True once ``on_session_end`` was emitted: no hook may run after it."""
        return self._hooks_closed

    # -- moves --------------------------------------------------------------------

    def begin_close(self, drain: bool) -> bool:
        """Make the calling thread the closer. True when it is; False when another thread already is.

        An open session moves to ``DRAINING`` (``drain``) or straight to
        ``CLOSING``; a failed or server-ended one to ``CLOSING``.
        """
        with self._lock:
            if self.closer is not None or self._state in (SessionState.CLOSING, SessionState.CLOSED):
                return False
            self.closer = threading.current_thread()
            self._move(SessionState.DRAINING if drain and self._state is SessionState.OPEN else SessionState.CLOSING)
            return True

    def fail(self) -> None:
        """An error ended the session in the background (the error book keeps which)."""
        with self._lock:
            if self._state in (SessionState.OPEN, SessionState.DRAINING):
                self._move(SessionState.FAILED)
        self.stopping.set()

    def end_by_server(self, reason: str) -> bool:
        """The server closed the connection of a caller who had stopped using it. False if no longer open."""
        with self._lock:
            if self._state is not SessionState.OPEN:
                return False
            self._move(SessionState.ENDED_BY_SERVER)
            self.ended_by_server = reason
            self._close_expected = True
        self.stopping.set()
        return True

    def stop(self) -> None:
        """Stop every wait now (an abort, or the teardown starting); the state moves with :meth:`tear_down`."""
        self.stopping.set()

    def cut_short(self) -> None:
        """An abort from another thread while the closer drains: ``DRAINING`` becomes ``CLOSING`` now.

        The closer stops waiting (``stopping``) and tears down without the drain's
        result. In any other state nothing moves (the closer is already tearing down,
        or the session failed and its closer releases it).
        """
        with self._lock:
            if self._state is SessionState.DRAINING:
                self._move(SessionState.CLOSING)
                self._close_expected = True
        self.stopping.set()

    def expect_close(self) -> None:
        """From now on the connection closing is normal (``done`` came, or the teardown began)."""
        self._close_expected = True

    def tear_down(self) -> None:
        """The closer starts releasing threads and socket: ``CLOSING``."""
        with self._lock:
            if self._state is not SessionState.CLOSING:
                self._move(SessionState.CLOSING)
            self._close_expected = True
        self.stopping.set()

    def close_hooks(self) -> None:
        """``on_session_end`` is being emitted: no other hook runs from now on."""
        self._hooks_closed = True

    def finish(self) -> None:
        """Everything is released: ``CLOSED``."""
        with self._lock:
            self._hooks_closed = True
            if self._state is not SessionState.CLOSED:
                self._move(SessionState.CLOSED)
        self.closed.set()

    def _move(self, target: SessionState) -> None:
        if target not in TRANSITIONS[self._state]:
            raise RuntimeError(f"a session cannot go from {self._state.value} to {target.value}")
        self._state = target
