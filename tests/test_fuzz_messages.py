"""Property-based fuzzing of the message layer: ``parse_message`` and ``TranscriptAccumulator``.

Every server frame goes through :func:`cartesia_sync.parse_message` on the
receiver thread, which only catches :class:`cartesia_sync.ProtocolError`: any
other exception escaping the parser kills the receiver and with it the session
(design doc C4/C5, protocol.md 3.1). So the parser is fuzzed with

* arbitrary bytes (invalid UTF-8, NUL, frames up to ~100 KB) and arbitrary
  text (lone surrogates, control characters), including the legacy plain-text
  ``Title: Message`` error form;
* arbitrary JSON values (NaN/Infinity tokens, huge ints such as ``10**400``,
  deep nesting), with an independent oracle for what must come out;
* "near-valid" messages built from the real field names of every message type,
  with each field sometimes missing, of the wrong type, negative, non-finite,
  huge, with ``end < start``, empty ``words`` or 10k-word lists, checked
  against an oracle written from protocol.md 3.1.

Invariants: the result is a well-typed event or a ``ProtocolError`` (never any
other exception); word times and durations are finite floats; parsing is
deterministic; ``str`` and UTF-8 ``bytes`` frames parse the same; valid
transcripts round-trip field by field; a ``ProtocolError``'s ``raw`` is the
frame's preview of at most 200 characters plus ``"..."`` and its message is
bounded too.

The accumulator is fuzzed with random sequences of interim/final chunks and
offset changes (what a session does after a reconnect), checked against a
simple model, by a rule-based state machine, and from several threads at once.

Failures at the time of writing are library defects, not test bugs; the
``test_defect_*`` tests at the end pin their minimal inputs:

* an integer JSON number beyond the float range (``1e309`` written as digits) in
  ``duration`` or a word time raises ``OverflowError`` (``math.isfinite``);
* an ``error`` whose ``status_code``/``code`` is a digit string that ``int()``
  refuses (``"\u00b2"``, or more than 4300 digits) raises ``ValueError``;
* a ``ProtocolError`` message quotes the whole bad word entry or value, so its
  length grows with the frame although ``raw`` is shortened.
"""

from __future__ import annotations

import json
import math
import re
import string
import sys
import threading
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from cartesia_sync import (
    Done,
    FlushDone,
    ProtocolError,
    ServerErrorEvent,
    Transcript,
    UnknownMessage,
    Word,
    parse_message,
)
from cartesia_sync._transcript import TranscriptAccumulator

Frame = str | bytes
EVENT_TYPES = (Transcript, FlushDone, Done, ServerErrorEvent, UnknownMessage)
KNOWN_TYPES = ("transcript", "flush_done", "done", "error")

# events.py: ``_preview`` keeps the first 200 characters and appends "..." (the
# ProtocolError docstring says "at most 200 characters"; the suffix makes it 203).
RAW_PREVIEW = 200
RAW_LIMIT = RAW_PREVIEW + len("...")
# A message is fixed text (< 100 characters), the frame preview (<= 203) and at
# most a short description of the bad field, which must be shortened like the
# preview. Anything longer means a message quotes unbounded input.
MESSAGE_LIMIT = 2 * RAW_LIMIT + 100

HUGE_INTS = (10**400, -(10**400), 2**1024, 10**308 * 10)

# --------------------------------------------------------------------------- strategies

# Text that may hold lone surrogates (category Cs), controls and NUL.
wild_text = st.text(
    alphabet=st.characters(categories=("L", "M", "N", "P", "S", "Z", "C")),
    max_size=40,
)
surrogate_text = st.text(alphabet=st.characters(categories=("Cs",)), min_size=1, max_size=4)
any_text = st.one_of(st.text(max_size=40), wild_text, surrogate_text, st.just(""), st.just("\x00"))

# JSON numbers such as 1e400 are valid JSON yet decode to inf. json.dumps never writes them,
# so a placeholder string is drawn instead and swapped for the literal by ``encoded``.
OVERFLOW_LITERALS = ("1e400", "-1e400", "123456789e999")
overflow_literals = st.sampled_from(OVERFLOW_LITERALS).map(lambda lit: f"\x00lit:{lit}\x00")
any_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True), overflow_literals)
any_int = st.one_of(st.integers(), st.sampled_from(HUGE_INTS))
scalars = st.one_of(st.none(), st.booleans(), any_int, any_float, any_text)

json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(any_text, children, max_size=5),
        # objects that look like messages more often than chance would make them
        st.fixed_dictionaries(
            {"type": st.one_of(st.sampled_from(KNOWN_TYPES + ("turn.start", "", "connected")), scalars)},
            optional={"text": children, "words": children, "request_id": children},
        ),
    ),
    max_leaves=20,
)

# Strings that look like status codes: decimal digits of other scripts, superscripts,
# circled numbers, and a digit string past CPython's 4300-digit int() limit.
digit_like = st.one_of(
    st.text(alphabet="0123456789", min_size=1, max_size=5),
    st.text(alphabet=st.characters(categories=("Nd", "No")), min_size=1, max_size=4),
    st.sampled_from(["\u00b2", "1\u00b2", "\u2460", "\u0663", "007", "1" * 5000]),
)


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return value


deep_values = st.integers(min_value=1, max_value=400).map(_nested)

# A value of any wrong or hostile kind, used to mutate a field.
wrong = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), scalars, max_size=3),
    deep_values,
    st.text(min_size=300, max_size=2000),
)

good_time = st.one_of(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.integers(-(10**6), 10**6))
bad_time = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, None, "0.5", "1"]),
    overflow_literals,
    st.sampled_from(HUGE_INTS),
    wrong,
)


def maybe(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any] = wrong) -> st.SearchStrategy[Any]:
    """Mostly a good value, sometimes a wrong one."""
    return st.one_of(good, good, good, bad)


word_dicts = st.fixed_dictionaries(
    {},
    optional={"word": maybe(any_text), "start": maybe(good_time, bad_time), "end": maybe(good_time, bad_time)},
)


@st.composite
def many_words(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A 10k-word list, built from a pattern (generating each element would be too slow)."""
    pattern = draw(
        st.lists(
            st.fixed_dictionaries({"word": st.text(max_size=6), "start": good_time, "end": good_time}),
            min_size=1,
            max_size=3,
        )
    )
    broken_at = draw(st.one_of(st.none(), st.integers(0, 9_999)))
    words = [dict(pattern[i % len(pattern)]) for i in range(10_000)]
    if broken_at is not None:
        words[broken_at] = draw(st.one_of(word_dicts, wrong))
    return words


words_field = st.one_of(
    st.just([]),
    st.lists(word_dicts, max_size=6),
    st.lists(st.one_of(word_dicts, wrong), max_size=4),
    many_words(),
    wrong,
)

transcript_dicts = st.fixed_dictionaries(
    {"type": st.just("transcript")},
    optional={
        "request_id": maybe(any_text),
        "text": maybe(any_text),
        "is_final": maybe(st.booleans()),
        "duration": maybe(st.floats(min_value=0, max_value=1e5), bad_time),
        "language": maybe(st.sampled_from(["en", "de", "fr", ""])),
        "words": words_field,
    },
)

simple_dicts = st.fixed_dictionaries(
    {"type": st.sampled_from(["flush_done", "done"])},
    optional={"request_id": maybe(any_text), "text": wrong, "done": wrong},
)

error_dicts = st.fixed_dictionaries(
    {"type": st.just("error")},
    optional={
        "message": maybe(any_text, st.one_of(wrong, st.fixed_dictionaries({"message": maybe(any_text)}))),
        "error": maybe(any_text, st.one_of(wrong, st.fixed_dictionaries({"message": maybe(any_text)}))),
        "title": maybe(any_text),
        "status_code": maybe(st.integers(100, 599), st.one_of(digit_like, wrong)),
        "code": maybe(st.integers(100, 599), st.one_of(digit_like, wrong)),
        "error_code": maybe(st.sampled_from(["model_not_found", "concurrency_limited"])),
        "done": maybe(st.booleans()),
        "doc_url": maybe(st.just("https://docs.cartesia.ai/x")),
        "request_id": maybe(any_text),
    },
)


@st.composite
def encoded(draw: st.DrawFn, values: st.SearchStrategy[Any]) -> tuple[Any, Frame, bool]:
    """A value as a JSON decoder sees it, its frame (text or UTF-8 bytes), and whether the frame is
    valid UTF-8 holding strict JSON (no NaN/Infinity tokens).

    The value is re-read from the JSON text: with ``ensure_ascii`` two adjacent lone surrogates
    become a ``\\ud800\\udc00`` escape, which any JSON decoder joins into one character.
    """
    ascii_only = draw(st.booleans())
    text = json.dumps(draw(values), allow_nan=True, ensure_ascii=ascii_only)
    for literal in OVERFLOW_LITERALS:
        text = text.replace(json.dumps(f"\x00lit:{literal}\x00"), literal)
    value = json.loads(text)  # Python's decoder accepts NaN/Infinity: look for them with _is_json
    if draw(st.booleans()):
        return value, text, _is_json(text)
    data = text.encode("utf-8", errors="surrogatepass")  # lone surrogates -> invalid UTF-8
    return value, data, _is_utf8(data) and _is_json(text)


# --------------------------------------------------------------------------- helpers


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_json(text: str) -> bool:
    def reject(name: str) -> None:
        raise ValueError(name)

    try:
        json.loads(text, parse_constant=reject)
    except (ValueError, RecursionError):
        return False
    return True


def _source(frame: Frame) -> str:
    """The text a ProtocolError's ``raw`` previews: the decoded frame, or repr() of undecodable bytes."""
    if isinstance(frame, str):
        return frame
    return frame.decode("utf-8") if _is_utf8(frame) else repr(bytes(frame))


def check_protocol_error(frame: Frame, exc: ProtocolError, *, bounded_message: bool = False) -> None:
    """``raw`` is the frame's preview, shortened; with ``bounded_message``, the message is bounded too.

    The message bound is checked only by the dedicated tests, so that its (known) violation
    does not hide other failures of the broad properties.
    """
    raw = exc.raw
    assert isinstance(raw, str), raw
    assert len(raw) <= RAW_LIMIT, len(raw)
    source = _source(frame)
    if len(source) <= RAW_PREVIEW:
        assert raw == source
    else:
        assert raw == source[:RAW_PREVIEW] + "..."
    message = str(exc)
    assert message, "a ProtocolError must say what was wrong"
    if bounded_message:
        assert len(message) <= MESSAGE_LIMIT, (
            f"ProtocolError message of {len(message)} characters: {message[:300]!r}..."
        )


def _is_finite_float(value: Any) -> bool:
    return type(value) is float and math.isfinite(value)


def check_well_typed(event: Any) -> None:
    """Every field of a returned event has its declared type; times are finite floats."""
    assert isinstance(event, EVENT_TYPES), type(event)
    if isinstance(event, Transcript):
        assert type(event.text) is str
        assert type(event.is_final) is bool
        assert event.duration is None or _is_finite_float(event.duration), event.duration
        assert event.language is None or type(event.language) is str
        assert event.request_id is None or type(event.request_id) is str
        assert type(event.words) is tuple
        for word in event.words:
            assert type(word) is Word
            assert type(word.word) is str
            assert _is_finite_float(word.start) and _is_finite_float(word.end), word
    elif isinstance(event, (FlushDone, Done)):
        assert event.request_id is None or type(event.request_id) is str
    elif isinstance(event, ServerErrorEvent):
        assert type(event.message) is str and event.message
        assert event.status_code is None or type(event.status_code) is int
        for name in ("error_code", "title", "request_id", "doc_url"):
            value = getattr(event, name)
            assert value is None or type(value) is str, (name, value)
        assert type(event.fatal) is bool
    else:
        assert type(event.message_type) is str and event.message_type not in KNOWN_TYPES


def parse_checked(frame: Frame) -> Any | None:
    """Parse ``frame`` twice; return the event, or None for a ProtocolError, after the common checks.

    Any exception other than ProtocolError propagates and fails the test.
    """
    try:
        event = parse_message(frame)
    except ProtocolError as exc:
        check_protocol_error(frame, exc)
        with pytest.raises(ProtocolError) as again:
            parse_message(frame)
        assert (str(again.value), again.value.raw) == (str(exc), exc.raw), "parsing is not deterministic"
        return None
    check_well_typed(event)
    again = parse_message(frame)
    assert type(again) is type(event) and again == event and again.raw == event.raw, "parsing is not deterministic"
    return event


# --------------------------------------------------------------------------- oracles

_BAD = object()  # the oracle's "expect ProtocolError"


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _BAD
    try:
        number = float(value)
    except OverflowError:  # an int beyond the float range is not a usable time
        return _BAD
    return number if math.isfinite(number) else _BAD


def _optional_str(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else _BAD


def expected_transcript(d: dict[str, Any]) -> Any:
    """protocol.md 3.1 ``transcript``, with the leniencies events.py documents (missing text/is_final)."""
    text = d.get("text")
    text = "" if text is None else text
    is_final = d.get("is_final", False)
    duration = d.get("duration")
    duration = None if duration is None else _number(duration)
    language, request_id = _optional_str(d.get("language")), _optional_str(d.get("request_id"))
    words_value = d.get("words")
    if not isinstance(text, str) or not isinstance(is_final, bool) or _BAD in (duration, language, request_id):
        return _BAD
    if words_value is None:
        words: tuple[Word, ...] = ()
    elif not isinstance(words_value, list):
        return _BAD
    else:
        parsed = []
        for item in words_value:
            if not isinstance(item, dict) or not isinstance(item.get("word"), str):
                return _BAD
            start, end = _number(item.get("start")), _number(item.get("end"))
            if start is _BAD or end is _BAD:
                return _BAD
            parsed.append(Word(item["word"], start, end))
        words = tuple(parsed)
    return Transcript(
        text=text, is_final=is_final, duration=duration, language=language, words=words, request_id=request_id
    )


# --------------------------------------------------------------------------- parser properties

huge_bytes = st.tuples(st.binary(min_size=1, max_size=64), st.integers(0, 1600)).map(lambda t: t[0] * t[1])
huge_text = st.tuples(wild_text, st.integers(0, 2500)).map(lambda t: t[0] * t[1])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    frame=st.one_of(
        st.binary(max_size=300),
        huge_bytes,
        wild_text,
        huge_text,
        st.text(alphabet=st.characters(categories=("Cs", "Cc")), max_size=20),
    )
)
def test_arbitrary_frames(frame: Frame) -> None:
    """Junk bytes/text: a ProtocolError, or a plain-text ``Title: Message`` error; never another exception."""
    event = parse_checked(frame)
    if isinstance(frame, bytes) and not _is_utf8(frame):
        assert event is None, "undecodable bytes must be a ProtocolError"
        with pytest.raises(ProtocolError, match="not UTF-8"):
            parse_message(frame)
    if event is not None and not _is_json(_source(frame)):
        # the only non-JSON text accepted is the legacy plain-text form
        text = _source(frame)
        assert isinstance(event, ServerErrorEvent) and event.raw == {"text": text}
        assert event.title and len(event.title) <= 80 and "\n" not in event.title
        assert f"{event.title}: {event.message}" == text.strip()


TITLE_CHARS = string.ascii_letters + string.digits + " -_()"


@settings(max_examples=150, deadline=None)
@given(
    lead=st.sampled_from(["", " ", "\n", "\t "]),
    title=st.one_of(
        st.text(alphabet=TITLE_CHARS, min_size=1, max_size=20), st.text(alphabet=TITLE_CHARS, min_size=75, max_size=90)
    ).filter(lambda t: t == t.strip()),
    message=any_text.filter(lambda m: bool(m) and m == m.strip()),
    trail=st.sampled_from(["", " ", "\r\n"]),
    as_bytes=st.booleans(),
)
def test_plain_text_title_message(lead: str, title: str, message: str, trail: str, as_bytes: bool) -> None:
    """The legacy ``Title: Message`` text frame becomes an error event iff the title is at most 80 characters."""
    text = f"{lead}{title}: {message}{trail}"
    frame: Frame = text.encode("utf-8", errors="surrogatepass") if as_bytes else text
    event = parse_checked(frame)
    if as_bytes and not _is_utf8(frame):  # type: ignore[arg-type]
        assert event is None
    elif len(title) <= 80:
        assert isinstance(event, ServerErrorEvent)
        assert (event.title, event.message, event.fatal) == (title, message, True)
    else:
        assert event is None


@settings(max_examples=300, deadline=None)
@given(encoded(json_values))
def test_arbitrary_json(case: tuple[Any, Frame, bool]) -> None:
    """Any JSON value: an oracle decides between ProtocolError, UnknownMessage and a known event."""
    value, frame, ok = case
    event = parse_checked(frame)
    if not ok or not isinstance(value, dict) or not isinstance(value.get("type"), str):
        assert event is None, f"expected a ProtocolError, got {event!r}"
    elif value["type"] not in KNOWN_TYPES:
        assert isinstance(event, UnknownMessage) and event.message_type == value["type"]
        assert event.raw == value
    elif event is not None:
        assert event.type == value["type"]


@settings(max_examples=25, deadline=None)
@given(
    depth=st.sampled_from([10, 500, 900, 990, 995, 1000, 5000, 100_000]),
    where=st.sampled_from(["top", "words", "start", "error_code", "unknown"]),
)
def test_deep_nesting(depth: int, where: str) -> None:
    """Nesting from harmless to far past the recursion limit, in every place a value is inspected or repr'd."""
    inner = "[" * depth + "]" * depth
    frame = {
        "top": inner,
        "words": f'{{"type":"transcript","words":[{inner}]}}',
        "start": f'{{"type":"transcript","words":[{{"word":"a","start":{inner},"end":1}}]}}',
        "error_code": f'{{"type":"error","message":"m","error_code":{inner}}}',
        "unknown": f'{{"type":"x","payload":{inner}}}',
    }[where]
    parse_checked(frame)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(encoded(transcript_dicts))
def test_near_valid_transcripts(case: tuple[dict[str, Any], Frame, bool]) -> None:
    """Mutated ``transcript`` messages parse exactly as the protocol.md oracle says, or raise ProtocolError."""
    value, frame, ok = case
    event = parse_checked(frame)
    expected = _BAD if not ok else expected_transcript(value)
    if expected is _BAD:
        assert event is None, f"expected a ProtocolError, got {event!r}"
    else:
        assert event == expected
        assert event.raw == value


@settings(max_examples=200, deadline=None)
@given(encoded(simple_dicts))
def test_near_valid_flush_done_and_done(case: tuple[dict[str, Any], Frame, bool]) -> None:
    """``flush_done``/``done``: only ``request_id`` matters; it must be a string or absent."""
    value, frame, ok = case
    event = parse_checked(frame)
    request_id = value.get("request_id")
    if not ok or not (request_id is None or isinstance(request_id, str)):
        assert event is None
    else:
        assert event == (FlushDone if value["type"] == "flush_done" else Done)(request_id=request_id)


@settings(max_examples=300, deadline=None)
@given(encoded(error_dicts))
def test_near_valid_errors(case: tuple[dict[str, Any], Frame, bool]) -> None:
    """``error`` in any shape is lenient: always an event (never ProtocolError) with protocol.md's precedence."""
    value, frame, ok = case
    event = parse_checked(frame)
    if not ok:
        assert event is None
        return
    assert isinstance(event, ServerErrorEvent), f"an error message must not be junk: {event!r}"
    message = None
    for key in ("message", "error", "title"):
        field = value.get(key)
        if isinstance(field, str) and field:
            message = field
            break
        if isinstance(field, dict) and isinstance(field.get("message"), str):
            message = field["message"]
            break
    if message:
        assert event.message == message
    expected_status: Any = None
    for key in ("status_code", "code"):
        field = value.get(key)
        if isinstance(field, int) and not isinstance(field, bool):
            expected_status = field
            break
        if isinstance(field, str) and field.isascii() and field.isdigit() and len(field) <= 18:
            expected_status = int(field)
            break
        if isinstance(field, str) and field.isdigit():
            expected_status = _BAD  # other scripts' digits or > 18 digits: unspecified, but no exception
            break
    if expected_status is not _BAD:
        assert event.status_code == expected_status
    error_code = value.get("error_code")
    assert event.error_code == (
        None if error_code is None else error_code if isinstance(error_code, str) else str(error_code)
    )
    for key in ("title", "request_id", "doc_url"):
        field = value.get(key)
        assert getattr(event, key) == (field if isinstance(field, str) else None), key
    assert event.fatal is (value.get("done", True) is not False)


valid_words = st.lists(
    st.fixed_dictionaries({"word": st.text(max_size=10), "start": good_time, "end": good_time}),
    max_size=8,
)
valid_transcripts = st.fixed_dictionaries(
    {"type": st.just("transcript"), "text": st.text(max_size=40), "is_final": st.booleans()},
    optional={
        "request_id": st.uuids().map(str),
        "duration": st.one_of(st.floats(min_value=0, max_value=1e4), st.integers(0, 10**4)),
        "language": st.sampled_from(["en", "de", "ja"]),
        "words": valid_words,
    },
)


@settings(max_examples=200, deadline=None)
@given(value=valid_transcripts, ascii_only=st.booleans(), as_bytes=st.booleans())
def test_valid_transcripts_round_trip(value: dict[str, Any], ascii_only: bool, as_bytes: bool) -> None:
    """A valid transcript keeps every field verbatim (text spaces included); times become equal floats."""
    text = json.dumps(value, ensure_ascii=ascii_only)
    event = parse_message(text.encode("utf-8") if as_bytes else text)
    check_well_typed(event)
    assert isinstance(event, Transcript)
    assert event.text == value["text"]
    assert event.is_final is value["is_final"]
    assert event.request_id == value.get("request_id")
    assert event.language == value.get("language")
    assert event.duration == value.get("duration")
    assert len(event.words) == len(value.get("words", []))
    for word, raw in zip(event.words, value.get("words", []), strict=False):
        assert (word.word, word.start, word.end) == (raw["word"], raw["start"], raw["end"])
    assert event.raw == value


@settings(max_examples=200, deadline=None)
@given(st.one_of(encoded(st.one_of(transcript_dicts, error_dicts, simple_dicts)).map(lambda c: c[1]), st.text()))
def test_str_and_bytes_frames_agree(frame: Frame) -> None:
    """A frame parses the same whether it arrives as text or as its UTF-8 bytes (or a bytearray)."""
    text = frame if isinstance(frame, str) else frame.decode("utf-8", errors="surrogatepass")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        return  # lone surrogates have no UTF-8 form; covered by the other tests
    results = []
    for form in (text, data, bytearray(data)):
        try:
            results.append(("event", parse_message(form)))
        except ProtocolError as exc:
            results.append(("error", (str(exc), exc.raw)))
    assert results[0] == results[1] == results[2]


@settings(max_examples=100, deadline=None)
@given(
    kind=st.sampled_from(
        [
            "transcript-text",
            "transcript-words",
            "word",
            "start",
            "duration",
            "request_id",
            "type",
            "not-object",
            "not-json",
        ]
    ),
    filler=st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=3),
    size=st.integers(0, 50_000),
)
def test_protocol_error_messages_are_bounded(kind: str, filler: str, size: int) -> None:
    """However large the bad frame or the bad field, ``raw`` is the 203-character preview and the message is bounded."""
    big = filler * size
    frame = {
        "transcript-text": json.dumps({"type": "transcript", "text": [big]}),
        "transcript-words": json.dumps({"type": "transcript", "words": {"w": big}}),
        "word": json.dumps({"type": "transcript", "words": [{"word": 1, "pad": big}]}),
        "start": json.dumps({"type": "transcript", "words": [{"word": "a", "start": big, "end": 1}]}),
        "duration": json.dumps({"type": "transcript", "duration": big}),
        "request_id": json.dumps({"type": "done", "request_id": [big]}),
        "type": json.dumps({"type": None, "pad": big}),
        "not-object": json.dumps([big]),
        "not-json": "{" + big,
    }[kind]
    with pytest.raises(ProtocolError) as caught:
        parse_message(frame)
    check_protocol_error(frame, caught.value, bounded_message=True)


# --------------------------------------------------------------------------- accumulator


@st.composite
def chunks(draw: st.DrawFn, final: bool | None = None) -> Transcript:
    """A transcript chunk: text with leading spaces/unicode, words with increasing times."""
    is_final = draw(st.booleans()) if final is None else final
    text = draw(
        st.one_of(
            st.text(max_size=12),
            st.text(max_size=12).map(lambda t: " " + t),
            st.sampled_from(["", " ", "  two  spaces ", " ünïcödé 日本語", "\n"]),
        )
    )
    count = draw(st.integers(0, 4))
    t = draw(st.floats(min_value=0, max_value=1000, allow_nan=False))
    words = []
    for _ in range(count):
        start = t + draw(st.floats(min_value=0, max_value=2, allow_nan=False))
        end = start + draw(st.floats(min_value=0, max_value=2, allow_nan=False))
        words.append(Word(draw(st.text(max_size=6)), start, end))
        t = end
    return Transcript(text=text, is_final=is_final, words=tuple(words), duration=draw(st.none() | st.floats(0, 10)))


offsets = st.one_of(st.just(0.0), st.floats(min_value=0, max_value=1e5, allow_nan=False), st.integers(0, 3600))


@dataclass(frozen=True)
class Reconnect:
    """A step of a session's life: a new connection starting ``offset`` seconds into the audio."""

    offset: float


def _shift(words: tuple[Word, ...], offset: float) -> tuple[Word, ...]:
    return tuple(Word(w.word, w.start + offset, w.end + offset) for w in words)


class _Model:
    """What the accumulator must hold, computed independently."""

    def __init__(self) -> None:
        self.text = ""
        self.words: list[Word] = []
        self.interim: Transcript | None = None

    def add(self, chunk: Transcript, offset: float) -> Transcript:
        shifted = Transcript(
            text=chunk.text,
            is_final=chunk.is_final,
            duration=chunk.duration,
            language=chunk.language,
            words=_shift(chunk.words, offset),
            request_id=chunk.request_id,
        )
        if chunk.is_final:
            self.text += chunk.text
            self.words.extend(shifted.words)
            self.interim = None
        else:
            self.interim = shifted
        return shifted


def check_against_model(acc: TranscriptAccumulator, model: _Model) -> None:
    assert acc.text == model.text
    assert acc.words == tuple(model.words)
    assert acc.interim == model.interim


# A newer accumulator API: a reconnect sets the offset and drops the old connection's interim.
HAS_START_CONNECTION = hasattr(TranscriptAccumulator, "start_connection")
reconnects = offsets.map(Reconnect) if HAS_START_CONNECTION else st.nothing()


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.one_of(chunks(), offsets, reconnects), max_size=25))
def test_accumulator_sequences(steps: list[Transcript | float | Reconnect]) -> None:
    """Finals concatenate verbatim, words are shifted by the offset in force, interim is the latest un-finalised one."""
    acc, model = TranscriptAccumulator(), _Model()
    offset = 0.0
    for step in steps:
        if isinstance(step, Transcript):
            returned = acc.add(step)
            expected = model.add(step, offset)
            assert returned == expected
            assert returned.words == _shift(step.words, offset)
        elif isinstance(step, Reconnect):
            offset = step.offset
            acc.start_connection(step.offset)  # type: ignore[attr-defined]
            model.interim = None
            assert acc.offset == step.offset
        else:
            offset = step
            acc.offset = step
        check_against_model(acc, model)
    finals = [s for s in steps if isinstance(s, Transcript) and s.is_final]
    assert acc.text == "".join(c.text for c in finals)
    assert len(acc.words) == sum(len(c.words) for c in finals)


@settings(max_examples=25, deadline=None)
@given(
    threads=st.integers(2, 6),
    per_thread=st.integers(1, 40),
    payload=st.text(max_size=5),
    offset=st.sampled_from([0.0, 12.5]),
)
def test_accumulator_concurrent_finals(threads: int, per_thread: int, payload: str, offset: float) -> None:
    """Threads adding disjoint finals: every chunk appears exactly once, text and words in the same order."""
    acc = TranscriptAccumulator()
    acc.offset = offset
    barrier = threading.Barrier(threads)
    failures: list[BaseException] = []

    def tag(i: int, j: int) -> str:
        return f"<{i}.{j}>"

    clean = payload.replace("<", "(").replace(">", ")")

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            for j in range(per_thread):
                word = Word(tag(i, j), float(j), float(j) + 0.5)
                acc.add(Transcript(text=tag(i, j) + clean, is_final=True, words=(word, word)))
                if j % 3 == 0:
                    acc.add(Transcript(text="interim", is_final=False))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=30)
    finally:
        sys.setswitchinterval(old_interval)
    assert not any(w.is_alive() for w in workers), "a thread hung"
    assert not failures, failures
    order = re.findall(r"<\d+\.\d+>", acc.text)
    expected = {tag(i, j) for i in range(threads) for j in range(per_thread)}
    assert sorted(order) == sorted(expected) and len(order) == len(expected), "a chunk was lost or duplicated"
    for i in range(threads):
        mine = [t for t in order if t.startswith(f"<{i}.")]
        assert mine == [tag(i, j) for j in range(per_thread)], "one thread's chunks were reordered"
    words = acc.words
    assert [w.word for w in words] == [t for t in order for _ in range(2)], "text and words disagree on order"
    assert all(w.start == float(w.word.split(".")[1][:-1]) + offset for w in words)


class AccumulatorMachine(RuleBasedStateMachine):
    """Interim/final chunks and offset shifts in any order; the model is checked after every step."""

    def __init__(self) -> None:
        super().__init__()
        self.acc = TranscriptAccumulator()
        self.model = _Model()
        self.offset = 0.0
        self.added = 0

    @rule(chunk=chunks(final=False))
    def add_interim(self, chunk: Transcript) -> None:
        assert self.acc.add(chunk) == self.model.add(chunk, self.offset)
        self.added += 1

    @rule(chunk=chunks(final=True))
    def add_final(self, chunk: Transcript) -> None:
        assert self.acc.add(chunk) == self.model.add(chunk, self.offset)
        self.added += 1

    @rule(offset=offsets)
    def shift_offset(self, offset: float) -> None:
        self.offset = offset
        self.acc.offset = offset

    @precondition(lambda self: HAS_START_CONNECTION)
    @rule(offset=offsets)
    def reconnect(self, offset: float) -> None:
        self.acc.start_connection(offset)  # type: ignore[attr-defined]
        self.offset = offset
        self.model.interim = None

    @precondition(lambda self: self.added > 0)
    @rule()
    def reread(self) -> None:
        """Reading is side-effect free."""
        assert (self.acc.text, self.acc.words, self.acc.interim) == (self.acc.text, self.acc.words, self.acc.interim)

    @invariant()
    def matches_model(self) -> None:
        check_against_model(self.acc, self.model)


AccumulatorMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_accumulator_state_machine = AccumulatorMachine.TestCase


# --------------------------------------------------------------------------- known defects, minimal inputs

DEFECT_FRAMES: list[tuple[str, str]] = [
    # math.isfinite()/float() on an int beyond the float range raises OverflowError
    ("duration-huge-int", '{"type":"transcript","duration":1' + "0" * 309 + "}"),
    ("word-start-huge-int", '{"type":"transcript","words":[{"word":"a","start":1' + "0" * 309 + ',"end":1}]}'),
    # str.isdigit() accepts superscripts, whose int() raises ValueError
    ("status-superscript", '{"type":"error","message":"m","status_code":"\\u00b2"}'),
    # int() refuses strings of more than 4300 digits (CPython >= 3.11)
    ("status-5000-digits", '{"type":"error","message":"m","code":"' + "1" * 5000 + '"}'),
]


@pytest.mark.parametrize("frame", [f for _, f in DEFECT_FRAMES], ids=[n for n, _ in DEFECT_FRAMES])
def test_defect_parser_raises_only_protocol_error(frame: str) -> None:
    """Minimal inputs found by the properties above: parse_message must not raise anything but ProtocolError."""
    parse_checked(frame)


@pytest.mark.parametrize(
    "frame",
    [
        json.dumps({"type": "transcript", "words": [{"word": 1, "pad": "x" * 1000}]}),
        json.dumps({"type": "transcript", "words": [{"word": "a", "start": "x" * 1000, "end": 1}]}),
    ],
    ids=["malformed-word-entry", "bad-word-start"],
)
def test_defect_protocol_error_message_is_bounded(frame: str) -> None:
    """The field description quotes the whole bad value, so the message grows with the frame."""
    with pytest.raises(ProtocolError) as caught:
        parse_message(frame)
    check_protocol_error(frame, caught.value, bounded_message=True)
