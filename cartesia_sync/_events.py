"""Server messages as frozen dataclasses, and the one function that parses them.

Each text frame from the server is parsed exactly once, by :func:`parse_message`,
into one of :class:`Transcript`, :class:`FlushDone`, :class:`Done`,
:class:`ServerErrorEvent` or, for a ``type`` this version does not know,
:class:`UnknownMessage`. Text is kept exactly as received: transcript ``text``
is a delta whose spaces matter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from .errors import ProtocolError, ServerError

__all__ = [
    "Word",
    "Transcript",
    "FlushDone",
    "Done",
    "ServerErrorEvent",
    "UnknownMessage",
    "Event",
    "parse_message",
    "Connected",
    "TurnStart",
    "TurnUpdate",
    "TurnEagerEnd",
    "TurnResume",
    "TurnEnd",
    "TurnEvent",
    "parse_turn_message",
]

_RAW_PREVIEW = 200


@dataclass(frozen=True)
class Word:
    """One recognised word with its times in seconds."""

    word: str
    start: float
    end: float

    def shifted(self, offset: float) -> Word:
        """The same word with both times moved by ``offset`` seconds."""
        if offset == 0:
            return self
        return Word(self.word, self.start + offset, self.end + offset)


@dataclass(frozen=True)
class Transcript:
    """A ``transcript`` message: an interim (``is_final=False``) or committed chunk.

    ``text`` is the delta since the previous final chunk, verbatim. ``words``
    times are seconds from the first audio of the connection, as the server
    sent them.
    """

    text: str
    is_final: bool
    duration: float | None = None
    language: str | None = None
    words: tuple[Word, ...] = ()
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "transcript"


@dataclass(frozen=True)
class FlushDone:
    """A ``flush_done`` message: every audio byte before ``finalize`` was transcribed."""

    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "flush_done"


@dataclass(frozen=True)
class Done:
    """A ``done`` message: the session is over; the server closes the socket next."""

    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "done"


@dataclass(frozen=True)
class ServerErrorEvent:
    """An ``error`` message, in any of the shapes the API has used.

    ``fatal`` is the message's ``done`` flag (true unless the server says
    otherwise): after a fatal error the server ends the session.
    """

    message: str
    status_code: int | None = None
    error_code: str | None = None
    title: str | None = None
    request_id: str | None = None
    doc_url: str | None = None
    fatal: bool = True
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "error"

    def to_exception(self) -> ServerError:
        """The :class:`~cartesia_sync.errors.ServerError` this message stands for."""
        return ServerError(
            self.message,
            status_code=self.status_code,
            error_code=self.error_code,
            title=self.title,
            request_id=self.request_id,
            doc_url=self.doc_url,
            raw=self.raw,
        )


@dataclass(frozen=True)
class UnknownMessage:
    """A well-formed message whose ``type`` this version does not know; passed on, not dropped."""

    message_type: str
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "unknown"


Event = Transcript | FlushDone | Done | ServerErrorEvent | UnknownMessage


# -- the turns endpoint (/stt/turns/websocket) ------------------------------------------------


@dataclass(frozen=True)
class Connected:
    """A ``connected`` message: the first one of a turns connection."""

    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "connected"


@dataclass(frozen=True)
class TurnStart:
    """A ``turn.start`` message: the speaker began a turn (the moment to stop talking over them)."""

    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "turn.start"


@dataclass(frozen=True)
class TurnUpdate:
    """A ``turn.update`` message: the open turn's text so far (cumulative, not a delta)."""

    transcript: str
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "turn.update"


@dataclass(frozen=True)
class TurnEagerEnd:
    """A ``turn.eager_end`` message: the speaker may be done; ``turn.end`` or ``turn.resume`` follows."""

    transcript: str
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "turn.eager_end"


@dataclass(frozen=True)
class TurnResume:
    """A ``turn.resume`` message: the turn goes on after an eager end."""

    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "turn.resume"


@dataclass(frozen=True)
class TurnEnd:
    """A ``turn.end`` message: the turn is over; ``transcript`` is its definitive text (possibly empty)."""

    transcript: str
    request_id: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    type = "turn.end"


TurnEvent = Connected | TurnStart | TurnUpdate | TurnEagerEnd | TurnResume | TurnEnd | ServerErrorEvent | UnknownMessage

#: Any message of either endpoint, as the session machinery passes them on.
AnyEvent = Event | TurnEvent


def parse_message(frame: str | bytes) -> Event:
    """Parse one text frame from the server.

    :param frame: the frame's payload, as text or UTF-8 bytes.
    :returns: the event it holds.
    :raises ProtocolError: the frame is not UTF-8 or JSON, is not a JSON
        object, has no string ``type``, or a known type lacks a required field
        or has one of the wrong type. A plain-text frame that looks like the
        old ``Title: Message`` error format becomes a :class:`ServerErrorEvent`.
    """
    return cast(Event, _parse_frame(frame, _PARSERS))


def parse_turn_message(frame: str | bytes) -> TurnEvent:
    """Parse one text frame from the turns endpoint, by the same rules as :func:`parse_message`."""
    return cast(TurnEvent, _parse_frame(frame, _TURN_PARSERS))


def _parse_frame(frame: str | bytes, parsers: Mapping[str, Callable[[dict[str, Any]], Any]]) -> Any:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        try:
            text = bytes(frame).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError(
                f"server sent a text frame that is not UTF-8 ({exc.reason})", raw=_preview(frame)
            ) from None
    else:
        text = frame
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return _plain_text_error(text)
    if not isinstance(data, dict):
        raise ProtocolError(f"server sent JSON that is not an object: {_preview(text)}", raw=_preview(text))
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(f"server message has no string 'type' field: {_preview(text)}", raw=_preview(text))
    parser = parsers.get(kind)
    if parser is None:
        return UnknownMessage(kind, data)
    try:
        return parser(data)
    except _FieldError as exc:
        raise ProtocolError(f"server {kind!r} message {exc}: {_preview(text)}", raw=_preview(text)) from None


class _FieldError(Exception):
    pass


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _preview(value: str | bytes | bytearray | memoryview) -> str:
    text = value if isinstance(value, str) else repr(bytes(value))
    return text if len(text) <= _RAW_PREVIEW else text[:_RAW_PREVIEW] + "..."


def _plain_text_error(text: str) -> Event:
    """Old API versions answered errors as plain ``Title: Message`` text."""
    stripped = text.strip()
    title, sep, message = stripped.partition(": ")
    if sep and title and message and len(title) <= 80 and "\n" not in title and not stripped.startswith(("{", "[")):
        return ServerErrorEvent(message=message, title=title, raw={"text": text})
    raise ProtocolError(f"server sent a text frame that is not JSON: {_preview(text)}", raw=_preview(text))


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _FieldError(f"has a non-string {key!r}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)  # an int beyond the float range overflows here
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise _FieldError(f"has a bad {what}: {_preview(repr(value))}")


def _parse_words(value: Any) -> tuple[Word, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _FieldError("has 'words' that is not a list")
    words = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("word"), str):
            raise _FieldError(f"has a malformed word entry {_preview(repr(item))}")
        words.append(Word(item["word"], _number(item.get("start"), "word start"), _number(item.get("end"), "word end")))
    return tuple(words)


def _parse_transcript(data: Mapping[str, Any]) -> Transcript:
    text = data.get("text")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise _FieldError("has a non-string 'text'")
    is_final = data.get("is_final", False)
    if not isinstance(is_final, bool):
        raise _FieldError("has a non-boolean 'is_final'")
    duration = data.get("duration")
    return Transcript(
        text=text,
        is_final=is_final,
        duration=None if duration is None else _number(duration, "duration"),
        language=_opt_str(data, "language"),
        words=_parse_words(data.get("words")),
        request_id=_opt_str(data, "request_id"),
        raw=data,
    )


def _parse_flush_done(data: Mapping[str, Any]) -> FlushDone:
    return FlushDone(request_id=_opt_str(data, "request_id"), raw=data)


def _parse_done(data: Mapping[str, Any]) -> Done:
    return Done(request_id=_opt_str(data, "request_id"), raw=data)


def _status(data: Mapping[str, Any]) -> int | None:
    for key in ("status_code", "code"):
        value = data.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            return value
        if isinstance(value, str) and 0 < len(value) <= 6 and value.isascii() and value.isdigit():
            return int(value)
    return None


def _parse_error(data: Mapping[str, Any]) -> ServerErrorEvent:
    message = None
    for key in ("message", "error", "title"):
        value = data.get(key)
        if isinstance(value, str) and value:
            message = value
            break
        if isinstance(value, dict) and isinstance(value.get("message"), str):
            message = value["message"]
            break
    error_code = data.get("error_code")
    if error_code is not None and not isinstance(error_code, str):
        error_code = str(error_code)
    done = data.get("done", True)
    return ServerErrorEvent(
        message=message or "the server reported an error without a message",
        status_code=_status(data),
        error_code=error_code,
        title=data.get("title") if isinstance(data.get("title"), str) else None,
        request_id=data.get("request_id") if isinstance(data.get("request_id"), str) else None,
        doc_url=data.get("doc_url") if isinstance(data.get("doc_url"), str) else None,
        fatal=done is not False,
        raw=data,
    )


_PARSERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    "transcript": _parse_transcript,
    "flush_done": _parse_flush_done,
    "done": _parse_done,
    "error": _parse_error,
}


def _transcript_field(data: Mapping[str, Any]) -> str:
    value = data.get("transcript")
    if value is None:
        return ""  # turn.end may come with no text; an absent one is the same
    if not isinstance(value, str):
        raise _FieldError("has a non-string 'transcript'")
    return value


def _request_id(data: Mapping[str, Any]) -> str | None:
    return _opt_str(data, "request_id")


_TURN_PARSERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "connected": lambda d: Connected(_request_id(d), d),
    "turn.start": lambda d: TurnStart(_request_id(d), d),
    "turn.update": lambda d: TurnUpdate(_transcript_field(d), _request_id(d), d),
    "turn.eager_end": lambda d: TurnEagerEnd(_transcript_field(d), _request_id(d), d),
    "turn.resume": lambda d: TurnResume(_request_id(d), d),
    "turn.end": lambda d: TurnEnd(_transcript_field(d), _request_id(d), d),
    "error": _parse_error,
}
