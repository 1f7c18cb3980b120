"""TurnSession: one connection to the turn-detecting endpoint, for voice agents.

The same machinery as :class:`~cartesia_sync.Session` (a
:class:`~cartesia_sync._session_core.SessionCore`: threads, pacing,
keepalive, backpressure, reconnects, errors, endings) with the turns
endpoint's result side (:class:`~cartesia_sync._turns.TurnRouter`). The
model decides when turns start and end; the session keeps the completed
turns and calls the ``on_turn_*`` hooks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ._audio_queue import Command
from ._config import ConnectionSettings, SessionOptions
from ._events import parse_turn_message
from ._session_core import SessionCore, SessionKind
from ._session_facade import SessionFacade
from ._turns import Turn, TurnRouter, TurnSettings, close_command, config_command
from ._wire import WireConnection

if TYPE_CHECKING:  # pragma: no cover
    import pluggy

__all__ = ["TurnSession"]

logger = logging.getLogger("cartesia_sync.turns")


class TurnSession(SessionFacade):
    """One open turn-detecting connection. Create it with :meth:`Client.connect_turns`.

    ``send()`` and ``send_file()`` may be called from any thread. Hooks run
    on the session's receiver thread. Every blocking method has a timeout.
    Leaving a ``with`` block closes the session, or aborts it when the block
    raised.
    """

    def __init__(
        self,
        ws: WireConnection,
        settings: ConnectionSettings,
        options: SessionOptions,
        plugin_manager: pluggy.PluginManager,
        speed: float | None,
        turn_settings: TurnSettings,
        connect_seconds: float = 0.0,
    ) -> None:
        self.turn_settings = turn_settings
        self._open_core(
            ws,
            settings,
            options,
            plugin_manager,
            speed,
            SessionKind(end_command=close_command(), end_reply=None, parse=parse_turn_message),
            self._make_router,
            connect_seconds,
        )
        self._router: TurnRouter = self._core.results  # type: ignore[assignment]

    def _make_router(self, core: SessionCore) -> TurnRouter:
        def audio_position() -> float:
            link = core.link
            return (link.base + link.replay.written) / core.bytes_per_second

        return TurnRouter(core.stats, core.dispatcher, core.server_failed, core.book.keep, audio_position)

    # -- results ------------------------------------------------------------

    @property
    def turns(self) -> tuple[Turn, ...]:
        """The completed turns, in order."""
        return tuple(self._router.turns)

    @property
    def text(self) -> str:
        """Every ``turn.end`` transcript joined verbatim (the model includes the spaces)."""
        return self._router.text

    @property
    def open_turn_text(self) -> str | None:
        """The open turn's latest text (``turn.update``/``turn.eager_end``), or ``None`` between turns."""
        return self._router.open_text if self._router.in_turn else None

    # -- sending ------------------------------------------------------------

    def configure(
        self,
        *,
        start_threshold: float | None = None,
        eager_end_threshold: float | None = None,
        end_threshold: float | None = None,
        end_timeout_ms: float | None = None,
    ) -> None:
        """Change turn detection mid-session (the ``config`` command), in order with the audio.

        The values are checked like those of :meth:`Client.connect_turns`,
        together with the settings already in force. The server sends no
        acknowledgement; this returns once the command is queued.

        :raises ConfigurationError: a value is out of range or breaks the order.
        :raises SessionClosedError: the session is closing or closed.
        """
        changes = {
            "start_threshold": start_threshold,
            "eager_end_threshold": eager_end_threshold,
            "end_threshold": end_threshold,
            "end_timeout_ms": end_timeout_ms,
        }
        merged = self.turn_settings.merged(changes)
        given = {name: value for name, value in changes.items() if value is not None}
        if not given:
            return
        self._core.queue_command(Command(config_command(given)), on_queued=lambda: None)
        self.turn_settings = merged

    def close(self, timeout: float | None = None) -> None:
        """End the session without losing turns, then release everything.

        Sends ``{"type":"close"}`` after the queued audio; the server turns
        the buffered audio into events, ends any open turn, and closes the
        connection. The wait lasts as long as the session makes headway and
        ends after ``timeout`` seconds in which nothing moved.

        :raises StreamTimeout: the server did not finish; the session is closed anyway.
        :raises RuntimeError: called from a hook.
        :raises CartesiaSyncError: the first background error not raised yet.
        """
        core = self._core
        core.refuse_from_session_threads("close")
        core.close(self.options.close_timeout if timeout is None else timeout)

    def __repr__(self) -> str:
        return (
            f"<TurnSession #{self.number} {self._core.lifecycle.state.value} url={self.settings.display_url!r} "
            f"sent={self.audio_sent:.1f}s turns={len(self._router.turns)}>"
        )
