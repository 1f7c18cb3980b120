"""The event-log plugin: every hook event of a session as one JSON Lines record.

Usage::

    import cartesia_sync
    from cartesia_sync_plugins.event_log import EventLog, read_events, transcript_from_events

    client = cartesia_sync.Client(plugins=[EventLog("session.jsonl", fsync="final")])
    with client.connect() as session:
        session.send_file("call.wav")

    log = read_events("session.jsonl")           # tolerates a torn last line
    text, words = transcript_from_events(log)    # the session's final text and words

The writer is its own small JSON Lines writer, not ``logging`` (no handler can
swallow a write error, nothing propagates to the root logger):

- every record is built in memory, scrubbed of the API key, encoded as one
  UTF-8 line ending in ``\\n`` and handed to the OS with one ``write()`` on an
  unbuffered file opened with ``O_APPEND`` (so several writers, threads or
  processes, never interleave inside a line), under a lock that also assigns
  ``seq``;
- ``fsync`` policy: ``"never"``, ``"final"`` (after final transcripts,
  ``flush_done``, ``done``, errors and ``session_end``), ``"always"``, or a
  number of seconds ``N`` (at most one fsync every ``N`` seconds, plus one at
  ``session_end`` if anything is unsynced);
- a write failure (disk full, closed file) is raised from the hook, so the
  library reports it as a ``PluginError``. The writer then stops writing (a
  later line after a partially written one would corrupt the middle of the
  file); later records are counted in :attr:`EventLog.dropped`;
- when it opens a file whose last byte is not a newline (a line torn by a
  crash), it first writes one, so its own first line is not glued to the
  fragment (the fragment then reads as a corrupt line; see ``read_events``);
- whatever the transcript holds, every line is valid JSON that encodes as
  UTF-8 and holds no raw control character, and it reads back to exactly
  the text received: lone surrogates (which UTF-8 cannot encode), DEL and
  the C1 controls, U+2028/U+2029 (line breaks to some readers) and the bidi
  embedding/override/isolate controls are written as ``\\uXXXX`` escapes
  (JSON's own escaping already covers U+0000-U+001F). Values that JSON cannot
  hold are written as ``null``: NaN, infinities and integers of more than
  1,000 bits (which also have too many digits for Python to print).

Record format (one JSON object per line; keys common to every record)::

    {"v":1,"seq":1,"ts":"2026-05-14T09:12:03.481Z","t":0.0,"session":"3-9f2c41ab",
     "writer":"5d0e7a11","event":"session_start", ...event fields...}

- ``seq``: gap-free counter of the writer (one :class:`EventLog` object),
  starting at 1; ``writer`` tells writers apart when several append to one file.
- ``ts``: UTC wall clock, ISO 8601 with milliseconds; ``t``: seconds since
  the session's ``session_start`` on the monotonic clock.
- ``session``: ``"<session number>-<random hex>"``, unique per session.

Events: ``session_start``, ``transcript``, ``flush_done``, ``done``,
``server_error`` (an ``error`` message as the server sent it), ``unknown`` (a
message type this version does not know), ``error`` (every error reported
through ``on_error``: server, connection, protocol, timeout and plugin
errors), ``session_end``; other event objects and future hooks go through
:meth:`EventLog.record`, which serialises any payload generically.

This module uses only names from ``cartesia_sync.__all__``.
"""

from __future__ import annotations

import codecs
import dataclasses
import enum
import io
import json
import math
import os
import platform
import re
import secrets
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote, quote_plus

import cartesia_sync
from cartesia_sync import (
    CartesiaSyncError,
    ConnectError,
    ConnectionLostError,
    Done,
    FlushDone,
    PluginError,
    ProtocolError,
    ServerError,
    ServerErrorEvent,
    Transcript,
    TurnEagerEnd,
    TurnEnd,
    TurnResume,
    TurnStart,
    TurnUpdate,
    UnknownMessage,
    Word,
    hookimpl,
)

from .event_reader import (
    EventLogCorruptError,
    LogReadResult,
    NotAnEventLogError,
    SessionSummary,
    read_event_log,
    read_events,
    transcript_from_events,
    turns_from_events,
)

__all__ = [
    "EventLog",
    "FORMAT_VERSION",
    "FSYNC_POLICIES",
    "EventLogCorruptError",
    "LogReadResult",
    "NotAnEventLogError",
    "SessionSummary",
    "read_event_log",
    "read_events",
    "transcript_from_events",
    "turns_from_events",
]

#: The ``v`` field of every record.
FORMAT_VERSION = 1
#: The named fsync policies (a number of seconds is the fourth kind).
FSYNC_POLICIES = ("never", "final", "always")

_MASK = "***"
#: Dict keys whose values are never written (case-insensitive), wherever they appear.
_SECRET_KEYS = frozenset(
    {
        "authorization",
        "x-api-key",
        "api_key",
        "apikey",
        "api-key",
        "access_token",
        "token",
        "cartesia-api-key",
    }
)
#: Characters written as ``\uXXXX`` escapes although JSON allows them raw: DEL and C1 controls,
#: U+2028/U+2029, bidi embedding/override/isolate controls, and lone surrogates (not UTF-8).
_ESCAPED = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
#: Containers nested deeper than this are written as a short placeholder string.
_MAX_DEPTH = 20
#: Integers wider than this are written as null (JSON readers lose them; Python cannot print them).
_MAX_INT_BITS = 1000
#: Events after which the "final" policy fsyncs.
_FINAL_EVENTS = frozenset({"flush_done", "done", "error", "server_error", "session_end"})


class _SessionState:
    __slots__ = ("sid", "t0")

    def __init__(self, sid: str, t0: float) -> None:
        self.sid = sid
        self.t0 = t0


class EventLog:
    """Write every hook event of every session of a client as JSON Lines.

    :param target: a path (``str`` or path-like; opened in append mode with
        ``O_APPEND``, created with mode 0600, closed when no session of this
        writer is open any more) or an already-open file object, binary or
        text (written to, flushed, never closed by the plugin).
    :param fsync: ``"never"``, ``"final"`` (default), ``"always"`` or a
        number of seconds (at most one fsync every that many seconds).
    :param ensure_ascii: escape non-ASCII characters (an ASCII-only file);
        by default text is written as UTF-8 (and always escaped for a text file
        whose encoding is not UTF-8, -16 or -32).

    One object may serve several sessions, also at the same time; each gets
    its own ``session`` id. ``seq`` is shared by everything this object writes.
    """

    name = "event-log"

    def __init__(
        self,
        target: str | os.PathLike[str] | Any,
        fsync: str | float = "final",
        *,
        ensure_ascii: bool = False,
    ) -> None:
        if isinstance(fsync, bool) or not (
            fsync in FSYNC_POLICIES or (isinstance(fsync, (int, float)) and math.isfinite(fsync) and fsync >= 0)
        ):
            raise ValueError(f"fsync must be one of {FSYNC_POLICIES} or a number of seconds >= 0, got {fsync!r}")
        self.fsync = fsync
        self.ensure_ascii = ensure_ascii
        if isinstance(target, (str, os.PathLike)):
            self.path: str | None = os.fspath(target)
            self._file: Any = None
        else:
            if not hasattr(target, "write"):
                raise TypeError(f"EventLog needs a path or a file object, not {type(target).__name__}")
            self.path = None
            self._file = target
        self._text_mode = self._file is not None and _is_text_file(self._file)
        if self._text_mode and not _writes_unicode(self._file):
            self.ensure_ascii = True  # a text file that could not encode every character: escape them all
        self.writer_id = secrets.token_hex(4)
        self._lock = threading.Lock()
        self._seq = 0
        self._sessions: dict[int, _SessionState] = {}
        self._open_sessions: set[int] = set()
        self._secrets: set[str] = set()
        self._last_fsync = time.monotonic()
        self._unsynced = False
        #: The first write error; once set, nothing more is written.
        self.failed: BaseException | None = None
        #: Records not written because of an earlier write error.
        self.dropped = 0

    # -- hooks ---------------------------------------------------------------

    @hookimpl
    def on_session_start(self, session: Any) -> None:
        self._learn_key(session)
        self._state(session)
        with self._lock:
            self._open_sessions.add(id(session))
        settings = session.settings
        self.record(
            session,
            "session_start",
            number=session.number,
            url=settings.display_url,
            model=settings.model,
            language=settings.language,
            encoding=settings.encoding,
            sample_rate=settings.sample_rate,
            cartesia_version=getattr(settings, "cartesia_version", None),
            library_version=cartesia_sync.__version__,
            python=platform.python_version(),
            started_at=_iso(getattr(session, "started_at", None) or time.time()),
        )

    @hookimpl
    def on_event(self, session: Any, event: Any) -> None:
        name, fields = _describe_event(event)
        if isinstance(event, TurnEnd) and getattr(session, "turns", None):
            turn = session.turns[-1]  # the turn this event ended (the session adds it before the hooks run)
            fields["start"], fields["end"], fields["eager"] = turn.start, turn.end, turn.eager
        self.record(session, name, **fields)

    @hookimpl
    def on_error(self, session: Any, error: BaseException) -> None:
        self.record(session, "error", **_describe_error(error))

    @hookimpl
    def on_reconnect(self, session: Any, event: Any) -> None:
        self.record(
            session,
            "reconnect",
            error=event.error,
            attempts=event.attempts,
            downtime=event.downtime,
            replayed=event.replayed,
            gap=event.gap,
            resumed_at=event.resumed_at,
        )

    @hookimpl
    def on_session_end(self, session: Any) -> None:
        try:
            error = session.error
            self.record(
                session,
                "session_end",
                stats=session.stats.as_dict(),
                error=None if error is None else _describe_error(error),
                errors=len(getattr(session, "errors", ()) or ()),
                text_length=len(session.text),
                word_count=len(getattr(session, "words", ())),
                turn_count=len(getattr(session, "turns", ())),
                request_id=getattr(session, "request_id", None),
                log_dropped=self.dropped,
            )
        finally:
            with self._lock:
                self._open_sessions.discard(id(session))
                self._sessions.pop(id(session), None)
                if not self._open_sessions:
                    self._close_own_file()

    # -- the generic path --------------------------------------------------------

    def record(self, session: Any, event: str, **fields: Any) -> dict[str, Any]:
        """Write one record ``event`` for ``session`` with ``fields``; return it as written.

        This is the path every hook takes, and the one for plugins that add
        records of their own.
        Any value is serialised: exceptions as error dicts, dataclasses (events,
        words) as dicts without their ``raw`` payload, enums by value,
        non-finite floats and integers over 1,000 bits as ``null``, containers
        nested deeper than 20 levels as a placeholder string, anything else by
        ``str()``. Raises ``OSError``/``ValueError`` when the write fails.
        """
        state = self._state(session)
        body = {key: _jsonable(value) for key, value in fields.items()}
        with self._lock:
            if self.failed is not None:
                self.dropped += 1
                return {}
            self._seq += 1
            rec: dict[str, Any] = {
                "v": FORMAT_VERSION,
                "seq": self._seq,
                "ts": _iso(time.time()),
                "t": round(time.monotonic() - state.t0, 6),
                "session": state.sid,
                "writer": self.writer_id,
                "event": event,
            }
            for key, value in body.items():
                if key not in rec:
                    rec[key] = value
            line = self._encode(rec)
            try:
                self._write(line)
                self._maybe_fsync(event, rec)
            except BaseException as exc:
                self.failed = exc
                raise
        return rec

    def close(self) -> None:
        """Flush, fsync (unless ``fsync="never"``) and close a file this plugin opened."""
        with self._lock:
            self._close_own_file()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.path if self.path is not None else type(self._file).__name__
        return f"<EventLog {where!r} fsync={self.fsync!r} seq={self._seq}>"

    # -- internals ---------------------------------------------------------------

    def _learn_key(self, session: Any) -> None:
        key = getattr(getattr(session, "settings", None), "api_key", None)
        raw = key.reveal() if key is not None and hasattr(key, "reveal") else None
        if not raw:
            return
        forms = {
            raw,
            quote(raw, safe=""),
            quote_plus(raw),
            json.dumps(raw, ensure_ascii=False)[1:-1],
            json.dumps(raw)[1:-1],
        }
        with self._lock:
            self._secrets.update(form for form in forms if form)

    def _state(self, session: Any) -> _SessionState:
        with self._lock:
            state = self._sessions.get(id(session))
            if state is None:
                number = getattr(session, "number", 0)
                state = _SessionState(f"{number}-{secrets.token_hex(4)}", time.monotonic())
                self._sessions[id(session)] = state
        if not self._secrets:
            self._learn_key(session)
        return state

    def _encode(self, rec: dict[str, Any]) -> str:
        text = json.dumps(rec, ensure_ascii=self.ensure_ascii, separators=(",", ":"), allow_nan=False)
        # Longest first, so a form that contains another is replaced whole.
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, _MASK)
        # Outside strings JSON text is ASCII, so these characters are always inside one, where
        # their escape stands for the same character: the value read back is unchanged.
        return _ESCAPED.sub(_escape_char, text) + "\n"

    def _ensure_open(self) -> Any:
        if self._file is None:
            if self.path is None:
                raise ValueError("the event log was closed")
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
            raw = io.FileIO(fd, "ab", closefd=True)
            try:
                size = os.fstat(fd).st_size
                if size:
                    # A torn line left by a crash: end it, so our first line is not glued to it.
                    with open(self.path, "rb") as existing:
                        existing.seek(size - 1)
                        if existing.read(1) != b"\n":
                            raw.write(b"\n")
            except BaseException:
                raw.close()
                raise
            self._file = raw
            self._last_fsync = time.monotonic()
        return self._file

    def _write(self, line: str) -> None:
        f = self._ensure_open()
        if self._text_mode:
            f.write(line)
        else:
            data = memoryview(line.encode("utf-8"))
            while data:
                written = f.write(data)
                if written is None:  # a non-blocking raw stream that would block: not a regular file
                    raise OSError("the event-log file would block")
                if written <= 0:
                    raise OSError("the event-log file accepted no bytes")
                data = data[written:]
        f.flush()
        self._unsynced = True

    def _maybe_fsync(self, event: str, rec: Mapping[str, Any]) -> None:
        policy = self.fsync
        if policy == "never":
            return
        if policy == "always":
            due = True
        elif policy == "final":
            due = event in _FINAL_EVENTS or (event == "transcript" and rec.get("is_final") is True)
        else:
            due = event == "session_end" or time.monotonic() - self._last_fsync >= float(policy)
        if due:
            self._fsync()

    def _fsync(self) -> None:
        f = self._file
        if f is None or not self._unsynced:
            return
        try:
            fd = f.fileno()
        except (AttributeError, io.UnsupportedOperation, ValueError):
            return  # an in-memory file: nothing to make durable
        os.fsync(fd)
        self._unsynced = False
        self._last_fsync = time.monotonic()

    def _close_own_file(self) -> None:
        if self.path is None or self._file is None:
            return
        try:
            if self.fsync != "never" and self.failed is None:
                self._fsync()
        finally:
            f, self._file = self._file, None
            f.close()


# -- describing payloads ---------------------------------------------------------


def _describe_event(event: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(event, Transcript):
        return "transcript", {
            "text": event.text,
            "is_final": event.is_final,
            "duration": event.duration,
            "language": event.language,
            "words": [_jsonable(w) for w in event.words],
            "request_id": event.request_id,
        }
    if isinstance(event, FlushDone):
        return "flush_done", {"request_id": event.request_id}
    if isinstance(event, Done):
        return "done", {"request_id": event.request_id}
    if isinstance(event, ServerErrorEvent):
        return "server_error", {
            "message": event.message,
            "status_code": event.status_code,
            "error_code": event.error_code,
            "title": event.title,
            "request_id": event.request_id,
            "doc_url": event.doc_url,
            "fatal": event.fatal,
        }
    if isinstance(event, (TurnUpdate, TurnEagerEnd, TurnEnd)):
        return event.type, {"transcript": event.transcript, "request_id": event.request_id}
    if isinstance(event, (TurnStart, TurnResume)):
        return event.type, {"request_id": event.request_id}
    if isinstance(event, UnknownMessage):
        # _jsonable redacts secret keys too, and stops at a bounded depth: a message nested
        # hundreds of levels deep (valid JSON) would exhaust the stack of a recursive walk.
        return "unknown", {"type": event.message_type, "raw": _jsonable(dict(event.raw))}
    # An event class newer than this plugin: its type name and public fields.
    name = getattr(event, "type", None)
    return (name if isinstance(name, str) and name else type(event).__name__.lower()), {"fields": _jsonable(event)}


def _describe_error(error: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(error).__name__, "message": str(error)}
    if isinstance(error, ServerError):
        for name in ("status_code", "error_code", "title", "request_id", "doc_url"):
            value = getattr(error, name, None)
            if value is not None:
                out[name] = value
    if isinstance(error, ConnectError) and error.status_code is not None:
        out["status_code"] = error.status_code
    if isinstance(error, ConnectionLostError):
        if error.close_code is not None:
            out["close_code"] = error.close_code
        if error.close_reason:
            out["close_reason"] = error.close_reason
    if isinstance(error, ProtocolError) and error.raw is not None:
        out["raw"] = str(error.raw)
    if isinstance(error, PluginError):
        out["hook"] = error.hook_name
        out["plugin"] = error.plugin_name
    cause = error.__cause__
    if cause is not None:
        out["cause"] = {"type": type(cause).__name__, "message": str(cause)}
    if not isinstance(error, CartesiaSyncError):
        out["library_error"] = False
    return out


def _redact_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (_MASK if isinstance(k, str) and k.lower() in _SECRET_KEYS else _redact_keys(v))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [_redact_keys(v) for v in value]
    return value


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: finite numbers, strings, lists and string-keyed dicts only."""
    if depth > _MAX_DEPTH and not (value is None or isinstance(value, (bool, str, int, float))):
        # Not str(value): it would skip the redaction of secret keys, and recurse without a bound.
        return f"<{type(value).__name__} nested deeper than {_MAX_DEPTH} levels>"
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= _MAX_INT_BITS else None
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, depth + 1)
    if isinstance(value, BaseException):
        return _jsonable(_describe_error(value), depth + 1)
    if isinstance(value, Word):
        return {
            "word": _jsonable(value.word, depth + 1),
            "start": _jsonable(value.start, depth + 1),
            "end": _jsonable(value.end, depth + 1),
        }
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _jsonable(getattr(value, f.name), depth + 1)
            for f in dataclasses.fields(value)
            if f.name != "raw" and not f.name.startswith("_")
        }
    if isinstance(value, Mapping):
        return _redact_keys({str(k): _jsonable(v, depth + 1) for k, v in value.items()})
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"bytes": len(value)}
    if hasattr(value, "as_dict") and callable(value.as_dict):
        return _jsonable(value.as_dict(), depth + 1)
    return str(value)


def _escape_char(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _writes_unicode(f: Any) -> bool:
    """Whether text file ``f`` can encode every character (UTF-8/16/32, or no encoding: in memory)."""
    encoding = getattr(f, "encoding", None)
    if not isinstance(encoding, str):
        return True
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return False
    return name.startswith(("utf-8", "utf-16", "utf-32"))


def _is_text_file(f: Any) -> bool:
    if isinstance(f, io.TextIOBase):
        return True
    if isinstance(f, (io.RawIOBase, io.BufferedIOBase)):
        return False
    mode = getattr(f, "mode", None)
    return not (isinstance(mode, str) and "b" in mode)
