"""Reading event logs written by :class:`cartesia_sync_plugins.event_log.EventLog`.

::

    from cartesia_sync_plugins.event_log import read_events, transcript_from_events

    log = read_events("session.jsonl")
    for record in log:                 # one dict per complete line, in file order
        ...
    if log.torn_tail:                  # the file ends in a partial line (a crash mid-write)
        print(f"ignored {log.torn_bytes} bytes of a torn last line")
    text, words = transcript_from_events(log, session=log.sessions[-1])

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
:attr:`LogReadResult.corrupt_lines`).

This module uses only names from ``cartesia_sync.__all__``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Tuple, Union

from cartesia_sync import Word

__all__ = ["EventLogCorruptError", "LogReadResult", "read_events", "transcript_from_events"]


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

    events: List[Dict[str, Any]] = field(default_factory=list)
    torn_tail: bool = False
    torn_bytes: int = 0
    torn_line: Optional[int] = None
    corrupt_lines: List[int] = field(default_factory=list)
    blank_lines: int = 0

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    @property
    def sessions(self) -> List[str]:
        """The ``session`` ids in the log, in order of first appearance."""
        seen: Dict[str, None] = {}
        for record in self.events:
            sid = record.get("session")
            if isinstance(sid, str):
                seen.setdefault(sid, None)
        return list(seen)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse_line(raw: bytes) -> Dict[str, Any]:
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
    source: Union[str, "os.PathLike[str]", Any],
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


def _torn(result: LogReadResult, name: str, number: int, size: int, reason: str, strict: bool) -> None:
    if strict:
        raise EventLogCorruptError(name, number, f"torn last line: {reason}")
    result.torn_tail = True
    result.torn_bytes = size
    result.torn_line = number


def transcript_from_events(
    events: Iterable[Dict[str, Any]],
    session: Optional[Union[str, int]] = None,
) -> Tuple[str, Tuple[Word, ...]]:
    """Rebuild one session's final text and words from its records.

    :param events: records, e.g. a :class:`LogReadResult`.
    :param session: the ``session`` id, or the session number; may be omitted
        when the records hold one session only.
    :returns: ``(text, words)``: the final texts concatenated verbatim and
        their words, as the session's ``text`` and ``words`` were.
    :raises ValueError: ``session`` is omitted and there are several sessions,
        or no record belongs to the session given.
    """
    records = [r for r in events if isinstance(r, dict)]
    sids: Dict[str, None] = {}
    for record in records:
        sid = record.get("session")
        if isinstance(sid, str):
            sids.setdefault(sid, None)
    if session is None:
        if len(sids) > 1:
            raise ValueError(f"the log holds {len(sids)} sessions ({', '.join(sids)}); pass session=")
        wanted = set(sids)
    elif isinstance(session, int) and not isinstance(session, bool):
        wanted = {sid for sid in sids if sid.split("-", 1)[0] == str(session)}
        if len(wanted) > 1:
            raise ValueError(f"session number {session} matches several sessions ({', '.join(sorted(wanted))})")
    else:
        wanted = {session} if session in sids else set()
    if session is not None and not wanted:
        raise ValueError(f"no records of session {session!r} in the log (sessions: {', '.join(sids) or 'none'})")
    texts: List[str] = []
    words: List[Word] = []
    for record in records:
        if record.get("event") != "transcript" or record.get("session") not in wanted:
            continue
        if record.get("is_final") is not True:
            continue
        texts.append(record.get("text") or "")
        for item in record.get("words") or ():
            words.append(Word(item["word"], item["start"], item["end"]))
    return "".join(texts), tuple(words)
