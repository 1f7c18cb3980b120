"""The turns endpoint (``/stt/turns/websocket``) on one accepted connection of the local server.

The same connection handling as the streaming endpoint
(:class:`~cartesia_sync.local._connection.Conversation`: audio decoding,
lazy engine start, stream limits, idle timeout, scripted faults), with the
turns protocol of ``protocol-turns-batch-auth.md`` §1 and §4:

- the query needs ``model`` (``ink-2``), ``encoding`` and ``sample_rate``;
  ``turn_*`` thresholds are checked for range and order; up to 100 keyterms;
- ``connected`` is the first message, and every message carries the same
  ``request_id``;
- turns come from a :class:`~cartesia_sync.local._turn_detector.TurnDetector`
  over the engine, in received audio time;
- JSON commands are parsed whatever their whitespace: ``close`` ends any
  open turn and closes (1000), ``config`` applies new thresholds silently;
  anything else gets a non-fatal ``error`` event (400 ``unknown_command``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .._turns import TURN_MODELS, TurnSettings
from ..errors import ConfigurationError
from ._connection import Conversation, QueryError
from ._engine import ENGINE_SAMPLE_RATE, StreamOptions
from ._turn_detector import TurnDetector, TurnTiming
from ._wire_audio import SAMPLE_BYTES

__all__ = ["TurnConversation", "TURNS_PATH"]

logger = logging.getLogger("cartesia_sync.local.connection")

TURNS_PATH = "/stt/turns/websocket"

_QUERY_NAMES = {
    "turn_start_threshold": "start_threshold",
    "turn_eager_end_threshold": "eager_end_threshold",
    "turn_end_threshold": "end_threshold",
    "turn_end_timeout_ms": "end_timeout_ms",
}
_MAX_KEYTERMS = 100
_MAX_KEYTERM_CHARS = 1200


class TurnConversation(Conversation):
    """Runs the turns protocol on one accepted connection until it ends."""

    _settings = TurnSettings()
    _detector: TurnDetector | None = None
    _bytes_per_second = 2 * ENGINE_SAMPLE_RATE

    # -- the handshake's query ----------------------------------------------------------------

    def _parse_query(self, path: str) -> tuple[StreamOptions, str, int]:
        values: dict[str, str] = {}
        keyterms: list[str] = []
        for name, value in parse_qsl(urlsplit(path).query, keep_blank_values=True):
            if name == "keyterm":
                keyterms.append(value)
            else:
                values[name] = value
        model = values.get("model")
        if model not in TURN_MODELS:
            raise QueryError(
                "model_not_found",
                "Invalid model",
                f"the model {model!r} is not valid for this endpoint; use {', '.join(TURN_MODELS)}",
            )
        for required in ("encoding", "sample_rate"):
            if not values.get(required):
                raise QueryError(
                    f"{required}_required", f"Missing {required}", f"the {required} query parameter is required"
                )
        encoding = values["encoding"]
        if encoding not in SAMPLE_BYTES:
            raise QueryError(
                "invalid_encoding",
                "Unsupported encoding",
                f"the encoding {encoding!r} is not supported; use one of {', '.join(SAMPLE_BYTES)}",
            )
        try:
            sample_rate = int(values["sample_rate"])
        except ValueError:
            sample_rate = 0
        if not 8000 <= sample_rate <= 48000:
            raise QueryError(
                "invalid_sample_rate",
                "Unsupported sample rate",
                f"the sample_rate {values['sample_rate']!r} is not supported; use an integer from 8000 to 48000",
            )
        if len(keyterms) > _MAX_KEYTERMS or sum(len(term) for term in keyterms) > _MAX_KEYTERM_CHARS:
            raise QueryError(
                "invalid_keyterm",
                "Too many keyterms",
                f"at most {_MAX_KEYTERMS} keyterms of {_MAX_KEYTERM_CHARS} characters in all are allowed",
            )
        self._settings = _checked(
            {setting: _number(values[name], name) for name, setting in _QUERY_NAMES.items() if values.get(name)}
        )
        timing = self._timing()
        if getattr(self._config.engine, "raw_audio", False):
            self._bytes_per_second = SAMPLE_BYTES[encoding] * sample_rate
        options = StreamOptions(
            model=model,
            language="en",
            max_silence_duration_secs=timing.end_silence,
            keyterms=tuple(keyterms),
            encoding=encoding,
            sample_rate=sample_rate,
        )
        return options, encoding, sample_rate

    def _timing(self) -> TurnTiming:
        s = self._settings
        return TurnTiming.from_thresholds(s.start_threshold, s.eager_end_threshold, s.end_threshold, s.end_timeout_ms)

    # -- messages -----------------------------------------------------------------------------

    def _opening(self) -> None:
        self._send({"type": "connected", "request_id": self.request_id})
        super()._opening()

    def _feed(self, pcm: bytes) -> Iterable[Any]:
        if self._detector is None:
            self._detector = TurnDetector(self._open_stream(), self._timing(), self._bytes_per_second)
        return self._detector.feed(pcm)

    def _emit(self, result: Any) -> None:
        self._send({**result, "request_id": self.request_id})

    def _on_command(self, text: str) -> bool:
        try:
            command = json.loads(text)
        except ValueError:
            command = None
        kind = command.get("type") if isinstance(command, dict) else None
        if kind == "close":
            if not self._scenario.answer_end:
                return True
            if not self._run_engine(self._close_turns):
                return False
            self._conn.close(1000, "close")
            return False
        if kind == "config":
            self._configure(command.get("turn"))
            return True
        self._send(
            self._error(
                400,
                "unknown_command",
                "Unknown command",
                f'unknown command {text[:40]!r}; send JSON {{"type":"close"}} or {{"type":"config","turn":{{...}}}}',
                done=False,
            )
        )
        return True

    def _close_turns(self) -> Iterable[Any]:
        if self._detector is None:
            return []
        events: list[Any] = []
        tail = self._resampler_tail()
        if tail:
            events.extend(self._detector.feed(tail))
        events.extend(self._detector.close())
        return events

    def _configure(self, turn: Any) -> None:
        """Apply a ``config`` command's thresholds; an invalid one gets a non-fatal error and changes nothing."""
        try:
            if not isinstance(turn, dict):
                raise ConfigurationError('a config command needs a "turn" object')
            changes: dict[str, float | None] = {
                str(name): _number(value, str(name)) for name, value in turn.items() if value is not None
            }
            self._settings = self._settings.merged(changes)
        except (ConfigurationError, QueryError) as exc:
            self._send(self._error(400, "invalid_config", "Invalid config", str(exc), done=False))
            return
        if self._detector is not None:
            self._detector.timing = self._timing()


def _number(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise QueryError(f"invalid_{name}", f"Invalid {name}", f"{name} must be a number, got {value!r}") from None
    return number


def _checked(values: dict[str, float]) -> TurnSettings:
    try:
        return TurnSettings(**values)
    except (ConfigurationError, TypeError) as exc:
        raise QueryError("invalid_turn_settings", "Invalid turn settings", str(exc)) from None
