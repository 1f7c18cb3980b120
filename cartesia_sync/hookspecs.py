"""Hook specifications: the complete plugin API of cartesia_sync.

All hooks are notifications: their return values are ignored. Implement any
subset, taking any subset of the arguments (``def on_transcript(self, transcript)``).
Mark implementations with :data:`cartesia_sync.hookimpl`.

Turn sessions (:meth:`cartesia_sync.Client.connect_turns`) call the same
lifecycle hooks (``on_session_start``, ``on_event``, ``on_error``,
``on_reconnect``, ``on_session_end``) with a
:class:`~cartesia_sync.TurnSession` as ``session``, plus the ``on_turn_*``
hooks; streaming sessions never call those.

Threads: hooks about server messages run on the session's **receiver thread**,
one at a time, in the order the messages arrived. A slow hook delays every
later event; hand heavy work to your own thread. Lifecycle hooks run on the
thread that opened or closed the session. An exception raised by a hook is
logged with its traceback and reported through :func:`on_error` as a
:class:`~cartesia_sync.PluginError`; the other plugins and the session go on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from ._events import Done, Event, FlushDone, Transcript, TurnEagerEnd, TurnEnd, TurnResume, TurnStart, TurnUpdate
    from ._reconnect import Reconnected
    from ._session import Session
    from ._turn_session import TurnSession
    from .errors import CartesiaSyncError

__all__ = ["PROJECT_NAME", "hookspec", "hookimpl"]

#: Marker name, plugin manager name and entry-point group, all one.
PROJECT_NAME = "cartesia_sync"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def on_session_start(session: Session) -> None:
    """A session's connection is open and its threads are about to start.

    :param session: the new session. Its settings, ``request`` details and
        ``started_at`` are set; no audio has been sent yet.

    Called on the thread that called :meth:`Client.connect`, before any other
    hook of this session. Open files or other resources here. Do not call
    ``send()`` here: the sender thread is not running yet. Raising is reported
    through ``on_error``; the session still opens.

    .. versionadded:: 0.1
    """


@hookspec
def on_event(session: Session, event: Event) -> None:
    """Any parsed server message, including types this version does not know.

    :param session: the live session.
    :param event: a ``Transcript``, ``FlushDone``, ``Done``,
        ``ServerErrorEvent`` or ``UnknownMessage``, exactly as parsed.

    Called on the receiver thread just before the specific hook
    (``on_transcript``, ``on_flush_done``, ``on_done``, ``on_error``) for the
    same message, so loggers see every message once, in arrival order. Do not
    call ``close()``, ``abort()`` or ``finalize()`` here: they wait for this
    thread and raise ``RuntimeError`` instead. Raising is reported through
    ``on_error``.

    .. versionadded:: 0.1
    """


@hookspec
def on_transcript(session: Session, transcript: Transcript) -> None:
    """A transcript chunk arrived.

    :param session: the live session. ``session.text`` and ``session.words``
        already include this chunk when it is final.
    :param transcript: the parsed chunk; only chunks with ``is_final`` are
        committed, interim ones may be revised by the next chunk. ``text`` is a
        delta: concatenate final texts verbatim, never strip or add spaces.
        Word times are seconds from the start of the session's audio.

    Called on the receiver thread, in arrival order. Do not call ``close()``,
    ``abort()`` or ``finalize()`` here (they raise ``RuntimeError``); keep it
    fast. Raising is reported through ``on_error``.

    .. versionadded:: 0.1
    """


@hookspec
def on_flush_done(session: Session, event: FlushDone) -> None:
    """The server acknowledged a ``finalize``: all audio before it was transcribed.

    :param session: the live session.
    :param event: the acknowledgement.

    Called on the receiver thread after the final transcripts that the
    ``finalize`` produced, and before ``Session.finalize()`` returns to its
    caller. Do not call ``close()``, ``abort()`` or ``finalize()`` here.
    Raising is reported through ``on_error``.

    .. versionadded:: 0.1
    """


@hookspec
def on_done(session: Session, event: Done) -> None:
    """The server acknowledged the end command: no more transcripts will come.

    :param session: the session, now closing.
    :param event: the acknowledgement.

    Called on the receiver thread after the last transcript. Good place to
    flush what a plugin buffered. Do not call ``close()`` here. Raising is
    reported through ``on_error``.

    .. versionadded:: 0.1
    """


@hookspec
def on_error(session: Session, error: CartesiaSyncError) -> None:
    """Something went wrong in the background.

    :param session: the session concerned.
    :param error: a ``ServerError`` (the server sent an error message),
        ``ConnectionLostError`` (the connection dropped), ``ProtocolError`` (a
        server message could not be understood; the stream goes on) or
        ``PluginError`` (another hook raised; the original is its
        ``__cause__``).

    Usually called on the receiver thread, sometimes on the sender thread or
    the thread closing the session. The same error is also re-raised to the
    caller of ``send()``/``finalize()``/``close()`` unless the client was made
    with ``raise_errors=False``. If an ``on_error`` implementation raises, that
    is only logged, never reported again.

    .. versionadded:: 0.1
    """


@hookspec
def on_reconnect(session: Session, event: Reconnected) -> None:
    """A failed connection was replaced by a new one; the session goes on.

    :param session: the session concerned.
    :param event: a :class:`~cartesia_sync.Reconnected`: the error that ended
        the old connection, the handshakes it took, the downtime, the seconds
        of audio resent, the seconds that could not be resent (``gap``, 0.0
        when nothing was lost) and ``resumed_at``, where the new connection's
        audio starts on the session's clock.

    Called on the receiver thread, before any message of the new connection.
    The interim transcript of the old connection is dropped; word times of
    the new connection arrive already shifted, so they continue the old ones.
    The error is kept in ``session.errors`` but not raised to the caller.

    .. versionadded:: 0.2
    """


@hookspec
def on_session_end(session: Session) -> None:
    """The session is over: its socket is closed and its threads have stopped.

    :param session: the finished session; ``session.text``, ``session.words``
        and ``session.stats`` are complete, ``session.error`` holds the error
        that ended it, if any.

    Called exactly once per session, on the thread that called ``close()`` or
    ``abort()`` (or left the ``with`` block), after every other hook of the
    session. Close files here. Raising is reported through ``on_error``.

    .. versionadded:: 0.1
    """


@hookspec
def on_turn_start(session: TurnSession, event: TurnStart) -> None:
    """The speaker began a turn (turn sessions only): the moment to stop talking over them (barge-in).

    :param session: the live turn session.
    :param event: the ``turn.start`` message.

    Called on the receiver thread. Do not call ``close()`` or ``abort()``
    here. Raising is reported through ``on_error``.

    .. versionadded:: 0.2
    """


@hookspec
def on_turn_update(session: TurnSession, event: TurnUpdate) -> None:
    """The open turn's text so far (turn sessions only); ``event.transcript`` is cumulative, not a delta.

    :param session: the live turn session.
    :param event: the ``turn.update`` message.

    Called on the receiver thread, often: keep it fast. Never join update
    texts; the turn's text is the one ``on_turn_end`` gets. Raising is
    reported through ``on_error``.

    .. versionadded:: 0.2
    """


@hookspec
def on_turn_eager_end(session: TurnSession, event: TurnEagerEnd) -> None:
    """The speaker may be done (turn sessions only): start preparing a reply; ``turn.end`` or ``turn.resume`` follows.

    :param session: the live turn session.
    :param event: the ``turn.eager_end`` message, with the turn's text so far.

    Called on the receiver thread. Work started here may have to be dropped
    at ``on_turn_resume``. Raising is reported through ``on_error``.

    .. versionadded:: 0.2
    """


@hookspec
def on_turn_resume(session: TurnSession, event: TurnResume) -> None:
    """The turn goes on after an eager end (turn sessions only): drop what ``on_turn_eager_end`` started.

    :param session: the live turn session.
    :param event: the ``turn.resume`` message.

    Called on the receiver thread. Raising is reported through ``on_error``.

    .. versionadded:: 0.2
    """


@hookspec
def on_turn_end(session: TurnSession, event: TurnEnd) -> None:
    """The turn is over (turn sessions only): ``event.transcript`` is its definitive text, possibly empty.

    :param session: the live turn session; ``session.turns`` already holds the turn.
    :param event: the ``turn.end`` message.

    Called on the receiver thread: the moment to respond. Hand long work
    (a reply, speech synthesis) to your own thread. Do not call ``close()``
    or ``abort()`` here. Raising is reported through ``on_error``.

    .. versionadded:: 0.2
    """


@hookspec
def register_engines(register: Callable[..., None]) -> None:
    """Offer speech engines to the local server.

    :param register: call ``register(name, factory, description="")`` once per
        engine; ``factory(**options)`` returns an object with the
        ``cartesia_sync.local.Engine`` interface (``name``,
        ``open_stream(options)``, ``close()``).

    Called once per :class:`~cartesia_sync.local.LocalServer`, on the thread
    that creates it, before it accepts connections. Import heavy modules inside
    the factory, not here, so listing engines stays cheap. Two engines with the
    same name are a configuration error.

    .. versionadded:: 0.1
    """
