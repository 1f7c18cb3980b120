"""Reading event logs written by :class:`cartesia_sync_plugins.event_log.EventLog`.

::

    from cartesia_sync_plugins.event_log import read_events, transcript_from_events

    log = read_events("session.jsonl")
    for record in log:                 # one dict per complete line, in file order
        ...
    if log.torn_tail:                  # the file ends in a partial line (a crash mid-write)
        print(f"ignored {log.torn_bytes} bytes of a torn last line")
    text, words = transcript_from_events(log, session=log.sessions[-1])

    for summary in log.session_summaries():   # numbered 1, 2, 3... in file order
        print(summary.number, summary.id, summary.duration, summary.preview())

    log = read_event_log("maybe.jsonl")   # refuses what is not an event log (NotAnEventLogError)

Rules (JSON Lines, https://jsonlines.org): lines are split on ``\\n`` only
(never on U+2028 and friends, which a UTF-8 log may contain raw); a trailing
``\\r`` is tolerated, and so is a blank line (skipped and counted in
:attr:`LogReadResult.blank_lines`: a writer that opens a file ending in a torn
line ends it with a ``\\n``, and when another writer was appending a long line
at that moment, that leaves an empty line). Only the **last** line may be torn: bytes after the last
``\\n``, or a last line that does not parse, are skipped and reported through
:attr:`LogReadResult.torn_tail` (or raise with ``strict=True``). A line in the
middle that is not a JSON object raises :class:`EventLogCorruptError` with its
line number, unless ``skip_corrupt=True`` (then it is skipped and listed in
:attr:`LogReadResult.corrupt_lines`). :func:`read_event_log` is the same
reader for a path that must hold an event log: an empty file, audio, binary
data or JSON of another kind raise :class:`NotAnEventLogError` instead.

Sessions are told apart by their ``session`` id; several sessions, of several
writers and processes, may share one file. They are numbered 1, 2, 3... in the
order their first record appears in the file (the number inside an id counts
the sessions of one process only, so two ids may share it).

This module uses only names from ``cartesia_sync.__all__``.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cartesia_sync import Turn, Word

__all__ = [
    "EventLogCorruptError",
    "NotAnEventLogError",
    "LogReadResult",
    "SessionSummary",
    "read_events",
    "read_event_log",
    "transcript_from_events",
    "turns_from_events",
]

#: What an event log is, for error messages.
EXPECTED = "expected a JSON Lines event log, as written by `cartesia-sync transcribe --log` or the EventLog plugin"


class EventLogCorruptError(ValueError):
    """A line of an event log is not a JSON object, and it is not a torn last line.

    :ivar path: the file (or ``"<stream>"``).
    :ivar line_number: the 1-based line number.
    :ivar reason: what is wrong with the line.
    """

    def __init__(self, path: str, line_number: int, reason: str) -> None:
        super().__init__(f"{path}: line {line_number} is corrupt: {reason}")
        self.path = path
        self.line_number = line_number
        self.reason = reason


class NotAnEventLogError(ValueError):
    """A file given as an event log is not one: empty, audio, binary, or JSON of another kind.

    :ivar path: the file.
    :ivar reason: what the file is, or what is wrong with it.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path} is not an event log: {reason}; {EXPECTED}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class SessionSummary:
    """One session of an event log, as :meth:`LogReadResult.session_summaries` lists it.

    :ivar number: its number in the file, from 1, in the order of its first record.
    :ivar id: its ``session`` id.
    :ivar started: the ``ts`` of its first record (UTC, ISO 8601), or ``None``.
    :ivar duration: seconds from its start to its last record, or ``None``.
    :ivar audio: seconds of audio: as sent (from ``session_end``), else up to
        its last final word; ``None`` when the log does not say.
    :ivar text: its final text, concatenated verbatim.
    :ivar ended: its ``session_end`` record is in the log.
    """

    number: int
    id: str
    started: str | None
    duration: float | None
    audio: float | None
    text: str
    ended: bool

    def preview(self, words: int = 8) -> str:
        """The first ``words`` words of its text, ``...`` when there are more."""
        parts = self.text.split()
        return " ".join(parts[:words]) + (" ..." if len(parts) > words else "")


@dataclass
class LogReadResult:
    """What :func:`read_events` found. Iterating it yields the records.

    :ivar events: one dict per complete, valid line, in file order.
    :ivar torn_tail: the file ended in a torn line that was skipped.
    :ivar torn_bytes: the size of that torn line, in bytes.
    :ivar torn_line: its line number, or ``None``.
    :ivar corrupt_lines: line numbers skipped with ``skip_corrupt=True``.
    :ivar blank_lines: empty lines skipped.
    """

    events: list[dict[str, Any]] = field(default_factory=list)
    torn_tail: bool = False
    torn_bytes: int = 0
    torn_line: int | None = None
    corrupt_lines: list[int] = field(default_factory=list)
    blank_lines: int = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def sessions(self) -> list[str]:
        """The ``session`` ids in the log, in order of first appearance."""
        seen: dict[str, None] = {}
        for record in self.events:
            sid = record.get("session")
            if isinstance(sid, str):
                seen.setdefault(sid, None)
        return list(seen)

    def session_summaries(self) -> list[SessionSummary]:
        """Every session of the log, numbered from 1 in the order of its first record."""
        records: dict[str, list[dict[str, Any]]] = {}
        for record in self.events:
            sid = record.get("session")
            if isinstance(sid, str):
                records.setdefault(sid, []).append(record)
        out = []
        for number, (sid, own) in enumerate(records.items(), start=1):
            times = [t for t in (_number(r.get("t")) for r in own) if t is not None]
            started = own[0].get("ts")
            out.append(
                SessionSummary(
                    number=number,
                    id=sid,
                    started=started if isinstance(started, str) else None,
                    duration=max(times) if times else None,
                    audio=_audio_seconds(own),
                    text=_final_text(own),
                    ended=any(r.get("event") == "session_end" for r in own),
                )
            )
        return out


def _number(value: Any) -> float | None:
    """A JSON number as a float; ``None`` for anything else, or an integer beyond the float range."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _audio_seconds(records: list[dict[str, Any]]) -> float | None:
    for record in reversed(records):
        if record.get("event") == "session_end" and isinstance(record.get("stats"), dict):
            sent = _number(record["stats"].get("audio_sent"))
            if sent is not None:
                return sent
    found = [
        _number(word.get("end"))
        for r in records
        if r.get("event") == "transcript" and r.get("is_final") is True and isinstance(r.get("words"), list)
        for word in r["words"]
        if isinstance(word, dict)
    ]
    ends = [end for end in found if end is not None]
    return max(ends) if ends else None


def _final_text(records: Iterable[dict[str, Any]]) -> str:
    return "".join(
        r.get("text") or ""
        for r in records
        if r.get("event") == "transcript" and r.get("is_final") is True and isinstance(r.get("text"), str)
    )


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse_line(raw: bytes) -> dict[str, Any]:
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    if not raw.strip():
        raise ValueError("a line of white space")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    return value


def read_events(
    source: str | os.PathLike[str] | Any,
    *,
    strict: bool = False,
    skip_corrupt: bool = False,
) -> LogReadResult:
    """Read an event log.

    :param source: a path, or a file object open for reading (binary or text).
    :param strict: raise :class:`EventLogCorruptError` for a torn last line too,
        instead of skipping it and setting ``torn_tail``.
    :param skip_corrupt: skip corrupt lines in the middle (listed in
        ``corrupt_lines``) instead of raising.
    :returns: the records and what was skipped.
    :raises EventLogCorruptError: a line before the last one is not a JSON
        object (white space, not UTF-8, not JSON, ``NaN``...), with its line number.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        with open(name, "rb") as f:
            data = f.read()
    else:
        name = getattr(source, "name", None) or "<stream>"
        name = name if isinstance(name, str) else "<stream>"
        data = source.read()
        if isinstance(data, str):
            data = data.encode("utf-8")
    return _read_bytes(data, name, strict, skip_corrupt)


def _read_bytes(data: bytes, name: str, strict: bool, skip_corrupt: bool) -> LogReadResult:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    result = LogReadResult()
    parts = data.split(b"\n")
    tail = parts.pop()  # b"" when the file ends with a newline
    last = len(parts)  # the number of the last complete line
    for number, raw in enumerate(parts, start=1):
        if raw in (b"", b"\r"):
            result.blank_lines += 1
            continue
        try:
            result.events.append(_parse_line(raw))
        except ValueError as exc:
            if number == last and not tail:
                _torn(result, name, number, len(raw) + 1, str(exc), strict)
            elif skip_corrupt:
                result.corrupt_lines.append(number)
            else:
                raise EventLogCorruptError(name, number, str(exc)) from None
    if tail:
        _torn(result, name, last + 1, len(tail), "no newline at the end of the file", strict)
    return result


def read_event_log(path: str | os.PathLike[str]) -> LogReadResult:
    """Read a file that must be an event log, as :func:`read_events` reads one.

    A file is an event log when its lines are JSON objects and, before any
    line that is not, at least one is a record (a JSON object with ``event``
    and ``session`` strings). A torn last line is tolerated and reported.

    :param path: the file.
    :raises NotAnEventLogError: the file is empty, audio, binary, a single JSON
        document, or text or JSON Lines without any event record.
    :raises EventLogCorruptError: an event log with a corrupt line in the middle.
    :raises OSError: the file cannot be read.
    """
    name = os.fspath(path)
    with open(name, "rb") as f:
        data = f.read()
    reason = _not_a_log(data)
    if reason is not None:
        raise NotAnEventLogError(name, reason)
    return _read_bytes(data, name, strict=False, skip_corrupt=False)


#: Leading bytes of the audio files people may pass by mistake.
_AUDIO_MAGIC = (
    (re.compile(rb"^RIFF....WAVE", re.S), "a WAV audio file"),
    (re.compile(rb"^RIFX....WAVE", re.S), "a WAV audio file"),
    (re.compile(rb"^fLaC"), "a FLAC audio file"),
    (re.compile(rb"^OggS"), "an Ogg audio file"),
    (re.compile(rb"^ID3|^\xff[\xe0-\xff]", re.S), "an MP3 audio file"),
    (re.compile(rb"^FORM....AIF[FC]", re.S), "an AIFF audio file"),
)


def _not_a_log(data: bytes) -> str | None:
    """Why ``data`` is not an event log, or ``None`` when its first records are event records."""
    if not data:
        return "it is empty (0 bytes)"
    if not data.strip():
        return f"it holds only white space ({len(data)} bytes)"
    for magic, kind in _AUDIO_MAGIC:
        if magic.match(data):
            return f"it is {kind} (to transcribe it, use `cartesia-sync transcribe`)"
    head = data[:4096]
    try:
        head.decode("utf-8")
        binary = b"\0" in head
    except UnicodeDecodeError as exc:
        binary = exc.start < len(head) - 3  # not a multi-byte character cut at the end of the slice
    if binary:
        return "it holds binary data, not text"
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    lines = body.split(b"\n")
    tail = lines.pop()
    seen = 0
    for number, raw in enumerate(lines, start=1):
        if raw in (b"", b"\r"):
            continue
        try:
            record = _parse_line(raw)
        except ValueError as exc:
            document = _json_document(body)
            if document is not None:
                return f"it is a single JSON {document}, not JSON Lines records"
            return f"line {number} is {exc}"
        if isinstance(record.get("event"), str) and isinstance(record.get("session"), str):
            return None
        seen += 1
    if seen:
        which = "its only JSON line is not" if seen == 1 else f"none of its {seen} JSON lines is"
        return f'{which} an event record (a JSON object with "event" and "session" fields)'
    document = _json_document(body)
    if document is not None:
        return f"it is a single JSON {document} with no newline, not JSON Lines records"
    if tail.strip():
        return f"it holds no complete line, only {len(tail)} bytes without a newline"
    return "it holds no record"


def _json_document(data: bytes) -> str | None:
    """``"object"``, ``"array"``... when ``data`` as a whole is one JSON value, else ``None``."""
    try:
        value = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    kinds: dict[type, str] = {dict: "object", list: "array", str: "string"}
    return kinds.get(type(value), "value")


def _torn(result: LogReadResult, name: str, number: int, size: int, reason: str, strict: bool) -> None:
    if strict:
        raise EventLogCorruptError(name, number, f"torn last line: {reason}")
    result.torn_tail = True
    result.torn_bytes = size
    result.torn_line = number


def _session_records(events: Iterable[dict[str, Any]], session: str | int | None) -> list[dict[str, Any]]:
    """The records of the session chosen by id or number (see :func:`transcript_from_events`)."""
    records = [r for r in events if isinstance(r, dict)]
    sids: dict[str, None] = {}
    for record in records:
        sid = record.get("session")
        if isinstance(sid, str):
            sids.setdefault(sid, None)
    order = list(sids)
    if session is None:
        if len(order) > 1:
            raise ValueError(
                f"the log holds {len(order)} sessions ({', '.join(order)}); choose one with session=<number or id>"
            )
        wanted = set(order)
    elif isinstance(session, int) and not isinstance(session, bool):
        if not 1 <= session <= len(order):
            raise ValueError(
                f"no session number {session} in the log: it holds "
                f"{_count(len(order))}" + (f", numbered 1 to {len(order)}" if len(order) > 1 else "")
            )
        wanted = {order[session - 1]}
    elif session in sids:
        wanted = {session}
    else:
        raise ValueError(f"no records of session {session!r} in the log (sessions: {', '.join(order) or 'none'})")
    return [record for record in records if record.get("session") in wanted]


def turns_from_events(
    events: Iterable[dict[str, Any]],
    session: str | int | None = None,
) -> tuple[Turn, ...]:
    """Rebuild one turn session's completed turns from its ``turn.end`` records.

    :param events: records, e.g. a :class:`LogReadResult`.
    :param session: chosen as for :func:`transcript_from_events`.
    :returns: the turns, as the session's ``turns`` were (times the log holds
        as anything but a number come back as NaN).
    :raises ValueError: as for :func:`transcript_from_events`.
    """
    return _turns(_session_records(events, session))


def _turns(records: list[dict[str, Any]]) -> tuple[Turn, ...]:
    turns: list[Turn] = []
    for record in records:
        if record.get("event") != "turn.end":
            continue
        text = record.get("transcript")
        turns.append(
            Turn(
                text if isinstance(text, str) else "",
                _time(record.get("start")),
                _time(record.get("end")),
                record.get("eager") is True,
            )
        )
    return tuple(turns)


def transcript_from_events(
    events: Iterable[dict[str, Any]],
    session: str | int | None = None,
) -> tuple[str, tuple[Word, ...]]:
    """Rebuild one session's final text and words from its records.

    :param events: records, e.g. a :class:`LogReadResult`.
    :param session: the ``session`` id, or the session's number in the
        records: 1, 2, 3... in the order of each session's first record (as
        :meth:`LogReadResult.session_summaries` numbers them); may be omitted
        when the records hold one session only.
    :returns: ``(text, words)``: the final texts concatenated verbatim and
        their words, as the session's ``text`` and ``words`` were. A word time
        the log holds as ``null`` (the writer's NaN or infinity) or as
        anything but a number comes back as NaN (the subtitle writer drops such
        a word); a record field of the wrong type (a hand-edited log) is
        skipped rather than raising.
    :raises ValueError: ``session`` is omitted and there are several sessions,
        or no session has the id or number given.
    """
    records = _session_records(events, session)
    texts: list[str] = []
    words: list[Word] = []
    if any(record.get("event") == "turn.end" for record in records):  # a turn session: its turns' texts
        return "".join(turn.text for turn in _turns(records)), ()
    for record in records:
        if record.get("event") != "transcript":
            continue
        if record.get("is_final") is not True:
            continue
        text = record.get("text")
        texts.append(text if isinstance(text, str) else "")
        items = record.get("words")
        for item in items if isinstance(items, list) else ():
            if isinstance(item, dict) and isinstance(item.get("word"), str):
                words.append(Word(item["word"], _time(item.get("start")), _time(item.get("end"))))
    return "".join(texts), tuple(words)


def _time(value: Any) -> float:
    """A word time read back: the number, or NaN where the log holds none (``null`` for a NaN or infinity)."""
    number = _number(value)
    if number is None or not math.isfinite(number):
        return math.nan
    return number


def _count(sessions: int) -> str:
    return "no session" if sessions == 0 else f"{sessions} session{'s' if sessions > 1 else ''}"
