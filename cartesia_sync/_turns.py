"""Turns: the settings of a turn-detecting session, the turns it produced, and what its messages mean.

The turns endpoint (``/stt/turns/websocket``) decides itself when a speaker's
turn starts and ends. Its messages carry text but no audio times, so a turn's
``start`` and ``end`` are the audio the session had sent when ``turn.start``
and ``turn.end`` arrived (later than the speech by the network's and the
model's latency), and the acknowledged point a reconnect resends from is the
audio sent when the last ``turn.end`` arrived.

:class:`TurnRouter` is the turns endpoint's result side (see
:mod:`cartesia_sync._result_side`): it keeps the completed turns and the open
one, checks the documented ordering (every turn begins with ``turn.start``;
``turn.eager_end`` is followed by ``turn.end`` or ``turn.resume``;
``turn.resume`` only after ``turn.eager_end``; ``turn.end`` closes the turn),
reports a violation as a :class:`~cartesia_sync.errors.ProtocolError` through
``on_error`` without dropping the event, and calls the turn hooks.
"""

from __future__ import annotations

import enum
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._events import (
    Connected,
    TurnEagerEnd,
    TurnEnd,
    TurnResume,
    TurnStart,
    TurnUpdate,
)
from ._plugin_manager import HookDispatcher
from ._replay import ReplayBuffer
from ._result_side import route_error_or_unknown
from ._stats import StatsCounter
from .errors import CartesiaSyncError, ConfigurationError, ProtocolError

__all__ = ["Turn", "TurnSettings", "TurnRouter", "TURN_MODELS", "close_command", "config_command"]

logger = logging.getLogger("cartesia_sync.turns")

#: Models the turns endpoint serves.
TURN_MODELS = ("ink-2",)

#: name: (lowest, highest, query parameter, documented default)
_BOUNDS: dict[str, tuple[float, float, str]] = {
    "start_threshold": (0.5, 0.9, "turn_start_threshold"),
    "eager_end_threshold": (0.3, 0.6, "turn_eager_end_threshold"),
    "end_threshold": (0.05, 0.5, "turn_end_threshold"),
    "end_timeout_ms": (640.0, 11200.0, "turn_end_timeout_ms"),
}
_DEFAULTS = {"start_threshold": 0.8, "eager_end_threshold": 0.4, "end_threshold": 0.2}


@dataclass(frozen=True)
class TurnSettings:
    """The turn detection settings of a session; ``None`` leaves the server's default.

    Checked here against the documented ranges (start 0.5-0.9, eager end
    0.3-0.6, end 0.05-0.5, end timeout 640-11200 ms) and order
    (``start > eager_end > end``, defaults standing in for what is not given).
    """

    start_threshold: float | None = None
    eager_end_threshold: float | None = None
    end_threshold: float | None = None
    end_timeout_ms: float | None = None

    def __post_init__(self) -> None:
        for name, (low, high, _) in _BOUNDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigurationError(f"{name} must be a number, got {value!r}")
            if not low <= value <= high:
                unit = " ms" if name == "end_timeout_ms" else ""
                raise ConfigurationError(
                    f"{name}={value:g}{unit} is out of range: it must be between {low:g} and {high:g}{unit}"
                )
        start, eager, end = (
            _DEFAULTS[name] if getattr(self, name) is None else getattr(self, name)
            for name in ("start_threshold", "eager_end_threshold", "end_threshold")
        )
        if not start > eager:
            raise ConfigurationError(
                f"start_threshold ({start:g}) must be greater than eager_end_threshold ({eager:g}): "
                "the thresholds must be ordered start > eager_end > end"
            )
        if not eager > end:
            raise ConfigurationError(
                f"eager_end_threshold ({eager:g}) must be greater than end_threshold ({end:g}): "
                "the thresholds must be ordered start > eager_end > end"
            )

    def given(self) -> dict[str, float]:
        """The settings that were given, by name."""
        return {name: getattr(self, name) for name in _BOUNDS if getattr(self, name) is not None}

    def query(self) -> tuple[tuple[str, str], ...]:
        """The handshake's query parameters for the settings that were given."""
        return tuple((_BOUNDS[name][2], f"{value:g}") for name, value in self.given().items())

    def merged(self, changes: dict[str, float | None]) -> TurnSettings:
        """These settings with ``changes`` applied (checked as a whole)."""
        unknown = set(changes) - set(_BOUNDS)
        if unknown:
            raise ConfigurationError(
                f"unknown turn setting {', '.join(sorted(unknown))}; expected some of {', '.join(_BOUNDS)}"
            )
        values = {name: getattr(self, name) for name in _BOUNDS}
        values.update({name: value for name, value in changes.items() if value is not None})
        return TurnSettings(**values)


def config_command(changes: dict[str, float]) -> str:
    """The JSON ``config`` command for ``changes`` (already checked)."""
    return json.dumps({"type": "config", "turn": changes}, separators=(",", ":"))


def close_command() -> str:
    """The JSON ``close`` command: finish the buffered audio, end any open turn, then close."""
    return json.dumps({"type": "close"}, separators=(",", ":"))


@dataclass(frozen=True)
class Turn:
    """One completed turn.

    :ivar text: the ``turn.end`` transcript, verbatim (it may be empty).
    :ivar start: seconds of the session's audio sent when ``turn.start`` arrived.
    :ivar end: seconds of the session's audio sent when ``turn.end`` arrived.
    :ivar eager: True when the turn ended right after an eager end (no resume in between).
    """

    text: str
    start: float
    end: float
    eager: bool = False


class _Phase(enum.Enum):
    IDLE = "idle"
    SPEAKING = "speaking"
    EAGER_ENDED = "eager-ended"


class TurnRouter:
    """The turns endpoint's result side: completed turns, the open one, ordering checks, turn hooks.

    :param stats: the session's counters.
    :param dispatcher: calls the hooks.
    :param fail: a fatal ``error`` message (the supervisor reconnects or fails the session).
    :param record: keeps a non-fatal error.
    :param audio_position: seconds of the session's audio written so far (keepalive included).
    """

    def __init__(
        self,
        stats: StatsCounter,
        dispatcher: HookDispatcher,
        fail: Callable[[CartesiaSyncError], None],
        record: Callable[[CartesiaSyncError], None],
        audio_position: Callable[[], float],
    ) -> None:
        self._stats = stats
        self._dispatcher = dispatcher
        self._fail = fail
        self._record = record
        self._audio_position = audio_position
        self.request_id: str | None = None
        self.turns: list[Turn] = []
        self.open_text = ""  # the open turn's latest text
        self._phase = _Phase.IDLE
        self._open_start = 0.0
        self._eager = False

    @property
    def in_turn(self) -> bool:
        """True while a turn is open (between ``turn.start`` and ``turn.end``)."""
        return self._phase is not _Phase.IDLE

    @property
    def text(self) -> str:
        """Every ``turn.end`` transcript so far, joined verbatim."""
        return "".join(turn.text for turn in self.turns)

    # -- ResultSide -------------------------------------------------------------------------

    def acknowledge(self, event: Any, replay: ReplayBuffer) -> bool:
        """``turn.end``: the audio written until it arrived is done with (the turn it ends is in it)."""
        if not isinstance(event, TurnEnd):
            return False
        replay.acknowledge_written()
        return True

    def reach(self, event: Any) -> float | None:
        """Turn messages carry no audio times: only acknowledged audio counts as headway."""
        return None

    def start_connection(self, base_seconds: float) -> None:
        """A reconnect resends the audio since the last ``turn.end``: an open turn starts again, once."""
        if self._phase is not _Phase.IDLE:
            logger.info("the connection changed during a turn; the turn starts again on the new connection")
        self._phase = _Phase.IDLE
        self.open_text = ""
        self._eager = False

    def awaiting_answers(self) -> bool:
        """Nothing waits for an answer on the turns endpoint (there is no ``finalize``)."""
        return False

    def wake_waiters(self) -> None:
        """Nothing to wake."""

    def route(self, event: Any) -> None:
        """Check the order, update the turns, then call the hooks."""
        if self.request_id is None and isinstance(getattr(event, "request_id", None), str):
            self.request_id = event.request_id
        self._check_order(event)
        self._apply(event)
        self._stats.add("events_dispatched")
        self._dispatcher.emit("on_event", event=event)
        hook = _HOOKS.get(type(event))
        if hook is not None:
            self._dispatcher.emit(hook, event=event)
        else:
            route_error_or_unknown(event, self._stats, self._dispatcher, self._fail, self._record)

    # -- internals ----------------------------------------------------------------------------

    def _check_order(self, event: Any) -> None:
        phase = self._phase
        problem = None
        if isinstance(event, TurnStart) and phase is not _Phase.IDLE:
            problem = "turn.start came while a turn was open (no turn.end before it)"
        elif isinstance(event, (TurnUpdate, TurnEagerEnd, TurnEnd)) and phase is _Phase.IDLE:
            problem = f"{event.type} came outside a turn (no turn.start before it)"
        elif isinstance(event, TurnResume) and phase is not _Phase.EAGER_ENDED:
            problem = "turn.resume came without a turn.eager_end before it"
        elif isinstance(event, TurnEagerEnd) and phase is _Phase.EAGER_ENDED:
            problem = "turn.eager_end came twice without turn.resume or turn.end in between"
        elif isinstance(event, TurnUpdate) and phase is _Phase.EAGER_ENDED:
            logger.debug("turn.update between turn.eager_end and turn.end or turn.resume")
        if problem is not None:
            error = ProtocolError(
                f"the server broke the turn order: {problem}; the event was passed on",
                raw=json.dumps(dict(getattr(event, "raw", {})))[:200],
            )
            logger.warning("%s", error)
            self._record(error)
            self._dispatcher.report(error)

    def _apply(self, event: Any) -> None:
        if isinstance(event, TurnStart):
            if self._phase is not _Phase.IDLE:  # the open turn never ended: keep what it said
                self._commit(self.open_text)
            self._phase = _Phase.SPEAKING
            self._open_start = self._audio_position()
            self.open_text = ""
            self._eager = False
        elif isinstance(event, TurnUpdate):
            self._open_if_idle()
            self.open_text = event.transcript
        elif isinstance(event, TurnEagerEnd):
            self._open_if_idle()
            self.open_text = event.transcript
            self._phase = _Phase.EAGER_ENDED
            self._eager = True
        elif isinstance(event, TurnResume):
            self._phase = _Phase.SPEAKING if self._phase is not _Phase.IDLE else _Phase.IDLE
            self._eager = False
        elif isinstance(event, TurnEnd):
            self._open_if_idle()
            self._commit(event.transcript)
        elif isinstance(event, Connected):
            pass

    def _open_if_idle(self) -> None:
        if self._phase is _Phase.IDLE:  # out of order (reported): treat it as the start of a turn
            self._phase = _Phase.SPEAKING
            self._open_start = self._audio_position()
            self._eager = False

    def _commit(self, text: str) -> None:
        self.turns.append(Turn(text, self._open_start, max(self._open_start, self._audio_position()), self._eager))
        self._stats.add("turns")
        self._phase = _Phase.IDLE
        self.open_text = ""
        self._eager = False


_HOOKS: dict[type, str] = {
    TurnStart: "on_turn_start",
    TurnUpdate: "on_turn_update",
    TurnEagerEnd: "on_turn_eager_end",
    TurnResume: "on_turn_resume",
    TurnEnd: "on_turn_end",
}
